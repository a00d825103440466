"""Diagnostic: nDCG@10 of every z-fused combination of the offline teachers and given rerankers.

What the stage-2 student can at best learn is what its teacher ensemble gets right on the target. This script
scores the shared retriever's top-k of a BEIR test split once with each member -- ``EmbeddingTeacher``
(multilingual-e5-small, minilm-l6), ``BM25Teacher`` and any cross-encoder given with ``--reranker NAME=PATH`` (the
stage-1 model, an adapted or merged one) -- then reports nDCG@10 of every combination, each member's scores
z-normalised per query (``normalize_rows_by_group``, as ``EnsembleTeacher`` does) and summed with weight 1.

It reads the test qrels: a diagnostic of where the ceiling lies, never a way to choose a training setting.
Not run by the tests. Example::

    .venv/bin/python benchmarks/teacher_combinations.py --data ../shared/data/vaswani \\
        --reranker stage1=~/.cache/querit_st/stage1/<key>/model --reranker merged=runs/seeds600/merged \\
        --output benchmarks/results/teacher_combinations_vaswani.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def zscore_per_query(scores: Sequence[float] | np.ndarray, owners: list[str]) -> np.ndarray:
    """``scores`` z-normalised within each query's candidates (``owners[i]`` is the query of candidate i)."""
    from querit_st.teachers import normalize_rows_by_group

    return normalize_rows_by_group(np.asarray(scores, dtype=np.float64)[None, :], owners, "zscore")[0]


def combination_ndcg(z: dict[str, np.ndarray], groups: list[tuple[str, str]],
                     qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """nDCG@10 of the sum of every non-empty combination of the members' (normalised) scores, best first.

    ``groups[i]`` is the (query id, document id) that entry i of every member's scores belongs to."""
    from querit_st.evaluation import compute_metrics

    def ndcg(scores: np.ndarray) -> float:
        res: dict[str, dict[str, float]] = {}
        for (q, d), v in zip(groups, scores):
            res.setdefault(q, {})[d] = float(v)
        return round(compute_metrics(qrels, res, (10,))["nDCG@10"], 4)

    names = list(z)
    combos = {"+".join(c): ndcg(sum(z[n] for n in c)) for r in range(1, len(names) + 1)
              for c in itertools.combinations(names, r)}
    return dict(sorted(combos.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a BEIR folder with test qrels")
    ap.add_argument("--retriever", default="minilm-l6")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--language", default=None, help="BM25 language (default: guessed from the folder name)")
    ap.add_argument("--reranker", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--inference", default="onnx", help="inference mode of the rerankers (querit_st.inference)")
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)

    from querit_st import teachers as T
    from querit_st.utils import QueritInputError
    from querit_st.data import doc_text, load_beir
    from querit_st.pipeline import build_retriever, corpus_language

    rerankers = {}
    for spec in args.reranker:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).expanduser().is_dir():
            raise QueritInputError(f"--reranker {spec!r}: expected NAME=PATH with PATH a model folder")
        rerankers[name] = str(Path(path).expanduser())
    t0 = time.time()
    data = load_beir(args.data, split="test")
    texts = {d: doc_text(v) for d, v in data.corpus.items()}
    queries = {q: data.queries[q] for q in data.qrels if q in data.queries}
    first = build_retriever(args.retriever).index(data.corpus).search(queries, top_k=args.top_k)
    groups = [(q, d) for q, hits in first.items() for d in hits]
    flat_q = [queries[q] for q, _ in groups]
    flat_d = [texts[d] for _, d in groups]
    members = {
        "e5": T.EmbeddingTeacher(build_retriever("multilingual-e5-small")),
        "minilm": T.EmbeddingTeacher(build_retriever("minilm-l6")),
        "bm25": T.BM25Teacher(list(texts.values()), language=corpus_language(list(texts.values()), args.language)),
        **{n: T.CrossEncoderTeacher(p, inference=args.inference) for n, p in rerankers.items()},
    }
    z = {name: zscore_per_query(teacher.score(flat_q, flat_d), [q for q, _ in groups])
         for name, teacher in members.items()}
    qrels = {q: data.qrels[q] for q in first}
    combos = combination_ndcg(z, groups, qrels)
    for k, v in combos.items():
        print(f"{v:.4f}  {k}")
    if args.output:
        out = {"command": "python benchmarks/teacher_combinations.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "date": _dt.date.today().isoformat(), "machine": platform.platform(), "data": data.name,
               "retriever": args.retriever, "top_k": args.top_k, "queries": len(first), "rerankers": rerankers,
               "nDCG@10": combos, "seconds": round(time.time() - t0, 1)}
        Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from querit_st.utils import QueritInputError

    try:
        raise SystemExit(main())
    except QueritInputError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
