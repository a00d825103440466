"""Lower precision in PyTorch: which of the encoder's linear layers the low-precision modes change
(:func:`encoder_linear_names`, :data:`LINEAR_KINDS`, :data:`DEFAULT_KEEP_FP32`), bf16 weights (:func:`to_bf16`,
mode ``"bf16"``) and dynamic int8 (:func:`quantize_torch`, modes ``"int8"`` and ``"packed-int8"``).

``packed=True`` means the :class:`~querit_st.inference.packed.PackedBertScorer` layout, ``False`` the Hugging Face one.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DEFAULT_KEEP_FP32", "LINEAR_KINDS", "encoder_linear_names", "quantize_torch", "to_bf16"]

#: Leaf names of the encoder's token-wise linears (packed layout); ``keep_fp32`` picks among them.
LINEAR_KINDS: tuple[str, ...] = ("qkv", "attn_out", "ffn_in", "ffn_out")
#: What the int8 modes keep in fp32 unless told otherwise (measured: see docs/inference.md).
DEFAULT_KEEP_FP32: dict[str, tuple[str, ...]] = {
    "onnx-int8": ("ffn_out",), "int8": (), "packed-int8": (), "openvino-int8": (),
}


def encoder_linear_names(module: nn.Module, packed: bool, skip: tuple[str, ...] = ()) -> list[str]:
    """The linear layers worth quantising: the encoder's token-wise matmuls (not pooler/head/[CLS]-only ones).

    ``skip``: kinds from :data:`LINEAR_KINDS` to leave out (``"qkv"`` also covers the last layer's ``kv``).
    """
    return [n for n in _all_encoder_linear_names(module, packed) if _linear_kind(n) not in skip]


def _linear_kind(name: str) -> str:
    leaf = name.split(".")[-1]
    if leaf in ("qkv", "kv", "query", "key", "value"):
        return "qkv"
    if leaf in ("attn_out", "ffn_in", "ffn_out"):
        return leaf
    if name.endswith("attention.output.dense"):
        return "attn_out"
    if name.endswith("intermediate.dense"):
        return "ffn_in"
    if name.endswith("output.dense"):
        return "ffn_out"
    return leaf


def _all_encoder_linear_names(module: nn.Module, packed: bool) -> list[str]:
    names = []
    if packed:
        n = len(module.layers)
        for name, sub in module.named_modules():
            if not isinstance(sub, nn.Linear) or not name.startswith("layers."):
                continue
            idx, leaf = int(name.split(".")[1]), name.split(".")[-1]
            last = idx == n - 1
            if (not last and leaf in ("qkv", "attn_out", "ffn_in", "ffn_out")) or (last and leaf == "kv"):
                names.append(name)
    else:
        for name, sub in module.named_modules():
            if isinstance(sub, nn.Linear) and ".encoder." in f".{name}." and "pooler" not in name and "classifier" not in name:
                names.append(name)
    return names


class _Bf16Linear(nn.Module):
    """A linear layer with bf16 weights that takes and returns fp32 (LayerNorm, softmax and the residual
    stream stay fp32, as under autocast, but the weights are cast once instead of at every call)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).float()


def to_bf16(module: nn.Module, packed: bool) -> nn.Module:
    """Swap the encoder's token-wise linears for :class:`_Bf16Linear` (pooler and head stay fp32)."""
    for name in encoder_linear_names(module, packed):
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, leaf, _Bf16Linear(getattr(parent, leaf)))
    return module


def quantize_torch(module: nn.Module, packed: bool, skip: tuple[str, ...] = ()) -> nn.Module:
    """Per-channel dynamic int8 of the encoder linears (engine x86 when available, else fbgemm)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "onednn"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    spec = {name: per_channel_dynamic_qconfig for name in encoder_linear_names(module, packed, skip)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        return quantize_dynamic(module, spec, dtype=torch.qint8, inplace=True)
