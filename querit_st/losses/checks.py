"""Validation for the soft-label losses: option values (before any model exists) and training batches.

Everything here raises :class:`~querit_st.utils.errors.QueritInputError` with a message naming the loss and the bad
option or row; the batch checks also turn the labels into float tensors of teacher scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from querit_st.losses.masked import NORMALIZATION_METHODS
from querit_st.utils import QueritInputError, check_text

__all__ = [
    "finite_number",
    "check_normalization",
    "check_common_options",
    "check_inputs",
    "is_listwise",
    "listwise_teacher_rows",
    "pointwise_teacher_scores",
]


# ----------------------------------------------------------------------------- options


def finite_number(loss_name: str, name: str, value: Any) -> float:
    """``value`` if it is a finite real number (not a bool), else an error naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise QueritInputError(f"{loss_name}: {name} must be a finite number, got {value!r:.80}")
    return float(value)


def check_normalization(loss_name: str, normalization: Any) -> None:
    """``normalization`` must be one of :data:`~querit_st.losses.masked.NORMALIZATION_METHODS`."""
    if normalization not in NORMALIZATION_METHODS:
        raise QueritInputError(
            f"{loss_name}: unknown normalization {normalization!r}; expected one of {list(NORMALIZATION_METHODS)}"
        )


def check_common_options(loss_name: str, activation_fn: Any, mini_batch_size: Any) -> None:
    """The options every soft-label loss has: ``activation_fn`` (module or None), ``mini_batch_size`` (int or None)."""
    if activation_fn is not None and not isinstance(activation_fn, nn.Module):
        raise QueritInputError(
            f"{loss_name}: activation_fn must be a torch.nn.Module or None, got {activation_fn!r:.80}"
        )
    if mini_batch_size is not None and (not isinstance(mini_batch_size, int) or isinstance(mini_batch_size, bool)):
        raise QueritInputError(f"{loss_name}: mini_batch_size must be an integer or None, got {mini_batch_size!r}")


# ----------------------------------------------------------------------------- batches


def _first_nonfinite(values: Tensor) -> tuple[int, str] | None:
    """Index and kind ("NaN" / "infinite (inf)") of the first non-finite entry of ``values``, or None."""
    flat = values.reshape(-1)
    bad = (~torch.isfinite(flat)).nonzero()
    if bad.numel() == 0:
        return None
    index = int(bad[0, 0])
    value = float(flat[index])
    return index, "NaN" if math.isnan(value) else f"infinite ({value})"


def is_listwise(documents: Sequence[Any], loss_name: str) -> bool:
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


def check_inputs(inputs: Sequence[Sequence[Any]], labels: Any, loss_name: str) -> tuple[Sequence[str], Sequence[Any]]:
    """The two input columns ``(queries, documents)`` of a batch, after checking their shape and the queries."""
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


def listwise_teacher_rows(documents: Sequence[Sequence[str]], labels: Any, loss_name: str) -> list[Tensor]:
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


def pointwise_teacher_scores(labels: Any, batch_size: int, loss_name: str) -> Tensor:
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
