"""One readable progress line per logging step, on a TTY and in a log file alike (no raw loss dicts)."""

from __future__ import annotations

import logging
import time
from typing import Any

from transformers import TrainerCallback

from querit_st.utils.progress import progress_line

logger = logging.getLogger("querit_st.progress")

__all__ = ["ProgressLogCallback", "progress_line"]


class ProgressLogCallback(TrainerCallback):
    """Logs ``progress_line`` at every ``logging_steps`` with the loss and pairs/s; replaces transformers'
    PrinterCallback (which prints the raw log dict when the tqdm bar is off)."""

    def __init__(self, label: str, pairs_per_step: float | None = None) -> None:
        self.label = label
        self.pairs_per_step = pairs_per_step
        self.start: float | None = None
        self.start_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.perf_counter()
        self.start_step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.start is None or not logs or "loss" not in logs:
            return
        elapsed = time.perf_counter() - self.start
        done = state.global_step - self.start_step
        extra = f"loss {logs['loss']:.4f}"
        if self.pairs_per_step and elapsed > 0:
            extra += f" | {done * self.pairs_per_step / elapsed:.1f} pairs/s"
        rate = done / elapsed if elapsed > 0 else 0.0  # this run's steps only: right after a resume too
        logger.info(progress_line(self.label, state.global_step, state.max_steps, rate, "steps", extra))
