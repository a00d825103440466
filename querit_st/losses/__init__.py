"""Soft-label losses for distilling a teacher's continuous scores into a compact cross-encoder reranker.

The Querit-Reranker recipe trains a small cross-encoder on *soft* labels: every (query, candidate) pair carries
the score a stronger teacher gave it, not a binary relevance judgement. This package holds three
:class:`~sentence_transformers.cross_encoder.CrossEncoderTrainer`-compatible losses built on those labels, laid out
like sentence-transformers' ``cross_encoder/losses/`` (one loss per file):

- :class:`SoftLabelMSELoss`: pointwise regression onto the (optionally normalised) teacher score.
- :class:`SoftLabelKLLoss`: listwise KL divergence between the teacher's and the student's softmax over a list.
- :class:`ScoreGapHingeLoss`: the Querit pairwise hinge on score gaps, with extra weight on the teacher's top picks.

The maths lives in small, pure functions on padded ``[batch, max_len]`` tensors with a boolean mask
(:mod:`querit_st.losses.masked`); the loss classes (on :class:`~querit_st.losses.base.SoftLabelLoss`) only validate
the batch (:mod:`querit_st.losses.checks`), score the flattened (query, document) pairs with the model and hand the
padded matrices to those functions. :func:`check_loss_kwargs` checks options by loss name, without a model.
"""

from __future__ import annotations

from querit_st.losses.base import QUERIT_CITATION, SoftLabelLoss
from querit_st.losses.masked import (
    NORMALIZATION_METHODS,
    NormalizationMethod,
    masked_zscore,
    normalize_teacher_scores,
    pad_score_lists,
    score_gap_hinge_loss,
    score_gap_hinge_terms,
    soft_label_kl_divergence,
    soft_label_mse,
)
from querit_st.losses.options import LOSS_CLASSES, check_loss_kwargs
from querit_st.losses.ScoreGapHingeLoss import ScoreGapHingeLoss
from querit_st.losses.SoftLabelKLLoss import HINTON_CITATION, LISTNET_CITATION, SoftLabelKLLoss
from querit_st.losses.SoftLabelMSELoss import SoftLabelMSELoss

__all__ = [
    "NORMALIZATION_METHODS",
    "NormalizationMethod",
    "masked_zscore",
    "normalize_teacher_scores",
    "pad_score_lists",
    "soft_label_mse",
    "soft_label_kl_divergence",
    "score_gap_hinge_terms",
    "score_gap_hinge_loss",
    "SoftLabelLoss",
    "SoftLabelMSELoss",
    "SoftLabelKLLoss",
    "ScoreGapHingeLoss",
    "LOSS_CLASSES",
    "check_loss_kwargs",
    "QUERIT_CITATION",
    "HINTON_CITATION",
    "LISTNET_CITATION",
]
