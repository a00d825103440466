"""Merge inputs, read tensor by tensor: model folders (``model.safetensors``, its shards, ``pytorch_model.bin``), LoRA
adapter folders (see :mod:`querit_st.merge.lora`), loaded models and state dicts, behind one :class:`Source`
interface (names, shapes/dtypes, whole reads, row-block reads, config, tokenizer files, training record).

Folder inputs are never loaded whole: safetensors tensors are read one at a time with ``safetensors.safe_open``,
and big ones in row blocks (:meth:`Source.read_rows`), so the merge's memory stays at a few blocks.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from querit_st.merge.files import ST_TO_DTYPE, read_config, template_files, tokenizer_components
from querit_st.merge.lora import load_adapter
from querit_st.utils import QueritInputError, load_torch_weights

__all__ = [
    "RECORD_KEY",
    "DictSource",
    "LoraSource",
    "SafetensorsSource",
    "Source",
    "folder_record",
    "letter",
    "model_source",
    "open_folder",
    "open_input",
    "resolve_base",
]

#: The key of ``config_sentence_transformers.json`` that holds a querit-st model's training record
#: (written by :class:`querit_st.cross_encoder.QueritCrossEncoder`).
RECORD_KEY = "querit"


def letter(i: int) -> str:
    """The label of input ``i`` in messages and model cards: A, B, ... Z, #27, ..."""
    return chr(ord("A") + i) if i < 26 else f"#{i + 1}"


class Source:
    """One merge input, read tensor by tensor. Subclasses fill the attributes and the read methods."""

    kind = "state_dict"

    def __init__(self, label: str) -> None:
        self.label = label  # "A (/path/to/model)": used in error messages
        self.path: Path | None = None  # the folder it was read from
        self.config: dict[str, Any] | None = None
        self.tokenizer: dict[str, Path | str] = {}  # component (file name) -> file, or its text
        self.files: dict[str, Path] | None = None  # template: relative name -> file, weights excluded
        self.module: torch.nn.Module | None = None  # template: a loaded model that can save itself
        self.training_record: dict[str, Any] | None = None  # the querit-st record of how it was trained
        self.tensor_info: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}

    def names(self) -> list[str]:
        return list(self.tensor_info)

    def info(self, key: str) -> tuple[tuple[int, ...], torch.dtype]:
        return self.tensor_info[key]

    def read(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def read_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        return self.read(key)[start:stop]

    def input_paths(self) -> list[Path]:
        """The folders this input reads (an output folder must not be one of them)."""
        return [self.path] if self.path is not None else []

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "label": self.label}
        if self.path is not None:
            d["path"] = str(self.path)
        return d

    def close(self) -> None:
        pass


class DictSource(Source):
    """A state dict (or a loaded model's, or a ``pytorch_model.bin`` memory-mapped)."""

    def __init__(self, state: Mapping[str, torch.Tensor], label: str, kind: str = "state_dict") -> None:
        super().__init__(label)
        self.kind = kind
        self._state: dict[str, torch.Tensor] = {}
        for k, v in state.items():
            if not isinstance(v, torch.Tensor):
                raise QueritInputError(f"{label}: state dict entry {k!r} is a {type(v).__name__}, not a tensor")
            if v.is_meta:
                raise QueritInputError(f"{label}: tensor {k!r} is on the meta device (not materialised)")
            self._state[k] = v.detach()
            self.tensor_info[k] = (tuple(v.shape), v.dtype)

    def read(self, key: str) -> torch.Tensor:
        return self._state[key]


class SafetensorsSource(Source):
    """Tensors of ``model.safetensors`` (or its shards), read one at a time (or one row block at a time).

    Each read opens the file anew with ``safe_open``: safetensors memory-maps the file and returns tensors that view
    the mapping, and the pages a long-lived handle has touched stay in the process's RSS until it is closed, so
    reading a whole model through one handle ends with the whole file resident. A fresh handle per read (cheap:
    it parses the header only) releases each tensor's pages as soon as the tensor is dropped.
    """

    kind = "folder"

    def __init__(self, files: Sequence[Path], label: str) -> None:
        from safetensors import safe_open

        super().__init__(label)
        self._open = safe_open
        self._where: dict[str, str] = {}
        for file in files:
            try:
                with safe_open(str(file), framework="pt") as h:
                    for k in h.keys():  # noqa: SIM118 - safe_open is not iterable
                        sl = h.get_slice(k)
                        st_dtype = sl.get_dtype()
                        if st_dtype not in ST_TO_DTYPE:
                            raise QueritInputError(
                                f"{label}: tensor {k!r} in {file.name} has unsupported dtype {st_dtype}"
                            )
                        self.tensor_info[k] = (tuple(sl.get_shape()), ST_TO_DTYPE[st_dtype])
                        self._where[k] = str(file)
            except QueritInputError:
                raise
            except Exception as exc:
                raise QueritInputError(f"{label}: cannot read safetensors weights {str(file)!r}: {exc}") from exc

    def read(self, key: str) -> torch.Tensor:
        with self._open(self._where[key], framework="pt") as h:
            return h.get_tensor(key)

    def read_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        with self._open(self._where[key], framework="pt") as h:
            return h.get_slice(key)[start:stop]


