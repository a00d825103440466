"""Fingerprints of teachers and their models: what mining's config hash uses to tell whether labels are reusable."""

from __future__ import annotations

import hashlib
from typing import Any


def model_weights_hash(module: Any) -> str:
    """Content hash of a torch module's parameters and buffers (identifies an in-memory model across processes)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(retriever_or_model: Any) -> str:
    """A retriever's model id; in-memory models (whose id is only valid in this process) are hashed by content."""
    fp = getattr(retriever_or_model, "fingerprint", None)  # DenseRetriever.fingerprint: the model folder's id
    fp = fp if isinstance(fp, str) else None
    if fp and not fp.startswith("in-memory"):
        return fp
    model = getattr(retriever_or_model, "model", retriever_or_model)
    try:
        return "weights-" + model_weights_hash(model)
    except Exception:  # pragma: no cover - not a torch module
        return str(fp or getattr(retriever_or_model, "name", type(retriever_or_model).__name__))


def teacher_fingerprint(teacher: Any) -> dict[str, Any]:
    """A teacher's :meth:`~querit_st.teachers.Teacher.fingerprint`, or a best-effort description of a callable."""
    fp = getattr(teacher, "fingerprint", None)
    if callable(fp):
        return fp()
    return {"class": type(teacher).__name__, "callable": getattr(teacher, "__qualname__", repr(teacher))[:200]}
