"""What a pipeline run prints and draws: the nDCG@10 table per target and per target group, and the bar chart."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from querit_st.utils.machine import machine_info
from querit_st.utils.tables import markdown_table

logger = logging.getLogger(__name__)

__all__ = ["TARGET_GROUPS", "bar_chart", "chart_figure", "group_table", "machine_info", "results_table", "system_name",
           "systems_of"]

#: the shared target groups that results are averaged over (the project's quality bar is stated per group)
TARGET_GROUPS: dict[str, list[str]] = {
    "english": ["vaswani", "cacm", "lisa", "time"],
    "xquad-r": [f"xquad-r-{lang}" for lang in ("en", "de", "es", "ru", "zh", "ar", "hi")],
}


def systems_of(results: dict[str, dict[str, Any]], *, unfused: bool = True) -> list[str]:
    """The systems with an nDCG@10 in any target's report, in first-seen order."""
    systems: list[str] = []
    for rep in results.values():
        for k, v in rep.items():
            if isinstance(v, dict) and "nDCG@10" in v and k not in systems and (unfused or "no fusion" not in k):
                systems.append(k)
    return systems


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of nDCG@10 per target (rows) and system (columns)."""
    systems = systems_of(results)
    rows = [[target, *[rep[s]["nDCG@10"] if s in rep else None for s in systems]] for target, rep in results.items()]
    return markdown_table(["target", *systems], rows)


def system_name(system: str) -> str:
    """A report's system name with a target's own adapted checkpoints (``adapt-<target>-s<seed>``) called
    ``adapted`` (``adapted (no fusion)`` alone), so that targets and seeds line up."""
    if not system.startswith("adapt-"):
        return system
    return "adapted (no fusion)" if system.endswith(" (no fusion)") else "adapted"


def target_scores(report: dict[str, Any]) -> dict[str, float]:
    """One target's nDCG@10 per :func:`system_name` (its adapted checkpoints, one per seed, averaged)."""
    values: dict[str, list[float]] = {}
    for k, v in report.items():
        if isinstance(v, dict) and "nDCG@10" in v:
            values.setdefault(system_name(k), []).append(float(v["nDCG@10"]))
    return {k: sum(v) / len(v) for k, v in values.items()}


def group_table(results: dict[str, dict[str, Any]], groups: dict[str, list[str]] | None = None) -> str:
    """Markdown table of nDCG@10 averaged over each group's targets that were run (default :data:`TARGET_GROUPS`;
    the row names the targets it averages, e.g. ``xquad-r (2/7: de, zh)``), then every target run; systems as
    columns, a target's adapted checkpoints as ``adapted``."""
    scores = {t: target_scores(rep) for t, rep in results.items()}
    systems: list[str] = []
    for sc in scores.values():
        systems += [s for s in sc if s not in systems]
    rows = []
    named = {**(TARGET_GROUPS if groups is None else groups), "all targets": list(scores)}
    for group, targets in named.items():
        present = [t for t in targets if t in scores]
        if not present or (group == "all targets" and len(named) > 1 and len(present) < 2):
            continue
        label = group if group == "all targets" else \
            f"{group} ({len(present)}/{len(targets)}: {', '.join(t.replace(group + '-', '') for t in present)})"
        rows.append([label, *[sum(scores[t][s] for t in present) / len(present)
                              if all(s in scores[t] for t in present) else None for s in systems]])
    return markdown_table(["group", *systems], rows)


def chart_figure(results: dict[str, dict[str, Any]]) -> Any:
    """The matplotlib figure of :func:`bar_chart`: bars per target and system, the legend outside the axes (to the
    right), so it never covers a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    targets = list(results)
    systems = systems_of(results, unfused=False)
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(targets)) + 2.5, 4))
    for i, s in enumerate(systems):
        vals = [results[t].get(s, {}).get("nDCG@10", 0.0) for t in targets]
        ax.bar(np.arange(len(targets)) + i * width, vals, width, label=s)
    ax.set_xticks(np.arange(len(targets)) + 0.4 - width / 2)
    ax.set_xticklabels(targets)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1.0)
    ax.set_title("querit-st: retriever vs rerankers")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def bar_chart(results: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path | None:
    """A PNG bar chart of nDCG@10 per target and system (:func:`chart_figure`; needs matplotlib)."""
    try:
        import matplotlib.pyplot as plt

        fig = chart_figure(results)
    except ImportError:
        logger.warning("matplotlib not installed; no chart")
        return None
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
