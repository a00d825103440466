"""Content hashes and config fingerprints: what cache keys and stage fingerprints are made of."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any


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


def config_hash(obj: Any, length: int = 12) -> str:
    """A short, order-independent hash of a JSON-able config (keys sorted; other values by ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def model_files_fingerprint(folder: str | os.PathLike) -> str:
    """A cheap id of a model folder: its resolved path plus the names, sizes and mtimes of its weight and config
    files (``.safetensors``, ``.bin``, ``.json``); a path that does not exist (a hub name) is its own id."""
    from pathlib import Path

    p = Path(folder)
    if not p.exists():
        return str(folder)
    h = hashlib.sha256(str(p.resolve()).encode())
    for f in sorted(p.rglob("*")):
        if f.suffix in {".safetensors", ".bin", ".json"} and f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from any values, stable across processes and Python versions (unlike ``hash``)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little")
