"""``run_beir_eval``: the retriever alone and reranked, on one or more BEIR folders, through the package's one
evaluation path (:func:`querit_st.evaluation.evaluate_reranking`)."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from querit_st.harness.report import average_metrics, markdown_table
from querit_st.harness.sources import classify_reranker, load_queries_only, load_reranker, resolve_data, unique_labels
from querit_st.utils import QueritInputError, atomic_write_json
from querit_st.utils.machine import machine_info

logger = logging.getLogger(__name__)


def run_beir_eval(
    data: Sequence[str],
    retriever: str,
    rerankers: Sequence[str] = (),
    *,
    names: Sequence[str] | None = None,
    top_k: int = 100,
    split: str = "test",
    batch_size: int = 64,
    fusion_weight: float = 0.0,
    max_queries: int | None = None,
    queries_from: str | None = None,
    cache_dir: str | None = None,
    device: str | None = None,
    seed: int | None = 0,
    output: str | os.PathLike | None = None,
    command: str | None = None,
    instruction: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``retriever`` alone and reranked by each of ``rerankers`` on each BEIR folder of ``data``.

    All inputs (folders, files, names) are checked before any model is loaded, and the output is written only when
    everything succeeded, so a bad input raises :class:`QueritInputError` and writes nothing.

    Returns:
        The report (also written to ``output`` as JSON when given).
    """
    from querit_st.data import load_beir
    from querit_st.evaluation import evaluate_reranking
    from querit_st.retriever import DenseRetriever

    if not data:
        raise QueritInputError("--data needs at least one BEIR folder")
    if not isinstance(top_k, int) or top_k <= 0:
        raise QueritInputError(f"--top-k must be a positive integer, got {top_k!r}")
    if batch_size <= 0:
        raise QueritInputError(f"--batch-size must be positive, got {batch_size}")
    if max_queries is not None and max_queries <= 0:
        raise QueritInputError(f"--max-queries must be positive, got {max_queries}")
    if names and len(names) != len(rerankers):
        raise QueritInputError(f"--names gives {len(names)} names for {len(rerankers)} rerankers")
    if output is not None:
        out_parent = Path(output).expanduser().resolve().parent
        if out_parent.exists() and not out_parent.is_dir():
            raise QueritInputError(f"--output parent {str(out_parent)!r} is not a folder")

    # 1. every input is validated before any model is loaded (the cheap checks first)
    specs = [classify_reranker(r) for r in rerankers]
    labels = unique_labels(list(names) if names else [s.label for s in specs])
    for s, label in zip(specs, labels):
        s.label = label
    folders = [resolve_data(d) for d in data]
    datasets = [load_beir(f, split) for f in folders]
    qf_queries, qf_checksum = (None, None)
    if queries_from:
        qf_queries, qf_checksum = load_queries_only(resolve_data(queries_from))
        for d in datasets:
            shared = [q for q in qf_queries if q in d.qrels]
            if not shared:
                raise QueritInputError(
                    f"--queries-from {queries_from!r} shares no query id with the qrels of {d.name!r}; cross-lingual "
                    "runs need parallel query ids (like XQuAD-R's languages)"
                )

    # 2. models
    ret = DenseRetriever(retriever, cache_dir=cache_dir, device=device)
    models = {s.label: load_reranker(s, device=device, seed=seed) for s in specs}

    # 3. evaluation: one code path (querit_st.evaluation) for every number
    report: dict[str, Any] = {
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "retriever": {"spec": retriever, "name": ret.name, "query_prompt": ret.query_prompt,
                      "passage_prompt": ret.passage_prompt, "max_seq_length": ret.model.max_seq_length},
        "rerankers": [s.info for s in specs],
        "systems": ["retriever", *labels],
        "top_k": top_k,
        "split": split,
        "batch_size": batch_size,
        "fusion_weight": fusion_weight,
        "instruction": instruction,
        "max_queries": max_queries,
        "queries_from": str(queries_from) if queries_from else None,
        "queries_from_checksum": qf_checksum,
        "datasets": [],
    }
    for folder, ds in zip(folders, datasets):
        logger.info("evaluating %s (%d docs)", ds.name, len(ds.corpus))
        res = evaluate_reranking(
            ds, ret, models, top_k=top_k, batch_size=batch_size, fusion_weight=fusion_weight,
            queries=qf_queries, max_queries=max_queries, instruction=instruction,
        )
        entry = {
            "name": ds.name if not queries_from else f"{Path(queries_from).name}->{ds.name}",
            "path": str(folder),
            "checksum": ds.checksum,
            "num_queries": res["num_queries"],
            "num_docs": len(ds.corpus),
            # with fusion, each reranker alone too ("<name> (no fusion)": the same scores, no second pass)
            "results": {k: v for k, v in res.items() if k in report["systems"] or k.endswith(" (no fusion)")},
            "timing_s": res["timing_s"],
            "per_query_nDCG@10": res["per_query_nDCG@10"],
        }
        report["datasets"].append(entry)
        print(f"[{entry['name']}] " + "  ".join(
            f"{s}: nDCG@10={entry['results'][s]['nDCG@10']:.4f}" for s in report["systems"]), file=sys.stderr)
    report["average"] = average_metrics(report["datasets"], report["systems"])
    report["table_markdown"] = markdown_table(report)
    if output is not None:
        atomic_write_json(Path(output).expanduser(), report)
    return report
