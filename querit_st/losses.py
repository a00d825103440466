"""Soft-label losses for distilling a teacher's continuous scores into a compact cross-encoder reranker.

The Querit-Reranker recipe trains a small cross-encoder on *soft* labels: every (query, candidate) pair carries
the score a stronger teacher gave it, not a binary relevance judgement. This module holds three
:class:`~sentence_transformers.cross_encoder.CrossEncoderTrainer`-compatible losses built on those labels,
written in the style of sentence-transformers' own cross-encoder losses:

- :class:`SoftLabelMSELoss`: pointwise regression onto the (optionally normalised) teacher score.
- :class:`SoftLabelKLLoss`: listwise KL divergence between the teacher's and the student's softmax over a list.
- :class:`ScoreGapHingeLoss`: the Querit pairwise hinge on score gaps, with extra weight on the teacher's top picks.

The maths lives in small, pure functions on padded ``[batch, max_len]`` tensors with a boolean mask
(:func:`normalize_teacher_scores`, :func:`soft_label_mse`, :func:`soft_label_kl_divergence`,
:func:`score_gap_hinge_terms`, :func:`score_gap_hinge_loss`); the loss classes only validate the batch, score the
flattened (query, document) pairs with the model and hand the padded matrices to those functions.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.util import batch_to_device, fullname
from torch import Tensor, nn

from querit_st._utils import QueritInputError, check_text

__all__ = [
    "NORMALIZATION_METHODS",
    "NormalizationMethod",
    "normalize_teacher_scores",
    "pad_score_lists",
    "soft_label_mse",
    "soft_label_kl_divergence",
    "score_gap_hinge_terms",
    "score_gap_hinge_loss",
    "SoftLabelMSELoss",
    "SoftLabelKLLoss",
    "ScoreGapHingeLoss",
    "check_loss_kwargs",
]

NormalizationMethod = Literal["none", "sigmoid", "minmax", "zscore"]
NORMALIZATION_METHODS: tuple[str, ...] = ("none", "sigmoid", "minmax", "zscore")
# Methods that normalise over a query's candidate list, so they need listwise rows.
_PER_QUERY_METHODS: tuple[str, ...] = ("minmax", "zscore")

QUERIT_CITATION = """
@article{querit2026,
    title={Querit-Reranker: Compact Multilingual Rerankers},
    journal={arXiv preprint arXiv:2606.19037},
    year={2026}
}
"""

HINTON_CITATION = """
@misc{hinton2015distilling,
    title={Distilling the Knowledge in a Neural Network},
    author={Geoffrey Hinton and Oriol Vinyals and Jeff Dean},
    year={2015},
    eprint={1503.02531},
    archivePrefix={arXiv},
    primaryClass={stat.ML}
}
"""

LISTNET_CITATION = """
@inproceedings{cao2007learning,
    title={Learning to Rank: From Pairwise Approach to Listwise Approach},
    author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
    booktitle={Proceedings of the 24th international conference on Machine learning},
    pages={129--136},
    year={2007}
}
"""


# ---------------------------------------------------------------------------------------------------------------------
# Pure functions on padded [..., max_len] score tensors. ``mask`` is True for real entries, False for padding; the
# values at padded positions never influence a result (nor its gradient), whatever they are.
# ---------------------------------------------------------------------------------------------------------------------


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
            - ``"zscore"``: ``(score - mean) / std`` per row over its valid entries (population std). A row whose
              valid entries are all equal (a single entry included) maps to 0.

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

    # Per-row statistics in float64, so that constant rows are detected exactly and float32 rounding stays small.
    x = torch.where(mask, scores, zero).double()
    row_max = torch.where(mask, x, -math.inf).amax(dim=-1, keepdim=True)
    row_min = torch.where(mask, x, math.inf).amin(dim=-1, keepdim=True)
    constant = ~(row_max > row_min)  # also True for rows without any valid entry
    if method == "minmax":
        span = torch.where(constant, 1.0, row_max - row_min)
        normalized = torch.where(constant, 0.5, (x - row_min) / span)
    else:  # zscore
        count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = x.sum(dim=-1, keepdim=True) / count
        centered = torch.where(mask, x - mean, 0.0)
        std = (centered.pow(2).sum(dim=-1, keepdim=True) / count).sqrt()
        std = torch.where(constant, 1.0, std)
        normalized = torch.where(constant, 0.0, centered / std)
    return torch.where(mask, normalized, 0.0).to(scores.dtype)


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


# ---------------------------------------------------------------------------------------------------------------------
# Batch validation and the shared flatten -> score -> pad path of the loss classes.
# ---------------------------------------------------------------------------------------------------------------------


def _number(loss_name: str, name: str, value: Any) -> float:
    """``value`` if it is a finite real number (not a bool), else an error naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise QueritInputError(f"{loss_name}: {name} must be a finite number, got {value!r:.80}")
    return float(value)


