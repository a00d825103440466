"""Decoder (Querit-4B / Querit A0.4B) rerankers as a sentence-transformers module.

The released Querit checkpoints (``Querit/Querit-4B``, from Qwen3-Embedding-4B, and ``Querit/Querit``, a
DeepSeek-V3-style MoE with 0.4B active parameters) are decoder backbones with a 2-way linear head read at a ``[CLS]``
token appended to the end of the prompt. Plain ``CrossEncoder(name)`` / ``AutoModelForSequenceClassification`` do not
know that head: they drop it and score every pair the same. This package runs them the way the reference does.

- :mod:`~querit_st.decoder.scorer`: :class:`QueritDecoderScorer`, the module (``preprocess`` + ``forward`` ->
  ``{"scores": p1 - p0, "logits": ...}``), differentiable, saved / reloaded through ``modules.json``.
- :mod:`~querit_st.decoder.checkpoint`: reading released checkpoints (folder or hub, config, 2-way head),
  :func:`is_querit_checkpoint`.
- :mod:`~querit_st.decoder.masks`: the reference's attention mask; the prompt text is
  :func:`querit_st.prompts.render_querit_text`.

This package sits below :class:`~querit_st.QueritCrossEncoder`, which loads a released checkpoint folder through
:class:`QueritDecoderScorer` and lists :data:`MODULE_CLASSES` so that saved folders reload without
``trust_remote_code``. Names kept here for older callers and resolved on first use (no import-time dependency):
``load_querit_checkpoint`` (home: :mod:`querit_st.cross_encoder`), ``QueritDecoderMTEBWrapper`` and
``querit_decoder_model_meta`` (home: :mod:`querit_st.mteb`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from querit_st.decoder.checkpoint import (
    DEFAULT_MAX_LENGTH,
    HEAD_FILES,
    HEAD_MODULE_NAMES,
    QUERIT_CLS_TOKEN,
    QUERIT_HEAD_FILE,
    QueritCheckpointError,
    is_querit_checkpoint,
)
from querit_st.decoder.masks import build_querit_attention_mask, querit_block_types
from querit_st.decoder.scorer import MaskMode, QueritDecoderScorer
from querit_st.prompts import render_querit_text

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "HEAD_FILES",
    "HEAD_MODULE_NAMES",
    "MODULE_CLASSES",
    "MaskMode",
    "QUERIT_CLS_TOKEN",
    "QUERIT_HEAD_FILE",
    "QueritCheckpointError",
    "QueritDecoderScorer",
    "QueritModuleClasses",
    "build_querit_attention_mask",
    "is_querit_checkpoint",
    "load_querit_checkpoint",
    "querit_block_types",
    "render_querit_text",
]  # plus QueritDecoderMTEBWrapper and querit_decoder_model_meta (resolved on use, they need mteb)

#: ``modules.json`` class refs of querit_st's own modules -> their classes (the public path, and the defining one).
MODULE_CLASSES: dict[str, type] = {
    "querit_st.decoder.QueritDecoderScorer": QueritDecoderScorer,
    "querit_st.decoder.scorer.QueritDecoderScorer": QueritDecoderScorer,
}


class QueritModuleClasses(dict):
    """``modules.json`` class refs -> classes, for ``CrossEncoder._module_classes``: :data:`MODULE_CLASSES` + ``base``.

    sentence-transformers refuses to import a module class outside ``sentence_transformers.*`` unless
    ``trust_remote_code=True``, except for the classes a model lists in ``_module_classes``. querit_st's modules are
    installed code the caller already runs, so :class:`~querit_st.QueritCrossEncoder` lists them.
    """

    refs: tuple[str, ...] = tuple(MODULE_CLASSES)

    def __init__(self, base: Mapping[str, type] | None = None) -> None:
        super().__init__(base or {})
        self.update(MODULE_CLASSES)


#: old public names whose home is a later module: name -> module that defines it
_MOVED: dict[str, str] = {
    "load_querit_checkpoint": "querit_st.cross_encoder",
    "QueritDecoderMTEBWrapper": "querit_st.mteb",
    "querit_decoder_model_meta": "querit_st.mteb",
}


def __getattr__(name: str) -> Any:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'querit_st.decoder' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
