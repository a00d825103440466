"""LoRA folding: a peft LoRA adapter read into per-tensor updates ``W + scale * B @ A`` that are applied row block by
row block while the merge streams the base model, so neither peft nor a loaded model is needed.

A folder with ``adapter_config.json`` (saved by peft, or by sentence-transformers' ``save_pretrained`` after
``add_adapter``) is read as its base model (``adapter_config["base_model_name_or_path"]`` or the ``base=``
argument) with the adapter folded in, ``scale = lora_alpha / r`` (``/ sqrt(r)`` for rsLoRA, ``alpha_pattern``
honoured). ``modules_to_save`` tensors (e.g. the classifier head) replace the base's. DoRA and other peft methods
are refused with a clear error: merge those with peft's ``merge_and_unload()`` and save first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from querit_st.utils import QueritInputError, load_torch_weights

__all__ = ["AdapterWeights", "LoraUpdate", "load_adapter", "load_adapter_state", "resolve_key"]

_REFUSE = "Merge it with peft's merge_and_unload() and save the model first."


@dataclass
class LoraUpdate:
    """The update of one weight, ``scale * B @ A`` (transposed for embeddings and ``fan_in_fan_out`` layers)."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float
    transposed: bool

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the update, in float32."""
        if self.transposed:  # delta = (B @ A).T: rows of delta = (B @ A[:, rows]).T
            delta = (self.b.float() @ self.a[:, start:stop].float()).T
        else:  # delta = B @ A: rows of delta = B[rows] @ A
            delta = self.b[start:stop].float() @ self.a.float()
        return delta * self.scale


@dataclass
class AdapterWeights:
    """What an adapter changes in its base, by the base's tensor names."""

    replace: dict[str, torch.Tensor] = field(default_factory=dict)  # modules_to_save: whole tensors
    updates: dict[str, LoraUpdate] = field(default_factory=dict)  # LoRA weight updates
    bias_delta: dict[str, torch.Tensor] = field(default_factory=dict)  # LoRA bias updates (float32, scaled)


def resolve_key(key: str, keys: set[str]) -> str | None:
    """``key`` itself, else the unique key that ends with ``.key`` (adapter saved on a differently wrapped model)."""
    if key in keys:
        return key
    hits = [k for k in keys if k.endswith("." + key)]
    if len(hits) == 1:
        return hits[0]
    # The adapter may carry a prefix the base lacks (e.g. saved on BertForSequenceClassification, base is BertModel).
    parts = key.split(".")
    for i in range(1, len(parts)):
        tail = ".".join(parts[i:])
        if tail in keys:
            return tail
    return None


def load_adapter_state(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_model.safetensors`` (or ``adapter_model.bin``)."""
    if (folder / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "adapter_model.safetensors"))
    if (folder / "adapter_model.bin").is_file():
        return load_torch_weights(folder / "adapter_model.bin")
    raise QueritInputError(f"adapter folder {str(folder)!r} has adapter_config.json but no adapter_model.safetensors")


def _check_config(cfg: Mapping[str, Any], where: str) -> None:
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise QueritInputError(f"{where} is a {peft_type} adapter; only LoRA adapters are folded in here. {_REFUSE}")
    for flag in ("use_dora", "layer_replication", "target_parameters", "trainable_token_indices", "use_qalora"):
        if cfg.get(flag):
            raise QueritInputError(f"{where} uses {flag}={cfg[flag]!r}, which this merge does not fold in. {_REFUSE}")


def load_adapter(
    adapter_dir: Path,
    cfg: Mapping[str, Any],
    base_shapes: Mapping[str, tuple[int, ...]],
    where: str,
) -> AdapterWeights:
    """Read a LoRA adapter folder against its base's tensor shapes; any tensor that cannot be folded is refused."""
    _check_config(cfg, where)
    state = load_adapter_state(adapter_dir)
    base_keys = set(base_shapes)
    out = AdapterWeights()
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for raw_key, tensor in state.items():
        key = raw_key.removeprefix("base_model.model.")
        m = re.match(r"^(.*)\.(lora_A|lora_B)(?:\.[^.]+)?\.(weight|bias)$", key) or re.match(
            r"^(.*)\.(lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?$", key
        )
        if m:
            part = m.group(2) + ("." + m.group(3) if m.lastindex and m.lastindex >= 3 else "")
            pairs.setdefault(m.group(1), {})[part] = tensor
            continue
        if "lora_" in key or "token_adapter" in key or "trainable_tokens" in key:
            raise QueritInputError(
                f"{where}: tensor {raw_key!r} is not a plain LoRA weight (DoRA magnitude, trainable tokens, ...); "
                "merge it with peft's merge_and_unload() and save the model first"
            )
        key = key.replace(".modules_to_save.default.", ".")
        target = resolve_key(key, base_keys)
        if target is None:
            raise QueritInputError(f"{where}: tensor {raw_key!r} has no counterpart {key!r} in the base model")
        if tuple(tensor.shape) != base_shapes[target]:
            raise QueritInputError(
                f"{where}: tensor {raw_key!r} has shape {tuple(tensor.shape)} but the base's {target!r} has "
                f"{base_shapes[target]}"
            )
        out.replace[target] = tensor

    alpha_default = float(cfg.get("lora_alpha", 8))
    alpha_pattern = cfg.get("alpha_pattern") or {}
    rslora = bool(cfg.get("use_rslora", False))
    fan_in_fan_out = bool(cfg.get("fan_in_fan_out", False))
    for module, parts in pairs.items():
        embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
        a = parts.get("lora_embedding_A" if embedding else "lora_A.weight")
        b = parts.get("lora_embedding_B" if embedding else "lora_B.weight")
        if a is None or b is None:
            raise QueritInputError(f"{where}: module {module!r} has only one of the LoRA A/B matrices")
        if a.dim() != 2 or b.dim() != 2:
            raise QueritInputError(
                f"{where}: module {module!r} is not a Linear/Embedding LoRA (convolution?); "
                "merge it with peft's merge_and_unload() and save the model first"
            )
        r = a.shape[0]
        alpha = alpha_default
        for pattern, value in alpha_pattern.items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                alpha = float(value)
                break
        scale = alpha / (math.sqrt(r) if rslora else r)
        target = resolve_key(module + ".weight", base_keys)
        if target is None:
            raise QueritInputError(f"{where}: LoRA module {module!r} has no weight {module + '.weight'!r} in the base")
        transposed = embedding or fan_in_fan_out
        shape = (b.shape[0], a.shape[1])
        if transposed:
            shape = shape[::-1]
        if shape != base_shapes[target]:
            raise QueritInputError(
                f"{where}: LoRA update of {module!r} has shape {shape} but the base's {target!r} has "
                f"{base_shapes[target]}"
            )
        out.updates[target] = LoraUpdate(a, b, scale, transposed)
        if "lora_B.bias" in parts:
            bias_key = resolve_key(module + ".bias", base_keys)
            if bias_key is None:
                raise QueritInputError(f"{where}: LoRA bias of {module!r} has no bias in the base")
            out.bias_delta[bias_key] = parts["lora_B.bias"].float() * scale
    return out
