"""``CrossEncoderTeacher``: a sentence-transformers ``CrossEncoder``'s logits (or their sigmoid) as soft labels."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from querit_st.teachers.base import Teacher
from querit_st.teachers.fingerprint import model_weights_hash
from querit_st.utils import QueritInputError, accepts_keyword, check_text
from querit_st.utils.hashing import model_files_fingerprint


class CrossEncoderTeacher(Teacher):
    """A sentence-transformers ``CrossEncoder`` as teacher.

    Args:
        model_or_path: a loaded ``CrossEncoder`` (e.g. a :class:`~querit_st.cross_encoder.QueritCrossEncoder`) or a
            folder / hub name that ``CrossEncoder(...)`` loads (the saved default prompt is applied).
        batch_size: pairs per forward pass.
        activation: ``"identity"`` (raw logits, the default: the soft losses normalise per query themselves) or
            ``"sigmoid"``.
        max_length: truncation length (``None``: the model's own).
        device: torch device when loading from a path.
        inference: a :mod:`querit_st.inference` mode applied to the model before scoring (``"fp32"``: as loaded;
            ``"onnx"`` gives the same scores faster on CPU). Part of the fingerprint, so mined labels scored in
            another mode are not reused.
        instruction: a task instruction for a :class:`~querit_st.cross_encoder.QueritCrossEncoder` (its Querit prompt
            with that instruction); None: the model's saved default prompt.
        cache: remember every scored pair (in memory; :meth:`~querit_st.teachers.Teacher.persist` also on disk).
        inplace: with ``inference`` other than fp32, optimise a given ``CrossEncoder`` itself instead of a copy (the
            caller gives the model up; saves a second copy of the weights).
    """

    def __init__(
        self,
        model_or_path: Any,
        batch_size: int = 32,
        activation: str = "identity",
        *,
        max_length: int | None = None,
        device: str | None = None,
        inference: str = "fp32",
        instruction: str | None = None,
        cache: bool = True,
        inplace: bool = False,
    ) -> None:
        super().__init__(cache=cache)
        from sentence_transformers import CrossEncoder

        from querit_st.inference import MODES, inference_mode_of, optimize_for_inference

        if inference not in MODES:
            raise QueritInputError(f"inference must be one of {', '.join(MODES)}, got {inference!r}")

        if isinstance(model_or_path, CrossEncoder):
            self.model = model_or_path
            self.name = "in-memory"
            self._model_id: str | None = None  # hashed from the weights when a fingerprint is asked for
        else:
            if not isinstance(model_or_path, (str, os.PathLike)) or not str(model_or_path).strip():
                raise QueritInputError(
                    f"model_or_path must be a CrossEncoder or a model folder, got {model_or_path!r:.80}"
                )
            self.name = str(model_or_path)
            self.model = CrossEncoder(self.name, device=device, max_length=max_length)
            self._model_id = model_files_fingerprint(self.name)
        if max_length is not None:
            self.model.max_length = max_length
        if activation not in ("identity", "sigmoid"):
            raise QueritInputError(f"activation must be 'identity' or 'sigmoid', got {activation!r}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise QueritInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if instruction is not None:
            check_text(instruction, "instruction")
            if not accepts_keyword(self.model.predict, "instruction"):
                raise QueritInputError(f"instruction needs a QueritCrossEncoder; {self.name} is a plain "
                                       f"{type(self.model).__name__}")
        self.activation = activation
        self.batch_size = batch_size
        self.instruction = instruction
        if inference != "fp32":
            in_memory = self._model_id is None
            if in_memory:  # a caller's model: hash it as given, and optimise a copy, not it
                self._model_id = "weights-" + model_weights_hash(self.model)
            self.model = optimize_for_inference(self.model, inference, inplace=inplace or not in_memory)
        self.inference = inference_mode_of(self.model) or "fp32"

    def _score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        import torch

        act = torch.nn.Sigmoid() if self.activation == "sigmoid" else torch.nn.Identity()
        extra = {"instruction": self.instruction} if self.instruction is not None else {}
        scores = self.model.predict(
            list(zip(queries, documents)),
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=act,
            convert_to_numpy=True,
            **extra,
        )
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def fingerprint(self) -> dict[str, Any]:
        model_id = self._model_id or "weights-" + model_weights_hash(self.model)
        return {"class": type(self).__name__, "model": model_id, "activation": self.activation,
                "prompt": getattr(self.model, "default_prompt_name", None),
                "max_length": getattr(self.model, "max_length", None),
                **({"inference": self.inference} if self.inference != "fp32" else {}),
                **({"instruction": self.instruction} if self.instruction is not None else {})}

    def store_key(self) -> dict[str, Any]:
        """The fingerprint plus the prompt texts and the tokenizer's kind: what decides a score besides the weights."""
        tok = getattr(self.model, "tokenizer", None)
        return {**self.fingerprint(), "prompts": getattr(self.model, "prompts", None),
                "tokenizer": [type(tok).__name__, getattr(tok, "vocab_size", None)]}
