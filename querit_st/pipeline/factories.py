"""The parts each stage builds from the config: the shared retriever, the teacher ensemble, the loss, a corpus's
language."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from querit_st.pipeline.config import CROSS_ENCODER_TYPES, TeacherSpec
from querit_st.training.objectives import build_loss
from querit_st.utils import QueritInputError

logger = logging.getLogger(__name__)

_RETRIEVERS: dict[str, Any] = {}


def build_retriever(name: str) -> Any:
    """The shared retriever, one instance per process and name."""
    from querit_st.retriever import DenseRetriever

    if name not in _RETRIEVERS:
        _RETRIEVERS[name] = DenseRetriever(name)
    return _RETRIEVERS[name]


def clear_retrievers() -> None:
    """Forget the per-process retriever instances (tests, or a process that switches models)."""
    _RETRIEVERS.clear()


def corpus_language(texts: list[str], configured: str | None = None) -> str:
    """The language name stages use (``"english"``, ``"german"``...): the config's ``language`` when set, else
    detected from the corpus's text (:func:`querit_st.data.detect_language`)."""
    from querit_st.utils.lang import language_name

    if configured:
        return language_name(configured)
    from querit_st.data import detect_language

    code = detect_language(texts)
    logger.info("corpus language detected from its text: %s", code)
    return language_name(code)


def _member_applies(spec: TeacherSpec, language: str) -> bool:
    from querit_st.utils.lang import language_name

    return spec.languages is None or language in {language_name(x) for x in spec.languages}


#: the model of an ``embedding`` teacher that names none
DEFAULT_EMBEDDING_TEACHER = "minilm-l6"


def ensemble_members(specs: list[TeacherSpec], language: str) -> tuple[tuple[Any, ...], ...]:
    """What a zero-training ensemble of ``specs`` scores with on a corpus in ``language`` (the members that apply,
    ``stage1`` ones left out, as in :func:`build_teacher` without a stage-1 model): ``(type, model, weight,
    inference)`` per member, sorted, so two spec lists that build the same ensemble compare equal."""
    members = []
    for spec in specs:
        if spec.type == "stage1" or not _member_applies(spec, language):
            continue
        model = (spec.model or DEFAULT_EMBEDDING_TEACHER) if spec.type == "embedding" else spec.model
        members.append((spec.type.replace("_", "-"), model or "", float(spec.weight), spec.inference))
    return tuple(sorted(members))


def build_teacher(
    specs: list[TeacherSpec], corpus_texts: list[str], language: str = "english", *,
    stage1: str | os.PathLike | None = None, max_length: int | None = None,
    larger_stage1: Mapping[int, str | os.PathLike] | None = None,
) -> Any:
    """The teacher ensemble (z-normalised per query, weighted sum) for one corpus.

    Members restricted to other ``languages`` are left out; ``stage1`` members only take part when the stage-1 model
    is given (stage 2), so stage 1 and the baseline "teacher ensemble" use the off-the-shelf teachers alone. A
    ``stage1`` member with ``layers`` scores with ``larger_stage1[layers]`` (:func:`querit_st.pipeline.stage1_teachers`).
    """
    from querit_st import teachers as T

    members, weights = [], []
    for spec in specs:
        if not _member_applies(spec, language):
            continue
        if spec.type == "stage1":
            if stage1 is not None:
                model = stage1 if spec.layers is None else (larger_stage1 or {}).get(spec.layers)
                if model is None:
                    raise QueritInputError(f"no {spec.layers}-layer stage-1 model was given for the teacher "
                                           f"{{type: stage1, layers: {spec.layers}}} (see pipeline.stage1_teachers)")
                members.append(T.CrossEncoderTeacher(str(model), batch_size=64, max_length=max_length,
                                                     inference=spec.inference))
                weights.append(spec.weight)
            continue
        if spec.type == "embedding":
            members.append(T.EmbeddingTeacher(build_retriever(spec.model or DEFAULT_EMBEDDING_TEACHER)))
        elif spec.type == "bm25":
            members.append(T.BM25Teacher(corpus_texts, language=language))
        elif spec.type in CROSS_ENCODER_TYPES:
            members.append(T.CrossEncoderTeacher(spec.model, inference=spec.inference))
        else:
            raise QueritInputError(f"unknown teacher type {spec.type!r}; expected embedding, bm25, cross-encoder or stage1")
        weights.append(spec.weight)
    if not members:
        raise QueritInputError(f"no teacher of the config applies to language {language!r}; check teachers[].languages")
    if len(members) == 1:
        return members[0]
    return T.EnsembleTeacher(members, weights=weights, normalization="zscore")


__all__ = ["build_loss", "build_retriever", "build_teacher", "clear_retrievers", "corpus_language", "ensemble_members"]