class LoraSource(Source):
    """A base model with a peft LoRA adapter folded in (:mod:`querit_st.merge.lora`), per tensor / row block."""

    kind = "lora_adapter"

    def __init__(self, base: Source, adapter_dir: Path, adapter_config: dict[str, Any], label: str) -> None:
        super().__init__(label)
        self.base = base
        self.adapter_dir = adapter_dir
        shapes = {k: shape for k, (shape, _) in base.tensor_info.items()}
        self.adapter = load_adapter(adapter_dir, adapter_config, shapes, f"{label}: adapter {adapter_dir}")
        self.tensor_info = dict(base.tensor_info)
        for k, x in self.adapter.replace.items():
            self.tensor_info[k] = (tuple(x.shape), x.dtype)

    def read(self, key: str) -> torch.Tensor:
        if key in self.adapter.updates:
            return self.read_rows(key, 0, self.tensor_info[key][0][0])
        return self._read_plain(key, None, None)

    def _read_plain(self, key: str, start: int | None, stop: int | None) -> torch.Tensor:
        if key in self.adapter.replace:
            x = self.adapter.replace[key]
            return x if start is None else x[start:stop]
        x = self.base.read(key) if start is None else self.base.read_rows(key, start, stop)
        bias = self.adapter.bias_delta.get(key)
        if bias is not None:
            x = (x.float() + (bias if start is None else bias[start:stop])).to(x.dtype)
        return x

    def read_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        update = self.adapter.updates.get(key)
        if update is None:
            return self._read_plain(key, start, stop)
        w = self.base.read_rows(key, start, stop)
        return (w.float() + update.rows(start, stop)).to(w.dtype)

    def input_paths(self) -> list[Path]:
        return [*super().input_paths(), *self.base.input_paths()]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(adapter=str(self.adapter_dir), base=self.base.describe())
        return d

    def close(self) -> None:
        self.base.close()


def folder_record(files: Mapping[str, Path]) -> dict[str, Any] | None:
    """The training record saved in a folder's ``config_sentence_transformers.json``, if any."""
    path = files.get("config_sentence_transformers.json")
    config = read_config(path) if path is not None else None
    record = config.get(RECORD_KEY) if isinstance(config, dict) else None
    return record if isinstance(record, dict) and record else None


def open_folder(folder: Path, label: str, base: str | os.PathLike | None) -> Source:
    """A model folder (or a LoRA adapter folder, folded into its base) as a :class:`Source`."""
    if not folder.is_dir():
        raise QueritInputError(f"{label}: {str(folder)!r} is not a folder")
    if (folder / "adapter_config.json").is_file():
        return _open_adapter(folder, label, base)
    files = template_files(folder)
    src: Source
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        src = SafetensorsSource([folder / "model.safetensors"], label)
    elif index.is_file():
        shard_names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        src = SafetensorsSource([folder / s for s in shard_names], label)
    else:
        bins = sorted(folder.glob("pytorch_model*.bin"))
        if not bins:
            raise QueritInputError(
                f"{label}: no weights in {str(folder)!r} (expected model.safetensors, its shards, or pytorch_model.bin)"
            )
        # Not streamable like safetensors; memory-mapping keeps untouched tensors out of memory.
        state: dict[str, torch.Tensor] = {}
        for b in bins:
            state.update(load_torch_weights(b, mmap=True))
        src = DictSource(state, label, kind="folder")
    src.kind = "folder"
    src.files = files
    src.config = read_config(folder / "config.json")
    src.tokenizer = tokenizer_components(files)
    src.training_record = folder_record(files)
    src.path = folder.resolve()
    return src


