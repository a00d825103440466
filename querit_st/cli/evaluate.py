"""``querit-st evaluate`` and ``benchmarks/beir_eval.py``: the harness' command line (same options)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from querit_st.harness import run_beir_eval
from querit_st.utils import QueritInputError, one_line


def add_arguments(parser: argparse.ArgumentParser, *, multi_data: bool = True) -> argparse.ArgumentParser:
    """The options shared by ``benchmarks/beir_eval.py`` and ``querit-st evaluate``."""
    parser.add_argument("--data", required=True, nargs="+" if multi_data else None, metavar="DIR",
                        help="BEIR folder(s) (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or BEIR dataset names "
                             "(e.g. scifact; downloaded once into the cache when the network allows)")
    parser.add_argument("--retriever", required=True, metavar="R",
                        help="first-stage embedding model: offline backbone name (minilm-l6, multilingual-e5-small), "
                             "SentenceTransformer folder or hub name")
    parser.add_argument("--reranker", nargs="*", default=[], metavar="M",
                        help="cross-encoder(s) reranking the top-k: a QueritCrossEncoder/CrossEncoder folder or hub "
                             "name; an offline backbone name (or an embedding-model folder) gives an UNTRAINED reranker "
                             "(backbone + fresh scoring head), labelled so in the output")
    parser.add_argument("--names", nargs="*", default=None, metavar="NAME",
                        help="display names for the rerankers (same order as --reranker)")
    parser.add_argument("--top-k", type=int, default=100, metavar="K", help="first-stage depth that is reranked")
    parser.add_argument("--output", required=True, metavar="FILE.json", help="results JSON (written atomically)")
    parser.add_argument("--split", default="test", help="qrels split (default: test)")
    parser.add_argument("--batch-size", type=int, default=64, help="reranker batch size (pairs per forward pass)")
    parser.add_argument("--fusion-weight", type=float, default=0.0,
                        help="fuse the retriever's score into the reranker's: z(rerank) + w * z(retriever)")
    parser.add_argument("--max-queries", type=int, default=None, metavar="N",
                        help="evaluate only the first N queries with qrels of each dataset (quick runs)")
    parser.add_argument("--queries-from", default=None, metavar="DIR",
                        help="cross-lingual runs: take the queries from this BEIR folder (same query ids), the corpus "
                             "and qrels from --data (e.g. XQuAD-R: queries of xquad-r-de, corpus of xquad-r-en)")
    parser.add_argument("--cache-dir", default=None,
                        help="embedding cache of the retriever (default: $QUERIT_ST_CACHE/embeddings)")
    parser.add_argument("--device", default=None, help="torch device for the retriever and rerankers")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the fresh head of untrained rerankers")
    parser.add_argument("--instruction", default=None,
                        help="task instruction for the rerankers (QueritCrossEncoder; default: the Querit instruction)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    data = args.data if isinstance(args.data, list) else [args.data]
    return run_beir_eval(
        data, args.retriever, args.reranker or [], names=args.names, top_k=args.top_k, split=args.split,
        batch_size=args.batch_size, fusion_weight=args.fusion_weight, max_queries=args.max_queries,
        queries_from=args.queries_from, cache_dir=args.cache_dir, device=args.device, seed=args.seed,
        output=args.output, instruction=args.instruction,
        command=command,
    )


def main(argv: Sequence[str] | None = None, prog: str = "beir_eval.py") -> int:
    """``benchmarks/beir_eval.py``: 0 on success, 2 (with one error line on stderr) on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_arguments(argparse.ArgumentParser(prog=prog, description="Evaluate a retriever alone and reranked on BEIR folders (nDCG@10, MRR@10, Recall)."))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed the usage / help
        return int(e.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        report = _run(args, shlex.join([prog, *argv]))
    except QueritInputError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    print(report["table_markdown"])
    print(f"\nresults: {args.output}")
    return 0


def evaluate_command(argv: list[str] | None = None) -> int:
    """``querit-st evaluate --data DIR --reranker M --retriever R --top-k K --output FILE`` (same options as
    ``benchmarks/beir_eval.py``). Returns 0, or prints the error and returns 2 on bad input."""
    return main(argv, prog="querit-st evaluate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
