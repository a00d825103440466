"""What the files of a model folder are, for the merge: weight files (merged, never copied), trainer state (left
out), the non-weight files an output folder takes from its template, tokenizer files (compared by the checks) and the
safetensors dtype names. Reading only: listing files and parsing JSON configs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from querit_st.utils import QueritInputError

__all__ = [
    "DTYPE_TO_ST",
    "MERGE_FILES",
    "ST_TO_DTYPE",
    "VOCAB_FILES",
    "WEIGHT_FILE_RE",
    "read_config",
    "template_files",
    "tokenizer_components",
]

WEIGHT_FILE_RE = re.compile(
    r"^(?:model(?:-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json"
    r"|pytorch_model(?:-\d+-of-\d+)?\.bin|pytorch_model\.bin\.index\.json"
    r"|adapter_model\.(?:safetensors|bin)|adapter_config\.json"
    r"|tf_model\.h5|flax_model\.msgpack|model\.ckpt.*|rust_model\.ot)$"
)
# Trainer checkpoint state describes how model A was trained, not the merged model (and optimizer.pt is 2x its size).
_TRAINER_FILE_RE = re.compile(
    r"^(?:optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth|training_args\.bin|trainer_state\.json)$"
)
_SUBFOLDER_WEIGHT_RE = re.compile(r"\.(?:safetensors|bin|pt|pth|h5|msgpack|ckpt|ot)$")
_SKIP_DIRS = {".git", "__pycache__", "runs"}
#: Files a merge writes itself (an input that is a merge output has them too: they are not copied over).
MERGE_FILES = {"merge_config.json"}
VOCAB_FILES = (
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "source.spm",
    "target.spm",
    "special_tokens_map.json",
)

ST_TO_DTYPE = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "C64": torch.complex64,
}
for _name, _attr in (
    ("U16", "uint16"),
    ("U32", "uint32"),
    ("U64", "uint64"),
    ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E5M2", "float8_e5m2"),
):
    if hasattr(torch, _attr):
        ST_TO_DTYPE[_name] = getattr(torch, _attr)
DTYPE_TO_ST = {v: k for k, v in ST_TO_DTYPE.items()}


def template_files(folder: Path) -> dict[str, Path]:
    """Every non-weight file of a model folder (recursively), by relative name. Weights in subfolders are refused:
    only the root module's weights are merged, and silently copying another module's would be wrong."""
    files: dict[str, Path] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if d not in _SKIP_DIRS and not d.startswith("checkpoint-") and not d.startswith(".")
        )
        rel_root = Path(root).relative_to(folder)
        for name in sorted(names):
            rel = (rel_root / name).as_posix()
            if rel_root == Path("."):
                if WEIGHT_FILE_RE.match(name) or _TRAINER_FILE_RE.match(name) or name in MERGE_FILES:
                    continue
            elif _SUBFOLDER_WEIGHT_RE.search(name):
                raise QueritInputError(
                    f"{str(folder)!r} holds weights in a submodule ({rel}); only single-module models (weights at the "
                    "folder root, as CrossEncoder saves them) can be merged"
                )
            files[rel] = Path(root) / name
    return files


def tokenizer_components(files: Mapping[str, Path]) -> dict[str, Path | str]:
    """The tokenizer files of a folder, by name (compared lazily by :func:`querit_st.merge.checks.same_component`)."""
    return {name: files[name] for name in ("tokenizer.json", *VOCAB_FILES) if name in files}


def read_config(path: Path) -> dict[str, Any] | None:
    """A JSON config file, or None when there is none; a file that does not parse is refused."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise QueritInputError(f"cannot parse {path}: {exc}") from exc
