#!/usr/bin/env python
"""Retriever alone vs reranked on BEIR folders: nDCG@10, MRR@10, Recall@100 per dataset and averaged.

    python benchmarks/beir_eval.py --data ../shared/data/vaswani ../shared/data/xquad-r-en \\
        --retriever minilm-l6 --reranker minilm-l6 --top-k 100 --output benchmarks/results/beir.json

Options (see ``--help``): ``--split``, ``--batch-size``, ``--fusion-weight``, ``--max-queries``, ``--queries-from DIR``
(cross-lingual: queries of one folder, corpus/qrels of another), ``--names`` (reranker labels). A reranker given as an
offline backbone name (``minilm-l6``, ``multilingual-e5-small``) is an *untrained* cross-encoder (fresh scoring head)
and is labelled so. A thin wrapper around :mod:`querit_st.harness` (also ``querit-st evaluate``).
Exit code 0 on success, 2 on bad input (missing folder or file...), with nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import querit_st  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from querit_st.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="benchmarks/beir_eval.py"))
