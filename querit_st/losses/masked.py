"""The maths of the soft-label losses: small pure functions on padded ``[..., max_len]`` score tensors.

``mask`` is True for real entries and False for padding; the values at padded positions never influence a result
(nor its gradient), whatever they are. Teacher scores are targets: no gradient flows into them.

- teacher-score normalisation: :func:`normalize_teacher_scores` (with :func:`masked_zscore`, the torch twin of
  :func:`querit_st.utils.scores.zscore`);
- listwise padding: :func:`pad_score_lists` (ragged lists -> padded matrix + mask);
- the three objectives: :func:`soft_label_mse`, :func:`soft_label_kl_divergence`, :func:`score_gap_hinge_terms` /
  :func:`score_gap_hinge_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from querit_st.utils.scores import CONSTANT_RTOL

__all__ = [
    "NORMALIZATION_METHODS",
    "NormalizationMethod",
    "PER_QUERY_METHODS",
    "masked_zscore",
    "normalize_teacher_scores",
    "pad_score_lists",
    "soft_label_mse",
    "soft_label_kl_divergence",
    "score_gap_hinge_terms",
    "score_gap_hinge_loss",
]

NormalizationMethod = Literal["none", "sigmoid", "minmax", "zscore"]
NORMALIZATION_METHODS: tuple[str, ...] = ("none", "sigmoid", "minmax", "zscore")
# Methods that normalise over a query's candidate list, so they need listwise rows.
PER_QUERY_METHODS: tuple[str, ...] = ("minmax", "zscore")


def _resolve_mask(scores: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected the scores' shape {tuple(scores.shape)}")
    return mask.to(device=scores.device, dtype=torch.bool)


def _check_same_shape(student_scores: Tensor, teacher_scores: Tensor) -> None:
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"student scores have shape {tuple(student_scores.shape)} but teacher scores have shape "
            f"{tuple(teacher_scores.shape)}; expected the same shape"
        )


def _check_nonempty_rows(mask: Tensor, what: str) -> None:
    if mask.dim() == 0:
        raise ValueError(f"{what} needs scores with at least one dimension (the candidate list)")
    empty = (~mask.any(dim=-1)).reshape(-1).nonzero()
    if empty.numel() > 0:
        raise ValueError(f"{what}: row {int(empty[0])} has no valid (unmasked) entry; expected at least one")


def masked_zscore(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """
    Per-row z-score over the valid entries; mirrors :func:`querit_st.utils.scores.zscore` row by row.

    ``(s - mean) / std`` with the population std, computed in float64. The one z-score rule of
    :mod:`querit_st.utils.scores` decides which rows are constant: a row whose std is at most
    ``CONSTANT_RTOL * max(1, max |s|)`` over its valid entries (a single entry, or none, included) maps to zeros.

    Args:
        scores (Tensor): Scores, shape ``[..., max_len]`` (the last dimension is one list).
        mask (Tensor, optional): Boolean mask of the same shape, True for real entries. Defaults to all True.

    Returns:
        Tensor: Z-scores with the input's shape and dtype; padded positions are 0.
    """
    if scores.dim() == 0:
        raise ValueError("masked_zscore works per list and needs scores with at least one dimension")
    mask = _resolve_mask(scores, mask)
    x = torch.where(mask, scores, 0.0).double()
    count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
    mean = x.sum(dim=-1, keepdim=True) / count
    centered = torch.where(mask, x - mean, 0.0)
    std = (centered.pow(2).sum(dim=-1, keepdim=True) / count).sqrt()
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1.0)  # padding is 0 here, below the floor of 1
    constant = std <= CONSTANT_RTOL * scale
    normalized = torch.where(constant, 0.0, centered / torch.where(constant, 1.0, std))
    return torch.where(mask, normalized, 0.0).to(scores.dtype)


def _masked_minmax(scores: Tensor, mask: Tensor) -> Tensor:
    """``(s - min) / (max - min)`` per row over its valid entries; a row whose valid entries are all equal -> 0.5."""
    x = torch.where(mask, scores, 0.0).double()
    row_max = torch.where(mask, x, -math.inf).amax(dim=-1, keepdim=True)
    row_min = torch.where(mask, x, math.inf).amin(dim=-1, keepdim=True)
    constant = ~(row_max > row_min)  # also True for rows without any valid entry
    span = torch.where(constant, 1.0, row_max - row_min)
    normalized = torch.where(constant, 0.5, (x - row_min) / span)
    return torch.where(mask, normalized, 0.0).to(scores.dtype)


def normalize_teacher_scores(
    scores: Tensor, mask: Tensor | None = None, method: NormalizationMethod = "none"
) -> Tensor:
    """
    Normalises teacher scores before they are used as targets.

    Args:
        scores (Tensor): Teacher scores, shape ``[..., max_len]`` (the last dimension is one query's list).
        mask (Tensor, optional): Boolean mask of the same shape, True for real entries. Defaults to all True.
        method (str): One of

            - ``"none"``: the scores unchanged.
            - ``"sigmoid"``: ``sigmoid(score)``, element-wise (for teachers that output logits).
            - ``"minmax"``: ``(score - min) / (max - min)`` per row over its valid entries, in [0, 1]. A row whose
              valid entries are all equal maps to 0.5.
            - ``"zscore"``: ``(score - mean) / std`` per row over its valid entries (population std), see
              :func:`masked_zscore`. A constant row (a single entry included) maps to 0.

    Returns:
        Tensor: Normalised scores with the input's shape and dtype; padded positions are 0.
    """
    if method not in NORMALIZATION_METHODS:
        raise ValueError(f"unknown normalization {method!r}; expected one of {list(NORMALIZATION_METHODS)}")
    mask = _resolve_mask(scores, mask)
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    if method == "none":
        return torch.where(mask, scores, zero)
    if method == "sigmoid":
        return torch.where(mask, torch.sigmoid(torch.where(mask, scores, zero)), zero)
    if scores.dim() == 0:
        raise ValueError(f"normalization={method!r} works per list and needs scores with at least one dimension")
    return _masked_minmax(scores, mask) if method == "minmax" else masked_zscore(scores, mask)


def pad_score_lists(rows: Sequence[Tensor], padding_value: float = 0.0) -> tuple[Tensor, Tensor]:
    """
    Stacks ragged 1-D score tensors into a padded matrix and its mask.

    Args:
        rows (Sequence[Tensor]): One 1-D tensor per query (lengths may differ, each at least 1).
        padding_value (float): Value written at padded positions. Defaults to 0.0.

    Returns:
        tuple[Tensor, Tensor]: ``(padded, mask)``, both of shape ``[len(rows), max_len]``; ``mask`` is True for real
        entries. Gradients flow from ``padded`` back to the rows.
    """
    if len(rows) == 0:
        raise ValueError("pad_score_lists needs at least one row")
    rows = [torch.as_tensor(row) for row in rows]
    for i, row in enumerate(rows):
        if row.dim() != 1:
            raise ValueError(f"row {i} has shape {tuple(row.shape)}; expected a 1-D list of scores")
    padded = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=padding_value)
    lengths = torch.tensor([row.numel() for row in rows], device=padded.device)
    mask = torch.arange(padded.shape[1], device=padded.device)[None, :] < lengths[:, None]
    return padded, mask


def soft_label_mse(student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """
    Mean squared error between student and teacher scores over the valid entries.
    The teacher scores are targets: no gradient flows into them.

    Every valid (query, document) pair counts once, so a batch of padded lists gives the same value as
    :class:`torch.nn.MSELoss` on the flattened, unpadded pairs.

    Args:
        student_scores (Tensor): Student scores, any shape.
        teacher_scores (Tensor): Target scores, same shape.
        mask (Tensor, optional): Boolean mask, True for real entries. Defaults to all True.

    Returns:
        Tensor: Scalar loss.
    """
    _check_same_shape(student_scores, teacher_scores)
    mask = _resolve_mask(student_scores, mask)
    count = int(mask.sum())
    if count == 0:
        raise ValueError("soft_label_mse got no valid (unmasked) entry")
    diff = torch.where(mask, student_scores - torch.where(mask, teacher_scores, 0.0).detach(), 0.0)
    return diff.pow(2).sum() / count


def soft_label_kl_divergence(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None = None,
    teacher_temperature: float = 1.0,
    student_temperature: float = 1.0,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """
    Listwise ``KL(teacher || student)`` over each row's valid entries.
    The teacher scores are targets: no gradient flows into them.

    With ``p = softmax(teacher / teacher_temperature)`` and ``log q = log_softmax(student / student_temperature)``,
    both taken over the valid entries of a row only, the per-row value is ``sum_i p_i * (log p_i - log q_i)``.
    Padded positions get probability 0 in both distributions, so the result equals the unpadded computation.

    Args:
        student_scores (Tensor): Student scores, shape ``[..., max_len]``.
        teacher_scores (Tensor): Teacher scores, same shape.
        mask (Tensor, optional): Boolean mask, True for real entries; every row needs one. Defaults to all True.
        teacher_temperature (float): Temperature of the teacher's softmax (> 0). Defaults to 1.0.
        student_temperature (float): Temperature of the student's softmax (> 0). Defaults to 1.0.
        reduction (str): ``"mean"`` averages over the rows, ``"none"`` returns one value per row.

    Returns:
        Tensor: Scalar (``"mean"``) or shape ``[...]`` (``"none"``).
    """
    _check_same_shape(student_scores, teacher_scores)
    if teacher_temperature <= 0 or student_temperature <= 0:
        raise ValueError(
            f"temperatures must be > 0, got teacher_temperature={teacher_temperature}, "
            f"student_temperature={student_temperature}"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'mean' or 'none'")
    mask = _resolve_mask(student_scores, mask)
    _check_nonempty_rows(mask, "soft_label_kl_divergence")

    teacher_logits = torch.where(mask, teacher_scores / teacher_temperature, -math.inf)
    student_logits = torch.where(mask, student_scores / student_temperature, -math.inf)
    teacher_probs = torch.softmax(teacher_logits.detach(), dim=-1)  # exactly 0 at padded positions
    student_log_probs = torch.log_softmax(student_logits, dim=-1).masked_fill(~mask, 0.0)
    # kl_div(input=log q, target=p) = p * (log p - log q), with 0 * log 0 = 0: padded and underflowed entries add 0.
    per_row = F.kl_div(student_log_probs, teacher_probs, reduction="none").sum(dim=-1)
    return per_row.mean() if reduction == "mean" else per_row


def _top_fraction_mask(teacher_scores: Tensor, mask: Tensor, top_fraction: float) -> Tensor:
    """True for entries among the ``ceil(top_fraction * n_valid)`` best of their row by teacher score.

    Ranks are competition ranks (an entry's rank is the number of valid entries with a strictly higher score), so
    entries tied at the cut-off are all in, and the result does not depend on the order within a list.
    """
    n_valid = mask.sum(dim=-1, keepdim=True).double()
    # float64 and a small slack so that e.g. 0.3 * 10 gives 3, not 4.
    k = torch.ceil(n_valid * top_fraction - 1e-9)
    better = (teacher_scores.unsqueeze(-2) > teacher_scores.unsqueeze(-1)) & mask.unsqueeze(-2)
    rank = better.sum(dim=-1)
    return mask & (rank < k)


def score_gap_hinge_terms(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None = None,
    alpha: float = 0.8,
    top_fraction: float = 0.3,
    top_weight: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """
    Pairwise terms of the Querit score-gap hinge.
    The teacher scores are targets: no gradient flows into them.

    For two valid entries ``i, j`` of the same row with teacher scores ``t_i > t_j`` the pair's loss is
    ``relu(alpha * (t_i - t_j) - (s_i - s_j))``: the student must separate them by at least ``alpha`` times the
    teacher's gap. Ties (``t_i == t_j``) form no pair. A pair whose better entry ``i`` is in the teacher's top
    ``ceil(top_fraction * n_valid)`` of its row gets weight ``top_weight``, any other pair weight 1.

    Args:
        student_scores (Tensor): Student scores, shape ``[..., max_len]``.
        teacher_scores (Tensor): Teacher scores, same shape.
        mask (Tensor, optional): Boolean mask, True for real entries. Defaults to all True.
        alpha (float): Fraction of the teacher's gap the student's gap must reach. Defaults to 0.8.
        top_fraction (float): Fraction of each list (rounded up) that counts as the teacher's top. Defaults to 0.3.
        top_weight (float): Weight of pairs led by a top entry; 1.0 disables the up-weighting. Defaults to 2.0.

    Returns:
        tuple[Tensor, Tensor]: ``(pair_losses, pair_weights)``, both of shape ``[..., max_len, max_len]`` and indexed
        ``[..., i, j]``; ``pair_weights`` is 0 where ``(i, j)`` is not a pair.
    """
    _check_same_shape(student_scores, teacher_scores)
    if student_scores.dim() == 0:
        raise ValueError("score_gap_hinge_terms needs scores with at least one dimension (the candidate list)")
    if not 0.0 <= top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in [0, 1], got {top_fraction}")
    if top_weight <= 0:
        raise ValueError(f"top_weight must be > 0, got {top_weight}")
    mask = _resolve_mask(student_scores, mask)
    teacher = torch.where(mask, teacher_scores, 0.0).detach()
    student = torch.where(mask, student_scores, 0.0)

    teacher_gap = teacher.unsqueeze(-1) - teacher.unsqueeze(-2)  # [..., i, j] = t_i - t_j
    student_gap = student.unsqueeze(-1) - student.unsqueeze(-2)
    is_pair = mask.unsqueeze(-1) & mask.unsqueeze(-2) & (teacher.unsqueeze(-1) > teacher.unsqueeze(-2))

    in_top = _top_fraction_mask(teacher, mask, top_fraction)
    weights = torch.where(in_top.unsqueeze(-1), top_weight, 1.0).to(student.dtype)
    weights = torch.where(is_pair, weights, 0.0)
    pair_losses = torch.where(is_pair, F.relu(alpha * teacher_gap - student_gap), 0.0)
    return pair_losses, weights


def score_gap_hinge_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    mask: Tensor | None = None,
    alpha: float = 0.8,
    top_fraction: float = 0.3,
    top_weight: float = 2.0,
) -> Tensor:
    """
    Weighted mean of the Querit score-gap hinge over all pairs of all rows: ``sum(w * l) / sum(w)``.

    See :func:`score_gap_hinge_terms` for the pairs, their losses ``l`` and weights ``w``. A batch without a single
    pair (every list constant, or of length 1) gives 0, still attached to the student scores' graph.

    Returns:
        Tensor: Scalar loss.
    """
    pair_losses, weights = score_gap_hinge_terms(
        student_scores, teacher_scores, mask, alpha=alpha, top_fraction=top_fraction, top_weight=top_weight
    )
    total_weight = weights.sum()
    if total_weight <= 0:
        return (pair_losses * weights).sum()
    return (pair_losses * weights).sum() / total_weight