def _check_normalization(loss_name: str, normalization: Any) -> None:
    if normalization not in NORMALIZATION_METHODS:
        raise QueritInputError(
            f"{loss_name}: unknown normalization {normalization!r}; expected one of {list(NORMALIZATION_METHODS)}"
        )


def _first_nonfinite(values: Tensor) -> tuple[int, str] | None:
    """Index and kind ("NaN" / "infinite (inf)") of the first non-finite entry of ``values``, or None."""
    flat = values.reshape(-1)
    bad = (~torch.isfinite(flat)).nonzero()
    if bad.numel() == 0:
        return None
    index = int(bad[0, 0])
    value = float(flat[index])
    return index, "NaN" if math.isnan(value) else f"infinite ({value})"


def _is_listwise(documents: Sequence[Any], loss_name: str) -> bool:
    """True for ``(query, [doc1, ...])`` rows, False for ``(query, document)`` rows."""
    is_list = [isinstance(docs, (list, tuple)) for docs in documents]
    if all(is_list):
        return True
    if not any(is_list) and all(isinstance(doc, str) for doc in documents):
        return False
    row = next(
        i for i, doc in enumerate(documents) if not isinstance(doc, (list, tuple, str)) or is_list[i] != is_list[0]
    )
    raise QueritInputError(
        f"{loss_name}: row {row} of the document column is a {type(documents[row]).__name__}; expected every row "
        "to hold either one document (str) or a list of documents"
    )


def _check_inputs(inputs: Sequence[Sequence[Any]], labels: Any, loss_name: str) -> tuple[Sequence[str], Sequence[Any]]:
    if labels is None:
        raise QueritInputError(
            f"{loss_name}: labels not given; expected teacher scores in a 'label' or 'score' column of the dataset"
        )
    if len(inputs) != 2:
        raise QueritInputError(
            f"{loss_name} expects two input columns (queries, documents), but got a dataset with {len(inputs)} "
            "non-label columns"
        )
    queries, documents = inputs
    if len(queries) != len(documents):
        raise QueritInputError(f"{loss_name}: {len(queries)} queries but {len(documents)} document rows")
    if len(queries) == 0:
        raise QueritInputError(f"{loss_name}: empty batch")
    for i, query in enumerate(queries):
        check_text(query, f"{loss_name}: query of row {i}")
    return queries, documents


def _as_scores(values: Any, what: str) -> Tensor:
    """``values`` as a float tensor, or an error naming ``what`` when they are not numbers (None, strings...)."""
    try:
        return torch.as_tensor(values, dtype=torch.float32) if not isinstance(values, Tensor) else values.float()
    except (TypeError, ValueError, RuntimeError):
        raise QueritInputError(f"{what} is {values!r:.80}; expected numbers (teacher scores)") from None


def _listwise_teacher_rows(documents: Sequence[Sequence[str]], labels: Any, loss_name: str) -> list[Tensor]:
    """Validates listwise rows and returns one float tensor of teacher scores per row."""
    batch_size = len(documents)
    if isinstance(labels, Tensor):
        if labels.dim() != 2 or labels.shape[0] != batch_size:
            raise QueritInputError(
                f"{loss_name} expects a list of teacher scores for each (query, [documents]) row, but got a label "
                f"tensor of shape {tuple(labels.shape)}"
            )
        labels = list(labels.unbind(0))
    if len(labels) != batch_size:
        raise QueritInputError(f"{loss_name}: {batch_size} rows but {len(labels)} labels")
    rows = []
    for i, (docs, row_labels) in enumerate(zip(documents, labels)):
        if len(docs) == 0:
            raise QueritInputError(f"{loss_name}: row {i} has an empty document list; expected at least one document")
        for j, doc in enumerate(docs):
            if not isinstance(doc, str):
                raise QueritInputError(f"{loss_name}: row {i}, document {j} is a {type(doc).__name__}; expected str")
            check_text(doc, f"{loss_name}: row {i}, document {j}")
        scores = _as_scores(row_labels, f"{loss_name}: the label of row {i}")
        if scores.dim() != 1:
            raise QueritInputError(
                f"{loss_name}: row {i} has a label of shape {tuple(scores.shape)}; expected a list of "
                f"{len(docs)} teacher scores, one per document"
            )
        if scores.numel() != len(docs):
            raise QueritInputError(
                f"{loss_name}: row {i} has {len(docs)} documents but {scores.numel()} teacher scores; "
                "expected one score per document"
            )
        bad = _first_nonfinite(scores)
        if bad is not None:
            raise QueritInputError(
                f"{loss_name}: row {i}: teacher score at position {bad[0]} is {bad[1]}; expected finite teacher scores"
            )
        rows.append(scores)
    return rows


