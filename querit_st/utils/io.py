"""Files: the cache folder, atomic writes (a reader never sees a partial file or folder), safe weight loading."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from querit_st.utils.errors import QueritInputError


def cache_root() -> Path:
    """Folder for derived artefacts (built backbones, embedding caches). ``$QUERIT_ST_CACHE`` overrides it."""
    root = os.environ.get("QUERIT_ST_CACHE")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "querit_st"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that a reader never sees a partial one: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it is renamed to ``target``.

    An exception (or a kill) leaves ``target`` untouched: at worst a ``.tmp`` sibling remains, never a partial
    model at the target path.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"output folder {str(target)!r} already exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_torch_weights(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """A pickled weights file (``pytorch_model.bin``...) read with ``torch.load(weights_only=True)``.

    Only tensors and plain containers are unpickled; a file holding anything else (objects, code) or a damaged one is
    refused with an error naming it. (Prefer safetensors: no pickle at all.)
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise QueritInputError(
            f"weights file {str(path)!r} was not loaded: it is not a plain tensor file that "
            f"torch.load(weights_only=True) accepts ({reason})"
        ) from None
