"""SLERP merging of fine-tuned cross-encoder checkpoints (the last stage of the querit-st pipeline).

Merging two rerankers fine-tuned from the same base (say one adapted to a new corpus, one kept general) by
spherical linear interpolation of their weights is a cheap way to trade the two off without retraining.

Public API
----------
``slerp(t, v0, v1)``
    The math on two tensors, like mergekit's ``slerp``.
``slerp_merge(a, b, t=0.5, output_dir=None, ...)``
    Two checkpoints (model folders, loaded ``CrossEncoder`` models or state dicts). ``t`` is the weight of ``b``
    (``t=0`` gives ``a`` exactly, ``t=1`` gives ``b`` exactly); a list of floats is a gradient across the
    transformer layers; ``parameter_t`` overrides it per parameter name.
``slerp_merge_many(models, weights=None, output_dir=None, ...)``
    More than two checkpoints, by sequential SLERP (see :func:`slerp_schedule`).
``merge_command(argv)``
    The ``querit-st merge`` command line.

Conventions (they follow mergekit, so a mergekit config translates one to one)
-------------------------------------------------------------------------------
* **Gradient.** A list ``[t_0, ..., t_m]`` is spread piecewise-linearly over a position in ``[0, 1]``:
  parameters of numbered layer ``i`` (names containing ``layer.3.``, ``layers.3.``, ``h.3.``, ``block.3.`` or
  ``blocks.3.``) sit at ``i / (num_layers - 1)``, with ``num_layers`` = largest layer index + 1 (a single layer
  sits at 1, as in mergekit). Parameters outside the numbered layers follow mergekit's pre/post-weight rule:
  embedding tables (names containing ``embed``, or the ``wte``/``wpe``/``shared`` modules) come *before* the
  layers and use the gradient at position 0 (``t_0``); everything else (pooler, classifier head, final norm)
  comes *after* them and uses position 1 (``t_m``).
* **Per-parameter overrides.** ``parameter_t={"classifier": 0.3, "embeddings": [0, 1]}``: the first key that is
  a substring of the parameter name wins (mergekit's ``filter``), its value is a scalar or a gradient.
* **dtypes.** Interpolation runs in float32 (float64 if an input is float64); each output tensor keeps the dtype of
  the first model's tensor. Non-float tensors (integer buffers such as ``position_ids``) are copied from the
  first model unchanged.

Memory (streaming)
------------------
Folder inputs are never loaded whole: tensors are read from ``model.safetensors`` (or its shards) with
``safetensors.safe_open`` one at a time, and tensors over :data:`CHUNK_ELEMENTS` elements (the embedding table of a
multilingual model is most of the model) are read in row blocks. Because SLERP of a tensor is a linear
combination ``c0 * v0 + c1 * v1`` whose two coefficients depend only on the dot product and the two norms, each
big tensor takes two passes over its row blocks: one accumulates the dot products and norms (in float64), the
other writes ``c0 * v0 + c1 * v1`` block by block. The output ``model.safetensors`` is written incrementally as
well: its header is known in advance (names, shapes and dtypes are those of the first model), so the data is
streamed straight to the file. Peak memory therefore stays at a few blocks (tens of MB), independent of the model
size, instead of the ~3 models a load-both-then-merge approach needs. Without ``output_dir`` the merged state dict
is returned, so the peak is one merged model plus the blocks in flight. See ``benchmarks/merge_memory.py``.

Output folder
-------------
Written atomically (:func:`querit_st._utils.atomic_dir`): either the whole folder appears or nothing does. It
holds ``model.safetensors``, every non-weight file of the first model's folder (``config.json``, tokenizer files,
``modules.json``, ``config_sentence_transformers.json``, ``sentence_bert_config.json``, ...), a
``merge_config.json`` recording the inputs and settings, and ``README.md`` (the first model's card, or a new one)
with a "Merge" section appended. Plain ``sentence_transformers.CrossEncoder(output_dir)`` loads it.

Inputs are checked before anything is written: architecture (``config.json``: model type, hidden sizes, number of
layers, ...), tokenizer (``tokenizer.json`` vocabulary/model, vocab files), tensor names, shapes and kinds. The
first mismatch raises :class:`~querit_st._utils.QueritInputError` naming the tensor or file.

LoRA adapters
-------------
A folder with ``adapter_config.json`` (a peft LoRA adapter, saved by peft or by sentence-transformers'
``save_pretrained`` after ``add_adapter``) is read as its base model (``adapter_config["base_model_name_or_path"]``
or the ``base=`` argument) with the adapter folded in, ``W + scale * B @ A`` with ``scale = lora_alpha / r``
(``/ sqrt(r)`` for rsLoRA), computed per tensor (and per row block) while streaming, so neither peft nor a loaded
model is needed. ``modules_to_save`` tensors (e.g. the classifier head) replace the base's. DoRA and other peft
methods are refused with a clear error: merge those with peft's ``merge_and_unload()`` and save first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from querit_st._utils import QueritInputError, atomic_dir, atomic_write_json, load_torch_weights, one_line

__all__ = [
    "CHUNK_ELEMENTS",
    "DOT_THRESHOLD",
    "EPS",
    "gradient_value",
    "layer_index",
    "layer_position",
    "merge_command",
    "slerp",
    "slerp_merge",
    "slerp_merge_many",
    "slerp_schedule",
    "t_for_parameter",
]

EPS = 1e-8
DOT_THRESHOLD = 0.9995
#: Tensors with more elements than this are streamed in row blocks of about this many elements (4 MiB in fp32).
CHUNK_ELEMENTS = 1 << 20

TSetting = float | Sequence[float]
ModelInput = str | os.PathLike | Mapping[str, torch.Tensor] | torch.nn.Module


# ----------------------------------------------------------------------------------------------------- the math


def _slerp_coefficients(
    t: float, dot: float, norm0: float, norm1: float, eps: float = EPS, dot_threshold: float = DOT_THRESHOLD
) -> tuple[float, float]:
    """The coefficients ``(c0, c1)`` with ``slerp(t, v0, v1) == c0 * v0 + c1 * v1``.

    Exactly mergekit's rule: the cosine of the angle is computed from the tensors normalised by their norms (a norm
    at or below ``eps`` is left alone), near-colinear pairs (``|cos| > dot_threshold``) fall back to linear
    interpolation, and the spherical weights are applied to the *original* (unnormalised) tensors.
    """
    if t == 0:
        return 1.0, 0.0
    if t == 1:
        return 0.0, 1.0
    # dot / (|v0| |v1|): the product keeps the result (and the branch taken) symmetric in (v0, v1).
    cos = dot / ((norm0 if norm0 > eps else 1.0) * (norm1 if norm1 > eps else 1.0))
    if not math.isfinite(cos) or abs(cos) > dot_threshold:
        return 1.0 - t, t
    theta = math.acos(max(-1.0, min(1.0, cos)))
    sin_theta = math.sin(theta)
    return math.sin((1.0 - t) * theta) / sin_theta, math.sin(t * theta) / sin_theta


def _compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


def _gram(blocks: Iterable[Sequence[torch.Tensor]], n: int) -> list[list[float]]:
    """Pairwise dot products of ``n`` tensors given as aligned blocks, accumulated in float64."""
    gram = [[0.0] * n for _ in range(n)]
    for block in blocks:
        flat = [x.reshape(-1).to(torch.float64) for x in block]
        for i in range(n):
            for j in range(i, n):
                gram[i][j] += float(torch.dot(flat[i], flat[j]))
        del flat, block  # free this block before the next one is read
    for i in range(n):
        for j in range(i):
            gram[i][j] = gram[j][i]
    return gram


def _sequential_coefficients(
    gram: Sequence[Sequence[float]], ts: Sequence[float], eps: float = EPS, dot_threshold: float = DOT_THRESHOLD
) -> list[float]:
    """Coefficients ``alpha`` with ``acc_n == sum_i alpha_i * v_i`` for ``acc_1 = v_0, acc_{k+1} = slerp(t_k, acc_k, v_k)``.

    Every SLERP step is a linear combination whose coefficients depend only on dot products and norms, and those of
    the running result follow from the Gram matrix of the inputs. So the whole chain needs one pass over the data to
    get the Gram matrix and one to write the result, whatever the number of models.
    """
    n = len(gram)
    alpha = [1.0] + [0.0] * (n - 1)
    for k in range(1, n):
        t = ts[k - 1]
        if t == 0:
            continue
        if t == 1:
            alpha = [0.0] * n
            alpha[k] = 1.0
            continue
        dot = sum(alpha[i] * gram[i][k] for i in range(n) if alpha[i])
        sq = sum(alpha[i] * alpha[j] * gram[i][j] for i in range(n) for j in range(n) if alpha[i] and alpha[j])
        c0, c1 = _slerp_coefficients(
            t, dot, math.sqrt(max(sq, 0.0)), math.sqrt(max(gram[k][k], 0.0)), eps, dot_threshold
        )
        alpha = [c0 * a for a in alpha]
        alpha[k] += c1
    return alpha


def _combine(
    tensors: Sequence[torch.Tensor], alpha: Sequence[float], out_dtype: torch.dtype, compute_dtype: torch.dtype
) -> torch.Tensor:
    """``sum_i alpha_i * tensors_i`` in ``compute_dtype``, cast to ``out_dtype``; a lone unit term is copied exactly."""
    terms = [(x, a) for x, a in zip(tensors, alpha) if a != 0.0]
    if not terms:
        return torch.zeros_like(tensors[0], dtype=out_dtype)
    if len(terms) == 1 and terms[0][1] == 1.0:
        return terms[0][0].to(out_dtype)
    res = terms[0][0].to(compute_dtype) * terms[0][1]
    for x, a in terms[1:]:
        res.add_(x.to(device=res.device, dtype=compute_dtype), alpha=a)
    return res.to(out_dtype)


def _flat_blocks(tensors: Sequence[torch.Tensor], size: int = CHUNK_ELEMENTS) -> Iterator[tuple[torch.Tensor, ...]]:
    flat = [x.reshape(-1) for x in tensors]
    numel = flat[0].numel()
    for start in range(0, max(numel, 1), size):
        yield tuple(x[start : start + size] for x in flat)


def _check_t(t: Any, name: str = "t", allow_list: bool = True) -> float | list[float]:
    def scalar(v: Any, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise QueritInputError(f"{where} must be a number in [0, 1], got {v!r}")
        v = float(v)
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise QueritInputError(f"{where} must be in [0, 1], got {v!r}")
        return v

    if allow_list and isinstance(t, (list, tuple)):
        if not t:
            raise QueritInputError(f"{name} is an empty list; give a number or a non-empty list of numbers")
        return [scalar(v, f"{name}[{i}]") for i, v in enumerate(t)]
    return scalar(t, name)


def slerp(
    t: float, v0: torch.Tensor, v1: torch.Tensor, eps: float = EPS, dot_threshold: float = DOT_THRESHOLD
) -> torch.Tensor:
    """Spherical linear interpolation between two tensors (mergekit's ``slerp``).

    Each whole tensor is treated as one vector: both are normalised by their norm (when it is above ``eps``), the
    angle ``theta`` comes from the dot product of the normalised vectors, and the result is
    ``sin((1-t) theta)/sin(theta) * v0 + sin(t theta)/sin(theta) * v1`` on the *original* tensors (not renormalised:
    differing norms carry over into the result). When the tensors are nearly colinear (``|cos theta| > dot_threshold``, where SLERP is
    numerically unstable and equal to linear interpolation anyway) it falls back to ``(1-t) * v0 + t * v1``.
    Note that this includes nearly anti-parallel tensors, where the great circle is undefined.

    ``t=0`` returns (a copy of) ``v0`` and ``t=1`` returns ``v1`` exactly. The computation runs in float32
    (float64 if an input is float64) and the result has ``v0``'s dtype. ``t`` outside ``[0, 1]`` extrapolates.
    """
    t = float(t)
    if not math.isfinite(t):
        raise QueritInputError(f"t must be finite, got {t!r}")
    if not isinstance(v0, torch.Tensor) or not isinstance(v1, torch.Tensor):
        raise QueritInputError("slerp expects two tensors")
    if v0.shape != v1.shape:
        raise QueritInputError(f"slerp needs tensors of the same shape, got {tuple(v0.shape)} and {tuple(v1.shape)}")
    if not (v0.dtype.is_floating_point and v1.dtype.is_floating_point):
        raise QueritInputError(f"slerp needs floating-point tensors, got {v0.dtype} and {v1.dtype}")
    if t == 0:
        return v0.clone()
    if t == 1:
        return v1.to(dtype=v0.dtype, device=v0.device, copy=True)
    alpha = _sequential_coefficients(_gram(_flat_blocks([v0, v1]), 2), [t], eps, dot_threshold)
    out = _combine([v0, v1.to(v0.device)], alpha, v0.dtype, _compute_dtype(v0.dtype, v1.dtype))
    return out.clone() if out is v0 or out is v1 else out


# --------------------------------------------------------------------------------------------- the t schedules

_LAYER_RE = re.compile(r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)(?:\.|$)")
_PRE_WEIGHT_RE = re.compile(r"embed|(?:^|\.)(?:wte|wpe|shared)(?:\.|$)")


def layer_index(name: str) -> int | None:
    """The transformer layer a parameter belongs to (``encoder.layer.3.`` / ``layers.3.`` / ``h.3.`` -> 3), else None."""
    m = _LAYER_RE.search(name)
    return int(m.group(1)) if m else None


def layer_position(name: str, num_layers: int) -> float:
    """Where a parameter sits on the ``[0, 1]`` gradient axis (mergekit's convention).

    Layer ``i`` of ``num_layers`` sits at ``i / (num_layers - 1)`` (at 1 when there is a single layer). Parameters
    outside the numbered layers are mergekit's pre-weights (embeddings: position 0) or post-weights (pooler,
    classifier head, final norm, LM head: position 1).
    """
    idx = layer_index(name)
    if idx is None:
        return 0.0 if _PRE_WEIGHT_RE.search(name) else 1.0
    if num_layers <= 1:
        return 1.0
    return min(idx / (num_layers - 1), 1.0)


def gradient_value(values: TSetting, position: float) -> float:
    """Evaluate a scalar or a gradient ``[v_0, ..., v_m]`` at ``position`` in ``[0, 1]`` (mergekit's rule).

    The list's points are evenly spaced over ``[0, 1]`` and values between them are linearly interpolated;
    at a point's position the value is that point's exactly.
    """
    if not isinstance(values, (list, tuple)):
        return float(values)
    vals = [float(v) for v in values]
    if len(vals) == 1:
        return vals[0]
    position = min(max(float(position), 0.0), 1.0)
    scaled = position * (len(vals) - 1)
    i0 = math.floor(scaled)
    i1 = min(len(vals) - 1, i0 + 1)
    frac = scaled - i0
    if frac == 0.0:
        return vals[i0]
    return (1.0 - frac) * vals[i0] + frac * vals[i1]


def t_for_parameter(
    name: str, t: TSetting, num_layers: int, parameter_t: Mapping[str, TSetting] | None = None
) -> float:
    """The interpolation factor for one parameter: the first ``parameter_t`` key that is a substring of ``name``
    wins, else ``t``; a list is evaluated as a gradient at :func:`layer_position`."""
    setting = t
    for pattern, value in (parameter_t or {}).items():
        if pattern in name:
            setting = value
            break
    return gradient_value(setting, layer_position(name, num_layers))


def slerp_schedule(weights: Sequence[float]) -> list[float]:
    """The factors ``t_k = w_k / (w_0 + ... + w_k)``, ``k = 1..n-1``, of a sequential SLERP of ``n`` models.

    Merging ``acc = slerp(t_k, acc, m_k)`` in order with these factors gives model ``k`` the share ``w_k / sum(w)``
    of the result in the linear limit (the same schedule makes sequential *linear* interpolation an exact weighted
    mean): with equal weights, ``[1/2, 1/3, 1/4, ...]``.
    """
    try:
        ws = [float(w) for w in weights]
    except (TypeError, ValueError) as exc:
        raise QueritInputError(f"weights must be numbers, got {weights!r}") from exc
    if len(ws) < 2:
        raise QueritInputError(f"need at least two weights (one per model), got {len(ws)}")
    for i, w in enumerate(ws):
        if not math.isfinite(w) or w <= 0:
            raise QueritInputError(f"weights[{i}] must be a positive finite number, got {w!r}")
    out, total = [], ws[0]
    for w in ws[1:]:
        total += w
        out.append(w / total)
    return out


# --------------------------------------------------------------------------------------------------- inputs

_WEIGHT_FILE_RE = re.compile(
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
_OUR_FILES = {"merge_config.json"}
_VOCAB_FILES = (
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
# Config keys that define the architecture; differing values make a merge meaningless.
_ARCH_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "embedding_size",
    "head_dim",
    "d_model",
    "d_ff",
    "d_kv",
    "num_layers",
    "num_heads",
    "n_embd",
    "n_layer",
    "n_head",
    "dim",
    "n_layers",
    "n_heads",
    "hidden_dim",
    "num_labels",
)
_ST_TO_DTYPE = {
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
        _ST_TO_DTYPE[_name] = getattr(torch, _attr)
_DTYPE_TO_ST = {v: k for k, v in _ST_TO_DTYPE.items()}


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"#{i + 1}"


class _Source:
    """One merge input, read tensor by tensor. Subclasses fill the attributes and the read methods."""

    kind = "state_dict"

    def __init__(self, label: str) -> None:
        self.label = label  # "A (/path/to/model)": used in error messages
        self.config: dict[str, Any] | None = None
        self.tokenizer: dict[str, Path | str] = {}  # component (file name) -> file, or its text
        self.files: dict[str, Path] | None = None  # template: relative name -> file, weights excluded
        self.module: torch.nn.Module | None = None  # template: a loaded model that can save itself
        self._info: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}

    def names(self) -> list[str]:
        return list(self._info)

    def info(self, key: str) -> tuple[tuple[int, ...], torch.dtype]:
        return self._info[key]

    def read(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def read_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        return self.read(key)[start:stop]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label}

    def close(self) -> None:
        pass


class _DictSource(_Source):
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
            self._info[k] = (tuple(v.shape), v.dtype)

    def read(self, key: str) -> torch.Tensor:
        return self._state[key]


class _SafetensorsSource(_Source):
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
                        if st_dtype not in _ST_TO_DTYPE:
                            raise QueritInputError(
                                f"{label}: tensor {k!r} in {file.name} has unsupported dtype {st_dtype}"
                            )
                        self._info[k] = (tuple(sl.get_shape()), _ST_TO_DTYPE[st_dtype])
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


class _LoraSource(_Source):
    """A base model with a peft LoRA adapter folded in: ``W + scale * B @ A``, computed per tensor / row block."""

    kind = "lora_adapter"

    def __init__(self, base: _Source, adapter_dir: Path, adapter_config: dict[str, Any], label: str) -> None:
        super().__init__(label)
        self.base = base
        self.adapter_dir = adapter_dir
        self.adapter_config = adapter_config
        self._info = dict(base._info)
        self._replace: dict[str, torch.Tensor] = {}
        # target weight key -> (A, B, scale, transposed); target bias key -> (bias delta)
        self._delta: dict[str, tuple[torch.Tensor, torch.Tensor, float, bool]] = {}
        self._bias_delta: dict[str, torch.Tensor] = {}
        self._load(adapter_config)

    def _load(self, cfg: dict[str, Any]) -> None:
        where = f"{self.label}: adapter {self.adapter_dir}"
        peft_type = str(cfg.get("peft_type", "LORA")).upper()
        if peft_type != "LORA":
            raise QueritInputError(
                f"{where} is a {peft_type} adapter; only LoRA adapters are folded in here. "
                "Merge it with peft's merge_and_unload() and save the model first."
            )
        for flag in ("use_dora", "layer_replication", "target_parameters", "trainable_token_indices", "use_qalora"):
            if cfg.get(flag):
                raise QueritInputError(
                    f"{where} uses {flag}={cfg[flag]!r}, which this merge does not fold in. "
                    "Merge it with peft's merge_and_unload() and save the model first."
                )
        state = _load_adapter_state(self.adapter_dir)
        base_keys = set(self.base.names())
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for raw_key, tensor in state.items():
            key = raw_key.removeprefix("base_model.model.")
            m = re.match(r"^(.*)\.(lora_A|lora_B)(?:\.[^.]+)?\.(weight|bias)$", key) or re.match(
                r"^(.*)\.(lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?$", key
            )
            if m:
                part = m.group(2) + ("." + m.group(3) if m.lastindex and m.lastindex >= 3 else "")
                pairs.setdefault(m.group(1), {})[part] = tensor
                continue
            if "lora_" in key or "token_adapter" in key or "trainable_tokens" in key:
                raise QueritInputError(
                    f"{where}: tensor {raw_key!r} is not a plain LoRA weight (DoRA magnitude, trainable tokens, ...); "
                    "merge it with peft's merge_and_unload() and save the model first"
                )
            key = key.replace(".modules_to_save.default.", ".")
            target = _resolve_key(key, base_keys)
            if target is None:
                raise QueritInputError(f"{where}: tensor {raw_key!r} has no counterpart {key!r} in the base model")
            if tuple(tensor.shape) != self._info[target][0]:
                raise QueritInputError(
                    f"{where}: tensor {raw_key!r} has shape {tuple(tensor.shape)} but the base's {target!r} has "
                    f"{self._info[target][0]}"
                )
            self._replace[target] = tensor
            self._info[target] = (tuple(tensor.shape), tensor.dtype)

        alpha_default = float(cfg.get("lora_alpha", 8))
        alpha_pattern = cfg.get("alpha_pattern") or {}
        rslora = bool(cfg.get("use_rslora", False))
        fan_in_fan_out = bool(cfg.get("fan_in_fan_out", False))
        for module, parts in pairs.items():
            embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
            a = parts.get("lora_embedding_A" if embedding else "lora_A.weight")
            b = parts.get("lora_embedding_B" if embedding else "lora_B.weight")
            if a is None or b is None:
                raise QueritInputError(f"{where}: module {module!r} has only one of the LoRA A/B matrices")
            if a.dim() != 2 or b.dim() != 2:
                raise QueritInputError(
                    f"{where}: module {module!r} is not a Linear/Embedding LoRA (convolution?); "
                    "merge it with peft's merge_and_unload() and save the model first"
                )
            r = a.shape[0]
            alpha = alpha_default
            for pattern, value in alpha_pattern.items():
                if re.match(rf"(.*\.)?({pattern})$", module):
                    alpha = float(value)
                    break
            scale = alpha / (math.sqrt(r) if rslora else r)
            target = _resolve_key(module + ".weight", base_keys)
            if target is None:
                raise QueritInputError(
                    f"{where}: LoRA module {module!r} has no weight {module + '.weight'!r} in the base"
                )
            transposed = embedding or fan_in_fan_out
            shape = (b.shape[0], a.shape[1])
            if transposed:
                shape = shape[::-1]
            if shape != self._info[target][0]:
                raise QueritInputError(
                    f"{where}: LoRA update of {module!r} has shape {shape} but the base's {target!r} has "
                    f"{self._info[target][0]}"
                )
            self._delta[target] = (a, b, scale, transposed)
            if "lora_B.bias" in parts:
                bias_key = _resolve_key(module + ".bias", base_keys)
                if bias_key is None:
                    raise QueritInputError(f"{where}: LoRA bias of {module!r} has no bias in the base")
                self._bias_delta[bias_key] = parts["lora_B.bias"].float() * scale

    def read(self, key: str) -> torch.Tensor:
        if key in self._delta:
            return self.read_rows(key, 0, self._info[key][0][0])
        return self._read_plain(key, None, None)

    def _read_plain(self, key: str, start: int | None, stop: int | None) -> torch.Tensor:
        if key in self._replace:
            x = self._replace[key]
            return x if start is None else x[start:stop]
        x = self.base.read(key) if start is None else self.base.read_rows(key, start, stop)
        if key in self._bias_delta:
            delta = self._bias_delta[key] if start is None else self._bias_delta[key][start:stop]
            x = (x.float() + delta).to(x.dtype)
        return x

    def read_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        if key not in self._delta:
            return self._read_plain(key, start, stop)
        a, b, scale, transposed = self._delta[key]
        w = self.base.read_rows(key, start, stop)
        if transposed:  # delta = (B @ A).T: rows of delta = (B @ A[:, rows]).T
            delta = (b.float() @ a[:, start:stop].float()).T
        else:  # delta = B @ A: rows of delta = B[rows] @ A
            delta = b[start:stop].float() @ a.float()
        return (w.float() + delta * scale).to(w.dtype)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(adapter=str(self.adapter_dir), base=self.base.describe())
        return d

    def close(self) -> None:
        self.base.close()


def _resolve_key(key: str, keys: set[str]) -> str | None:
    """``key`` itself, else the unique key that ends with ``.key`` (adapter saved on a differently wrapped model)."""
    if key in keys:
        return key
    hits = [k for k in keys if k.endswith("." + key)]
    if len(hits) == 1:
        return hits[0]
    # The adapter may carry a prefix the base lacks (e.g. saved on BertForSequenceClassification, base is BertModel).
    parts = key.split(".")
    for i in range(1, len(parts)):
        tail = ".".join(parts[i:])
        if tail in keys:
            return tail
    return None


def _load_adapter_state(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "adapter_model.safetensors"))
    if (folder / "adapter_model.bin").is_file():
        return load_torch_weights(folder / "adapter_model.bin")
    raise QueritInputError(f"adapter folder {str(folder)!r} has adapter_config.json but no adapter_model.safetensors")


def _template_files(folder: Path) -> dict[str, Path]:
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
                if _WEIGHT_FILE_RE.match(name) or _TRAINER_FILE_RE.match(name) or name in _OUR_FILES:
                    continue
            elif _SUBFOLDER_WEIGHT_RE.search(name):
                raise QueritInputError(
                    f"{str(folder)!r} holds weights in a submodule ({rel}); only single-module models (weights at the "
                    "folder root, as CrossEncoder saves them) can be merged"
                )
            files[rel] = Path(root) / name
    return files


def _tokenizer_components(files: Mapping[str, Path]) -> dict[str, Path | str]:
    """The tokenizer files of a folder, by name (compared lazily by :func:`_same_component`)."""
    return {name: files[name] for name in ("tokenizer.json", *_VOCAB_FILES) if name in files}


_TOKENIZER_CORE = ("model", "added_tokens", "normalizer", "pre_tokenizer")


def _component_bytes(x: Path | str) -> bytes:
    return x.read_bytes() if isinstance(x, Path) else x.encode("utf-8")


def _same_component(name: str, x: Path | str, y: Path | str) -> bool:
    """Identical bytes, or (JSON files) the same content; for tokenizer.json only what decides the token ids counts
    (vocabulary/merges, added tokens, normalizer, pre-tokenizer), not saved truncation/padding settings."""
    bx, by = _component_bytes(x), _component_bytes(y)
    if bx == by:
        return True
    if not name.endswith(".json"):
        return False
    try:
        jx, jy = json.loads(bx), json.loads(by)
    except ValueError:
        return False
    if name == "tokenizer.json" and isinstance(jx, dict) and isinstance(jy, dict):
        return all(jx.get(k) == jy.get(k) for k in _TOKENIZER_CORE)
    return jx == jy


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


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise QueritInputError(f"cannot parse {path}: {exc}") from exc


def _open_folder(folder: Path, label: str, base: str | os.PathLike | None) -> _Source:
    if not folder.is_dir():
        raise QueritInputError(f"{label}: {str(folder)!r} is not a folder")
    if (folder / "adapter_config.json").is_file():
        return _open_adapter(folder, label, base)
    files = _template_files(folder)
    src: _Source
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        src = _SafetensorsSource([folder / "model.safetensors"], label)
    elif index.is_file():
        shard_names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        src = _SafetensorsSource([folder / s for s in shard_names], label)
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
        src = _DictSource(state, label, kind="folder")
    src.kind = "folder"
    src.files = files
    src.config = _read_config(folder / "config.json")
    src.tokenizer = _tokenizer_components(files)
    src.path = folder.resolve()  # type: ignore[attr-defined]
    return src


def _open_adapter(folder: Path, label: str, base: str | os.PathLike | None) -> _Source:
    cfg = _read_config(folder / "adapter_config.json") or {}
    base_ref = base if base is not None else cfg.get("base_model_name_or_path")
    if not base_ref:
        raise QueritInputError(
            f"{label}: adapter_config.json in {str(folder)!r} names no base_model_name_or_path; pass base=PATH"
        )
    base_dir = _resolve_base(str(base_ref), folder, cfg.get("revision"), label)
    if (base_dir / "adapter_config.json").is_file():
        raise QueritInputError(f"{label}: the base model {str(base_dir)!r} of an adapter is itself an adapter")
    base_src = _open_folder(base_dir, f"{label} base", None)
    try:
        src = _LoraSource(base_src, folder, cfg, label)
    except BaseException:
        base_src.close()
        raise
    # Template: the base's files, overlaid by the adapter folder's own non-adapter files (sentence-transformers
    # saves modules.json, tokenizer, ... next to the adapter; peft saves only a README).
    files = dict(base_src.files or {})
    for rel, path in _template_files(folder).items():
        if rel == "README.md" and "README.md" in files:
            continue  # keep the base's model card; peft's adapter card describes an adapter, not this model
        files[rel] = path
    src.files = files
    src.config = base_src.config
    src.tokenizer = _tokenizer_components(files)
    src.path = folder.resolve()  # type: ignore[attr-defined]
    return src


def _resolve_base(ref: str, adapter_dir: Path, revision: str | None, label: str) -> Path:
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


def _model_source(model: torch.nn.Module, label: str) -> _Source:
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
        state = model.state_dict()
        src = _DictSource(state, label, kind="model")
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
    src = _DictSource(dedup, label, kind="model")
    src.config = hf.config.to_dict()
    src.tokenizer = _tokenizer_components_model(model)
    src.module = model
    return src


def _open_input(x: Any, index: int, base: str | os.PathLike | None) -> _Source:
    if isinstance(x, (str, os.PathLike)):
        return _open_folder(Path(x), f"{_letter(index)} ({x})", base)
    if isinstance(x, torch.nn.Module):
        return _model_source(x, f"{_letter(index)} ({type(x).__name__})")
    if isinstance(x, Mapping):
        return _DictSource(x, f"{_letter(index)} (state dict)")
    raise QueritInputError(
        f"model {_letter(index)} must be a model folder, a loaded model or a state dict, got {type(x).__name__}"
    )


# ----------------------------------------------------------------------------------------------- validation


def _num_labels(cfg: Mapping[str, Any]) -> Any:
    if "id2label" in cfg and isinstance(cfg["id2label"], Mapping):
        return len(cfg["id2label"])
    return cfg.get("num_labels")


def _check_configs(ref: _Source, other: _Source) -> None:
    if ref.config is None or other.config is None:
        return
    for key in _ARCH_KEYS:
        if key == "num_labels":
            va, vb = _num_labels(ref.config), _num_labels(other.config)
        else:
            va, vb = ref.config.get(key), other.config.get(key)
        if va != vb:
            raise QueritInputError(
                f"cannot merge {ref.label} and {other.label}: config.json differs at {key!r} ({va!r} vs {vb!r}); "
                "the architectures do not match. Nothing was written."
            )


def _check_tokenizers(ref: _Source, other: _Source) -> None:
    fa, fb = ref.tokenizer, other.tokenizer
    if not fa and not fb:
        return
    if not fa or not fb:
        has, lacks = (ref, other) if fa else (other, ref)
        # A state dict or a bare transformers model carries no tokenizer: nothing to compare.
        if lacks.kind not in ("folder", "lora_adapter"):
            return
        raise QueritInputError(
            f"cannot merge {ref.label} and {other.label}: {has.label} has tokenizer files "
            f"({', '.join(sorted(has.tokenizer))}) but {lacks.label} has none. Nothing was written."
        )
    common = [k for k in ("tokenizer.json", "vocab", *_VOCAB_FILES) if k in fa and k in fb]
    if not common:
        raise QueritInputError(
            f"cannot merge {ref.label} and {other.label}: their tokenizers cannot be compared ({sorted(fa)} vs "
            f"{sorted(fb)}). Nothing was written."
        )
    for name in common:
        if not _same_component(name, fa[name], fb[name]):
            raise QueritInputError(
                f"cannot merge {ref.label} and {other.label}: tokenizer file {name!r} differs (different vocabulary "
                "or tokenizer); merged weights would index different tokens. Nothing was written."
            )


def _check_tensors(ref: _Source, other: _Source) -> None:
    keys_b = set(other.names())
    for k in ref.names():
        if k not in keys_b:
            raise QueritInputError(
                f"cannot merge {ref.label} and {other.label}: tensor {k!r} is in {_short(ref)} but missing from "
                f"{_short(other)}. Nothing was written."
            )
    keys_a = set(ref.names())
    for k in other.names():
        if k not in keys_a:
            raise QueritInputError(
                f"cannot merge {ref.label} and {other.label}: tensor {k!r} is in {_short(other)} but missing from "
                f"{_short(ref)}. Nothing was written."
            )
    for k in ref.names():
        (sa, da), (sb, db) = ref.info(k), other.info(k)
        if sa != sb:
            raise QueritInputError(
                f"cannot merge {ref.label} and {other.label}: tensor {k!r} has shape {list(sa)} in {_short(ref)} "
                f"but {list(sb)} in {_short(other)}. Nothing was written."
            )
        if da.is_floating_point != db.is_floating_point:
            raise QueritInputError(
                f"cannot merge {ref.label} and {other.label}: tensor {k!r} is {da} in {_short(ref)} but {db} in "
                f"{_short(other)}. Nothing was written."
            )


def _short(src: _Source) -> str:
    return src.label.split(" ", 1)[0]


def _check_all(sources: Sequence[_Source]) -> None:
    ref = sources[0]
    for other in sources[1:]:
        _check_configs(ref, other)
    for other in sources[1:]:
        _check_tokenizers(ref, other)
    for other in sources[1:]:
        _check_tensors(ref, other)


# ------------------------------------------------------------------------------------------------- writing


class _SafetensorsWriter:
    """Writes a ``.safetensors`` file tensor by tensor, block by block, without holding the tensors.

    The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape, byte offsets), and
    the raw little-endian C-order data. Names, shapes and dtypes are known before the data, so the header is
    written first and the data streamed after it. Tensors are laid out by decreasing element size, then name, and
    the header is padded to 8 bytes, so every tensor is aligned (as ``safetensors.torch.save_file`` does).
    """

    def __init__(
        self, path: Path, entries: Iterable[tuple[str, tuple[int, ...], torch.dtype]], metadata: dict[str, str]
    ):
        entries = sorted(entries, key=lambda e: (-e[2].itemsize, e[0]))
        header: dict[str, Any] = {"__metadata__": metadata}
        self.order: list[tuple[str, int]] = []
        offset = 0
        for name, shape, dtype in entries:
            if dtype not in _DTYPE_TO_ST:
                raise QueritInputError(f"tensor {name!r} has dtype {dtype}, which safetensors cannot store")
            nbytes = math.prod(shape) * dtype.itemsize
            header[name] = {
                "dtype": _DTYPE_TO_ST[dtype],
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


def _row_ranges(shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """Row blocks for a big tensor, or None when it is read whole."""
    numel = math.prod(shape)
    if len(shape) == 0 or numel <= CHUNK_ELEMENTS or shape[0] <= 1:
        return None
    row = numel // shape[0]
    step = max(1, CHUNK_ELEMENTS // max(row, 1))
    return [(s, min(s + step, shape[0])) for s in range(0, shape[0], step)]


def _merge_key_streaming(
    sources: Sequence[_Source], key: str, ts: Sequence[float], writer: _SafetensorsWriter, eps: float, thr: float
) -> str:
    """Merge one tensor and stream it to ``writer``; returns "copied" or "interpolated"."""
    shape, out_dtype = sources[0].info(key)
    ranges = _row_ranges(shape)
    if not out_dtype.is_floating_point:
        writer.write(key, sources[0].read(key))
        return "copied"
    n = len(sources)
    cd = _compute_dtype(*(s.info(key)[1] for s in sources))
    # Skip reading (and the Gram pass) when the schedule makes the result a single input exactly.
    alpha: list[float] | None = None
    if all(t in (0.0, 1.0) for t in ts):
        alpha = _sequential_coefficients([[0.0] * n for _ in range(n)], ts)
    if ranges is None:
        tensors = [s.read(key) if alpha is None or alpha[i] else None for i, s in enumerate(sources)]
        if alpha is None:
            alpha = _sequential_coefficients(_gram(_flat_blocks(tensors), n), ts, eps, thr)  # type: ignore[arg-type]
        writer.write(key, _combine_sparse(tensors, alpha, out_dtype, cd))
        return "interpolated"
    if alpha is None:
        blocks = ([s.read_rows(key, a, b) for s in sources] for a, b in ranges)
        alpha = _sequential_coefficients(_gram(blocks, n), ts, eps, thr)
    for a, b in ranges:
        block = [s.read_rows(key, a, b) if alpha[i] else None for i, s in enumerate(sources)]
        writer.write(key, _combine_sparse(block, alpha, out_dtype, cd))
        del block  # free this block before the next one is read
    return "interpolated"


def _combine_sparse(
    tensors: Sequence[torch.Tensor | None], alpha: Sequence[float], out_dtype: torch.dtype, cd: torch.dtype
) -> torch.Tensor:
    pairs = [(x, a) for x, a in zip(tensors, alpha) if a != 0.0 and x is not None]
    if not pairs:  # all coefficients zero (cannot happen with t in [0, 1]); keep the shape
        first = next(x for x in tensors if x is not None)
        return torch.zeros_like(first, dtype=out_dtype)
    return _combine([x for x, _ in pairs], [a for _, a in pairs], out_dtype, cd)


def _merge_key_in_memory(
    sources: Sequence[_Source], key: str, ts: Sequence[float], eps: float, thr: float
) -> torch.Tensor:
    _, out_dtype = sources[0].info(key)
    if not out_dtype.is_floating_point:
        return sources[0].read(key).clone()
    n = len(sources)
    tensors = [s.read(key) for s in sources]
    device = tensors[0].device
    tensors = [x.to(device) for x in tensors]
    cd = _compute_dtype(*(x.dtype for x in tensors))
    alpha = _sequential_coefficients(_gram(_flat_blocks(tensors), n), ts, eps, thr)
    out = _combine(tensors, alpha, out_dtype, cd)
    return (
        out.clone() if any(out is x for x in tensors) or any(out.data_ptr() == x.data_ptr() for x in tensors) else out
    )


def _num_layers(keys: Iterable[str]) -> int:
    idx = [i for i in (layer_index(k) for k in keys) if i is not None]
    return max(idx) + 1 if idx else 0


def _write_template(tmp: Path, template: _Source | torch.nn.Module | Mapping[str, Path]) -> None:
    """Copy the non-weight files of the template (or let a loaded model save them) into ``tmp``."""
    if isinstance(template, torch.nn.Module):
        template.save_pretrained(str(tmp))  # type: ignore[operator]
        for p in list(tmp.iterdir()):
            if p.is_file() and (_WEIGHT_FILE_RE.match(p.name) or p.name in _OUR_FILES):
                p.unlink()
        return
    files = template if isinstance(template, Mapping) else (template.files or {})
    for rel, src in files.items():
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def _resolve_template(sources: Sequence[_Source], template: Any) -> tuple[Any, dict[str, Any] | None, str]:
    """What provides config/tokenizer files: ``template`` if given, else the first model."""
    if template is not None:
        if isinstance(template, (str, os.PathLike)):
            folder = Path(template)
            if not folder.is_dir():
                raise QueritInputError(f"template {str(template)!r} is not a folder")
            if (folder / "adapter_config.json").is_file():
                cfg = _read_config(folder / "adapter_config.json") or {}
                base_dir = _resolve_base(
                    str(cfg.get("base_model_name_or_path")), folder, cfg.get("revision"), "template"
                )
                files = {**_template_files(base_dir), **_template_files(folder)}
            else:
                files = _template_files(folder)
            return files, _read_config(folder / "config.json"), str(folder)
        if isinstance(template, torch.nn.Module):
            src = _model_source(template, "template")
            return template, src.config, type(template).__name__
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


def _merge_readme(record: dict[str, Any]) -> str:
    lines = ["", "## Merge", ""]
    method = "SLERP" if record["method"] == "slerp" else "sequential SLERP"
    lines.append(
        f"This model is a {method} merge (spherical linear interpolation of each weight tensor) of "
        f"{len(record['models'])} checkpoints, made with `querit_st.merge`:"
    )
    lines.append("")
    for m in record["models"]:
        desc = m.get("path") or m.get("label")
        extra = f" (LoRA adapter on `{m['base']['path']}`)" if m.get("kind") == "lora_adapter" else ""
        lines.append(f"- {m['label'].split(' ', 1)[0]}: `{desc}`{extra}")
    lines.append("")
    lines.append("| setting | value |")
    lines.append("|---|---|")
    for key in ("t", "parameter_t", "weights", "schedule", "dot_threshold", "eps"):
        if record.get(key) is not None:
            lines.append(f"| {key} | `{json.dumps(record[key])}` |")
    lines.append(
        f"| tensors | {record['tensors']['interpolated']} interpolated, {record['tensors']['copied']} copied |"
    )
    lines.append("")
    lines.append(
        "`t` is the weight of the second model (0 keeps the first, 1 gives the second); a list is a gradient over "
        "the transformer layers (mergekit's convention). Full settings are in `merge_config.json`."
    )
    return "\n".join(lines) + "\n"


def _describe(src: _Source) -> dict[str, Any]:
    d = src.describe()
    path = getattr(src, "path", None)
    if path is not None:
        d["path"] = str(path)
    if isinstance(src, _LoraSource):
        d["base"]["path"] = str(getattr(src.base, "path", ""))
    return d


def _run(
    inputs: Sequence[Any],
    schedule_for: Callable[[str, int], list[float]],
    record: dict[str, Any],
    output_dir: str | os.PathLike | None,
    *,
    template: Any,
    base: str | os.PathLike | None,
    overwrite: bool,
    show_progress_bar: bool,
    eps: float,
    dot_threshold: float,
) -> dict[str, torch.Tensor] | Path:
    with contextlib.ExitStack() as stack:
        sources: list[_Source] = []
        for i, x in enumerate(inputs):
            src = _open_input(x, i, base)
            stack.callback(src.close)
            sources.append(src)
        _check_all(sources)
        keys = sources[0].names()
        num_layers = _num_layers(keys)
        schedules = {k: schedule_for(k, num_layers) for k in keys}
        counts = {"interpolated": 0, "copied": 0}
        record.update(
            models=[_describe(s) for s in sources],
            num_layers=num_layers,
            eps=eps,
            dot_threshold=dot_threshold,
        )
        desc = "SLERP merge" if len(sources) == 2 else f"SLERP merge ({len(sources)} models)"

        if output_dir is None:
            out: dict[str, torch.Tensor] = {}
            for k in tqdm(keys, desc=desc, unit="tensor", disable=not show_progress_bar):
                out[k] = _merge_key_in_memory(sources, k, schedules[k], eps, dot_threshold)
            return out

        target = Path(output_dir)
        tmpl, tmpl_config, tmpl_label = _resolve_template(sources, template)
        if template is not None and sources[0].config is not None and tmpl_config is not None:
            _check_configs(_fake_source(tmpl_config, f"template ({tmpl_label})"), sources[0])
        input_paths = [getattr(s, "path", None) for s in sources]
        input_paths += [getattr(s.base, "path", None) for s in sources if isinstance(s, _LoraSource)]
        if target.resolve() in {Path(p) for p in input_paths if p is not None}:
            raise QueritInputError(f"output_dir {str(target)!r} is one of the inputs; write the merge elsewhere")
        if target.exists() and not overwrite:
            raise QueritInputError(f"output folder {str(target)!r} already exists; pass overwrite=True (--overwrite)")
        entries = [(k, *sources[0].info(k)) for k in keys]
        with atomic_dir(target, overwrite=overwrite) as tmp:
            _write_template(tmp, tmpl)
            writer = _SafetensorsWriter(tmp / "model.safetensors", entries, {"format": "pt"})
            try:
                for k, _ in tqdm(writer.order, desc=desc, unit="tensor", disable=not show_progress_bar):
                    counts[_merge_key_streaming(sources, k, schedules[k], writer, eps, dot_threshold)] += 1
                writer.close()
            except BaseException:
                writer.abort()
                raise
            record["tensors"] = counts
            record["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            atomic_write_json(tmp / "merge_config.json", record)
            readme = tmp / "README.md"
            text = readme.read_text(encoding="utf-8") if readme.is_file() else "# Merged cross-encoder\n"
            readme.write_text(text.rstrip("\n") + "\n" + _merge_readme(record), encoding="utf-8")
            stack.close()  # release the input files before the folder is renamed into place
        return target


def _fake_source(config: dict[str, Any], label: str) -> _Source:
    s = _Source(label)
    s.config = config
    return s


def _library_record(method: str) -> dict[str, Any]:
    from querit_st import __version__

    return {
        "method": method,
        "library": f"querit_st {__version__}",
        "torch": torch.__version__,
        "conventions": {
            "t": "weight of the second model; 0 keeps the first exactly, 1 gives the second exactly",
            "gradient": "a list is spread piecewise-linearly over layer_index / (num_layers - 1); embeddings use "
            "position 0 and non-layer parameters after the layers (pooler, head) position 1 (mergekit)",
            "parameter_t": "first key that is a substring of the parameter name wins",
            "dtypes": "computed in float32 (float64 if an input is float64), stored in the first model's dtype; "
            "non-float tensors copied from the first model",
        },
    }


# ---------------------------------------------------------------------------------------------- public API


def slerp_merge(
    a: ModelInput,
    b: ModelInput,
    t: TSetting = 0.5,
    output_dir: str | os.PathLike | None = None,
    *,
    parameter_t: Mapping[str, TSetting] | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    template: str | os.PathLike | torch.nn.Module | None = None,
    base: str | os.PathLike | None = None,
    eps: float = EPS,
    dot_threshold: float = DOT_THRESHOLD,
) -> dict[str, torch.Tensor] | Path:
    """SLERP-merge two checkpoints of the same architecture, tensor by tensor.

    Args:
        a, b: Model folders (as ``CrossEncoder.save_pretrained`` writes them; a peft LoRA adapter folder is folded
            into its base first), loaded models (a sentence-transformers ``CrossEncoder`` is read through its
            transformers model, so keys are those of its ``model.safetensors``), or state dicts.
        t: Weight of ``b``: 0 gives ``a`` exactly, 1 gives ``b`` exactly. A list ``[t_0, ..., t_m]`` is a gradient
            across the transformer layers (see the module docstring: embeddings take ``t_0``, the head ``t_m``).
        output_dir: Without it, the merged state dict is returned. With it, a model folder is written atomically
            (weights, ``a``'s config/tokenizer/sentence-transformers files, ``merge_config.json``, ``README.md``
            with a "Merge" section) and its ``Path`` returned.
        parameter_t: Overrides by parameter name, e.g. ``{"classifier": 0.3, "embeddings": [0, 1]}``; the first key
            that is a substring of the name wins; values are scalars or gradients.
        overwrite: Replace an existing ``output_dir``.
        show_progress_bar: A tqdm bar over the tensors.
        template: Folder or loaded model whose non-weight files the output gets (default: ``a``); required when
            ``a`` is a state dict and ``output_dir`` is given.
        base: Base model folder for LoRA adapter inputs (default: the adapter's ``base_model_name_or_path``).
        eps, dot_threshold: As in :func:`slerp`.

    Raises:
        QueritInputError: mismatched architectures, tokenizers, tensor names or shapes (naming the first offending
            file or tensor; nothing is written), bad ``t``, or an existing ``output_dir`` without ``overwrite``.
    """
    t_checked = _check_t(t)
    pt: dict[str, float | list[float]] = {}
    for k, v in (parameter_t or {}).items():
        if not isinstance(k, str) or not k:
            raise QueritInputError(f"parameter_t keys must be non-empty strings, got {k!r}")
        pt[k] = _check_t(v, f"parameter_t[{k!r}]")
    record = _library_record("slerp")
    record.update(t=t_checked, parameter_t=pt or None)

    def schedule_for(key: str, num_layers: int) -> list[float]:
        return [t_for_parameter(key, t_checked, num_layers, pt)]

    return _run(
        [a, b],
        schedule_for,
        record,
        output_dir,
        template=template,
        base=base,
        overwrite=overwrite,
        show_progress_bar=show_progress_bar,
        eps=eps,
        dot_threshold=dot_threshold,
    )


def slerp_merge_many(
    models: Sequence[ModelInput],
    weights: Sequence[float] | None = None,
    output_dir: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    template: str | os.PathLike | torch.nn.Module | None = None,
    base: str | os.PathLike | None = None,
    eps: float = EPS,
    dot_threshold: float = DOT_THRESHOLD,
) -> dict[str, torch.Tensor] | Path:
    """SLERP-merge ``n >= 2`` checkpoints by sequential SLERP: ``acc = m_0``, then ``acc = slerp(t_k, acc, m_k)``.

    ``t_k = w_k / (w_0 + ... + w_k)`` (:func:`slerp_schedule`; equal weights by default, so ``1/2, 1/3, ...``)
    gives every checkpoint its intended share: for linear interpolation this chain is exactly the weighted mean,
    and for SLERP it is the same weighting along great circles. SLERP is not associative, so the result depends
    (slightly, when the checkpoints are close, as fine-tunes of one base are) on the order of ``models``: it
    approximates the weighted spherical mean (Karcher mean) rather than computing it. Put the model you consider
    the reference first; its non-weight files and non-float tensors are the ones kept.

    The chain is computed without materialising intermediate models: each step is a linear combination of the
    inputs whose coefficients follow from their pairwise dot products, so every tensor is read in one pass for the
    dot products and one for the output, as in :func:`slerp_merge` (same arguments and output).
    """
    models = list(models)
    if len(models) < 2:
        raise QueritInputError(f"slerp_merge_many needs at least two models, got {len(models)}")
    w = [1.0] * len(models) if weights is None else list(weights)
    if len(w) != len(models):
        raise QueritInputError(f"got {len(w)} weights for {len(models)} models")
    schedule = slerp_schedule(w)
    record = _library_record("slerp" if len(models) == 2 else "sequential_slerp")
    record.update(weights=w, schedule=schedule)
    return _run(
        models,
        lambda key, num_layers: list(schedule),
        record,
        output_dir,
        template=template,
        base=base,
        overwrite=overwrite,
        show_progress_bar=show_progress_bar,
        eps=eps,
        dot_threshold=dot_threshold,
    )


# ---------------------------------------------------------------------------------------------------- CLI


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError as exc:
        raise QueritInputError(f"{what} must be comma-separated numbers, got {text!r}") from exc


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="querit-st merge",
        description="SLERP-merge cross-encoder checkpoints (model folders or LoRA adapter folders) into a new model "
        "folder. Two models: --t (weight of the second) or --t-list (a gradient over layers). More: sequential "
        "SLERP with --weights (equal by default).",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders, first one is the reference")
    p.add_argument("--t", type=float, default=None, help="weight of the second model, 0..1 (default 0.5)")
    p.add_argument("--t-list", default=None, help="gradient over the layers, e.g. 0,0.5,1 (two models only)")
    p.add_argument("--weights", nargs="+", default=None, help="one weight per model, e.g. 1 1 2 or 1,1,2")
    p.add_argument(
        "--parameter-t",
        action="append",
        default=[],
        metavar="NAME=T",
        help="override t for parameters whose name contains NAME (T a number or a comma list); repeatable",
    )
    p.add_argument("--output", "-o", required=True, help="output model folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--base", default=None, help="base model folder for LoRA adapter inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def merge_command(argv: list[str] | None = None) -> int:
    """``querit-st merge A B [C ...] --t 0.5 [--t-list 0,0.5,1] [--weights ...] --output DIR [--overwrite]``.

    Returns 0 on success; prints the error and returns 2 on bad input (mismatched models, bad arguments).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if len(args.models) < 2:
            raise QueritInputError("need at least two models to merge")
        weights = None
        if args.weights is not None:
            weights = _floats(" ".join(args.weights), "--weights")
        progress = not args.no_progress
        if len(args.models) == 2 and weights is None:
            if args.t is not None and args.t_list is not None:
                raise QueritInputError("give either --t or --t-list, not both")
            t: TSetting = 0.5 if args.t is None else args.t
            if args.t_list is not None:
                t = _floats(args.t_list, "--t-list")
            parameter_t: dict[str, TSetting] = {}
            for item in args.parameter_t:
                name, sep, value = item.partition("=")
                if not sep or not name:
                    raise QueritInputError(f"--parameter-t expects NAME=T, got {item!r}")
                vals = _floats(value, f"--parameter-t {name}")
                parameter_t[name] = vals[0] if len(vals) == 1 else vals
            out = slerp_merge(
                args.models[0],
                args.models[1],
                t,
                args.output,
                parameter_t=parameter_t or None,
                overwrite=args.overwrite,
                show_progress_bar=progress,
                base=args.base,
            )
        else:
            if args.t is not None or args.t_list is not None or args.parameter_t:
                raise QueritInputError(
                    "--t, --t-list and --parameter-t apply to two models without --weights; "
                    "with --weights (or more than two models) the t schedule follows from the weights"
                )
            out = slerp_merge_many(
                args.models,
                weights,
                args.output,
                overwrite=args.overwrite,
                show_progress_bar=progress,
                base=args.base,
            )
    except (QueritInputError, FileExistsError) as exc:
        print(f"querit-st merge: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"merged {len(args.models)} models into {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(merge_command())
