"""The one mteb cross-encoder wrapper of querit-st: :class:`QueritMTEBWrapper`, for trained students
(``QueritCrossEncoder`` / any ``CrossEncoder`` folder) and released Querit decoder checkpoints alike.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mteb.models.model_meta import ModelMeta
from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper
from sentence_transformers import CrossEncoder

from querit_st.cross_encoder import QueritCrossEncoder, load_querit_checkpoint
from querit_st.decoder import DEFAULT_MAX_LENGTH, QueritDecoderScorer, is_querit_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["QueritDecoderMTEBWrapper", "QueritMTEBWrapper", "is_decoder_model", "load_querit_mteb_model"]


def is_decoder_model(model: Any) -> bool:
    """Whether a ``CrossEncoder`` scores through a :class:`~querit_st.decoder.QueritDecoderScorer`."""
    try:
        return isinstance(model[0], QueritDecoderScorer)
    except (TypeError, IndexError, KeyError):
        return False


def _dtype(fp_options: str | torch.dtype | None) -> torch.dtype | None:
    if isinstance(fp_options, str):
        return None if fp_options == "auto" else getattr(torch, fp_options)
    return fp_options


class QueritMTEBWrapper(CrossEncoderWrapper):
    """mteb's ``CrossEncoderWrapper`` around a :class:`~querit_st.QueritCrossEncoder` (or any ``CrossEncoder``).

    Differences from the stock wrapper: all pairs of a task are scored in one ``predict`` call per instruction
    (length-sorted batching across queries), raw scores are returned (no sigmoid, so no saturated ties), texts are
    not re-validated (mteb corpora may hold empty documents), and an optional Querit ``instruction`` replaces the
    model's default prompt.

    A Querit decoder (a model holding a :class:`~querit_st.decoder.QueritDecoderScorer`) is run as mteb's
    ``QueritWrapper`` runs it: ``p1 - p0`` scores, and the task's own per-query instructions (an ``instruction``
    column) given verbatim to the Querit template; queries without one get ``instruction``, else the model's default.

    Args:
        model: a loaded ``CrossEncoder``, or a folder / hub id to load.
        revision, device: used when loading.
        instruction: Querit instruction instead of the model's default prompt.
        meta: the ``mteb.ModelMeta`` the results are filed under.
        max_length: truncation length (for a decoder checkpoint loaded here: as mteb's ``QueritWrapper``).
        batch_size: pairs per forward pass (a ``batch_size`` given to ``predict`` wins).
        fp_options: backbone dtype of a decoder checkpoint loaded here (``"bfloat16"``, ``"float32"``, a dtype).
        querit_checkpoint: load ``model`` with :func:`~querit_st.cross_encoder.load_querit_checkpoint` (a released
            decoder checkpoint, folder or hub id); None: when it is a local folder in that layout.
        task_instructions: use the task's per-query instructions (None: for decoder models only; other models read
            mteb's query text, which already carries them).
        **kwargs: passed to the loader.
    """

    def __init__(
        self,
        model: Any,
        revision: str | None = None,
        device: str | None = None,
        *,
        instruction: str | None = None,
        meta: ModelMeta | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        fp_options: str | torch.dtype | None = None,
        querit_checkpoint: bool | None = None,
        task_instructions: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            if querit_checkpoint is None:
                querit_checkpoint = is_querit_checkpoint(model)
            if querit_checkpoint:
                model = load_querit_checkpoint(model, max_length or DEFAULT_MAX_LENGTH, revision=revision,
                                               device=device, dtype=_dtype(fp_options), **kwargs)
            else:
                model = QueritCrossEncoder(str(model), revision=revision, device=device, **kwargs)
                if max_length is not None:
                    model.max_length = max_length
        elif max_length is not None:
            model.max_length = max_length
        super().__init__(model, revision=revision, device=device)
        self.instruction = instruction
        self.batch_size = batch_size
        self.decoder = is_decoder_model(self.model)
        self.task_instructions = self.decoder if task_instructions is None else bool(task_instructions)
        if meta is not None:
            self.mteb_model_meta = meta

    def score_pairs(
        self,
        pairs: Sequence[tuple[str, str]],
        instruction: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Raw scores of (query, document) pairs with one instruction (None: the wrapper's / model's default)."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        kwargs: dict[str, Any] = {
            "batch_size": batch_size or self.batch_size, "show_progress_bar": show_progress_bar,
            "activation_fn": torch.nn.Identity(), "convert_to_numpy": True,
        }
        with torch.inference_mode():
            if self.decoder:
                # CrossEncoder.predict (not QueritCrossEncoder's) hands `instruction` verbatim to the module
                scores = CrossEncoder.predict(self.model, list(pairs), instruction=instruction, **kwargs)
            elif isinstance(self.model, QueritCrossEncoder):
                scores = self.model.predict(list(pairs), validate=False, instruction=instruction, **kwargs)
            else:
                scores = self.model.predict(list(pairs), **kwargs)
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def predict(  # type: ignore[override]
        self,
        inputs1: Any,
        inputs2: Any,
        *,
        task_metadata: Any = None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        show = bool(kwargs.pop("show_progress_bar", False))
        batch_size = int(kwargs.pop("batch_size", self.batch_size))
        queries: list[str] = []
        instructions: list[str | None] = []
        for batch in inputs1:
            texts = list(batch["text"])
            queries.extend(self.query_prefix + t for t in texts)
            given = batch.get("instruction") if self.task_instructions and hasattr(batch, "get") else None
            instructions.extend(
                [self.instruction if i is None else i for i in given] if given is not None
                else [self.instruction] * len(texts)
            )
        docs = [self.passage_prefix + t for batch in inputs2 for t in batch["text"]]
        if len(queries) != len(docs):
            raise ValueError(f"mteb gave {len(queries)} queries for {len(docs)} documents")
        scores = np.zeros(len(queries), dtype=np.float32)
        groups: dict[str | None, list[int]] = {}
        for i, instr in enumerate(instructions):
            groups.setdefault(instr, []).append(i)
        for instr, idx in groups.items():
            pairs = [(queries[i], docs[i]) for i in idx]
            scores[idx] = self.score_pairs(pairs, instruction=instr, batch_size=batch_size, show_progress_bar=show)
        return scores


class QueritDecoderMTEBWrapper(QueritMTEBWrapper):
    """:class:`QueritMTEBWrapper` reading ``model_name`` as a released Querit decoder checkpoint (folder or hub id),
    the loader of :func:`~querit_st.mteb.querit_decoder_model_meta`. ``model=`` gives a ready ``CrossEncoder``."""

    def __init__(self, model_name: str, revision: str | None = None, device: str | None = None, *,
                 model: Any = None, max_length: int = DEFAULT_MAX_LENGTH, **kwargs: Any) -> None:
        kwargs.setdefault("querit_checkpoint", True)
        super().__init__(model if model is not None else model_name, revision, device,
                         max_length=max_length if model is None else None, **kwargs)


def load_querit_mteb_model(
    model_name: str,
    revision: str | None = None,
    *,
    model_path: str | None = None,
    device: str | None = None,
    instruction: str | None = None,
    max_length: int | None = None,
    **kwargs: Any,
) -> QueritMTEBWrapper:
    """The ``loader`` of :func:`~querit_st.mteb.model_meta`: loads ``model_path`` (a local folder) or else
    ``model_name`` from the hub."""
    source = model_path if model_path and Path(model_path).exists() else model_name
    if source == model_name and model_path:
        logger.warning("model folder %s not found; loading %s from the hub", model_path, model_name)
    return QueritMTEBWrapper(
        source, revision=revision if source == model_name else None, device=device,
        instruction=instruction, max_length=max_length, **kwargs,
    )
