"""What the harness reads: BEIR folders (or BEIR names, downloaded once when the network allows), query files,
and the reranker arguments (a trained cross-encoder, or a backbone that becomes an untrained one)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from querit_st.utils import QueritInputError, cache_root

logger = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
_BEIR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9_-]+)?$")


@dataclass
class RerankerSpec:
    """How a reranker argument was interpreted."""

    spec: str
    label: str
    kind: str  # "trained" (a cross-encoder folder / hub name) or "untrained" (backbone + fresh head)
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ data


def _known_backbone(name: str) -> bool:
    from querit_st import backbones

    return backbones.backbone_name(name) is not None


def resolve_data(spec: str, *, download_dir: str | os.PathLike | None = None, timeout: float = 10.0) -> Path:
    """A BEIR folder for ``spec``: an existing folder as is, or a BEIR dataset name downloaded (once) to the cache.

    Raises:
        QueritInputError: the folder does not exist, or the dataset name cannot be downloaded (offline...).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise QueritInputError(f"--data entry must be a folder or a BEIR dataset name, got {spec!r}")
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise QueritInputError(f"BEIR folder {spec!r} is a file, not a folder")
        return path
    name = spec.strip()
    if not _BEIR_NAME.match(name) or os.sep in name.split("/")[0] or name.startswith("."):
        raise QueritInputError(f"BEIR folder {spec!r} does not exist")
    root = Path(download_dir) if download_dir else cache_root() / "beir"
    top, _, sub = name.partition("/")
    target = root / top / sub if sub else root / top
    if (target / "corpus.jsonl").is_file():
        return target
    url = BEIR_URL.format(name=top)
    try:
        import requests

        head = requests.head(url, timeout=timeout, allow_redirects=True)
        if head.status_code != 200:
            raise QueritInputError(
                f"{spec!r} is neither an existing folder nor a downloadable BEIR dataset ({url} answered "
                f"HTTP {head.status_code})"
            )
        from beir import util

        root.mkdir(parents=True, exist_ok=True)
        try:
            util.download_and_unzip(url, str(root))
        finally:
            zip_file = root / f"{top}.zip"
            if zip_file.exists() and not (root / top).is_dir():  # a failed/partial download is never reused
                zip_file.unlink()
    except QueritInputError:
        raise
    except Exception as e:  # noqa: BLE001 - any network or unzip failure becomes one clear input error
        raise QueritInputError(
            f"{spec!r} is not an existing folder, and downloading the BEIR dataset {top!r} from {url} failed "
            f"({type(e).__name__}: {str(e)[:200]}); without network access pass a local BEIR folder instead"
        ) from None
    if not (target / "corpus.jsonl").is_file():
        raise QueritInputError(f"downloaded BEIR dataset {top!r} has no corpus.jsonl at {target}")
    return target


def load_queries_only(folder: str | os.PathLike) -> tuple[dict[str, str], str]:
    """``{qid: text}`` of a BEIR folder's queries.jsonl (validated) and the file's checksum, for ``--queries-from``."""
    from querit_st.utils import sha256_file
    from querit_st.data import check_jsonl_ids

    folder = Path(folder)
    if not folder.is_dir():
        raise QueritInputError(f"--queries-from folder {str(folder)!r} does not exist or is not a folder")
    path = folder / "queries.jsonl"
    if not path.is_file():
        raise QueritInputError(f"--queries-from folder {str(folder)!r} has no queries.jsonl")
    check_jsonl_ids(path, "query")
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row.get("text") or ""
    return queries, sha256_file(path)


# ------------------------------------------------------------------------------------------------ models


def _is_embedding_folder(path: Path) -> bool:
    """A SentenceTransformer *embedding* folder (not a cross-encoder one)."""
    cfg = path / "config_sentence_transformers.json"
    if cfg.is_file():
        try:
            model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            model_type = None
        if model_type:
            return model_type == "SentenceTransformer"
    modules = path / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return any("Pooling" in str(e.get("type", "")) for e in entries)
    return False


def classify_reranker(spec: str) -> RerankerSpec:
    """Decide how ``spec`` is loaded (without loading it)."""
    if not isinstance(spec, str) or not spec.strip():
        raise QueritInputError(f"--reranker entry must be a model folder or name, got {spec!r}")
    if _known_backbone(spec):
        return RerankerSpec(spec, f"{spec} (untrained)", "untrained", source=spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise QueritInputError(f"reranker {spec!r} is a file; expected a model folder")
        label = path.name or spec
        if _is_embedding_folder(path):
            return RerankerSpec(spec, f"{label} (untrained)", "untrained", source=str(path))
        return RerankerSpec(spec, label, "trained", source=str(path))
    if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1:
        raise QueritInputError(f"reranker folder {spec!r} does not exist")
    return RerankerSpec(spec, spec, "trained", source=spec)


def load_reranker(spec: RerankerSpec, *, device: str | None = None, seed: int | None = 0) -> Any:
    """Load a reranker as a :class:`~querit_st.cross_encoder.QueritCrossEncoder`.

    An untrained reranker's fresh scoring head is drawn after ``torch.manual_seed(seed)`` (reproducible numbers).
    """
    from querit_st.cross_encoder import QueritCrossEncoder

    try:
        if spec.kind == "untrained":
            if seed is not None:
                import torch

                torch.manual_seed(seed)
            model = QueritCrossEncoder.from_embedding_model(spec.source, device=device)
        else:
            model = QueritCrossEncoder(spec.source, device=device)
    except QueritInputError:
        raise
    except OSError as e:  # not a folder and not reachable on the hub (offline...)
        raise QueritInputError(f"could not load reranker {spec.spec!r}: {str(e).splitlines()[0][:300]}") from None
    spec.info = {
        "spec": spec.spec,
        "label": spec.label,
        "kind": spec.kind,
        "untrained": spec.kind == "untrained",
        "head_seed": seed if spec.kind == "untrained" else None,
        "class": type(model).__name__,
        "source": spec.source,
        "default_prompt": (model.prompts or {}).get(model.default_prompt_name) if model.default_prompt_name else None,
        "max_length": getattr(model, "max_length", None),
        "n_parameters": int(sum(p.numel() for p in model.model.parameters())),
    }
    record = getattr(model, "training_record", None)
    if record:
        spec.info["training_record"] = record
    return model


def unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        if label in seen or label == "retriever":
            seen[label] = seen.get(label, 1) + 1
            out.append(f"{label} #{seen[label]}")
        else:
            seen[label] = 1
            out.append(label)
    return out
