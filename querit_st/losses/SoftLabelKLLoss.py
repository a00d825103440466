"""``SoftLabelKLLoss``: listwise ``KL(teacher || student)`` between softmax distributions over a query's list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sentence_transformers.cross_encoder import CrossEncoder
from torch import Tensor, nn

from querit_st.losses.base import QUERIT_CITATION, SoftLabelLoss
from querit_st.losses.checks import finite_number
from querit_st.losses.masked import soft_label_kl_divergence
from querit_st.utils import QueritInputError

__all__ = ["HINTON_CITATION", "LISTNET_CITATION", "SoftLabelKLLoss"]

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


class SoftLabelKLLoss(SoftLabelLoss):
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
        - Querit-Reranker: Training Compact Multilingual Rerankers via Efficient Label-Free Distribution Adaptation:
          https://arxiv.org/abs/2606.19037
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

    def __init__(
        self,
        model: CrossEncoder,
        teacher_temperature: float = 1.0,
        student_temperature: float = 1.0,
        mini_batch_size: int | None = None,
        activation_fn: nn.Module | None = nn.Identity(),
    ) -> None:
        super().__init__(
            model,
            teacher_temperature=teacher_temperature,
            student_temperature=student_temperature,
            mini_batch_size=mini_batch_size,
            activation_fn=activation_fn,
        )
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
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        super().validate_options(options)
        for name in ("teacher_temperature", "student_temperature"):
            if finite_number(cls.__name__, name, options[name]) <= 0:
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