def _pointwise_teacher_scores(labels: Any, batch_size: int, loss_name: str) -> Tensor:
    """Validates pointwise labels and returns a float tensor of shape [batch_size]."""
    if isinstance(labels, (list, tuple)):
        nested = [isinstance(lbl, (list, tuple)) or (isinstance(lbl, Tensor) and lbl.dim() > 0) for lbl in labels]
        if any(nested):
            raise QueritInputError(
                f"{loss_name} got a list of teacher scores for a (query, document) row; lists of scores need "
                "(query, [documents]) rows"
            )
        labels = torch.stack(
            [_as_scores(label, f"{loss_name}: the label of row {i}") for i, label in enumerate(labels)]
        )
    scores = _as_scores(labels, f"{loss_name}: the labels").detach()
    if scores.numel() != batch_size:
        raise QueritInputError(
            f"{loss_name} expects {batch_size} labels (one per (query, document) row), but got {scores.numel()} "
            f"labels with shape {tuple(scores.shape)}"
        )
    scores = scores.reshape(-1)
    bad = _first_nonfinite(scores)
    if bad is not None:
        raise QueritInputError(f"{loss_name}: row {bad[0]}: teacher score is {bad[1]}; expected finite teacher scores")
    return scores


class _SoftLabelLoss(nn.Module):
    """Shared plumbing of the soft-label losses: checks, pair scoring in mini-batches, flatten/pad of lists."""

    def __init__(self, model: CrossEncoder, activation_fn: nn.Module | None, mini_batch_size: int | None) -> None:
        super().__init__()
        self._check_common_options(activation_fn, mini_batch_size)
        self.model = model
        self.activation_fn = activation_fn or nn.Identity()
        self.mini_batch_size = mini_batch_size

        if not isinstance(self.model, CrossEncoder):
            raise ValueError(
                f"{self.__class__.__name__} expects a model of type CrossEncoder, "
                f"but got a model of type {type(self.model)}."
            )
        if self.model.num_labels != 1:
            raise ValueError(
                f"{self.__class__.__name__} expects a model with 1 output label, "
                f"but got a model with {self.model.num_labels} output labels."
            )

    @classmethod
    def _check_common_options(cls, activation_fn: Any, mini_batch_size: Any) -> None:
        if activation_fn is not None and not isinstance(activation_fn, nn.Module):
            raise QueritInputError(
                f"{cls.__name__}: activation_fn must be a torch.nn.Module or None, got {activation_fn!r:.80}"
            )
        if mini_batch_size is not None and (not isinstance(mini_batch_size, int) or isinstance(mini_batch_size, bool)):
            raise QueritInputError(
                f"{cls.__name__}: mini_batch_size must be an integer or None, got {mini_batch_size!r}"
            )

    @classmethod
    def _check_options(cls, **options: Any) -> None:
        """Validate the loss's own options (everything but the model); raises :class:`QueritInputError`."""
        cls._check_common_options(options.get("activation_fn"), options.get("mini_batch_size"))

    def score_pairs(
        self,
        pairs: list[tuple[str, str]],
        batch_size: int,
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor:
        """Scores (query, document) pairs with the model, in mini-batches like ``ListNetLoss``; returns 1-D logits.

        ``mini_batch_size`` None means ``batch_size`` pairs per forward pass, <= 0 means all pairs at once.
        """
        mini_batch_size = self.mini_batch_size or batch_size
        if mini_batch_size <= 0:
            mini_batch_size = len(pairs)

        logits_list = []
        for i in range(0, len(pairs), mini_batch_size):
            tokens = self.model.preprocess(pairs[i : i + mini_batch_size], prompt=prompt, task=task)
            tokens = batch_to_device(tokens, self.model.device)
            logits_list.append(self.model(tokens)["scores"].view(-1))
        logits = torch.cat(logits_list, dim=0).float()
        return self.activation_fn(logits)

    def listwise_scores(
        self,
        inputs: list[list[str] | list[list[str]]],
        labels: list[Tensor] | Tensor | None,
        prompt: str | None = None,
        task: str | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Validates ``(query, [docs])`` rows, scores every pair and pads to ``[batch, max_len]``.

        Returns:
            tuple[Tensor, Tensor, Tensor]: ``(student_scores, teacher_scores, mask)``; padded positions hold 0 and
            ``mask`` is False there.
        """
        name = self.__class__.__name__
        queries, documents = _check_inputs(inputs, labels, name)
        if not _is_listwise(documents, name):
            raise QueritInputError(
                f"{name} expects listwise rows (query, [doc1, ..., docN]) with a list of teacher scores per query, "
                "but got one document per row"
            )
        teacher_rows = _listwise_teacher_rows(documents, labels, name)
        pairs = [(query, doc) for query, docs in zip(queries, documents) for doc in docs]
        logits = self.score_pairs(pairs, batch_size=len(queries), prompt=prompt, task=task)

        device = logits.device
        student_rows = logits.split([len(docs) for docs in documents])
        student_scores, mask = pad_score_lists(student_rows)
        teacher_scores, _ = pad_score_lists([row.to(device) for row in teacher_rows])
        return student_scores, teacher_scores, mask

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": fullname(self.activation_fn), "mini_batch_size": self.mini_batch_size}


# ---------------------------------------------------------------------------------------------------------------------
# The losses.
# ---------------------------------------------------------------------------------------------------------------------


class SoftLabelMSELoss(_SoftLabelLoss):
    def __init__(
        self,
        model: CrossEncoder,
        normalization: NormalizationMethod = "none",
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
    ) -> None:
        """
        Pointwise MSE between the student's score and the teacher's continuous (soft) score for the same
        (query, document) pair, the pointwise part of the Querit-Reranker distillation recipe. The teacher scores
        can be normalised first, element-wise (``"sigmoid"``) or per query over its candidate list (``"minmax"``,
        ``"zscore"``), which puts teachers with different score scales on one footing.

        .. note::

            Two input formats are accepted: pointwise ``(query, document)`` rows with one float label each (like
            :class:`~sentence_transformers.cross_encoder.losses.MSELoss`), and listwise ``(query, [doc1, ..., docN])``
            rows with a list of floats each (like :class:`~sentence_transformers.cross_encoder.losses.ListNetLoss`);
            lists may differ in length. ``"minmax"`` and ``"zscore"`` need the listwise format.

        .. note::

            Be mindful of the magnitude of both the labels and what the model produces: the raw logits are the
            student's scores. With ``normalization="sigmoid"`` or ``"minmax"`` the targets lie in [0, 1], and you may
            wish to use a Sigmoid ``activation_fn``.

        Args:
            model (:class:`~sentence_transformers.cross_encoder.model.CrossEncoder`): A CrossEncoder model to be trained.
            normalization (str): How the teacher scores are normalised before the regression: ``"none"`` (default),
                ``"sigmoid"``, ``"minmax"`` or ``"zscore"``. See :func:`normalize_teacher_scores`.
            activation_fn (:class:`~torch.nn.Module`): Activation function applied to the logits before computing the
                loss. Defaults to :class:`~torch.nn.Identity`.
            mini_batch_size (int, optional): Number of (query, document) pairs per forward pass. None (default) uses
                the batch size, a value <= 0 processes all pairs of the batch at once.

        References:
            - Querit-Reranker: Compact Multilingual Rerankers: https://arxiv.org/abs/2606.19037
            - Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation: https://huggingface.co/papers/2010.02666

        Requirements:
            1. Your model must be initialized with `num_labels = 1` (a.k.a. the default) to predict one class.
            2. Teacher scores (soft labels) for every (query, document) pair, e.g. from a larger cross-encoder.

        Inputs:
            +----------------------------------------+--------------------------------------------+-------------------------------+
            | Inputs                                 | Labels                                     | Number of Model Output Labels |
            +========================================+============================================+===============================+
            | (query, document) pairs                | teacher score                              | 1                             |
            +----------------------------------------+--------------------------------------------+-------------------------------+
            | (query, [doc1, doc2, ..., docN])       | [teacher_score1, ..., teacher_scoreN]      | 1                             |
            +----------------------------------------+--------------------------------------------+-------------------------------+

        Relations:
            - :class:`~sentence_transformers.cross_encoder.losses.MSELoss` is this loss with pointwise input and no
              normalisation.
            - :class:`SoftLabelKLLoss` and :class:`ScoreGapHingeLoss` take the same listwise input and only look at
              the scores within a list (relative), not at their absolute values.

        Example:
            ::

                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from datasets import Dataset
                from querit_st.losses import SoftLabelMSELoss

                model = CrossEncoder("microsoft/mpnet-base")
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?", "What is the capital of France?"],
                    "docs": [
                        ["Pandas are a kind of bear.", "Pandas are kind of like fish."],
                        ["The capital of France is Paris.", "Paris is the capital of France.", "Paris is quite large."],
                    ],
                    "scores": [[7.1, -2.3], [8.4, 8.0, 1.2]],
                })
                loss = SoftLabelMSELoss(model, normalization="minmax")

                trainer = CrossEncoderTrainer(
                    model=model,
                    train_dataset=train_dataset,
                    loss=loss,
                )
                trainer.train()
        """
        super().__init__(model, activation_fn, mini_batch_size)
        self._check_options(normalization=normalization)
        self.normalization = normalization

    def forward(
        self,
        inputs: list[list[str] | list[list[str]]],
        labels: Tensor | list[Tensor],
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor:
        """
        Compute the soft-label MSE for a batch.

        Args:
            inputs: ``[queries, documents]``, where ``documents`` holds one document or one list of documents per row.
            labels: One teacher score per row (pointwise) or one list of teacher scores per row (listwise).
            prompt: Optional prompt passed to the model's preprocessing of the (query, document) pairs.
            task: Optional task passed to the model's preprocessing of the (query, document) pairs.

        Returns:
            Tensor: Mean squared error over all (query, document) pairs of the batch.
        """
        name = self.__class__.__name__
        queries, documents = _check_inputs(inputs, labels, name)
        if _is_listwise(documents, name):
            student_scores, teacher_scores, mask = self.listwise_scores(inputs, labels, prompt=prompt, task=task)
        else:
            if self.normalization in _PER_QUERY_METHODS:
                raise QueritInputError(
                    f"{name}(normalization={self.normalization!r}) normalises the teacher scores per query over its "
                    "candidate list, so it needs listwise rows (query, [doc1, ..., docN]) with a list of teacher "
                    "scores; got pointwise (query, document) rows. Use normalization='none' or 'sigmoid', or group "
                    "the rows by query."
                )
            for i, doc in enumerate(documents):
                check_text(doc, f"{name}: document of row {i}")
            teacher_scores = _pointwise_teacher_scores(labels, len(queries), name)
            student_scores = self.score_pairs(
                list(zip(queries, documents)), batch_size=len(queries), prompt=prompt, task=task
            )
            teacher_scores = teacher_scores.to(student_scores.device)
            mask = None
        targets = normalize_teacher_scores(teacher_scores, mask, self.normalization)
        return soft_label_mse(student_scores, targets, mask)

    @classmethod
    def _check_options(cls, **options: Any) -> None:
        super()._check_options(**options)
        _check_normalization(cls.__name__, options.get("normalization", "none"))

    def get_config_dict(self) -> dict[str, Any]:
        return {"normalization": self.normalization, **super().get_config_dict()}

    @property
    def citation(self) -> str:
        return QUERIT_CITATION


class SoftLabelKLLoss(_SoftLabelLoss):
    def __init__(
        self,
        model: CrossEncoder,
        teacher_temperature: float = 1.0,
        student_temperature: float = 1.0,
        mini_batch_size: int | None = None,
        activation_fn: nn.Module | None = nn.Identity(),
    ) -> None:
        """
        Listwise knowledge distillation: the KL divergence ``KL(teacher || student)`` between the teacher's and the
        student's score distributions over each query's candidate list, averaged over the queries. With
        ``p = softmax(teacher_scores / teacher_temperature)`` and
        ``log q = log_softmax(student_scores / student_temperature)`` over the list, a query contributes
        ``sum_i p_i * (log p_i - log q_i)``. Only the differences between the scores of one list matter, so
        teachers on any scale can be used; the temperature sets how peaked the teacher's target is.

        .. note::

            The number of documents per query can vary between samples. Shorter lists are padded and masked, so
            every query's value equals the one computed on its own, unpadded list.

        .. note::

            No ``temperature ** 2`` factor is applied: Hinton et al. multiply the distillation term by it to keep
            gradient magnitudes comparable across temperatures. Scale the loss yourself (e.g. with a loss weight)
            if you compare or mix runs at different temperatures.

        Args:
            model (:class:`~sentence_transformers.cross_encoder.model.CrossEncoder`): A CrossEncoder model to be trained.
            teacher_temperature (float): Temperature of the teacher's softmax; lower is more peaked. Defaults to 1.0.
            student_temperature (float): Temperature of the student's softmax. Defaults to 1.0.
            mini_batch_size (int, optional): Number of (query, document) pairs per forward pass. None (default) uses
                the batch size, a value <= 0 processes all pairs of the batch at once.
            activation_fn (:class:`~torch.nn.Module`): Activation function applied to the logits before computing the
                loss. Defaults to :class:`~torch.nn.Identity`.

        References:
            - Querit-Reranker: Compact Multilingual Rerankers: https://arxiv.org/abs/2606.19037
            - Distilling the Knowledge in a Neural Network: https://huggingface.co/papers/1503.02531
            - Learning to Rank: From Pairwise Approach to Listwise Approach: https://www.microsoft.com/en-us/research/publication/learning-to-rank-from-pairwise-approach-to-listwise-approach/

        Requirements:
            1. Query with multiple documents (listwise approach).
            2. Teacher scores (soft labels) for every document of the list, e.g. from a larger cross-encoder.

        Inputs:
            +----------------------------------------+--------------------------------------------+-------------------------------+
            | Inputs                                 | Labels                                     | Number of Model Output Labels |
            +========================================+============================================+===============================+
            | (query, [doc1, doc2, ..., docN])       | [teacher_score1, ..., teacher_scoreN]      | 1                             |
            +----------------------------------------+--------------------------------------------+-------------------------------+

        Relations:
            - :class:`~sentence_transformers.cross_encoder.losses.ListNetLoss` takes the same inputs and minimises the
              cross entropy between the same two distributions (at temperature 1), which differs from this KL only by
              the teacher's entropy, a constant.
            - :class:`ScoreGapHingeLoss` takes the same inputs and compares the scores pair by pair.

        Example:
            ::

                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from datasets import Dataset
                from querit_st.losses import SoftLabelKLLoss

                model = CrossEncoder("microsoft/mpnet-base")
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?", "What is the capital of France?"],
                    "docs": [
                        ["Pandas are a kind of bear.", "Pandas are kind of like fish."],
                        ["The capital of France is Paris.", "Paris is the capital of France.", "Paris is quite large."],
                    ],
                    "scores": [[7.1, -2.3], [8.4, 8.0, 1.2]],
                })
                loss = SoftLabelKLLoss(model, teacher_temperature=2.0)

                trainer = CrossEncoderTrainer(
                    model=model,
                    train_dataset=train_dataset,
                    loss=loss,
                )
                trainer.train()
        """
        super().__init__(model, activation_fn, mini_batch_size)
        self._check_options(teacher_temperature=teacher_temperature, student_temperature=student_temperature)
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature

    def forward(
        self,
        inputs: list[list[str] | list[list[str]]],
        labels: list[Tensor],
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor:
        """
        Compute the listwise KL divergence for a batch of queries and their documents.

        Args:
            inputs: ``[queries, documents_lists]``.
            labels: One list (tensor) of teacher scores per query, as long as its document list.
            prompt: Optional prompt passed to the model's preprocessing of the (query, document) pairs.
            task: Optional task passed to the model's preprocessing of the (query, document) pairs.

        Returns:
            Tensor: Mean KL divergence over the queries of the batch.
        """
        student_scores, teacher_scores, mask = self.listwise_scores(inputs, labels, prompt=prompt, task=task)
        return soft_label_kl_divergence(
            student_scores,
            teacher_scores,
            mask,
            teacher_temperature=self.teacher_temperature,
            student_temperature=self.student_temperature,
        )

    @classmethod
    def _check_options(cls, **options: Any) -> None:
        super()._check_options(**options)
        for name in ("teacher_temperature", "student_temperature"):
            if _number(cls.__name__, name, options.get(name, 1.0)) <= 0:
                raise QueritInputError(f"{cls.__name__}: temperatures must be > 0, got {name}={options[name]}")

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "teacher_temperature": self.teacher_temperature,
            "student_temperature": self.student_temperature,
            **super().get_config_dict(),
        }

    @property
    def citation(self) -> str:
        return QUERIT_CITATION + HINTON_CITATION + LISTNET_CITATION


class ScoreGapHingeLoss(_SoftLabelLoss):
    def __init__(
        self,
        model: CrossEncoder,
        alpha: float = 0.8,
        top_fraction: float = 0.3,
        top_weight: float = 2.0,
        normalization: NormalizationMethod = "none",
        mini_batch_size: int | None = None,
        activation_fn: nn.Module | None = nn.Identity(),
    ) -> None:
        """
        The Querit-Reranker pairwise hinge on score gaps. For two candidates of the same query with teacher scores
        ``t_i > t_j``, the student's gap must reach ``alpha`` times the teacher's:
        ``loss_ij = relu(alpha * (t_i - t_j) - (s_i - s_j))``. Pairs whose better document is in the teacher's top
        ``top_fraction`` of the list (ranked by teacher score, rounded up) weigh ``top_weight``, the others 1, so
        that the head of the ranking, where rerankers are judged, counts more. Ties (``t_i == t_j``) form no pair.
        The loss is the weighted mean ``sum(w * loss) / sum(w)`` over all pairs of the batch.

        .. note::

            The number of documents per query can vary between samples; padded positions form no pair.

        .. note::

            The margin is in teacher units: with raw teacher logits, ``alpha`` asks for gaps of that size. Use
            ``normalization`` (``"minmax"`` or ``"zscore"``, per query) to put every list on one scale first.

        Args:
            model (:class:`~sentence_transformers.cross_encoder.model.CrossEncoder`): A CrossEncoder model to be trained.
            alpha (float): Fraction of the teacher's score gap the student's gap must reach. Defaults to 0.8.
            top_fraction (float): Fraction of each list (rounded up) that counts as the teacher's top. Defaults to 0.3.
            top_weight (float): Weight of pairs whose better document is in the teacher's top; 1.0 disables the
                up-weighting. Defaults to 2.0.
            normalization (str): How the teacher scores are normalised before the gaps are taken: ``"none"``
                (default), ``"sigmoid"``, ``"minmax"`` or ``"zscore"``. See :func:`normalize_teacher_scores`.
            mini_batch_size (int, optional): Number of (query, document) pairs per forward pass. None (default) uses
                the batch size, a value <= 0 processes all pairs of the batch at once.
            activation_fn (:class:`~torch.nn.Module`): Activation function applied to the logits before computing the
                loss. Defaults to :class:`~torch.nn.Identity`.

        References:
            - Querit-Reranker: Compact Multilingual Rerankers: https://arxiv.org/abs/2606.19037

        Requirements:
            1. Query with multiple documents (listwise approach).
            2. Teacher scores (soft labels) for every document of the list, e.g. from a larger cross-encoder.

        Inputs:
            +----------------------------------------+--------------------------------------------+-------------------------------+
            | Inputs                                 | Labels                                     | Number of Model Output Labels |
            +========================================+============================================+===============================+
            | (query, [doc1, doc2, ..., docN])       | [teacher_score1, ..., teacher_scoreN]      | 1                             |
            +----------------------------------------+--------------------------------------------+-------------------------------+

        Relations:
            - :class:`~sentence_transformers.cross_encoder.losses.RankNetLoss` also compares documents pair by pair,
              with a logistic loss on binary preferences instead of a hinge on the teacher's gap.
            - :class:`~sentence_transformers.cross_encoder.losses.MarginMSELoss` regresses the student's gap onto the
              teacher's gap, for one positive against its negatives.
            - :class:`SoftLabelKLLoss` takes the same inputs and matches whole-list distributions.

        Example:
            ::

                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from datasets import Dataset
                from querit_st.losses import ScoreGapHingeLoss

                model = CrossEncoder("microsoft/mpnet-base")
                train_dataset = Dataset.from_dict({
                    "query": ["What are pandas?", "What is the capital of France?"],
                    "docs": [
                        ["Pandas are a kind of bear.", "Pandas are kind of like fish."],
                        ["The capital of France is Paris.", "Paris is the capital of France.", "Paris is quite large."],
                    ],
                    "scores": [[0.95, 0.10], [0.97, 0.93, 0.20]],
                })
                loss = ScoreGapHingeLoss(model, alpha=0.8, top_fraction=0.3, top_weight=2.0)

                trainer = CrossEncoderTrainer(
                    model=model,
                    train_dataset=train_dataset,
                    loss=loss,
                )
                trainer.train()
        """
        super().__init__(model, activation_fn, mini_batch_size)
        self._check_options(alpha=alpha, top_fraction=top_fraction, top_weight=top_weight, normalization=normalization)
        self.alpha = alpha
        self.top_fraction = top_fraction
        self.top_weight = top_weight
        self.normalization = normalization

    def forward(
        self,
        inputs: list[list[str] | list[list[str]]],
        labels: list[Tensor],
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor:
        """
        Compute the weighted score-gap hinge for a batch of queries and their documents.

        Args:
            inputs: ``[queries, documents_lists]``.
            labels: One list (tensor) of teacher scores per query, as long as its document list.
            prompt: Optional prompt passed to the model's preprocessing of the (query, document) pairs.
            task: Optional task passed to the model's preprocessing of the (query, document) pairs.

        Returns:
            Tensor: Weighted mean hinge over all pairs of the batch.
        """
        student_scores, teacher_scores, mask = self.listwise_scores(inputs, labels, prompt=prompt, task=task)
        teacher_scores = normalize_teacher_scores(teacher_scores, mask, self.normalization)
        return score_gap_hinge_loss(
            student_scores,
            teacher_scores,
            mask,
            alpha=self.alpha,
            top_fraction=self.top_fraction,
            top_weight=self.top_weight,
        )

    @classmethod
    def _check_options(cls, **options: Any) -> None:
        super()._check_options(**options)
        name = cls.__name__
        _check_normalization(name, options.get("normalization", "none"))
        if _number(name, "alpha", options.get("alpha", 0.8)) < 0:
            raise QueritInputError(f"{name}: alpha must be >= 0, got {options['alpha']}")
        if not 0.0 <= _number(name, "top_fraction", options.get("top_fraction", 0.3)) <= 1.0:
            raise QueritInputError(f"{name}: top_fraction must be in [0, 1], got {options['top_fraction']}")
        if _number(name, "top_weight", options.get("top_weight", 2.0)) <= 0:
            raise QueritInputError(f"{name}: top_weight must be > 0, got {options['top_weight']}")

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "top_fraction": self.top_fraction,
            "top_weight": self.top_weight,
            "normalization": self.normalization,
            **super().get_config_dict(),
        }

    @property
    def citation(self) -> str:
        return QUERIT_CITATION


_LOSS_CLASSES: dict[str, type[_SoftLabelLoss]] = {
    cls.__name__: cls for cls in (SoftLabelMSELoss, SoftLabelKLLoss, ScoreGapHingeLoss)
}


def check_loss_kwargs(loss: str | type, kwargs: Any) -> dict[str, Any]:
    """Check a loss's keyword options without a model (e.g. a config's ``loss_kwargs``, before any training).

    Args:
        loss: a loss class of this module or its name (``"ScoreGapHingeLoss"``).
        kwargs: the options, everything but the model.

    Returns:
        ``kwargs`` as a dict.

    Raises:
        QueritInputError: not a mapping, an unknown option name, or a bad value (as the constructor would raise).
    """
    cls = _LOSS_CLASSES.get(loss) if isinstance(loss, str) else loss
    if cls not in _LOSS_CLASSES.values():
        raise QueritInputError(f"unknown loss {loss!r}; expected one of {sorted(_LOSS_CLASSES)}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise QueritInputError(f"{cls.__name__} options must be a mapping, got {type(kwargs).__name__}")
    params = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "model")]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise QueritInputError(f"{cls.__name__} has no option(s) {unknown}; expected some of {params}")
    cls._check_options(**kwargs)
    return dict(kwargs)
