"""The harness' tables: nDCG@10 per system x dataset (with the macro average, like the paper's BEIR table), then
the details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from querit_st.utils.tables import markdown_table as table

#: metrics shown in the printed tables (``Recall@{top_k}`` is added per run).
HEADLINE_METRICS = ("nDCG@10", "MRR@10", "Recall@100")


def headline(metrics: dict[str, float], top_k: int) -> list[str]:
    names = list(HEADLINE_METRICS)
    if f"Recall@{top_k}" not in names:
        names.append(f"Recall@{top_k}")
    return [n for n in names if n in metrics]


def average_metrics(datasets: list[dict[str, Any]], systems: Sequence[str]) -> dict[str, dict[str, float]]:
    """Macro average over datasets of every numeric metric, per system."""
    avg: dict[str, dict[str, float]] = {}
    for s in systems:
        keys = set.intersection(*(set(d["results"][s]) for d in datasets)) if datasets else set()
        avg[s] = {
            k: sum(float(d["results"][s][k]) for d in datasets) / len(datasets)
            for k in sorted(keys)
            if all(isinstance(d["results"][s][k], (int, float)) for d in datasets) and not k.startswith("stderr")
        }
    return avg


def markdown_table(report: dict[str, Any]) -> str:
    """Two markdown tables: nDCG@10 per system x dataset (+ average, like the paper's BEIR table), then details."""
    systems = report["systems"]
    datasets = report["datasets"]
    top_k = report["top_k"]
    multi = len(datasets) > 1

    def label(s: str) -> str:
        return f"{report['retriever']['spec']} (retriever)" if s == "retriever" else f"+ rerank: {s}"

    head = ["model", *[d["name"] for d in datasets]] + (["Avg"] if multi else [])
    depth = f"rerank top-{top_k}" if len(systems) > 1 else f"retriever alone, top-{top_k}"
    title = (f"nDCG@10 ({depth}; {report['split']} split"
             + (f", first {report['max_queries']} queries" if report.get("max_queries") else "") + ")")
    rows = [[label(s), *[d["results"][s]["nDCG@10"] for d in datasets],
             *([report["average"][s]["nDCG@10"]] if multi else [])] for s in systems]
    metrics = headline(datasets[0]["results"]["retriever"], top_k)
    groups = [(d["name"], str(d["num_queries"]), d["results"]) for d in datasets]
    if multi:
        groups.append(("**Average**", "", report["average"]))
    details = [[name, nq, label(s), *[results[s].get(m, float("nan")) for m in metrics]]
               for name, nq, results in groups for s in systems]
    return "\n".join([title, "", table(head, rows), "",
                      table(["dataset", "queries", "model", *metrics], details)])
