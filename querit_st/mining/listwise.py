"""Mined rows -> training rows: listwise ``(query, documents, scores)`` or pointwise ``(query, document, score)``,
with the optional per-list label transforms (z-score, source-document bonus)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from querit_st.utils import QueritInputError
from querit_st.utils.scores import zscore

__all__ = ["zscore_list", "source_bonus_list", "to_listwise", "to_pointwise"]


def zscore_list(scores: Sequence[float]) -> list[float]:
    """Scores of one query's list shifted to mean 0 and scaled to std 1 (all zeros when the list is constant):
    :func:`querit_st.utils.scores.zscore` as a list."""
    return zscore(scores).tolist()


def source_bonus_list(scores: Sequence[float], doc_ids: Sequence[str], source_doc_id: str | None, bonus: float) -> list[float]:
    """Raise the source document's label to ``max(other labels) + bonus`` (a label-free pseudo-positive: the query
    was generated from it), as stage 1's gold bonus does for labelled positives. Lists without it are unchanged."""
    t = [float(x) for x in scores]
    if source_doc_id is None or source_doc_id not in doc_ids:
        return t
    i = list(doc_ids).index(source_doc_id)
    others = [x for j, x in enumerate(t) if j != i]
    t[i] = max(t[i], max(others) + bonus) if others else t[i]
    return t


def to_listwise(
    dataset: Any, label_column: str = "scores", normalize: str | None = None, source_bonus: float | None = None
) -> Any:
    """``(query, documents, scores)`` rows for the listwise soft losses (inputs first, the label column last).

    ``label_column`` must be one of sentence-transformers' label names (``label``, ``labels``, ``score``, ``scores``)
    so that ``CrossEncoderDataCollator`` hands it to the loss as labels rather than as an input.
    ``normalize="zscore"`` rescales each list's teacher scores to mean 0 / std 1 (:func:`zscore_list`), so label
    gaps -- and the hinge's margins -- have the same scale whatever the teacher (an ensemble's weighted sum of
    z-scores is several times wider than one teacher's). ``source_bonus`` then lifts each generated query's source
    document above the rest of its list (:func:`source_bonus_list`; needs the ``doc_ids`` and ``source_doc_id``
    columns of a mined dataset).
    """
    check_label_column(label_column)
    check_mined(dataset)
    if normalize not in (None, "none", "zscore"):
        raise QueritInputError(f"normalize must be None, 'none' or 'zscore', got {normalize!r}")
    if source_bonus is not None:
        if not isinstance(source_bonus, (int, float)) or isinstance(source_bonus, bool) or not math.isfinite(source_bonus):
            raise QueritInputError(f"source_bonus must be a finite number or None, got {source_bonus!r}")
        missing = {"doc_ids", "source_doc_id"} - set(dataset.column_names)
        if missing:
            raise QueritInputError(f"source_bonus needs the mined columns doc_ids and source_doc_id; missing {sorted(missing)}")
    ds = dataset
    if normalize == "zscore":
        ds = ds.map(lambda row: {"scores": zscore_list(row["scores"])})
    if source_bonus is not None:
        ds = ds.map(lambda row: {"scores": source_bonus_list(row["scores"], row["doc_ids"], row["source_doc_id"], source_bonus)})
    ds = ds.select_columns(["query", "documents", "scores"])
    if label_column != "scores":
        ds = ds.rename_column("scores", label_column)
    return ds


def to_pointwise(dataset: Any, label_column: str = "score") -> Any:
    """``(query, document, score)`` rows, one per mined pair, for pointwise :class:`SoftLabelMSELoss`."""
    from datasets import Dataset, Features, Value

    check_label_column(label_column)
    check_mined(dataset)
    q: list[str] = []
    d: list[str] = []
    s: list[float] = []
    for row in dataset.select_columns(["query", "documents", "scores"]):
        n = len(row["documents"])
        q.extend([row["query"]] * n)
        d.extend(row["documents"])
        s.extend(float(x) for x in row["scores"])
    features = Features({"query": Value("string"), "document": Value("string"), label_column: Value("float64")})
    return Dataset.from_dict({"query": q, "document": d, label_column: s}, features=features)


def check_label_column(name: str) -> None:
    """Refuse a label column name sentence-transformers' collator would treat as an input."""
    from sentence_transformers.base.data_collator import DEFAULT_LABEL_COLUMNS

    if name not in DEFAULT_LABEL_COLUMNS:
        raise QueritInputError(
            f"label_column must be one of {list(DEFAULT_LABEL_COLUMNS)} (sentence-transformers' label names), "
            f"got {name!r}"
        )


def check_mined(dataset: Any) -> None:
    """Refuse a dataset without the mined ``query``, ``documents`` and ``scores`` columns."""
    cols = set(getattr(dataset, "column_names", []) or [])
    missing = {"query", "documents", "scores"} - cols
    if missing:
        raise QueritInputError(
            f"expected a mined dataset with columns query, documents, scores; missing {sorted(missing)}"
        )
