"""Cheaper dropout and attention for CPU training: the parts of a training step that are neither matmuls nor free.

Profiling a bf16 training step of the compact student (6 layers of e5-small, 32 pairs of ~120 tokens, 2 cores)
put 23% of the time in ``aten::bernoulli_`` (dropout masks, ~7 ns per element from torch's serial generator) and
showed PyTorch's SDPA slower than the plain attention under bf16 autocast with dropout. So the fast path:

- draws dropout masks from numpy's SFC64 generator, four 16-bit lanes per 64-bit word (P(drop) exact to 1/65536),
  about 10x cheaper than ``bernoulli_``; the masks have the same distribution as ``nn.Dropout``'s. Each mask's
  SFC64 stream is seeded by one draw from torch's generator, so a run is repeatable under ``torch.manual_seed`` and
  a resumed run (HF Trainer restores torch's RNG state from the checkpoint) draws the same masks as an
  uninterrupted one;
- runs attention as the eager product (``softmax(QK^T / sqrt(d) + mask) V``) with that dropout, registered as the
  transformers attention implementation ``"querit_cpu"``;
- computes the last encoder layer for the ``[CLS]`` row only (:func:`cls_only_last_layer`): keys and values of
  every token, but the query, attention output and feed-forward of position 0 alone, the only row the score reads.
  The same logits and gradients with ~14% fewer matmul FLOPs on the 6-layer student (measured: +13% pairs/s);
  the other layers take Q, K and V from one matmul (+4%).

:func:`patch_for_training` applies both to a transformers model and returns the undo function (the saved model is
unchanged either way: dropout has no weights, the attention choice is not written to ``config.json``, and the
``[CLS]``-only layer is an instance ``forward``, not a new module).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

ATTENTION_NAME = "querit_cpu"


def mask_lanes(n: int) -> Tensor:
    """``n`` uniform int16 values: SFC64 seeded by one draw from torch's (checkpointed) generator."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    words = np.random.Generator(np.random.SFC64(seed)).bit_generator.random_raw(-(-n // 4))
    return torch.from_numpy(words.view(np.int16)[:n])


def _keep_threshold(p: float) -> int:
    """int16 lanes at or above this value are kept: P(keep) = 1 - p (to 1/65536)."""
    return int(round(p * 65536)) - 32768


def random_keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> Tensor:
    """A boolean mask, True with probability ``1 - p`` per element (to 1/65536)."""
    keep = mask_lanes(int(np.prod(shape, dtype=np.int64))) >= _keep_threshold(p)
    return keep.view(shape).to(device)


def random_scale_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype,
                      device: torch.device | str = "cpu") -> Tensor:
    """Dropout's multiplier in ``dtype``: ``1 / (1 - p)`` with probability ``1 - p``, else 0, made in one pass over
    the random lanes (no boolean mask converted and scaled afterwards)."""
    lanes = mask_lanes(int(np.prod(shape, dtype=np.int64))).view(shape).to(device)
    keep_value = torch.tensor(1.0 / (1.0 - p), dtype=dtype, device=device)
    return torch.where(lanes >= _keep_threshold(p), keep_value, torch.zeros((), dtype=dtype, device=device))


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``nn.functional.dropout`` with masks from :func:`random_keep_mask`."""
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return x * random_scale_mask(x.shape, p, x.dtype, x.device)  # 0 or 1/(1-p)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks with :func:`random_keep_mask`."""

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p, self.training)


