"""Faster CPU inference for cross-encoder rerankers: :func:`optimize_for_inference`.

``optimize_for_inference(model, mode)`` swaps the Hugging Face model inside a sentence-transformers
``CrossEncoder`` (or :class:`~querit_st.cross_encoder.QueritCrossEncoder`) for a faster implementation of the
same function. Everything else is unchanged: tokenisation, prompts, ``predict`` / ``rank`` / ``rerank``,
length-sorted batching and the activation function all stay sentence-transformers'.

Modes (speed and quality measured by ``benchmarks/speed.py``: the tables are in ``docs/inference.md``):

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
    for the static-int8 speed. Without one (plain AVX2) int8 matmuls peak at only ~1.7x fp32 and the
    int8 graphs measured slower than the exact fp32 ones or lost quality, so ``"compact"`` is the exact
    ``"openvino"`` (else ``"onnx"``, else ``"packed"``) and ignores ``calibration``.

Architectures: the packed/ONNX modes support BERT-style sequence classification models
(``BertForSequenceClassification`` with absolute positions: MiniLM, e5, BGE, the ``minilm-l6`` and
``multilingual-e5-small`` backbones of this package). Other architectures fall back to the closest generic
mode (``"int8"`` for the int8 modes, ``"fp32"`` otherwise) with a warning; ``strict=True`` raises instead.

The optimised model is for inference: it cannot be trained or saved as a sentence-transformers folder (save the
original; optimise after loading). ``inplace=True`` (the default) changes ``model`` and returns it; with
``inplace=False`` a deep copy is optimised and ``model`` is left as it was.

Layout: :mod:`~querit_st.inference.choice` (MODES, what this CPU offers, ``"compact"``),
:mod:`~querit_st.inference.modes` (the entry point and its dispatch table), one module per backend
(:mod:`~querit_st.inference.packed`, :mod:`~querit_st.inference.quantize`, :mod:`~querit_st.inference.onnx`,
:mod:`~querit_st.inference.openvino`) and :mod:`~querit_st.inference.attach` (the ``CrossEncoder`` side).

Example:
    ::

        from sentence_transformers import CrossEncoder
        from querit_st.inference import optimize_for_inference

        model = optimize_for_inference(CrossEncoder("path/to/reranker"), "compact")
        scores = model.predict([("query", "document"), ...], batch_size=64)
"""

from querit_st.inference.attach import inference_mode_of
from querit_st.inference.choice import MODES, has_native_bf16, resolve_mode
from querit_st.inference.modes import TABLE, optimize_for_inference
from querit_st.inference.onnx import OnnxScorer
from querit_st.inference.openvino import DEFAULT_OV_DQ_GROUP, OpenVinoScorer, load_openvino
from querit_st.inference.packed import PackedBertScorer, supports_packing
from querit_st.inference.quantize import DEFAULT_KEEP_FP32, LINEAR_KINDS
from querit_st.utils.machine import cpu_features  # its old home was this module

#: The old private name, still imported by ``benchmarks/speed.py``; new code uses :func:`has_native_bf16`.

__all__ = [
    "DEFAULT_KEEP_FP32",
    "DEFAULT_OV_DQ_GROUP",
    "LINEAR_KINDS",
    "MODES",
    "OnnxScorer",
    "OpenVinoScorer",
    "PackedBertScorer",
    "TABLE",
    "cpu_features",
    "has_native_bf16",
    "inference_mode_of",
    "load_openvino",
    "optimize_for_inference",
    "resolve_mode",
    "supports_packing",
]
