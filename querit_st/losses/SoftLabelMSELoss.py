"""``SoftLabelMSELoss``: pointwise regression of the student's score onto the (optionally normalised) teacher score."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sentence_transformers.cross_encoder import CrossEncoder
from torch import Tensor, nn

from querit_st.losses.base import QUERIT_CITATION, SoftLabelLoss
from querit_st.losses.checks import check_inputs, check_normalization, is_listwise, pointwise_teacher_scores
from querit_st.losses.masked import PER_QUERY_METHODS, NormalizationMethod, normalize_teacher_scores, soft_label_mse
from querit_st.utils import QueritInputError, check_text

__all__ = ["SoftLabelMSELoss"]


class SoftLabelMSELoss(SoftLabelLoss):
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
        - Querit-Reranker: Training Compact Multilingual Rerankers via Efficient Label-Free Distribution Adaptation:
          https://arxiv.org/abs/2606.19037
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

    def __init__(
        self,
        model: CrossEncoder,
        normalization: NormalizationMethod = "none",
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
    ) -> None:
        super().__init__(
            model, normalization=normalization, activation_fn=activation_fn, mini_batch_size=mini_batch_size
        )
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
        queries, documents = check_inputs(inputs, labels, name)
        if is_listwise(documents, name):
            student_scores, teacher_scores, mask = self.listwise_scores(inputs, labels, prompt=prompt, task=task)
        else:
            if self.normalization in PER_QUERY_METHODS:
                raise QueritInputError(
                    f"{name}(normalization={self.normalization!r}) normalises the teacher scores per query over its "
                    "candidate list, so it needs listwise rows (query, [doc1, ..., docN]) with a list of teacher "
                    "scores; got pointwise (query, document) rows. Use normalization='none' or 'sigmoid', or group "
                    "the rows by query."
                )
            for i, doc in enumerate(documents):
                check_text(doc, f"{name}: document of row {i}")
            teacher_scores = pointwise_teacher_scores(labels, len(queries), name)
            student_scores = self.score_pairs(
                list(zip(queries, documents)), batch_size=len(queries), prompt=prompt, task=task
            )
            teacher_scores = teacher_scores.to(student_scores.device)
            mask = None
        targets = normalize_teacher_scores(teacher_scores, mask, self.normalization)
        return soft_label_mse(student_scores, targets, mask)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        super().validate_options(options)
        check_normalization(cls.__name__, options["normalization"])

    def get_config_dict(self) -> dict[str, Any]:
        return {"normalization": self.normalization, **super().get_config_dict()}

    @property
    def citation(self) -> str:
        return QUERIT_CITATION