def _open_adapter(folder: Path, label: str, base: str | os.PathLike | None) -> Source:
    cfg = read_config(folder / "adapter_config.json") or {}
    base_ref = base if base is not None else cfg.get("base_model_name_or_path")
    if not base_ref:
        raise QueritInputError(
            f"{label}: adapter_config.json in {str(folder)!r} names no base_model_name_or_path; pass base=PATH"
        )
    base_dir = resolve_base(str(base_ref), folder, cfg.get("revision"), label)
    if (base_dir / "adapter_config.json").is_file():
        raise QueritInputError(f"{label}: the base model {str(base_dir)!r} of an adapter is itself an adapter")
    base_src = open_folder(base_dir, f"{label} base", None)
    try:
        src = LoraSource(base_src, folder, cfg, label)
    except BaseException:
        base_src.close()
        raise
    # Template: the base's files, overlaid by the adapter folder's own non-adapter files (sentence-transformers
    # saves modules.json, tokenizer, ... next to the adapter; peft saves only a README).
    files = dict(base_src.files or {})
    for rel, path in template_files(folder).items():
        if rel == "README.md" and "README.md" in files:
            continue  # keep the base's model card; peft's adapter card describes an adapter, not this model
        files[rel] = path
    src.files = files
    src.config = base_src.config
    src.tokenizer = tokenizer_components(files)
    src.training_record = folder_record(files)
    src.path = folder.resolve()
    return src


def resolve_base(ref: str, adapter_dir: Path, revision: str | None, label: str) -> Path:
    """The folder of an adapter's base model: a local path (absolute or beside the adapter), else the hub cache."""
    for cand in (Path(ref).expanduser(), adapter_dir / ref):
        if cand.is_dir():
            return cand
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, revision=revision))
    except Exception as exc:  # offline, unknown repo, ...
        raise QueritInputError(
            f"{label}: cannot find the adapter's base model {ref!r} (not a local folder, and the hub lookup failed: "
            f"{type(exc).__name__}); pass base=PATH (--base on the command line)"
        ) from exc


def _tokenizer_components_model(model: torch.nn.Module) -> dict[str, Path | str]:
    tok = None
    with contextlib.suppress(Exception):
        tok = getattr(model, "tokenizer", None)
    if tok is None:
        return {}
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        with contextlib.suppress(Exception):
            return {"tokenizer.json": backend.to_str()}
    if hasattr(tok, "get_vocab"):
        return {"vocab": json.dumps(sorted(tok.get_vocab().items()))}
    return {}


def model_source(model: torch.nn.Module, label: str) -> Source:
    """A loaded model: a sentence-transformers model wrapping one transformers model, or a transformers model."""
    hf = None
    with contextlib.suppress(Exception):
        hf = getattr(model, "transformers_model", None)
    if (
        hf is None
        and hasattr(model, "config")
        and hasattr(model, "save_pretrained")
        and hasattr(model.config, "to_dict")
    ):
        hf = model
    if hf is None:
        src = DictSource(model.state_dict(), label, kind="model")
        src.module = model
        return src
    full = model.state_dict()
    state = hf.state_dict()
    if len(full) != len(state):
        extra = [k for k in full if not k.endswith(tuple(state))][:1]
        raise QueritInputError(
            f"{label}: the model has parameters outside its transformer ({extra[0] if extra else '?'}); only "
            "single-module models can be merged"
        )
    if any(".lora_" in k or ".base_layer." in k for k in state):
        raise QueritInputError(
            f"{label}: the model has an active PEFT adapter; merge it first (model.transformers_model is a peft model: "
            "call merge_and_unload()), or save the adapter and pass its folder"
        )
    # Drop tied aliases (kept once, first name), as save_pretrained does, so keys match a saved folder's.
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    dedup: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        ident = (v.data_ptr(), tuple(v.shape), tuple(v.stride()))
        if v.numel() and ident in seen:
            continue
        seen.add(ident)
        dedup[k] = v
    src = DictSource(dedup, label, kind="model")
    src.config = hf.config.to_dict()
    src.tokenizer = _tokenizer_components_model(model)
    src.module = model
    record = getattr(model, "training_record", None)
    src.training_record = dict(record) if isinstance(record, dict) and record else None
    return src


def open_input(x: Any, index: int, base: str | os.PathLike | None) -> Source:
    """Merge input ``index``: a model folder, a loaded model or a state dict."""
    if isinstance(x, (str, os.PathLike)):
        return open_folder(Path(x), f"{letter(index)} ({x})", base)
    if isinstance(x, torch.nn.Module):
        return model_source(x, f"{letter(index)} ({type(x).__name__})")
    if isinstance(x, Mapping):
        return DictSource(x, f"{letter(index)} (state dict)")
    raise QueritInputError(
        f"model {letter(index)} must be a model folder, a loaded model or a state dict, got {type(x).__name__}"
    )
