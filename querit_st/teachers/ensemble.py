"""``EnsembleTeacher``: a weighted sum of member teachers' scores, each normalised within its query's group."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from querit_st.teachers.base import Teacher, check_pairs_lists
from querit_st.teachers.fingerprint import teacher_fingerprint
from querit_st.utils import QueritInputError
from querit_st.utils.scores import normalize_group_scores, normalize_rows_by_group


class EnsembleTeacher(Teacher):
    """Weighted sum of member teachers' scores, each normalised within each query's candidate group.

    For the pairs of one call, the pairs are grouped by query string; every member's scores of a group are normalised
    (``"zscore"`` by default, or ``"minmax"`` / ``"rank"`` / ``"none"``, see
    :func:`~querit_st.utils.scores.normalize_group_scores`) and the ensemble score is ``sum_t w_t * norm(score_t)``.
    Because the normalisation is relative to the group, score each query's whole candidate list in one call (mining
    and the collator do). ``groups`` overrides the grouping (e.g. query ids, when two queries share a text).

    The ensemble's output depends on the whole group, so it is not cached itself; its members are
    (:attr:`cache_hits` / :attr:`cache_misses` sum theirs).

    Args:
        teachers: the member teachers (anything with ``score(queries, documents)``).
        weights: one weight per member (``None``: equal weights ``1 / len(teachers)``).
        normalization: per-group normalisation of every member's scores.
    """

    cacheable = False

    def __init__(
        self,
        teachers: Sequence[Any],
        weights: Sequence[float] | None = None,
        normalization: str = "zscore",
    ) -> None:
        super().__init__(cache=False)
        teachers = list(teachers or [])
        if not teachers:
            raise QueritInputError("EnsembleTeacher needs at least one teacher")
        for i, t in enumerate(teachers):
            if not callable(getattr(t, "score", None)):
                raise QueritInputError(f"teachers[{i}] has no score(queries, documents) method: {t!r:.80}")
        if weights is None:
            weights = [1.0 / len(teachers)] * len(teachers)
        weights = [float(w) for w in weights]
        if len(weights) != len(teachers):
            raise QueritInputError(f"got {len(weights)} weights for {len(teachers)} teachers")
        if not all(math.isfinite(w) for w in weights):
            raise QueritInputError(f"weights must be finite numbers, got {weights}")
        normalize_group_scores(np.zeros(1), normalization)  # validates the name
        self.teachers = teachers
        self.weights = weights
        self.normalization = normalization

    @property
    def cache_hits(self) -> int:
        return sum(getattr(t, "cache_hits", 0) for t in self.teachers)

    @property
    def cache_misses(self) -> int:
        return sum(getattr(t, "cache_misses", 0) for t in self.teachers)

    def member_scores(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Raw scores of every member, shape ``[num_teachers, num_pairs]``."""
        queries, documents = check_pairs_lists(queries, documents)
        return np.stack([np.asarray(t.score(queries, documents), dtype=np.float64) for t in self.teachers])

    def score(  # type: ignore[override]
        self, queries: Sequence[str], documents: Sequence[str], groups: Sequence[Any] | None = None
    ) -> np.ndarray:
        queries, documents = check_pairs_lists(queries, documents)
        if not queries:
            return np.empty(0, dtype=np.float64)
        if groups is None:
            groups = queries
        elif len(groups) != len(queries):
            raise QueritInputError(f"groups has {len(groups)} entries for {len(queries)} pairs")
        out = np.zeros(len(queries), dtype=np.float64)
        rows = normalize_rows_by_group(self.member_scores(queries, documents), groups, self.normalization)
        for w, row in zip(self.weights, rows):
            out += w * row  # members in order, as a per-pair sum
        return out

    __call__ = score

    def prepare(self, corpus_texts: Sequence[str]) -> EnsembleTeacher:
        for t in self.teachers:
            if hasattr(t, "prepare"):
                t.prepare(corpus_texts)
        return self

    def clear_cache(self) -> None:
        for t in self.teachers:
            if hasattr(t, "clear_cache"):
                t.clear_cache()

    def fingerprint(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "weights": self.weights, "normalization": self.normalization,
                "teachers": [teacher_fingerprint(t) for t in self.teachers]}
