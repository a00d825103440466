"""Faster CPU inference for cross-encoder rerankers: :func:`optimize_for_inference`.

``optimize_for_inference(model, mode)`` swaps the Hugging Face model inside a sentence-transformers
``CrossEncoder`` (or :class:`~querit_st.cross_encoder.QueritCrossEncoder`) for a faster implementation of the
same function. Everything else is unchanged: tokenisation, prompts, ``predict`` / ``rank`` / ``rerank``,
length-sorted batching and the activation function all stay sentence-transformers'.

Modes (speed measured by ``benchmarks/speed.py``; see the table at the end of this docstring):

``"fp32"``
    The baseline: the model as loaded, in eval mode.
``"bf16"``
    The encoder's linear layers hold bfloat16 weights and compute in bf16; LayerNorm, softmax, the residual
    stream, the pooler and the head stay fp32 (autocast's numerics without casting the weights at every call;
    on BERT-style models this runs on the packed forward below). Only worth it on CPUs with native bf16
    (AVX-512 BF16 / AMX); elsewhere bf16 matmuls are emulated and several times *slower* than fp32, and a
    warning says so.
``"int8"``
    PyTorch dynamic quantisation (``torch.ao.quantization.quantize_dynamic``, per-channel int8 weights, one
    activation scale per batch, 7-bit activations without VNNI) of the encoder's ``nn.Linear`` layers, engine
    ``"x86"`` (``"fbgemm"`` measured the same). The pooler and the scoring head stay fp32. Less exact than ONNX
    Runtime's int8 (Spearman ~0.93-0.94 against fp32 on the untrained MiniLM head).
``"packed"``
    Exact fp32 rewrite of the BERT forward for scoring: padding tokens are dropped before every linear layer
    (only the attention itself sees the padded ``[batch, length]`` layout), Q/K/V are one fused matmul, and
    the last layer computes attention output and feed-forward for the ``[CLS]`` token only (the score reads
    nothing else), which removes ~14% of the matmul work of a 6-layer model.
``"packed-int8"``
    ``"packed"`` with the encoder's linear layers dynamically quantised as in ``"int8"``.
``"onnx"``
    The packed forward exported to ONNX and run by ONNX Runtime (fp32, graph optimisations on).
``"onnx-int8"``
    The same graph with ONNX Runtime dynamic int8 quantisation of the matmuls (per-channel weights; ``U8U8``
    on CPUs without VNNI, where it cannot saturate, ``U8S8`` with VNNI). The pooler, the scoring head and the
    ``[CLS]``-only matmuls of the last layer stay fp32 (they cost nothing and are the closest to the score), and
    so do the feed-forward output matmuls by default (``keep_fp32``): quantising them too (``keep_fp32=()``) was
    5-15% faster but dropped the rank agreement with fp32 below 0.99 on the untrained MiniLM head.
``"openvino-int8"``
    The packed forward exported to ONNX and read by OpenVINO with NNCF int8: given ``calibration`` pairs, static
    int8 of the encoder matmuls (activation scales fixed from them; the fastest); without, int8 weights with
    OpenVINO's run-time activation quantisation. Non-int8 work runs in OpenVINO's default precision (bf16 on CPUs
    with AVX-512 BF16 / AMX). Needs ``pip install querit-st[openvino]``.
``"compact"``
    The documented default, chosen for this CPU. With an int8 dot product (AVX-512 VNNI, AVX-VNNI or AMX):
    ``"openvino-int8"`` when ``openvino`` and ``nncf`` are installed, else ``"onnx-int8"`` when ``onnxruntime``
    and ``onnx`` are, else ``"packed"``; pass ``calibration`` (a few hundred pairs from the target collection)
    for the static-int8 speed below. Without one (plain AVX2) int8 matmuls peak at only ~1.7x fp32 and the
    int8 graphs measured slower than the exact fp32 ones or lost quality, so ``"compact"`` is the exact
    ``"openvino"`` (else ``"onnx"``, else ``"packed"``) and ignores ``calibration``.

Architectures: the packed/ONNX modes support BERT-style sequence classification models
(``BertForSequenceClassification`` with absolute positions: MiniLM, e5, BGE, the ``minilm-l6`` and
``multilingual-e5-small`` backbones of this package). Other architectures fall back to the closest generic
mode (``"int8"`` for the int8 modes, ``"fp32"`` otherwise) with a warning; ``strict=True`` raises instead.

The optimised model is for inference: it cannot be trained or saved as a sentence-transformers folder (save the
original; optimise after loading). ``inplace=True`` (the default) changes ``model`` and returns it; with
``inplace=False`` a deep copy is optimised and ``model`` is left as it was.

Measured (``benchmarks/speed.py``, ``benchmarks/results/speed_rerank_20x100.json``): the trained demo reranker
(``runs/demo/merged``: multilingual-e5-small, 6 layers), 20 vaswani queries x top-100 from MiniLM (2,000 pairs,
~93 tokens), batch 32, 5 interleaved rounds on 640 pairs, ratios the median of per-round ratios; AMD EPYC, 2 cores,
AVX-512 with VNNI and BF16; sentence-transformers 6.3 (fp32, bf16) and 5.7 under transformers 4.57 (its ONNX /
OpenVINO backends, which need optimum)::

    config                              pairs/s  x ST fp32  nDCG@10 (d pts)  Spearman vs fp32
    ST CrossEncoder fp32                   61.9     1.00     0.3536            1.000
    ST bf16 autocast                      133.9     2.03     0.3538 (+0.02)    1.000
    ST backend="onnx"                     126.0     1.94     0.3536            1.000
    ST backend="onnx", int8 (avx512_vnni) 231.3     3.58     0.3293 (-2.43)    0.994
    ST backend="openvino"                 236.6     3.64     0.3518 (-0.18)    1.000
    HF graph in OpenVINO (ST's, our run)  240.8     3.78     0.3518 (-0.18)    1.000
    bf16                                  157.5     2.41     0.3572 (+0.36)    1.000
    onnx-int8                             226.0     3.62     0.3509 (-0.27)    0.997
    openvino                              297.0     4.51     0.3511 (-0.25)    1.000
    compact (openvino-int8, static)       333.1     5.38     0.3522 (-0.14)    0.998

``compact`` is 5.4x sentence-transformers fp32 and 1.4x its fastest backend here (OpenVINO) at -0.14 nDCG@10.

The same benchmark on 2 cores of an AVX2-only AMD EPYC (no VNNI, no native bf16; matmul peaks fp32 176-187
GFLOP/s, int8 298-321 GOP/s, i.e. 1.7x; bf16 emulated), ``benchmarks/results/speed_rerank_avx2.json`` (the 3-seed
merged vaswani reranker, 3 rounds; ~10% run-to-run noise)::

    config                              pairs/s  x ST fp32  nDCG@10 (d pts)  Spearman vs fp32
    ST CrossEncoder fp32                   62.6     1.00     0.3475            1.000
    ST backend="openvino"                  69.4     1.07     0.3475            1.000
    ST backend="onnx", int8 (avx2)         82.4     1.32     0.3355 (-1.20)    0.990
    openvino (= compact here)         80.0-86.9  1.22-1.35   0.3475            1.000
    onnx-int8                              92.7     1.50     0.3595 (+1.19)    0.997
    onnx-int8, keep ffn_out + attn_out     93.5     1.49     0.3509 (+0.33)    0.997

``onnx-int8`` moved nDCG@10 by more than 0.5 point on both trained models measured there (-1.43 on the 8-target
merged demo model, +1.19 here), so ``compact`` is the exact ``openvino`` graph on such CPUs.

Example:
    ::

        from sentence_transformers import CrossEncoder
        from querit_st.inference import optimize_for_inference

        model = optimize_for_inference(CrossEncoder("path/to/reranker"), "compact")
        scores = model.predict([("query", "document"), ...], batch_size=64)
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from querit_st._utils import QueritInputError

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "OnnxScorer",
    "OpenVinoScorer",
    "PackedBertScorer",
    "cpu_features",
    "inference_mode_of",
    "load_openvino",
    "optimize_for_inference",
    "resolve_mode",
    "supports_packing",
]

#: Every mode :func:`optimize_for_inference` accepts.
MODES: tuple[str, ...] = (
    "fp32", "bf16", "int8", "packed", "packed-int8", "onnx", "onnx-int8", "openvino", "openvino-int8", "compact",
)


# ------------------------------------------------------------------------------------------------ hardware


def cpu_features() -> dict[str, Any]:
    """What the CPU offers for low-precision matmuls (as PyTorch sees it)."""

    def _probe(name: str) -> bool:
        fn = getattr(torch.cpu, name, None)
        try:
            return bool(fn()) if fn is not None else False
        except Exception:  # pragma: no cover - very old torch
            return False

    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512": _probe("_is_avx512_supported"),
        "avx512_vnni": _probe("_is_vnni_supported"),
        "avx512_bf16": _probe("_is_avx512_bf16_supported"),
        "amx": _probe("_is_amx_tile_supported"),
        "avx_vnni": _linux_cpu_flag("avx_vnni"),
        "threads": torch.get_num_threads(),
        "quantized_engines": list(torch.backends.quantized.supported_engines),
    }


def _linux_cpu_flag(flag: str) -> bool:
    """Whether ``/proc/cpuinfo`` lists ``flag`` (False where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return flag in line.split()
    except OSError:
        pass
    return False


def _has_native_int8() -> bool:
    """An int8 dot-product instruction (AVX-512 VNNI, AVX-VNNI or AMX): without one, int8 matmuls run on
    ``vpmaddubsw`` at about 1.7x the fp32 peak (measured: 321 GOP/s int8 vs 187 GFLOP/s fp32 on 2 AVX2 cores)."""
    f = cpu_features()
    return bool(f["avx512_vnni"] or f["avx_vnni"] or f["amx"])


def _has_native_bf16() -> bool:
    f = cpu_features()
    return bool(f["avx512_bf16"] or f["amx"])


def _onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def resolve_mode(mode: str) -> str:
    """The concrete mode ``mode`` stands for here (``"compact"`` depends on what is installed)."""
    if not isinstance(mode, str) or mode not in MODES:
        raise QueritInputError(f"unknown inference mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "compact":
        int8 = _has_native_int8()  # without an int8 dot product, int8 loses to the exact fp32 graphs (measured)
        if _openvino_available() and (_nncf_available() or not int8):
            return "openvino-int8" if int8 else "openvino"
        if _onnx_available():
            return "onnx-int8" if int8 else "onnx"
        return "packed"
    return mode


# ------------------------------------------------------------------------------------------------ helpers


def _transformer_module(model: Any) -> Any:
    """The sentence-transformers ``Transformer`` module that holds the Hugging Face model."""
    from sentence_transformers.base.modules import Transformer

    try:
        first = model[0]
    except Exception as exc:
        raise QueritInputError(f"expected a sentence-transformers CrossEncoder, got {type(model).__name__}") from exc
    if not isinstance(first, Transformer):
        raise QueritInputError(f"the CrossEncoder's first module is {type(first).__name__}, not a Transformer")
    if getattr(first, "backend", "torch") != "torch":
        raise QueritInputError(f"optimize_for_inference needs the torch backend, got backend={first.backend!r}")
    if getattr(first, "transformer_task", "sequence-classification") != "sequence-classification":
        raise QueritInputError(
            f"optimize_for_inference needs a sequence-classification CrossEncoder, got {first.transformer_task!r}"
        )
    return first


def supports_packing(hf_model: nn.Module) -> bool:
    """Whether :class:`PackedBertScorer` can stand in for ``hf_model`` (BERT-style classifier, absolute positions)."""
    cfg = getattr(hf_model, "config", None)
    bert = getattr(hf_model, "bert", None)
    if cfg is None or bert is None or not isinstance(getattr(hf_model, "classifier", None), nn.Linear):
        return False
    if getattr(cfg, "position_embedding_type", "absolute") not in (None, "absolute"):
        return False
    if getattr(cfg, "is_decoder", False) or getattr(bert, "pooler", None) is None:
        return False
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    if not layers:
        return False
    try:
        layer = layers[0]
        needed = (
            layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
            layer.attention.output.dense, layer.attention.output.LayerNorm,
            layer.intermediate.dense, layer.output.dense, layer.output.LayerNorm,
        )
    except AttributeError:
        return False
    return all(isinstance(m, (nn.Linear, nn.LayerNorm)) for m in needed)


def inference_mode_of(model: Any) -> str | None:
    """The mode a model was optimised with (``None`` when it was not)."""
    return getattr(model, "_querit_inference_mode", None)


# ------------------------------------------------------------------------------------------------ packed BERT


class _PackedLayer(nn.Module):
    def __init__(self, layer: nn.Module, last: bool) -> None:
        super().__init__()
        sa = layer.attention.self
        q, k, v = sa.query, sa.key, sa.value
        # One matmul for Q, K and V; the last layer ([CLS]-only queries) needs K/V for all tokens, Q for [CLS].
        parts = (k, v) if last else (q, k, v)
        fused = nn.Linear(q.in_features, sum(m.out_features for m in parts))
        with torch.no_grad():
            fused.weight.copy_(torch.cat([m.weight for m in parts], 0))
            fused.bias.copy_(torch.cat([m.bias for m in parts], 0))
        if last:
            self.kv, self.q_cls = fused, q
        else:
            self.qkv = fused
        self.num_heads = sa.num_attention_heads
        self.head_size = sa.attention_head_size
        self.scaling = float(getattr(sa, "scaling", self.head_size**-0.5))
        self.attn_out = layer.attention.output.dense
        self.ln_attn = layer.attention.output.LayerNorm
        self.ffn_in = layer.intermediate.dense
        self.act = layer.intermediate.intermediate_act_fn
        self.ffn_out = layer.output.dense
        self.ln_out = layer.output.LayerNorm


class PackedBertScorer(nn.Module):
    """Padding-free, score-only forward of a BERT sequence classifier (drop-in for ``transformer.model``).

    Takes the padded ``input_ids`` / ``attention_mask`` / ``token_type_ids`` that sentence-transformers builds,
    drops the padding before every linear layer (the matmuls see ``[real tokens, hidden]``), re-pads only for the
    attention product, and in the last layer runs attention output and feed-forward for the ``[CLS]`` token only.
    Returns ``{"logits": [batch, num_labels]}``; the result equals the Hugging Face forward up to float rounding.
    """

    def __init__(self, hf_model: nn.Module, *, pack: bool = True) -> None:
        super().__init__()
        if not supports_packing(hf_model):
            raise QueritInputError(f"{type(hf_model).__name__} is not a BERT-style sequence classifier")
        self.config = hf_model.config
        bert = hf_model.bert
        emb = bert.embeddings
        self.word_embeddings = emb.word_embeddings
        self.position_embeddings = emb.position_embeddings
        self.token_type_embeddings = emb.token_type_embeddings
        self.ln_emb = emb.LayerNorm
        n = len(bert.encoder.layer)
        self.layers = nn.ModuleList(_PackedLayer(layer, i == n - 1) for i, layer in enumerate(bert.encoder.layer))
        self.pooler = bert.pooler.dense
        self.pooler_act = bert.pooler.activation
        self.classifier = hf_model.classifier
        self.exporting = False
        #: drop padding before the linear layers (True) or keep the padded ``[batch * length]`` rows (False: no
        #: gather / scatter per layer, a simpler graph for compilers; the last layer is [CLS]-only either way)
        self.pack = pack
        self.eval()

    def _linear(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.exporting:  # MatMul + Add in ONNX (ORT's dynamic int8 quantises MatMul, not Gemm)
            return torch.matmul(x, module.weight.t()) + module.bias
        return module(x)

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
        if bias.dtype != q.dtype:
            bias = bias.to(q.dtype)
        if self.exporting:  # plain ops: SDPA exports with NaN guards that cost time in ORT
            return torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale + bias, dim=-1) @ v
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

    # sentence-transformers reads ``model.config`` and calls ``model(**features)``; nothing else is needed.
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        return {"logits": self.score(input_ids, attention_mask, token_type_ids, position_ids)}

    def score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, length = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:  # 0 at each sequence's first real token: arange for right padding (as HF), and
            # also right for left padding (where HF's BERT would shift positions and pool a pad token)
            position_ids = (torch.cumsum((attention_mask > 0).long(), 1) - 1).clamp(min=0)
        real = attention_mask > 0
        # additive key mask [B, 1, 1, L]: 0 for real tokens, a large negative number for padding
        bias = ((~real).to(self.ln_emb.weight.dtype) * -1e9).reshape(b, 1, 1, length)
        if self.pack:
            flat = real.reshape(-1)
            keep = torch.nonzero(flat).squeeze(1)  # [T] flat indices of real tokens (row-major)
            # for re-padding by one gather: each padded position reads a real row (its own, or for a padding position
            # the previous real token: any finite value works, padding keys are masked and padding queries dropped)
            spread = (torch.cumsum(flat.long(), 0) - 1).clamp(min=0)
            lengths = real.sum(1)
            starts = torch.cumsum(lengths, 0) - lengths  # packed row of each sequence's first real token ([CLS])
            ids, types, pos = (t.reshape(-1)[keep] for t in (input_ids, token_type_ids, position_ids))
        else:  # every row of the padded batch; [CLS] is each sequence's first real token
            keep = None
            starts = torch.arange(b, device=input_ids.device) * length + torch.argmax(real.to(torch.int32), 1)
            ids, types, pos = input_ids.reshape(-1), token_type_ids.reshape(-1), position_ids.reshape(-1)

        x = self.word_embeddings(ids) + self.token_type_embeddings(types) + self.position_embeddings(pos)
        x = self.ln_emb(x)
        n_layers = len(self.layers)
        lin = self._linear

        def unpack(t: torch.Tensor) -> torch.Tensor:  # [T, C] -> [B * L, C]
            return t if keep is None else t[spread]

        for i, layer in enumerate(self.layers):
            nh, hs = layer.num_heads, layer.head_size
            width = nh * hs
            if i < n_layers - 1:
                qkv = unpack(lin(layer.qkv, x))
                q, k, v = qkv.view(b, length, 3, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
                ctx = self._attention(q, k, v, bias, layer.scaling)
                ctx = ctx.transpose(1, 2).reshape(b * length, width)
                if keep is not None:
                    ctx = ctx[keep]
                h = layer.ln_attn(lin(layer.attn_out, ctx) + x)
                x = layer.ln_out(lin(layer.ffn_out, layer.act(lin(layer.ffn_in, h))) + h)
            else:
                kv = unpack(lin(layer.kv, x))
                k, v = kv.view(b, length, 2, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
                x_cls = x[starts]  # [B, H]
                q = lin(layer.q_cls, x_cls).view(b, nh, 1, hs)
                ctx = self._attention(q, k, v, bias, layer.scaling).reshape(b, width)
                h = layer.ln_attn(lin(layer.attn_out, ctx) + x_cls)
                x = layer.ln_out(lin(layer.ffn_out, layer.act(lin(layer.ffn_in, h))) + h)
        pooled = self.pooler_act(self.pooler(x))
        return self.classifier(pooled)


#: Leaf names of the encoder's token-wise linears (packed layout); ``keep_fp32`` picks among them.
LINEAR_KINDS: tuple[str, ...] = ("qkv", "attn_out", "ffn_in", "ffn_out")
#: What the int8 modes keep in fp32 unless told otherwise (measured: see the module docstring).
DEFAULT_KEEP_FP32: dict[str, tuple[str, ...]] = {
    "onnx-int8": ("ffn_out",), "int8": (), "packed-int8": (), "openvino-int8": (),
}


def _encoder_linear_names(module: nn.Module, packed: bool, skip: tuple[str, ...] = ()) -> list[str]:
    """The linear layers worth quantising: the encoder's token-wise matmuls (not pooler/head/[CLS]-only ones).

    ``skip``: kinds from :data:`LINEAR_KINDS` to leave out (``"qkv"`` also covers the last layer's ``kv``).
    """
    names = [n for n in _all_encoder_linear_names(module, packed) if _linear_kind(n) not in skip]
    return names


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


def _to_bf16(module: nn.Module, packed: bool) -> nn.Module:
    """Swap the encoder's token-wise linears for :class:`_Bf16Linear` (pooler and head stay fp32)."""
    for name in _encoder_linear_names(module, packed):
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, leaf, _Bf16Linear(getattr(parent, leaf)))
    return module


def _quantize_torch(module: nn.Module, packed: bool, skip: tuple[str, ...] = ()) -> nn.Module:
    """Per-channel dynamic int8 of the encoder linears (engine x86 when available, else fbgemm)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "onednn"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    spec = {name: per_channel_dynamic_qconfig for name in _encoder_linear_names(module, packed, skip)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        return quantize_dynamic(module, spec, dtype=torch.qint8, inplace=True)


# ------------------------------------------------------------------------------------------------ ONNX Runtime


def _numpy_feed(
    names: list[str], input_ids: torch.Tensor, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None
) -> dict[str, Any]:
    """The int64 numpy inputs an exported graph asks for (``names``); a missing mask is all ones, types all zeros."""
    feed = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
        "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
    }
    return {k: feed[k].detach().cpu().to(torch.int64).numpy() for k in names}


class OnnxScorer(nn.Module):
    """An ONNX Runtime session behind the ``transformer.model`` interface (``model(**features) -> {"logits"}``)."""

    def __init__(self, model_bytes: bytes, config: Any, *, threads: int | None = None, label: str = "onnx") -> None:
        super().__init__()
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = config
        self.label = label
        self.model_size_bytes = len(model_bytes)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        out = self.session.run(None, _numpy_feed(self.input_names, input_ids, attention_mask, token_type_ids))[0]
        return {"logits": torch.from_numpy(out)}

    def __deepcopy__(self, memo: dict) -> OnnxScorer:  # sessions cannot be pickled; share them
        return self


class _ScoreOnly(nn.Module):
    def __init__(self, scorer: PackedBertScorer) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.scorer.score(input_ids, attention_mask, token_type_ids)


def _export_onnx(packed: PackedBertScorer, path: Path) -> None:
    """Export the packed forward to ONNX (dynamic batch and length)."""
    wrapper = _ScoreOnly(packed).eval()
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3, 0], [2, 5, 3, 7, 3, 0, 0, 0]], dtype=torch.long)
    # real ids must be inside the vocabulary; 0..8 always are
    mask = (torch.arange(ids.shape[1]) < torch.tensor([[7], [5]])).long()
    types = torch.zeros_like(ids)
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            "token_type_ids": {0: "batch", 1: "length"}, "logits": {0: "batch"}}
    packed.exporting = True
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (ids, mask, types), str(path),
                input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )
    finally:
        packed.exporting = False


def _onnx_int8(
    src: Path,
    dst: Path,
    packed: PackedBertScorer,
    *,
    weight_type: str = "uint8",
    per_channel: bool = True,
    skip: tuple[str, ...] = (),
    reduce_range: bool = False,
) -> None:
    """ORT dynamic int8 (per-channel U8U8) of the encoder matmuls; head and [CLS]-only matmuls stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from onnx import numpy_helper

    model = onnx.load(str(src))
    modules = dict(packed.named_modules())
    names = _encoder_linear_names(packed, packed=True, skip=skip)
    wanted = {modules[n].weight.detach().t().contiguous().numpy().tobytes() for n in names}
    inits = {i.name: i for i in model.graph.initializer}
    include, exclude = [], []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        weights = [numpy_helper.to_array(inits[i]) for i in node.input if i in inits]
        if node.op_type == "MatMul" and weights and weights[0].astype("float32").tobytes() in wanted:
            include.append(node.name)
        else:
            exclude.append(node.name)
    if not include:
        raise RuntimeError("found no encoder MatMul to quantise in the exported graph")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = logging.getLogger()
        was = root.disabled
        root.disabled = True  # the quantiser logs a "consider pre-processing" warning per call
        try:
            quantize_dynamic(
                str(src), str(dst), weight_type=QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8,
                per_channel=per_channel, reduce_range=reduce_range,
                nodes_to_quantize=include, nodes_to_exclude=exclude,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.disabled = was


def _onnx_scorer(packed: PackedBertScorer, int8: bool, threads: int | None, skip: tuple[str, ...] = ()) -> OnnxScorer:
    with tempfile.TemporaryDirectory(prefix="querit_onnx_") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        _export_onnx(packed, fp32)
        final = fp32
        if int8:
            final = Path(tmp) / "model_int8.onnx"
            # u8s8 is the fast path with VNNI; without it (AVX2) u8u8 avoids vpmaddubsw saturation
            _onnx_int8(fp32, final, packed, weight_type="int8" if _has_native_int8() else "uint8", skip=skip)
        data = final.read_bytes()
    return OnnxScorer(data, packed.config, threads=threads, label="onnx-int8" if int8 else "onnx")


# ------------------------------------------------------------------------------------------------ OpenVINO


def _openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None and _onnx_available()


def _nncf_available() -> bool:
    return importlib.util.find_spec("nncf") is not None


#: OpenVINO's dynamic activation quantisation group (values along the reduction axis that share one scale) for
#: ``"openvino-int8"`` without calibration data: 64 kept Spearman >= 0.995 against fp32 on the untrained MiniLM
#: head; larger groups are a few % faster and less exact (128: ~0.992, a whole row: ~0.976).
DEFAULT_OV_DQ_GROUP = 64


class OpenVinoScorer(nn.Module):
    """An OpenVINO compiled model behind the ``transformer.model`` interface (``model(**features) -> {"logits"}``).

    ``precision``: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``None``: the device default, which is bf16 on CPUs
    with AVX-512 BF16 / AMX and f32 elsewhere). ``dynamic_group``: ``DYNAMIC_QUANTIZATION_GROUP_SIZE`` (runtime int8
    activations for int8-compressed weights; ``None`` leaves OpenVINO's default).
    """

    def __init__(
        self,
        ov_model: Any,
        config: Any,
        *,
        threads: int | None = None,
        precision: str | None = None,
        dynamic_group: int | None = None,
        label: str = "openvino",
    ) -> None:
        super().__init__()
        import openvino as ov

        props: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        if precision:
            props["INFERENCE_PRECISION_HINT"] = precision
        if dynamic_group is not None:
            props["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = int(dynamic_group)
        self.ov_model = ov_model
        self.dynamic_group = dynamic_group
        self.compiled = ov.Core().compile_model(ov_model, "CPU", props)
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.config = config
        self.label = label
        try:
            self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # pragma: no cover - older OpenVINO
            self.precision = precision or "?"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        res = self.request.infer(_numpy_feed(self.input_names, input_ids, attention_mask, token_type_ids))
        out = res[self.compiled.outputs[0]]
        return {"logits": torch.from_numpy(out.copy())}

    def save(self, path: str | Path) -> Path:
        """Write the (possibly quantised) OpenVINO IR (``.xml`` + ``.bin``); reload with :meth:`load`: the export
        step for deployment (no re-export or re-calibration at start-up)."""
        import openvino as ov

        path = Path(path).with_suffix(".xml")
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(self.ov_model, str(path), compress_to_fp16=False)
        meta = {"label": self.label, "dynamic_group": self.dynamic_group}
        path.with_suffix(".json").write_text(json.dumps(meta))
        return path

    @classmethod
    def load(cls, path: str | Path, config: Any, *, threads: int | None = None, precision: str | None = None) -> OpenVinoScorer:
        """An :class:`OpenVinoScorer` from an IR written by :meth:`save` (``config``: the Hugging Face config)."""
        import openvino as ov

        path = Path(path).with_suffix(".xml")
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return cls(ov.Core().read_model(str(path)), config, threads=threads, precision=precision,
                   dynamic_group=meta.get("dynamic_group"), label=meta.get("label", "openvino"))

    def __deepcopy__(self, memo: dict) -> OpenVinoScorer:  # compiled models cannot be copied; share them
        return self


def load_openvino(model: Any, path: str | Path, *, threads: int | None = None, precision: str | None = None) -> Any:
    """Put an OpenVINO IR saved by :meth:`OpenVinoScorer.save` into ``model`` (the ``CrossEncoder`` it was made
    from, loaded as usual): the deployment path that skips export and calibration at start-up."""
    transformer = _transformer_module(model)
    if inference_mode_of(model) is not None:
        raise QueritInputError(f"model is already optimised (mode {inference_mode_of(model)!r})")
    scorer = OpenVinoScorer.load(path, transformer.model.config, threads=threads, precision=precision)
    model.eval()
    transformer.model = scorer
    model._querit_inference_mode = "openvino-int8" if "int8" in scorer.label else "openvino"
    return model


class _FeatureRecorder(nn.Module):
    """Stands in for ``transformer.model`` during a ``predict`` call and keeps the features it is given
    (sentence-transformers' own tokenisation, prompts and length-sorted batches: what the deployed model sees)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.batches: list[dict[str, Any]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        self.batches.append({"input_ids": input_ids.to(torch.int64).numpy().copy(),
                             "attention_mask": attention_mask.to(torch.int64).numpy().copy(),
                             "token_type_ids": token_type_ids.to(torch.int64).numpy().copy()})
        n = int(getattr(self.config, "num_labels", 1) or 1)
        return {"logits": torch.zeros(input_ids.shape[0], n)}


def _calibration_batches(model: Any, transformer: Any, pairs: Any, batch_size: int = 32) -> list[dict[str, Any]]:
    pairs = [tuple(p) for p in pairs]
    if not pairs or any(len(p) != 2 or not all(isinstance(t, str) for t in p) for p in pairs):
        raise QueritInputError("calibration must be a non-empty list of (query, document) string pairs")
    real = transformer.model
    recorder = _FeatureRecorder(real.config)
    transformer.model = recorder
    try:
        model.predict(pairs, batch_size=batch_size, show_progress_bar=False, activation_fn=nn.Identity())
    finally:
        transformer.model = real
    return recorder.batches


def _ov_matmuls(ov_model: Any, packed: PackedBertScorer, names: list[str]) -> list[str]:
    """Friendly names of the OpenVINO MatMuls whose constant weight is one of ``packed``'s linears ``names``."""
    import numpy as np

    modules = dict(packed.named_modules())
    wanted = {modules[n].weight.detach().t().contiguous().numpy().tobytes() for n in names}
    found = []
    for op in ov_model.get_ops():
        if op.get_type_name() != "MatMul":
            continue
        for i in range(op.get_input_size()):
            src = op.input_value(i).get_node()
            if src.get_type_name() == "Constant":
                data = np.asarray(src.get_data(), dtype=np.float32)
                if data.tobytes() in wanted or np.ascontiguousarray(data.T).tobytes() in wanted:
                    found.append(op.get_friendly_name())
                break
    return found


def _overflow_fix(features: dict[str, Any]) -> Any:
    """NNCF's ``overflow_fix`` for static int8 on this CPU: without VNNI the u8 x s8 dot product (``vpmaddubsw``)
    saturates its int16 sums, so every weight is quantised to 7 bits (``ENABLE``); with VNNI, NNCF's default
    (first layer only). Measured on the tiny test model (AVX2, no VNNI): Spearman vs fp32 0.9866 with the
    default, 0.9992 with ``ENABLE``. An IR quantised on a VNNI CPU keeps full-range weights: re-export it for AVX2."""
    from nncf.quantization.advanced_parameters import OverflowFix

    return OverflowFix.FIRST_LAYER if features["avx512_vnni"] or features["avx_vnni"] or features["amx"] else OverflowFix.ENABLE


def _openvino_scorer(
    packed: PackedBertScorer,
    int8: bool,
    threads: int | None,
    skip: tuple[str, ...] = (),
    calibration: list[dict[str, Any]] | None = None,
    dynamic_group: int | None = None,
    precision: str | None = None,
) -> OpenVinoScorer:
    """The packed forward exported to ONNX, read by OpenVINO; for int8, NNCF: calibrated static int8 of the
    encoder matmuls (``calibration`` batches) or int8 weights with OpenVINO's runtime activation quantisation."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="querit_ov_") as tmp:
        path = Path(tmp) / "model.onnx"
        _export_onnx(packed, path)
        ov_model = ov.Core().read_model(str(path))
        if not int8:
            return OpenVinoScorer(ov_model, packed.config, threads=threads, precision=precision, label="openvino")
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

        quantise = _encoder_linear_names(packed, packed=True, skip=skip)
        others = [n for n, m in packed.named_modules() if isinstance(m, nn.Linear) and n not in quantise]
        keep_names = _ov_matmuls(ov_model, packed, others)  # pooler, head, [CLS]-only matmuls, keep_fp32 kinds
        if quantise and not _ov_matmuls(ov_model, packed, quantise):
            raise RuntimeError("found no encoder MatMul to quantise in the OpenVINO graph")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nncf_log = logging.getLogger("nncf")
            level = nncf_log.level
            nncf_log.setLevel(logging.ERROR)
            try:
                if calibration:
                    # Gemm nodes (pooler, head) are not MatMuls: ignore them by type as well
                    scope = nncf.IgnoredScope(names=keep_names, validate=False)
                    ov_model = nncf.quantize(
                        ov_model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                        preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration), ignored_scope=scope,
                        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=_overflow_fix(cpu_features())),
                    )
                    label, group = "openvino-int8-static", None
                else:
                    scope = nncf.IgnoredScope(names=keep_names, validate=False)
                    ov_model = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_SYM, ignored_scope=scope)
                    label, group = "openvino-int8-dynamic", DEFAULT_OV_DQ_GROUP if dynamic_group is None else dynamic_group
            finally:
                nncf_log.setLevel(level)
        return OpenVinoScorer(ov_model, packed.config, threads=threads, precision=precision, dynamic_group=group, label=label)


# ------------------------------------------------------------------------------------------------ entry point


def optimize_for_inference(
    model: Any,
    mode: str = "compact",
    *,
    inplace: bool = True,
    strict: bool = False,
    threads: int | None = None,
    keep_fp32: tuple[str, ...] | list[str] | None = None,
    calibration: Any = None,
    dynamic_group: int | None = None,
    precision: str | None = None,
) -> Any:
    """Make a sentence-transformers ``CrossEncoder`` score faster on CPU.

    Args:
        model: a ``CrossEncoder`` (or ``QueritCrossEncoder``) with the torch backend.
        mode: one of :data:`MODES` (see the module docstring); ``"compact"`` is the measured best.
        inplace: change ``model`` and return it (default), or optimise and return a deep copy.
        strict: raise instead of falling back when the architecture does not support ``mode``.
        threads: ONNX Runtime / OpenVINO threads (default: ``torch.get_num_threads()``).
        keep_fp32: int8 modes only: kinds of encoder linears to leave in fp32, from :data:`LINEAR_KINDS`
            (default :data:`DEFAULT_KEEP_FP32`: ``("ffn_out",)`` for ``"onnx-int8"``, nothing for the torch ones).
            ``()`` quantises every encoder matmul: faster, but the feed-forward output (GELU outliers under
            per-tensor activation scales) costs the most rank agreement.
        calibration: ``"openvino-int8"`` (and ``"compact"`` where it resolves to it) only: (query, document) pairs
            like the ones the model will score (a few hundred from the same collection; not the evaluation
            queries). Given, the int8 activation scales are fixed from them (static int8, the fastest); without,
            OpenVINO quantises activations at run time (``dynamic_group``). Other modes ignore it.
        dynamic_group: ``"openvino-int8"`` without calibration: values per activation scale along the reduction
            axis (default :data:`DEFAULT_OV_DQ_GROUP`).
        precision: OpenVINO modes: ``INFERENCE_PRECISION_HINT`` for what is not int8 (``"bf16"`` / ``"f32"``;
            default: OpenVINO's, bf16 on CPUs with native bf16).

    Returns:
        The optimised model; ``predict`` / ``rank`` work as before. ``inference_mode_of(model)`` tells the mode
        that was applied (after any fallback). The model is for inference only: save the original instead.
    """
    concrete = resolve_mode(mode)
    if inference_mode_of(model) is not None:
        raise QueritInputError(f"model is already optimised (mode {inference_mode_of(model)!r}); optimise the original")
    transformer = _transformer_module(model)
    if not inplace:
        model = copy.deepcopy(model)
        transformer = model[0]
    model.eval()
    hf = transformer.model
    hf.eval()

    if concrete in ("packed", "packed-int8", "onnx", "onnx-int8", "openvino", "openvino-int8") and not supports_packing(hf):
        msg = f"mode {concrete!r} supports BERT-style sequence classifiers only, not {type(hf).__name__}"
        if strict:
            raise QueritInputError(msg)
        fallback = "int8" if concrete.endswith("int8") else "fp32"
        logger.warning("%s; using %r instead", msg, fallback)
        concrete = fallback
    if concrete in ("openvino", "openvino-int8"):
        missing = [m for m, ok in (("openvino", _openvino_available()),
                                   ("nncf", concrete == "openvino" or _nncf_available())) if not ok]
        if missing:
            raise QueritInputError(f"mode {concrete!r} needs {' and '.join(missing)} (pip install openvino nncf onnx)")
    if concrete in ("onnx", "onnx-int8") and not _onnx_available():
        msg = f"mode {concrete!r} needs onnxruntime and onnx (pip install onnxruntime onnx)"
        if strict or mode != "compact":
            raise QueritInputError(msg)
        concrete = "packed"

    skip = tuple(DEFAULT_KEEP_FP32.get(concrete, ()) if keep_fp32 is None else keep_fp32)
    if any(k not in LINEAR_KINDS for k in skip):
        raise QueritInputError(f"keep_fp32 entries must be among {LINEAR_KINDS}, got {skip!r}")
    with torch.no_grad():
        if concrete == "fp32":
            pass
        elif concrete == "bf16":
            if not _has_native_bf16():
                logger.warning(
                    "this CPU has no native bf16 (AVX-512 BF16 / AMX; capability %s): bf16 matmuls are emulated and "
                    "several times slower than fp32 here", torch.backends.cpu.get_cpu_capability()
                )
            if supports_packing(hf):
                transformer.model = _to_bf16(PackedBertScorer(hf), packed=True)
            else:
                transformer.model = _to_bf16(hf, packed=False)
        elif concrete == "int8":
            transformer.model = _quantize_torch(hf, packed=False, skip=skip)
        elif concrete in ("packed", "packed-int8"):
            packed = PackedBertScorer(hf)
            transformer.model = _quantize_torch(packed, packed=True, skip=skip) if concrete == "packed-int8" else packed
        elif concrete in ("onnx", "onnx-int8"):
            packed = PackedBertScorer(hf)
            transformer.model = _onnx_scorer(packed, concrete == "onnx-int8", threads, skip)
        elif concrete in ("openvino", "openvino-int8"):
            batches = None
            if calibration is not None and concrete == "openvino-int8":
                batches = _calibration_batches(model, transformer, calibration)
            packed = PackedBertScorer(hf)
            transformer.model = _openvino_scorer(packed, concrete == "openvino-int8", threads, skip, batches,
                                                 dynamic_group, precision)
    model._querit_inference_mode = concrete
    return model

