"""``querit-st mteb``: evaluate a reranker with MTEB and write the results in the leaderboard layout.

    # the reranking tasks of MTEB(Multilingual, v2) (needs the Hugging Face hub for the datasets)
    querit-st mteb --model path/to/model --name my-org/my-reranker --languages eng-Latn deu-Latn \\
        --output mteb_results/results

    # any mteb tasks; retrieval tasks are reranked over the package's first stage (top-k)
    querit-st mteb --model path/to/model --tasks SciFact NFCorpus --retriever multilingual-e5-small

    # fully offline: local BEIR folders as mteb retrieval tasks
    querit-st mteb --model path/to/model --beir ../shared/data/vaswani --max-queries 50

Results: ``{output}/{org__model}/{revision}/{Task}.json`` + ``model_meta.json``; first-stage predictions under
``{output}/_querit/first_stage/``. ``--adapted-from`` and ``--training-datasets`` default to what the model's training
record says. See docs/mteb_submission.md for submitting the results to embeddings-benchmark/results.
Exit code 0 on success, 2 on bad input (nothing written). mteb is an optional dependency (``pip install
querit-st[mteb]``); it is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from querit_st.utils import QueritInputError, one_line

__all__ = ["add_arguments", "add_parser", "build_parser", "main", "run"]

PROG = "querit-st mteb"
SUMMARY = "evaluate a reranker with MTEB (results in the leaderboard layout)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``querit-st mteb`` on ``p``."""
    p.add_argument("--model", required=True, help="reranker folder (QueritCrossEncoder / CrossEncoder) or hub id")
    p.add_argument("--name", default=None, help="'org/name' the results are filed under (default querit/<folder>)")
    p.add_argument("--revision", default=None, help="model revision (default: hub commit, else a hash of the weights)")
    p.add_argument("--languages", nargs="*", default=None, help="model languages, e.g. eng-Latn deu-Latn")
    p.add_argument("--training-datasets", nargs="*", default=None,
                   help="datasets the model was trained on (mteb names; default: from the model's training record)")
    p.add_argument("--adapted-from", default=None,
                   help="model it was initialised from (hub id; default: from the model's training record)")
    p.add_argument("--license", default="apache-2.0")
    p.add_argument("--release-date", default=None, help="YYYY-MM-DD")
    p.add_argument("--reference", default=None, help="URL of the model page")
    p.add_argument("--public-training-code", default=None, help="URL of the training code")
    p.add_argument("--instruction", default=None, help="Querit instruction instead of the model's default prompt")
    p.add_argument("--tasks", nargs="*", default=None, help="mteb task names (default: the reranking tasks of "
                   "MTEB(Multilingual, v2), unless --beir is given)")
    p.add_argument("--beir", nargs="*", default=None, metavar="DIR",
                   help="local BEIR folders run as mteb retrieval tasks")
    p.add_argument("--split", default="test", help="qrels split of the --beir folders")
    p.add_argument("--max-queries", type=int, default=None, help="first N queries of each --beir folder")
    p.add_argument("--task-languages", nargs="*", default=["eng-Latn"], help="eval languages of the --beir tasks")
    p.add_argument("--retriever", default="multilingual-e5-small",
                   help="first stage for retrieval tasks (offline backbone name, folder or hub id)")
    p.add_argument("--top-k", type=int, default=100, help="first-stage candidates reranked in retrieval tasks")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--output", default="mteb_results/results", help="results folder (leaderboard layout)")
    p.add_argument("--predictions-dir", default=None,
                   help="first-stage predictions (default {output}/_querit/first_stage/..)")
    p.add_argument("--overwrite", action="store_true", help="re-run tasks that already have results")
    p.add_argument("--device", default=None)
    p.add_argument("--summary", default=None, help="also write the run summary JSON here")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """A stand-alone parser (``benchmarks/mteb_eval.py`` uses it under its own name)."""
    return add_arguments(argparse.ArgumentParser(prog=prog, description=SUMMARY))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mteb`` on an ``argparse`` subparsers object; the parsed args carry ``func=run``."""
    p = add_arguments(subparsers.add_parser("mteb", help=SUMMARY, description=SUMMARY))
    p.set_defaults(func=run)
    return p


def _offline_hub_error(e: Exception) -> bool:
    text = str(e).lower()
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") and ("offline" in text or "hub" in text)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation the parsed ``args`` describe: 0 on success, 2 on bad input (an error line on stderr).

    ``args.prog`` / ``args.command_line`` (set by :func:`main`) name the command in messages and in the run summary.
    """
    import logging

    prog = getattr(args, "prog", None) or PROG
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    command = getattr(args, "command_line", None) or shlex.join(["querit-st", *sys.argv[1:]])
    try:
        from querit_st.mteb import beir_task, model_meta, run_mteb, summary_table, write_summary
    except ImportError as e:
        print(f"{prog}: error: mteb is not installed ({one_line(e)}); pip install 'querit-st[mteb]'", file=sys.stderr)
        return 2
    try:
        tasks: list = list(args.tasks or [])
        for folder in args.beir or []:
            tasks.append(beir_task(folder, args.split, max_queries=args.max_queries, languages=args.task_languages))
        meta = model_meta(
            args.model, name=args.name, revision=args.revision, languages=args.languages,
            training_datasets=args.training_datasets, adapted_from=args.adapted_from, license=args.license,
            release_date=args.release_date, reference=args.reference, public_training_code=args.public_training_code,
            instruction=args.instruction,
        )
        summary = run_mteb(
            args.model, tasks or None, output=args.output, meta=meta, retriever=args.retriever, top_k=args.top_k,
            batch_size=args.batch_size, predictions_dir=args.predictions_dir, overwrite=args.overwrite,
            device=args.device, instruction=args.instruction, command=command,
        )
    except QueritInputError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if _offline_hub_error(e):
            print(f"{prog}: error: {e}\nHF_HUB_OFFLINE is set: mteb's hub tasks need their datasets from the "
                  "Hugging Face hub (or its local cache). Offline, run local BEIR folders with --beir DIR.",
                  file=sys.stderr)
            return 2
        raise
    if args.summary:
        write_summary(summary, args.summary)
    print(summary_table(summary))
    print(f"\nresults: {summary['results_dir']}\nsummary: {summary['summary_file']}\n"
          f"mteb model-registry entry: {summary['registry_snippet']}")
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and :func:`run`; the run summary records ``prog`` + ``argv``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    args.prog = prog
    args.command_line = shlex.join([*shlex.split(prog), *argv])
    return run(args)
