"""Score normalisation: the one z-score rule every stage uses, and the other per-query normalisations.

A list is *constant* when its population std is at most ``1e-12 * max(1, max |s|)``; a constant list maps to
zeros (z-score), 0.5 (min-max, rank). The torch version for padded batches lives in
:mod:`querit_st.losses.masked` and follows the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from querit_st.utils.errors import QueritInputError

NORMALIZATIONS: tuple[str, ...] = ("zscore", "minmax", "rank", "none")
CONSTANT_RTOL = 1e-12


def is_constant(scores: np.ndarray) -> bool:
    """Whether a list's spread is numerically zero (the rule above)."""
    s = np.asarray(scores, dtype=np.float64)
    return s.size == 0 or float(s.std()) <= CONSTANT_RTOL * max(1.0, float(np.abs(s).max()))


def zscore(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(s - mean) / std`` (population std) over one list; a constant list gives zeros. Returns float64."""
    s = np.asarray(scores, dtype=np.float64)
    if is_constant(s):
        return np.zeros_like(s)
    return (s - s.mean()) / s.std()


def normalize_group_scores(scores: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Normalise one query's candidate scores.

    - ``"zscore"``: :func:`zscore`.
    - ``"minmax"``: ``(s - min) / (max - min)``; a constant group gives 0.5.
    - ``"rank"``: average rank scaled to [0, 1] (lowest 0, highest 1, ties share their mean rank); a single or
      constant group gives 0.5.
    - ``"none"``: unchanged.
    """
    s = np.asarray(scores, dtype=np.float64)
    if method not in NORMALIZATIONS:
        raise QueritInputError(f"normalization must be one of {', '.join(map(repr, NORMALIZATIONS))}, got {method!r}")
    if s.size == 0 or method == "none":
        return s.copy()
    if method == "zscore":
        return zscore(s)
    if method == "minmax":
        lo, hi = s.min(), s.max()
        return np.full_like(s, 0.5) if hi - lo <= CONSTANT_RTOL * max(1.0, abs(hi)) else (s - lo) / (hi - lo)
    if s.size == 1:
        return np.full_like(s, 0.5)
    from scipy.stats import rankdata

    return (rankdata(s, method="average") - 1.0) / (s.size - 1)


def normalize_rows_by_group(rows: np.ndarray, groups: Sequence[Any], method: str = "zscore") -> np.ndarray:
    """Each row of ``rows`` (members x pairs) normalised within each group of pairs (:func:`normalize_group_scores`);
    ``groups[i]`` names the group (query) of pair i. Returns a new float64 array of the same shape."""
    raw = np.asarray(rows, dtype=np.float64)
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    out = np.zeros_like(raw)
    for idx in by_group.values():
        ix = np.asarray(idx)
        for r in range(raw.shape[0]):
            out[r, ix] = normalize_group_scores(raw[r, ix], method)
    return out


def fuse_scores(reranker: np.ndarray, first_stage: np.ndarray, weight: float) -> np.ndarray:
    """``z(reranker) + weight * z(first_stage)`` over one query's candidate list."""
    return zscore(reranker) + weight * zscore(first_stage)
