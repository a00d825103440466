"""Small shared helpers: input validation, hashing, cache folders and atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any


class QueritInputError(ValueError):
    """Bad input to a public entry point. The CLI turns it into exit code 2."""


def one_line(message: object) -> str:
    """An error message on one line (a YAML parser's, say, spans several): whitespace runs become one space."""
    return " ".join(str(message).split())


def cache_root() -> Path:
    """Folder for derived artefacts (built backbones, embedding caches). ``$QUERIT_ST_CACHE`` overrides it."""
    root = os.environ.get("QUERIT_ST_CACHE")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "querit_st"


def check_text(value: Any, name: str) -> str:
    """Return ``value`` if it is a non-empty string, else raise an error that names the input."""
    if value is None:
        raise QueritInputError(f"{name} is None; expected a non-empty string")
    if not isinstance(value, str):
        raise QueritInputError(f"{name} must be a string, got {type(value).__name__}: {value!r:.80}")
    if not value.strip():
        raise QueritInputError(f"{name} is empty; expected a non-empty string")
    return value


def check_texts(values: Any, name: str, allow_empty_list: bool = False) -> list[str]:
    """Validate a list of non-empty strings; the error names the offending index."""
    if values is None:
        raise QueritInputError(f"{name} is None; expected a list of strings")
    if isinstance(values, str):
        raise QueritInputError(f"{name} must be a list of strings, got a single string")
    values = list(values)
    if not values and not allow_empty_list:
        raise QueritInputError(f"{name} is empty; expected at least one string")
    for i, v in enumerate(values):
        check_text(v, f"{name}[{i}]")
    return values


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


def sha256_texts(items: Iterable[str]) -> str:
    """Order-sensitive content hash of a sequence of strings."""
    h = hashlib.sha256()
    for s in items:
        b = s.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


def chunked(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
