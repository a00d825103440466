"""``SoftLabelLoss``: the plumbing the three soft-label losses share (sentence-transformers keeps its in ``base/``).

Options are checked against the constructor's own signature (its defaults are the only place a default is written);
pairs are scored with the model in mini-batches; listwise ``(query, [docs])`` rows are flattened into pairs, scored
and padded back into ``[batch, max_len]`` matrices for the pure functions of :mod:`querit_st.losses.masked`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.util import batch_to_device, fullname
from torch import Tensor, nn

from querit_st.losses.fast_scoring import length_grouped_logits
from querit_st.losses.checks import check_common_options, check_inputs, is_listwise, listwise_teacher_rows
from querit_st.losses.masked import pad_score_lists
from querit_st.citation import QUERIT_CITATION
from querit_st.utils import QueritInputError

__all__ = ["QUERIT_CITATION", "SoftLabelLoss"]



class SoftLabelLoss(nn.Module):
    """Base of the soft-label losses: option checks, pair scoring in mini-batches, flatten/pad of listwise rows.

    A subclass lists its options (everything but ``model``) with their defaults in its ``__init__`` signature, passes
    them all to ``super().__init__(model, **options)``, and adds its own checks in :meth:`validate_options`.
    """

    def __init__(self, model: CrossEncoder, **options: Any) -> None:
        super().__init__()
        options = self.check_options(options)
        if not isinstance(model, CrossEncoder):
            raise ValueError(
                f"{self.__class__.__name__} expects a model of type CrossEncoder, "
                f"but got a model of type {type(model)}."
            )
        if model.num_labels != 1:
            raise ValueError(
                f"{self.__class__.__name__} expects a model with 1 output label, "
                f"but got a model with {model.num_labels} output labels."
            )
        self.model = model
        self.activation_fn = options["activation_fn"] or nn.Identity()
        self.mini_batch_size = options["mini_batch_size"]
        # set by querit_st.training.configure_fast_training: length-grouped (and, where native, bf16) scoring
        self.fast_path: Any = None

    # ------------------------------------------------------------------ options
    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The loss's options (its ``__init__`` parameters but ``model``), in signature order, with their defaults."""
        params = inspect.signature(cls.__init__).parameters.values()
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: p.default for p in params if p.kind in named and p.name not in ("self", "model")}

    @classmethod
    def check_options(cls, options: Mapping[Any, Any]) -> dict[str, Any]:
        """Check options without a model; a missing option takes the constructor's default.

        Returns:
            Every option of the loss: the given ones and the defaults of the others.

        Raises:
            QueritInputError: an unknown option name, or a bad value (as the constructor would raise).
        """
        defaults = cls.option_defaults()
        unknown = sorted(set(options) - set(defaults), key=str)
        if unknown:
            raise QueritInputError(f"{cls.__name__} has no option(s) {unknown}; expected some of {list(defaults)}")
        resolved = {**defaults, **options}
        cls.validate_options(resolved)
        return resolved

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        """Check the values of a full set of options (see :meth:`check_options`); subclasses extend it."""
        check_common_options(cls.__name__, options["activation_fn"], options["mini_batch_size"])

    # ------------------------------------------------------------------ scoring
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
        fast = getattr(self, "fast_path", None)
        if fast is not None and fast.length_grouping:  # querit_st.training.configure_fast_training
            bf16 = fast.bf16_compute if fast.bf16 else False
            logits = length_grouped_logits(self.model, pairs, token_budget=fast.token_budget, bf16=bf16,
                                           prompt=prompt, task=task)
            return self.activation_fn(logits)
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
        queries, documents = check_inputs(inputs, labels, name)
        if not is_listwise(documents, name):
            raise QueritInputError(
                f"{name} expects listwise rows (query, [doc1, ..., docN]) with a list of teacher scores per query, "
                "but got one document per row"
            )
        teacher_rows = listwise_teacher_rows(documents, labels, name)
        pairs = [(query, doc) for query, docs in zip(queries, documents) for doc in docs]
        logits = self.score_pairs(pairs, batch_size=len(queries), prompt=prompt, task=task)

        device = logits.device
        student_rows = logits.split([len(docs) for docs in documents])
        student_scores, mask = pad_score_lists(student_rows)
        teacher_scores, _ = pad_score_lists([row.to(device) for row in teacher_rows])
        return student_scores, teacher_scores, mask

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": fullname(self.activation_fn), "mini_batch_size": self.mini_batch_size}
