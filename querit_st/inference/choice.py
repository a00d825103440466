"""Which inference mode runs here: :data:`MODES`, what this CPU and the installed runtimes offer, and the choices
that depend on them (:func:`resolve_mode` for ``"compact"``, :func:`check_runtimes`, the ONNX int8 weight type).

The CPU itself is probed by :func:`querit_st.utils.machine.cpu_features`; this module only reads it.
"""

from __future__ import annotations

import importlib.util

from querit_st.utils import QueritInputError
from querit_st.utils.machine import cpu_features, native_bf16

__all__ = ["MODES", "check_runtimes", "has_native_bf16", "onnx_int8_weight_type", "resolve_mode"]

#: Every mode :func:`~querit_st.inference.optimize_for_inference` accepts.
MODES: tuple[str, ...] = (
    "fp32", "bf16", "int8", "packed", "packed-int8", "onnx", "onnx-int8", "openvino", "openvino-int8", "compact",
)


# The probes below are module globals that :func:`resolve_mode` looks up at each call (tests replace them).
def _has_native_int8() -> bool:
    """An int8 dot-product instruction (AVX-512 VNNI, AVX-VNNI or AMX): without one, int8 matmuls run on
    ``vpmaddubsw`` at about 1.7x the fp32 peak (measured: 321 GOP/s int8 vs 187 GFLOP/s fp32 on 2 AVX2 cores)."""
    f = cpu_features()
    return bool(f["avx512_vnni"] or f["avx_vnni"] or f["amx"])


def has_native_bf16() -> bool:
    """Native bf16 matmuls (AVX-512 BF16 or AMX): :func:`querit_st.utils.machine.native_bf16`."""
    return native_bf16()


def _onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def _openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None  # converts from PyTorch itself: no ONNX needed


def _nncf_available() -> bool:
    return importlib.util.find_spec("nncf") is not None


def resolve_mode(mode: str) -> str:
    """The concrete mode ``mode`` stands for here (``"compact"`` depends on the CPU and on what is installed)."""
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


def check_runtimes(concrete: str, *, requested: str, strict: bool) -> str:
    """``concrete`` if the runtime it needs is installed. A missing OpenVINO / NNCF raises; a missing ONNX Runtime
    raises too, except for ``"compact"`` (``requested``) without ``strict``, which falls back to ``"packed"``."""
    if concrete in ("openvino", "openvino-int8"):
        missing = [m for m, ok in (("openvino", _openvino_available()),
                                   ("nncf", concrete == "openvino" or _nncf_available())) if not ok]
        if missing:
            raise QueritInputError(f"mode {concrete!r} needs {' and '.join(missing)} (pip install openvino nncf)")
    if concrete in ("onnx", "onnx-int8") and not _onnx_available():
        msg = f"mode {concrete!r} needs onnxruntime and onnx (pip install onnxruntime onnx)"
        if strict or requested != "compact":
            raise QueritInputError(msg)
        return "packed"
    return concrete


def onnx_int8_weight_type() -> str:
    """ONNX Runtime int8 weights for this CPU: ``"int8"`` (U8S8, the fast path with VNNI), else ``"uint8"`` (U8U8:
    on AVX2 it avoids the saturation of ``vpmaddubsw``)."""
    return "int8" if _has_native_int8() else "uint8"
