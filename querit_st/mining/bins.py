"""The bin sampler: which candidates of a teacher-scored pool a list keeps (pure math, no I/O).

- :func:`score_bins` cuts a pool's teacher-score range into equal-width bins;
- :func:`sample_across_bins` keeps ``num_candidates`` spread round-robin over those bins, the teacher's best first
  (offline mining and the training collator both call it);
- :func:`labelled_list` is stage 1's rule for a query with labelled positives: gold documents first, negatives
  sampled across the bins of the z-scored teacher scores, gold labels lifted above every negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from querit_st.utils import QueritInputError
from querit_st.utils.scores import zscore

__all__ = ["score_bins", "sample_across_bins", "labelled_list"]


def score_bins(scores: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin of every score: the range ``[min, max]`` cut into ``num_bins`` equal-width bins (the max in the top bin)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = float(s.min()), float(s.max())
    if not hi > lo:
        return np.full(s.shape, num_bins - 1, dtype=np.int64)
    b = np.floor((s - lo) / (hi - lo) * num_bins).astype(np.int64)
    return np.clip(b, 0, num_bins - 1)


def sample_across_bins(
    scores: Sequence[float] | np.ndarray,
    num_candidates: int,
    num_bins: int,
    rng: np.random.Generator,
    required: Sequence[int] | None = None,
) -> np.ndarray:
    """Pick ``min(len(scores), num_candidates)`` indices spread over the teacher-score range.

    The range is cut into ``num_bins`` equal-width bins; candidates are taken round-robin from the non-empty bins,
    starting with the top bin, in a random order within each bin. The teacher's best (first arg-max) is always
    taken first and counts as the top bin's first pick; ``required`` indices (e.g. a known positive) come next and
    count as their bins' picks; they are kept as long as there is room.

    So the first ``min(k, number of non-empty bins)`` non-empty bins from the top each contribute a candidate when
    nothing is required. Deterministic for the state of ``rng``.

    Returns:
        int64 array of unique indices, in pick order (the arg-max first).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not isinstance(num_candidates, (int, np.integer)) or num_candidates <= 0:
        raise QueritInputError(f"num_candidates must be a positive integer, got {num_candidates!r}")
    if not isinstance(num_bins, (int, np.integer)) or num_bins <= 0:
        raise QueritInputError(f"num_bins must be a positive integer, got {num_bins!r}")
    n = s.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(s)):
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise QueritInputError(f"teacher score at position {bad} is {s[bad]}; expected finite scores")
    k = min(n, int(num_candidates))
    first = [int(np.argmax(s))]
    for r in required or ():
        r = int(r)
        if not 0 <= r < n:
            raise QueritInputError(f"required index {r} out of range for {n} scores")
        if r not in first:
            first.append(r)
    first = first[:k]
    bins = score_bins(s, num_bins)
    chosen = set(first)
    queues: list[list[int]] = []
    for b in range(num_bins - 1, -1, -1):  # top bin first
        members = np.flatnonzero(bins == b)
        if members.size == 0:
            continue
        pre = [i for i in first if bins[i] == b]
        rest = [int(i) for i in rng.permutation(members) if int(i) not in chosen]
        queues.append(pre + rest)
    order: list[int] = list(first)
    depth = 0
    while len(order) < k:
        progressed = False
        for q in queues:
            if depth < len(q):
                progressed = True
                if q[depth] not in chosen:
                    order.append(q[depth])
                    chosen.add(q[depth])
                    if len(order) == k:
                        break
        if not progressed:  # pragma: no cover - cannot happen: k <= n
            break
        depth += 1
    return np.asarray(order[:k], dtype=np.int64)


def labelled_list(
    teacher_scores: Sequence[float] | np.ndarray,
    num_gold: int,
    num_candidates: int,
    rng: np.random.Generator,
    *,
    gold_bonus: float,
    num_bins: int = 16,
) -> tuple[list[int], list[float]]:
    """One labelled query's list: which pool entries it keeps and their soft labels.

    The pool is ``num_gold`` gold documents followed by the retriever's other candidates (the negatives). The
    teacher scores are z-scored over the whole pool (:func:`~querit_st.utils.scores.zscore`); all gold documents are
    kept, then ``max(num_candidates - num_gold, 1)`` negatives sampled across ``num_bins`` bins of their z-scores
    (:func:`sample_across_bins`). A negative's label is its z-score; a gold document's is ``max(top negative, own
    z-score) + gold_bonus`` (the top negative is 0 when the pool has none), so the list's order respects the labels.

    Args:
        teacher_scores: raw teacher scores of the pool, gold documents first.
        num_gold: how many leading entries are gold.
        num_candidates: list length to aim for (gold documents are kept even beyond it).
        rng: the sampler's generator (advanced only when the pool has negatives).
        gold_bonus: margin of the gold labels over the best negative.
        num_bins: bins of the negatives' sampler.

    Returns:
        ``(keep, labels)``: pool positions in list order (gold first, then negatives in pick order) and their labels.

    Example:
        >>> keep, labels = labelled_list([0.2, 0.9, 0.1, 0.5], 1, 3, np.random.default_rng(0), gold_bonus=1.0)
        >>> keep[0], len(keep)
        (0, 3)
    """
    t = zscore(teacher_scores)
    ng = int(num_gold)
    negatives = t[ng:]
    neg_idx = sample_across_bins(negatives, max(num_candidates - ng, 1), num_bins, rng) if negatives.size else []
    keep = list(range(ng)) + [ng + int(i) for i in neg_idx]
    top_neg = negatives.max() if negatives.size else 0.0
    labels = [float(max(top_neg, t[i]) + gold_bonus) if i < ng else float(t[i]) for i in keep]
    return keep, labels
