"""Multi-process runs (``torchrun`` / ``accelerate launch``): who mines first, who writes."""

from __future__ import annotations

import contextlib
import os
from typing import Any


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def distributed_state() -> Any:
    """accelerate's ``PartialState`` when this process is one of several (``torchrun``, ``accelerate launch``), else None.

    Creating it joins the process group (gloo on CPU, nccl on GPUs), as HF Trainer would a moment later.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not has_cuda())


def main_process_first() -> Any:
    """Context: the main process runs the block first (mining, filling caches), then the others (cache hits)."""
    state = distributed_state()
    return state.main_process_first() if state is not None else contextlib.nullcontext()


def is_main_process() -> bool:
    state = distributed_state()
    return state is None or state.is_main_process
