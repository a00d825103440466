"""Compatibility checks run on every merge input before anything is written: architecture (``config.json``: model
type, hidden sizes, number of layers, labels, ...), tokenizer (``tokenizer.json`` vocabulary/model, vocab files),
and tensor names, shapes and kinds. The first mismatch raises :class:`~querit_st.utils.QueritInputError` naming the
two inputs and the offending file, config key or tensor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from querit_st.merge.files import VOCAB_FILES
from querit_st.merge.sources import Source
from querit_st.utils import QueritInputError

__all__ = ["ARCH_KEYS", "check_all", "check_configs", "check_tensors", "check_tokenizers", "same_component"]

#: Config keys that define the architecture; differing values make a merge meaningless.
ARCH_KEYS = (
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
#: The parts of ``tokenizer.json`` that decide the token ids (not saved truncation/padding settings).
_TOKENIZER_CORE = ("model", "added_tokens", "normalizer", "pre_tokenizer")
_NOTHING = "Nothing was written."


def _num_labels(cfg: Mapping[str, Any]) -> Any:
    if "id2label" in cfg and isinstance(cfg["id2label"], Mapping):
        return len(cfg["id2label"])
    return cfg.get("num_labels")


def _short(src: Source) -> str:
    return src.label.split(" ", 1)[0]


def _component_bytes(x: Path | str) -> bytes:
    return x.read_bytes() if isinstance(x, Path) else x.encode("utf-8")


def same_component(name: str, x: Path | str, y: Path | str) -> bool:
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


def check_configs(
    ref: Mapping[str, Any] | None, other: Mapping[str, Any] | None, ref_label: str, other_label: str
) -> None:
    """The architecture keys of two ``config.json`` dicts agree (nothing to compare when one is missing)."""
    if ref is None or other is None:
        return
    for key in ARCH_KEYS:
        if key == "num_labels":
            va, vb = _num_labels(ref), _num_labels(other)
        else:
            va, vb = ref.get(key), other.get(key)
        if va != vb:
            raise QueritInputError(
                f"cannot merge {ref_label} and {other_label}: config.json differs at {key!r} ({va!r} vs {vb!r}); "
                f"the architectures do not match. {_NOTHING}"
            )


def check_tokenizers(ref: Source, other: Source) -> None:
    """Both inputs tokenize the same way (same vocabulary files), or carry no tokenizer to compare."""
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
            f"({', '.join(sorted(has.tokenizer))}) but {lacks.label} has none. {_NOTHING}"
        )
    common = [k for k in ("tokenizer.json", "vocab", *VOCAB_FILES) if k in fa and k in fb]
    if not common:
        raise QueritInputError(
            f"cannot merge {ref.label} and {other.label}: their tokenizers cannot be compared ({sorted(fa)} vs "
            f"{sorted(fb)}). {_NOTHING}"
        )
    for name in common:
        if not same_component(name, fa[name], fb[name]):
            raise QueritInputError(
                f"cannot merge {ref.label} and {other.label}: tokenizer file {name!r} differs (different vocabulary "
                f"or tokenizer); merged weights would index different tokens. {_NOTHING}"
            )


def check_tensors(ref: Source, other: Source) -> None:
    """Same tensor names, same shapes, and floating-point where the other is."""
    where = f"cannot merge {ref.label} and {other.label}"
    keys_a, keys_b = set(ref.names()), set(other.names())
    for k in ref.names():
        if k not in keys_b:
            raise QueritInputError(
                f"{where}: tensor {k!r} is in {_short(ref)} but missing from {_short(other)}. {_NOTHING}"
            )
    for k in other.names():
        if k not in keys_a:
            raise QueritInputError(
                f"{where}: tensor {k!r} is in {_short(other)} but missing from {_short(ref)}. {_NOTHING}"
            )
    for k in ref.names():
        (sa, da), (sb, db) = ref.info(k), other.info(k)
        if sa != sb:
            raise QueritInputError(
                f"{where}: tensor {k!r} has shape {list(sa)} in {_short(ref)} but {list(sb)} in {_short(other)}. "
                f"{_NOTHING}"
            )
        if da.is_floating_point != db.is_floating_point:
            raise QueritInputError(
                f"{where}: tensor {k!r} is {da} in {_short(ref)} but {db} in {_short(other)}. {_NOTHING}"
            )


def check_all(sources: Sequence[Source]) -> None:
    """Every input against the first: all configs first, then tokenizers, then tensors."""
    ref = sources[0]
    for other in sources[1:]:
        check_configs(ref.config, other.config, ref.label, other.label)
    for other in sources[1:]:
        check_tokenizers(ref, other)
    for other in sources[1:]:
        check_tensors(ref, other)