def eager_attention_fast_dropout(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """transformers' eager attention (the same computation) with :func:`fast_dropout` on the probabilities."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if key.shape[1] != query.shape[1]:  # grouped-query attention (decoder students): each K/V head serves a group
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    weights = torch.matmul(query * scaling, key.transpose(2, 3))  # scaled on [B, H, L, D], not on [B, H, L, L]
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        if mask.is_floating_point() and mask.dtype != weights.dtype:  # an fp32 mask would make [B, H, L, L] fp32
            mask = mask.to(weights.dtype)
        weights = weights + mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = fast_dropout(weights, dropout, module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def register_attention() -> None:
    """Register the attention function and its mask format (transformers' additive eager mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, eager_attention_fast_dropout)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def patch_for_training(model: nn.Module, *, attention: bool = True, cls_only: bool = True) -> Callable[[], None]:
    """Swap every ``nn.Dropout`` of ``model`` (a transformers model) for :class:`FastDropout`; where the model
    dispatches attention through transformers' ``AttentionInterface`` and the current one is ``eager``/``sdpa``,
    use :func:`eager_attention_fast_dropout`; with ``cls_only``, :func:`cls_only_last_layer` and one fused Q/K/V
    matmul in the other layers. Returns the function that undoes all of it."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                fast = FastDropout(child.p, child.inplace)
                fast.train(child.training)
                setattr(module, child_name, fast)
                swapped.append((module, child_name, child))
    undo_cls = cls_only_last_layer(model) if cls_only else None
    fused = []
    for layer in (cls_only_layers(model) or [])[:-1] if cls_only else []:
        sa = layer.attention.self
        if all(type(m) is nn.Linear for m in (sa.query, sa.key, sa.value)):  # not under LoRA adapters
            sa.forward = _fused_qkv_forward.__get__(sa)  # one Q/K/V matmul (measured +4% pairs/s)
            fused.append(sa)
    config = getattr(model, "config", None)
    old_attention = getattr(config, "_attn_implementation", None)
    patched_attention = attention and old_attention in ("eager", "sdpa")
    if patched_attention:
        register_attention()
        config._attn_implementation = ATTENTION_NAME

    def undo() -> None:
        if undo_cls is not None:
            undo_cls()
        for sa in fused:
            del sa.forward
        for module, child_name, child in swapped:
            setattr(module, child_name, child)
        if patched_attention:
            config._attn_implementation = old_attention

    logger.debug("fast ops: %d dropout modules swapped, attention %s", len(swapped),
                 ATTENTION_NAME if patched_attention else f"left as {old_attention}")
    return undo


def _fused_qkv_forward(self: nn.Module, hidden_states: Tensor, attention_mask: Tensor | None = None,
                       *args: Any, **kwargs: Any) -> tuple[Tensor, None]:
    """A BERT self-attention forward with Q, K and V from one matmul (the three weights concatenated per call)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    b, length = hidden_states.shape[:2]
    weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
    bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
    qkv = nn.functional.linear(hidden_states, weight, bias).view(b, length, 3, self.num_attention_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    impl = self.config._attn_implementation
    attend = eager_attention if impl == "eager" else ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager_attention)
    ctx, _ = attend(self, q, k, v, attention_mask, dropout=self.dropout.p if self.training else 0.0,
                    scaling=self.scaling)
    return ctx.reshape(b, length, -1), None


def _cls_only_layer_forward(self: nn.Module, hidden_states: Tensor, attention_mask: Tensor | None = None,
                            *args: Any, **kwargs: Any) -> Tensor:
    """A BERT layer's forward for the ``[CLS]`` row only: keys and values from every token, the query, attention
    output and feed-forward for position 0 alone (the classifier reads nothing else). Returns ``[batch, 1, hidden]``."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sa = self.attention.self
    b = hidden_states.shape[0]
    cls = hidden_states[:, :1]
    shape = (b, -1, sa.num_attention_heads, sa.attention_head_size)
    q = sa.query(cls).view(shape).transpose(1, 2)
    k = sa.key(hidden_states).view(shape).transpose(1, 2)
    v = sa.value(hidden_states).view(shape).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :1, :]
    impl = sa.config._attn_implementation
    attend = eager_attention if impl == "eager" else ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager_attention)
    ctx, _ = attend(sa, q, k, v, attention_mask, dropout=sa.dropout.p if sa.training else 0.0, scaling=sa.scaling)
    h = self.attention.output(ctx.reshape(b, 1, -1), cls)
    return self.feed_forward_chunk(h)


def eager_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                    scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """transformers' eager attention (``nn.functional.dropout`` on the probabilities)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.dropout(nn.functional.softmax(weights, dim=-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def cls_only_layers(model: nn.Module) -> list[nn.Module] | None:
    """The encoder layers of a BERT-style sequence classifier whose score reads position 0 only (BERT's pooler,
    RoBERTa / XLM-R's classification head), or None for any other model."""
    cls_name = type(model).__name__
    if not cls_name.endswith("ForSequenceClassification") or getattr(model.config, "is_decoder", False):
        return None
    base = getattr(model, "bert", None) or getattr(model, "roberta", None)
    if base is None:
        return None
    if cls_name.startswith("Bert") and getattr(base, "pooler", None) is None:
        return None
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not layers:
        return None
    try:
        last = layers[-1]
        last.attention.self.query, last.attention.output, last.feed_forward_chunk
    except AttributeError:
        return None
    return list(layers)


def cls_only_last_layer(model: nn.Module) -> Callable[[], None] | None:
    """Make the last encoder layer of ``model`` compute only what the score reads (see
    :func:`_cls_only_layer_forward`): the same logits and gradients, ~14% fewer matmul FLOPs on a 6-layer model.
    Returns the undo function, or None (nothing changed) for a model where it does not apply."""
    layers = cls_only_layers(model)
    if layers is None:
        return None
    last = layers[-1]
    last.forward = _cls_only_layer_forward.__get__(last)

    def undo() -> None:
        if "forward" in last.__dict__:
            del last.forward

    return undo
