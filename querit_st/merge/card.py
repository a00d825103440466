"""The merged model's card and records: the start of ``merge_config.json``, the training record, the model card.

A merge output starts from its template's files (the first model's card and ``config_sentence_transformers.json``),
which describe the first parent only. :func:`write_card` replaces that: the training record (the ``"querit"`` key of
``config_sentence_transformers.json``, read by :class:`querit_st.cross_encoder.QueritCrossEncoder`) becomes
``{"merged_from": [{"label", "path", "record"}, ...], "method", "t" / "weights", ...}`` holding every parent's
record, and ``README.md`` gets a "Merge" section (inputs and settings) and a training section listing each parent's
stages with their settings (nested merges are shown as nested parents).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from querit_st.merge.sources import RECORD_KEY, Source, letter
from querit_st.utils import atomic_write_json

__all__ = [
    "MERGE_HEADING",
    "MERGE_SETTINGS",
    "TRAINING_HEADING",
    "merge_record",
    "merge_section",
    "merged_training_record",
    "strip_sections",
    "training_section",
    "write_card",
]

MERGE_HEADING = "## Merge"
#: The heading of a querit-st model card's training section (as :func:`querit_st.cross_encoder.training_record_markdown`
#: writes it); a merge replaces the first parent's section by one covering every parent.
TRAINING_HEADING = "## How this model was trained (querit-st)"
#: Settings of a merge that the training record and the card keep, in this order.
MERGE_SETTINGS = ("t", "parameter_t", "weights", "schedule")
_METHOD_NAMES = {"slerp": "SLERP", "sequential_slerp": "sequential SLERP"}


def merge_record(method: str) -> dict[str, Any]:
    """The start of ``merge_config.json``: method, library versions and the conventions the settings follow."""
    from querit_st import __version__

    return {
        "method": method,
        "library": f"querit_st {__version__}",
        "torch": torch.__version__,
        "conventions": {
            "t": "weight of the second model; 0 keeps the first exactly, 1 gives the second exactly",
            "gradient": "a list is spread piecewise-linearly over layer_index / (num_layers - 1); embeddings use "
            "position 0 and non-layer parameters after the layers (pooler, head) position 1 (mergekit)",
            "parameter_t": "first key that is a substring of the parameter name wins",
            "weights": "N-way shares: t_k = w_k / (w_0 + ... + w_k) along the chain (only ratios count)",
            "dtypes": "computed in float32 (float64 if an input is float64), stored in the first model's dtype; "
            "non-float tensors copied from the first model",
        },
    }


def merged_training_record(record: Mapping[str, Any], sources: Sequence[Source]) -> dict[str, Any]:
    """The merged model's training record: every parent's record (None for a parent without one) and the settings."""
    parents = []
    for i, src in enumerate(sources):
        parent: dict[str, Any] = {"label": letter(i)}
        if src.path is not None:
            parent["path"] = str(src.path)
        parent["record"] = src.training_record
        parents.append(parent)
    out: dict[str, Any] = {"merged_from": parents, "method": record["method"]}
    out.update({k: record[k] for k in MERGE_SETTINGS if record.get(k) is not None})
    return out


def _settings(record: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = `{json.dumps(record[k])}`" for k in MERGE_SETTINGS if record.get(k) is not None)


def merge_section(record: Mapping[str, Any]) -> str:
    """The "Merge" section: inputs, settings and tensor counts of this merge (``record`` is ``merge_config.json``)."""
    lines = ["", MERGE_HEADING, ""]
    method = _METHOD_NAMES.get(record["method"], record["method"])
    lines.append(
        f"This model is a {method} merge (spherical linear interpolation of each weight tensor) of "
        f"{len(record['models'])} checkpoints, made with `querit_st.merge`:"
    )
    lines.append("")
    for m in record["models"]:
        desc = m.get("path") or m.get("label")
        extra = f" (LoRA adapter on `{m['base'].get('path', '')}`)" if m.get("kind") == "lora_adapter" else ""
        lines.append(f"- {m['label'].split(' ', 1)[0]}: `{desc}`{extra}")
    lines += ["", "| setting | value |", "|---|---|"]
    for key in (*MERGE_SETTINGS, "dot_threshold", "eps"):
        if record.get(key) is not None:
            lines.append(f"| {key} | `{json.dumps(record[key])}` |")
    lines.append(
        f"| tensors | {record['tensors']['interpolated']} interpolated, {record['tensors']['copied']} copied |"
    )
    lines.append("")
    lines.append(
        "`t` is the weight of the second model (0 keeps the first, 1 gives the second); a list is a gradient over "
        "the transformer layers (mergekit's convention). Full settings are in `merge_config.json`."
    )
    return "\n".join(lines) + "\n"


def _has_history(record: Mapping[str, Any] | None) -> bool:
    if not record:
        return False
    if "merged_from" not in record:
        return True
    return any(_has_history(p.get("record")) for p in record["merged_from"]) or bool(record.get("stages"))


def _record_lines(record: Mapping[str, Any] | None, level: int, prefix: str) -> list[str]:
    """Markdown for one record: its keys as bullets, each stage with its settings, parents of a merge nested."""
    if not record:
        return ["_No querit-st training record (a checkpoint trained elsewhere, or saved without one)._"]
    h = "#" * min(level, 6)
    lines: list[str] = []
    if "merged_from" in record:
        method = _METHOD_NAMES.get(record.get("method"), record.get("method"))
        lines.append(f"A {method} merge ({_settings(record)}) of {len(record['merged_from'])} parents.")
        for parent in record["merged_from"]:
            name = f"{prefix}{parent.get('label', '?')}"
            lines += ["", f"{h} Parent {name}: `{parent.get('path') or name}`", ""]
            lines += _record_lines(parent.get("record"), level + 1, f"{name}.")
        skip = {"merged_from", "method", "stages", *MERGE_SETTINGS}
        title = "after the merge, stage"
    else:
        skip = {"stages"}
        title = "Stage"
    lines += [f"- **{k}**: `{json.dumps(v, default=str)}`" for k, v in record.items() if k not in skip]
    for i, stage in enumerate(record.get("stages") or [], 1):
        name = stage.get("stage", "?") if isinstance(stage, Mapping) else stage
        lines += ["", f"{h} {title} {i}: {name}", "", "```json", json.dumps(stage, indent=2, default=str), "```"]
    return lines


def training_section(merged: Mapping[str, Any]) -> str:
    """The training section of a merged model's card: every parent's record (see :func:`merged_training_record`)."""
    lines = ["", TRAINING_HEADING, "", *_record_lines(merged, 3, "")]
    lines += ["", "_Other training or evaluation details in this card come from the first parent's model card._"]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def strip_sections(text: str, headings: Iterable[str]) -> str:
    """``text`` without the level-2 sections whose heading is one of ``headings`` (up to the next ``#``/``##``)."""
    wanted = {h.strip() for h in headings}
    out: list[str] = []
    skipping = in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith(("## ", "# ")):
            skipping = line.strip() in wanted
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def write_card(folder: Path, record: Mapping[str, Any], merged: Mapping[str, Any]) -> None:
    """Write the merged model's card (``README.md``) and training record into the output folder ``folder``.

    ``record`` is the merge's ``merge_config.json`` content, ``merged`` the :func:`merged_training_record`.
    """
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else "# Merged cross-encoder\n"
    text = strip_sections(text, (MERGE_HEADING, TRAINING_HEADING)) + merge_section(record)
    if _has_history(merged):
        text += training_section(merged)
    readme.write_text(text, encoding="utf-8")
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        config = json.loads(st_config.read_text(encoding="utf-8"))
        config[RECORD_KEY] = dict(merged)
        atomic_write_json(st_config, config)
