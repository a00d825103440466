"""What machine a run happened on: CPU flags and features, library versions. Results files record it."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

INTERESTING_FLAGS = ("avx512", "amx", "avx2", "fma", "avx_vnni")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The flags ``/proc/cpuinfo`` lists for the first CPU (empty where there is no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and several
    times slower than fp32. The one test every bf16 choice (training, inference, encoding) makes."""
    f = cpu_features()
    return bool(f["avx512_bf16"] or f["amx"])


def cpu_features() -> dict[str, Any]:
    """What the CPU offers for low-precision matmuls (as PyTorch sees it)."""
    import torch

    def _probe(name: str) -> bool:
        fn = getattr(torch.cpu, name, None)
        try:
            return bool(fn()) if fn is not None else False
        except Exception:  # noqa: BLE001 - very old torch
            return False

    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512": _probe("_is_avx512_supported"),
        "avx512_vnni": _probe("_is_vnni_supported"),
        "avx512_bf16": _probe("_is_avx512_bf16_supported"),
        "amx": _probe("_is_amx_tile_supported"),
        "avx_vnni": "avx_vnni" in cpu_flags(),
        "threads": torch.get_num_threads(),
        "quantized_engines": list(torch.backends.quantized.supported_engines),
    }


def machine_info(packages: tuple[str, ...] = ("sentence-transformers", "transformers", "querit-st")) -> dict[str, Any]:
    """Cores, CPU model and flags, torch and the versions of ``packages``: the ``machine`` of every results file."""
    import torch
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(INTERESTING_FLAGS)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for dist in packages:
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return info
