"""One progress format for every long step (labelling, mining, training, merging, evaluation): a tqdm bar on a
terminal, and on a redirected run (a log file) one readable line every few seconds with counts, rate and ETA."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger("querit_st.progress")


def format_eta(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(label: str, done: int, total: int | None, rate: float, unit: str = "steps", extra: str = "") -> str:
    """``"[label] 40/463 steps (9%) | 1.20 steps/s | ETA 5:52 | extra"`` (``rate``: units per second measured
    in this run, so a resumed run's ETA is right)."""
    if total:
        eta = (total - done) / rate if rate > 0 else float("nan")
        parts = [f"[{label}] {done}/{total} {unit} ({100.0 * done / total:.0f}%)", f"{rate:.2f} {unit}/s",
                 f"ETA {format_eta(eta)}"]
    else:
        parts = [f"[{label}] {done} {unit}", f"{rate:.2f} {unit}/s"]
    if extra:
        parts.append(extra)
    return " | ".join(parts)


def track(items: Iterable[T], label: str, *, total: int | None = None, unit: str = "items", show: bool = True,
          every_s: float = 10.0) -> Iterator[T]:
    """Iterate ``items`` showing progress: tqdm on a TTY, else a :func:`progress_line` log line at most every
    ``every_s`` seconds and at the end. ``show=False``: silent."""
    total = total if total is not None else (len(items) if isinstance(items, Sized) else None)
    if not show:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=label, total=total, unit=unit)
        return
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every_s or (total is not None and done == total):
            last = now
            logger.info(progress_line(label, done, total, done / max(now - start, 1e-9), unit))


def log_done(label: str, count: int, seconds: float, unit: str = "items", extra: str = "") -> None:
    """The one closing line of a step: ``[label] done: 200 queries in 0:41 (4.9 queries/s)``."""
    rate = count / seconds if seconds > 0 else 0.0
    logger.info("[%s] done: %d %s in %s (%.1f %s/s)%s", label, count, unit, format_eta(seconds), rate, unit,
                f" | {extra}" if extra else "")


def configure_output(verbose: bool = False) -> None:
    """What a run prints: querit-st's progress lines and notices (INFO, to stderr) always; the libraries'
    warnings, load reports ("UNEXPECTED / MISSING" tables when layers are dropped) and progress bars ("Writing
    model shards", "Loading weights") only with ``verbose``."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("querit_st").setLevel(logging.INFO)
    if verbose:
        return
    if not sys.stderr.isatty():  # other libraries' tqdm bars (BEIR's corpus loader...) write \r-lines into log files
        import os

        os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is first imported below
    for handler in logging.getLogger().handlers:  # a library that sets its own logger to INFO (bm25s) stays quiet
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or r.name.startswith("querit_st"))
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)

__all__: list[Any] = ["configure_output", "format_eta", "progress_line", "track", "log_done"]
