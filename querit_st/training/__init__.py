"""Training: one ``CrossEncoderTrainer`` run per stage (:func:`train_model`), the fast CPU path chosen per CPU
(:mod:`querit_st.training.fast`), LoRA with folding, progress lines, and the multi-process helpers.

Names are loaded lazily, so reading a config (which needs only :mod:`querit_st.training.objectives`) stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "distributed_state": "distributed", "has_cuda": "distributed", "is_main_process": "distributed",
    "main_process_first": "distributed",
    "FastPath": "fast", "choose_fast_path": "fast", "configure_fast_training": "fast", "native_bf16": "fast", "restore_model": "fast",
    "add_lora": "lora", "fold_lora": "lora", "save_adapter": "lora",
    "LOSSES": "objectives", "build_loss": "objectives",
    "ProgressLogCallback": "progress",
    "freeze_word_embeddings": "trainer", "latest_checkpoint": "trainer", "train_model": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'querit_st.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"querit_st.training.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
