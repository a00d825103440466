"""The entry point :func:`optimize_for_inference` and its dispatch :data:`TABLE` (concrete mode -> builder).

A builder takes a :class:`BuildRequest` (the model being optimised and the options) and returns the module that
replaces ``transformer.model``. ``"compact"`` has no builder: :func:`~querit_st.inference.choice.resolve_mode`
turns it into one of the others first. The modes are described in :mod:`querit_st.inference`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from querit_st.inference.attach import inference_mode_of, set_inference_mode, transformer_module
from querit_st.inference.choice import check_runtimes, has_native_bf16, resolve_mode
from querit_st.inference.onnx import onnx_scorer
from querit_st.inference.openvino import calibration_batches, openvino_scorer
from querit_st.inference.packed import PackedBertScorer, supports_packing
from querit_st.inference.quantize import DEFAULT_KEEP_FP32, LINEAR_KINDS, quantize_torch, to_bf16
from querit_st.utils import QueritInputError

logger = logging.getLogger(__name__)

__all__ = ["PACKED_MODES", "TABLE", "BuildRequest", "Builder", "optimize_for_inference"]


@dataclass(frozen=True)
class BuildRequest:
    """What a builder gets: the model being optimised (already in eval mode) and the options that apply."""

    model: Any  #: the ``CrossEncoder`` (``"openvino-int8"`` records calibration batches through its ``predict``)
    transformer: Any  #: its sentence-transformers ``Transformer`` module
    hf: nn.Module  #: ``transformer.model``: the Hugging Face sequence classifier
    skip: tuple[str, ...] = ()  #: int8 modes: kinds of encoder linears kept in fp32 (from ``LINEAR_KINDS``)
    threads: int | None = None
    calibration: Any = None
    dynamic_group: int | None = None
    precision: str | None = None


#: A mode's builder: the request in, the module that becomes ``transformer.model`` out.
Builder = Callable[[BuildRequest], nn.Module]


def _fp32(r: BuildRequest) -> nn.Module:
    return r.hf


def _bf16(r: BuildRequest) -> nn.Module:
    if not has_native_bf16():
        logger.warning(
            "this CPU has no native bf16 (AVX-512 BF16 / AMX; capability %s): bf16 matmuls are emulated and "
            "several times slower than fp32 here", torch.backends.cpu.get_cpu_capability()
        )
    if supports_packing(r.hf):
        return to_bf16(PackedBertScorer(r.hf), packed=True)
    return to_bf16(r.hf, packed=False)


def _int8(r: BuildRequest) -> nn.Module:
    return quantize_torch(r.hf, packed=False, skip=r.skip)


def _packed(r: BuildRequest) -> nn.Module:
    return PackedBertScorer(r.hf)


def _packed_int8(r: BuildRequest) -> nn.Module:
    return quantize_torch(PackedBertScorer(r.hf), packed=True, skip=r.skip)


def _onnx(r: BuildRequest) -> nn.Module:
    return onnx_scorer(PackedBertScorer(r.hf), False, r.threads, r.skip)


def _onnx_int8(r: BuildRequest) -> nn.Module:
    return onnx_scorer(PackedBertScorer(r.hf), True, r.threads, r.skip)


def _openvino(r: BuildRequest) -> nn.Module:
    return openvino_scorer(PackedBertScorer(r.hf), False, r.threads, r.skip, None, r.dynamic_group, r.precision)


def _openvino_int8(r: BuildRequest) -> nn.Module:
    batches = None if r.calibration is None else calibration_batches(r.model, r.transformer, r.calibration)
    return openvino_scorer(PackedBertScorer(r.hf), True, r.threads, r.skip, batches, r.dynamic_group, r.precision)


#: Concrete mode -> builder (every entry of ``MODES`` but ``"compact"``).
TABLE: dict[str, Builder] = {
    "fp32": _fp32,
    "bf16": _bf16,
    "int8": _int8,
    "packed": _packed,
    "packed-int8": _packed_int8,
    "onnx": _onnx,
    "onnx-int8": _onnx_int8,
    "openvino": _openvino,
    "openvino-int8": _openvino_int8,
}

#: Modes that run the packed forward: BERT-style classifiers only (others fall back to ``"int8"`` / ``"fp32"``).
PACKED_MODES: frozenset[str] = frozenset({"packed", "packed-int8", "onnx", "onnx-int8", "openvino", "openvino-int8"})


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
        mode: one of :data:`MODES` (see :mod:`querit_st.inference`); ``"compact"`` is the measured best.
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
    transformer = transformer_module(model)
    if not inplace:
        model = copy.deepcopy(model)
        transformer = model[0]
    model.eval()
    hf = transformer.model
    hf.eval()

    if concrete in PACKED_MODES and not supports_packing(hf):
        msg = f"mode {concrete!r} supports BERT-style sequence classifiers only, not {type(hf).__name__}"
        if strict:
            raise QueritInputError(msg)
        fallback = "int8" if concrete.endswith("int8") else "fp32"
        logger.warning("%s; using %r instead", msg, fallback)
        concrete = fallback
    concrete = check_runtimes(concrete, requested=mode, strict=strict)

    skip = tuple(DEFAULT_KEEP_FP32.get(concrete, ()) if keep_fp32 is None else keep_fp32)
    if any(k not in LINEAR_KINDS for k in skip):
        raise QueritInputError(f"keep_fp32 entries must be among {LINEAR_KINDS}, got {skip!r}")
    request = BuildRequest(model, transformer, hf, skip=skip, threads=threads, calibration=calibration,
                           dynamic_group=dynamic_group, precision=precision)
    with torch.no_grad():
        transformer.model = TABLE[concrete](request)
    set_inference_mode(model, concrete)
    return model
