"""BEIR evaluation harness shared by ``benchmarks/beir_eval.py`` and ``querit-st evaluate``.

One call evaluates a first-stage retriever alone and reranked by one or more cross-encoders on one or more BEIR
folders (or BEIR dataset names, downloaded once when the network allows)::

    python benchmarks/beir_eval.py --data ../shared/data/vaswani ../shared/data/xquad-r-en \\
        --retriever minilm-l6 --reranker path/to/model minilm-l6 --top-k 100 --output results.json

Everything that is scored goes through :func:`querit_st.evaluation.evaluate_reranking` (the same retriever, the
same reranking and the same pytrec_eval metric code as the rest of the package), so the retriever-alone numbers
written here are the numbers every other part of the package reports for the same inputs.

The JSON written holds, per dataset and per system (``"retriever"`` and one entry per reranker), nDCG@10, MRR@10,
Recall@100 and Recall@top_k (plus MAP/P@k and per-query nDCG@10), the macro average over the datasets, the model
names (offline backbone names used as rerankers are labelled ``"(untrained)"``: a fresh scoring head), ``top_k``,
each dataset's checksum, the command line, the machine and the date. A markdown table is printed to stdout.
"""

from __future__ import annotations

from querit_st.harness.report import HEADLINE_METRICS, average_metrics, markdown_table
from querit_st.harness.run import run_beir_eval
from querit_st.harness.sources import (
    BEIR_URL,
    RerankerSpec,
    classify_reranker,
    load_queries_only,
    load_reranker,
    resolve_data,
)
from querit_st.utils.machine import machine_info

__all__ = [
    "BEIR_URL", "HEADLINE_METRICS", "RerankerSpec", "average_metrics", "classify_reranker",
    "load_queries_only", "load_reranker", "machine_info", "markdown_table", "resolve_data",
    "run_beir_eval",
]
