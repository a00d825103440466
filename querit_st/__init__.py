"""querit-st: compact multilingual cross-encoder rerankers, trained and adapted without labels the Querit way.

The pipeline flows one way, one module per stage::

    data (BEIR corpus) -> querygen (synthetic queries) -> retriever (candidates) -> teachers (soft labels)
    -> mining / collator -> losses -> trainer checkpoint -> merge (SLERP) -> evaluation harness

Public names are re-exported here lazily, so importing ``querit_st`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "QueritCrossEncoder": "querit_st.cross_encoder",
    "QUERIT_PROMPT": "querit_st.cross_encoder",
    "format_querit_prompt": "querit_st.cross_encoder",
    "DenseRetriever": "querit_st.retriever",
    "load_beir": "querit_st.data",
    "BeirData": "querit_st.data",
    "SoftLabelMSELoss": "querit_st.losses",
    "SoftLabelKLLoss": "querit_st.losses",
    "ScoreGapHingeLoss": "querit_st.losses",
    "CrossEncoderTeacher": "querit_st.teachers",
    "EmbeddingTeacher": "querit_st.teachers",
    "BM25Teacher": "querit_st.teachers",
    "EnsembleTeacher": "querit_st.teachers",
    "TermQueryGenerator": "querit_st.querygen",
    "Seq2SeqQueryGenerator": "querit_st.querygen",
    "mine_soft_labels": "querit_st.mining",
    "TeacherMiningDataCollator": "querit_st.collator",
    "slerp": "querit_st.merge",
    "slerp_merge": "querit_st.merge",
    "evaluate_reranking": "querit_st.evaluation",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from querit_st.collator import TeacherMiningDataCollator
    from querit_st.cross_encoder import QUERIT_PROMPT, QueritCrossEncoder, format_querit_prompt
    from querit_st.data import BeirData, load_beir
    from querit_st.evaluation import evaluate_reranking
    from querit_st.losses import ScoreGapHingeLoss, SoftLabelKLLoss, SoftLabelMSELoss
    from querit_st.merge import slerp, slerp_merge
    from querit_st.mining import mine_soft_labels
    from querit_st.querygen import Seq2SeqQueryGenerator, TermQueryGenerator
    from querit_st.retriever import DenseRetriever
    from querit_st.teachers import BM25Teacher, CrossEncoderTeacher, EmbeddingTeacher, EnsembleTeacher


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'querit_st' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
