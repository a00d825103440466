"""LoRA training of a cross-encoder: the adapter plus its scoring head, saved, reloaded with identical scores, and
folded into plain weights (what every later stage and SLERP read)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ADAPTER_DIR = "adapter"


def head_module_names(model: Any) -> list[str]:
    """The top-level modules of the scoring head (``classifier``, ``score``, ``pooler``): trained in full and saved
    with the adapter, so a reload never draws a new random head."""
    names = [n for n, _ in model.transformers_model.named_children()]
    return [n for n in ("classifier", "score", "pre_classifier") if n in names]


def add_lora(model: Any, r: int = 16, alpha: int | None = None, dropout: float = 0.05) -> None:
    """Attach a fresh LoRA adapter (``default``) to every linear layer of the encoder; the head trains fully."""
    from peft import LoraConfig, TaskType

    inner = model.transformers_model
    if getattr(inner, "_hf_peft_config_loaded", False):
        fold_lora(model)  # an earlier adapter (e.g. a stage-1 LoRA model): fold it first, then train a new one
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout,
                        modules_to_save=head_module_names(model))
    model.add_adapter(config)


def save_adapter(model: Any, folder: str | os.PathLike) -> Path:
    """The adapter weights + head (peft format: ``adapter_config.json``, ``adapter_model.safetensors``)."""
    folder = Path(folder)
    model.transformers_model.save_pretrained(str(folder))
    return folder


def fold_lora(model: Any) -> int:
    """Merge every LoRA layer into its base weight (``W + scale * B @ A``) and drop the adapter wrappers in place;
    the model is then a plain transformers model. Returns the number of layers folded."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    inner = model.transformers_model
    folded = 0
    for name, module in list(inner.named_modules()):
        if isinstance(module, (LoraLayer, ModulesToSaveWrapper)):
            parent_name, _, child = name.rpartition(".")
            parent = inner.get_submodule(parent_name) if parent_name else inner
            if isinstance(module, LoraLayer):
                module.merge(safe_merge=True)
                replacement = module.get_base_layer()
            else:
                active = module.active_adapters[0] if module.active_adapters else "default"
                replacement = module.modules_to_save[active] if active in module.modules_to_save else module.original_module
            setattr(parent, child, replacement)
            folded += 1
    for attr in ("peft_config",):
        if hasattr(inner, attr):
            delattr(inner, attr)
    inner._hf_peft_config_loaded = False
    return folded
