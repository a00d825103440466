"""The merge's output: a streaming ``.safetensors`` writer (header first, then data block by block, never holding the
tensors), the row blocks big tensors are streamed in, and the non-weight files the output folder takes from its
template (the first model, or ``template=``). The folder itself is written atomically by the caller
(:func:`querit_st.utils.atomic_dir`): either the whole folder appears or nothing does.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from querit_st.merge.files import DTYPE_TO_ST, MERGE_FILES, WEIGHT_FILE_RE, read_config, template_files
from querit_st.merge.sources import Source, model_source, resolve_base
from querit_st.utils import QueritInputError

__all__ = ["SafetensorsWriter", "check_target", "resolve_template", "row_ranges", "write_template"]


class SafetensorsWriter:
    """Writes a ``.safetensors`` file tensor by tensor, block by block, without holding the tensors.

    The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape, byte offsets), and
    the raw little-endian C-order data. Names, shapes and dtypes are known before the data, so the header is
    written first and the data streamed after it. Tensors are laid out by decreasing element size, then name, and
    the header is padded to 8 bytes, so every tensor is aligned (as ``safetensors.torch.save_file`` does).
    Write the tensors in :attr:`order`, each in one or more row blocks, then :meth:`close` (or :meth:`abort`).
    """

    def __init__(
        self, path: Path, entries: Iterable[tuple[str, tuple[int, ...], torch.dtype]], metadata: dict[str, str]
    ):
        entries = sorted(entries, key=lambda e: (-e[2].itemsize, e[0]))
        header: dict[str, Any] = {"__metadata__": metadata}
        self.order: list[tuple[str, int]] = []
        offset = 0
        for name, shape, dtype in entries:
            if dtype not in DTYPE_TO_ST:
                raise QueritInputError(f"tensor {name!r} has dtype {dtype}, which safetensors cannot store")
            nbytes = math.prod(shape) * dtype.itemsize
            header[name] = {
                "dtype": DTYPE_TO_ST[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + nbytes],
            }
            self.order.append((name, nbytes))
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._f.write(len(raw).to_bytes(8, "little"))
        self._f.write(raw)
        self._pos = 0
        self._written = 0

    def write(self, name: str, block: torch.Tensor) -> None:
        expected, nbytes = self.order[self._pos]
        if name != expected:
            raise RuntimeError(f"safetensors writer expected {expected!r}, got {name!r}")
        block = block.detach().to("cpu").contiguous()
        if block.numel():
            data = block.reshape(-1).view(torch.uint8).numpy()
            self._f.write(memoryview(data))
            self._written += data.nbytes
        if self._written > nbytes:
            raise RuntimeError(f"too much data written for {name!r}")
        if self._written == nbytes:
            self._pos += 1
            self._written = 0

    def close(self) -> None:
        try:
            if self._pos != len(self.order):
                raise RuntimeError(f"safetensors writer closed after {self._pos} of {len(self.order)} tensors")
            self._f.flush()
            os.fsync(self._f.fileno())
        finally:
            self._f.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()


def row_ranges(shape: tuple[int, ...], chunk_elements: int) -> list[tuple[int, int]] | None:
    """Row blocks of about ``chunk_elements`` elements for a big tensor, or None when it is read whole."""
    numel = math.prod(shape)
    if len(shape) == 0 or numel <= chunk_elements or shape[0] <= 1:
        return None
    row = numel // shape[0]
    step = max(1, chunk_elements // max(row, 1))
    return [(s, min(s + step, shape[0])) for s in range(0, shape[0], step)]


def check_target(target: Path, sources: Sequence[Source], overwrite: bool) -> None:
    """The output folder is none of the inputs, and exists only with ``overwrite``."""
    inputs = {p for s in sources for p in s.input_paths()}
    if target.resolve() in inputs:
        raise QueritInputError(f"output_dir {str(target)!r} is one of the inputs; write the merge elsewhere")
    if target.exists() and not overwrite:
        raise QueritInputError(f"output folder {str(target)!r} already exists; pass overwrite=True (--overwrite)")


def write_template(tmp: Path, template: Source | torch.nn.Module | Mapping[str, Path]) -> None:
    """Copy the non-weight files of the template (or let a loaded model save them) into ``tmp``."""
    if isinstance(template, torch.nn.Module):
        template.save_pretrained(str(tmp))  # type: ignore[operator]
        for p in list(tmp.iterdir()):
            if p.is_file() and (WEIGHT_FILE_RE.match(p.name) or p.name in MERGE_FILES):
                p.unlink()
        return
    files = template if isinstance(template, Mapping) else (template.files or {})
    for rel, src in files.items():
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def resolve_template(sources: Sequence[Source], template: Any) -> tuple[Any, dict[str, Any] | None, str]:
    """What provides config/tokenizer files: ``template`` if given, else the first model.

    Returns what :func:`write_template` takes, the template's ``config.json`` (for the architecture check) and a
    label for messages.
    """
    if template is not None:
        if isinstance(template, (str, os.PathLike)):
            folder = Path(template)
            if not folder.is_dir():
                raise QueritInputError(f"template {str(template)!r} is not a folder")
            if (folder / "adapter_config.json").is_file():
                cfg = read_config(folder / "adapter_config.json") or {}
                base_dir = resolve_base(
                    str(cfg.get("base_model_name_or_path")), folder, cfg.get("revision"), "template"
                )
                files = {**template_files(base_dir), **template_files(folder)}
            else:
                files = template_files(folder)
            return files, read_config(folder / "config.json"), str(folder)
        if isinstance(template, torch.nn.Module):
            return template, model_source(template, "template").config, type(template).__name__
        raise QueritInputError(f"template must be a model folder or a loaded model, got {type(template).__name__}")
    ref = sources[0]
    if ref.module is not None:
        return ref.module, ref.config, ref.label
    if ref.files:
        return ref, ref.config, ref.label
    raise QueritInputError(
        "output_dir needs a model folder to take the config and tokenizer from, but the first input is a state dict; "
        "pass template=FOLDER (a model folder of the same architecture) or a folder/model as the first input"
    )
