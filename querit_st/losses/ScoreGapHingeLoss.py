"""``ScoreGapHingeLoss``: the Querit pairwise hinge on score gaps, with extra weight on the teacher's top picks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sentence_transformers.cross_encoder import CrossEncoder
from torch import Tensor, nn

from querit_st.losses.base import QUERIT_CITATION, SoftLabelLoss
from querit_st.losses.checks import check_normalization, finite_number
from querit_st.losses.masked import NormalizationMethod, normalize_teacher_scores, score_gap_hinge_loss
from querit_st.utils import QueritInputError

__all__ = ["ScoreGapHingeLoss"]


class ScoreGapHingeLoss(SoftLabelLoss):
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
        - Querit-Reranker: Training Compact Multilingual Rerankers via Efficient Label-Free Distribution Adaptation:
          https://arxiv.org/abs/2606.19037

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
        super().__init__(
            model,
            alpha=alpha,
            top_fraction=top_fraction,
            top_weight=top_weight,
            normalization=normalization,
            mini_batch_size=mini_batch_size,
            activation_fn=activation_fn,
        )
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
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        super().validate_options(options)
        name = cls.__name__
        check_normalization(name, options["normalization"])
        if finite_number(name, "alpha", options["alpha"]) < 0:
            raise QueritInputError(f"{name}: alpha must be >= 0, got {options['alpha']}")
        if not 0.0 <= finite_number(name, "top_fraction", options["top_fraction"]) <= 1.0:
            raise QueritInputError(f"{name}: top_fraction must be in [0, 1], got {options['top_fraction']}")
        if finite_number(name, "top_weight", options["top_weight"]) <= 0:
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
