"""Reading released Querit decoder checkpoints: the folder (local or hub), the backbone config, the 2-way head.

The released layout (``Querit/Querit-4B``, ``Querit/Querit``) is a transformers decoder folder whose weights also hold
a 2-way linear head (``head.*`` in the reference's ``QueritModel``), or a stand-alone head file next to them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors_file
from torch import nn

from querit_st.utils import load_torch_weights

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "HEAD_FILES",
    "HEAD_MODULE_NAMES",
    "QUERIT_CLS_TOKEN",
    "QUERIT_HEAD_FILE",
    "QueritCheckpointError",
    "backbone_config",
    "cls_token_id",
    "find_head",
    "is_querit_checkpoint",
    "linear_from_state",
    "quiet_transformers",
    "resolve_checkpoint_dir",
    "strip_remote_head",
]

QUERIT_CLS_TOKEN = "[CLS]"
#: File of the 2-way head in a folder saved by :class:`QueritDecoderScorer` (keys ``weight`` and ``bias``).
QUERIT_HEAD_FILE = "querit_head.safetensors"
#: mteb's default ``max_length`` for ``QueritWrapper``.
DEFAULT_MAX_LENGTH = 4096
#: Module names under which released / converted checkpoints keep the 2-way head, most specific first.
HEAD_MODULE_NAMES = ("head", "score", "classifier", "cls_head", "classification_head", "rank_head", "scorer")
#: Stand-alone head files looked for before the model weights.
HEAD_FILES = (QUERIT_HEAD_FILE, "head.safetensors", "head.pt", "head.bin")

class QueritCheckpointError(ValueError):
    """A Querit checkpoint cannot be run faithfully (no 2-way head, no ``[CLS]`` token, unknown architecture)."""


def cls_token_id(tokenizer: Any, cls_token: str, source: str) -> int:
    """The id of ``cls_token`` in ``tokenizer``; a clear :class:`QueritCheckpointError` when it has none."""
    vocab = tokenizer.get_vocab()
    if cls_token not in vocab:
        raise QueritCheckpointError(
            f"The tokenizer of {source} has no {cls_token!r} token. Querit decoders score the hidden state of a "
            f"{cls_token!r} token appended to every prompt; without it the scores are meaningless. Use the "
            f"tokenizer saved with the checkpoint, or QueritDecoderScorer.from_backbone(..., add_cls_token=True) "
            f"to start a new model."
        )
    return int(vocab[cls_token])


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (the head keys are 'unexpected' for the bare backbone: we read them)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def resolve_checkpoint_dir(
    path_or_name: str | os.PathLike,
    *,
    revision: str | None,
    token: bool | str | None,
    cache_folder: str | None,
    local_files_only: bool,
    trust_remote_code: bool,
) -> str:
    """A local folder for a checkpoint folder or hub id (only the files a checkpoint needs are downloaded)."""
    if os.path.isdir(path_or_name):
        return str(path_or_name)
    name = str(path_or_name)
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise QueritCheckpointError(f"{name} is not a checkpoint folder (a directory or a hub id 'org/name')")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "tokenizer*"]
    if trust_remote_code:
        patterns.append("*.py")
    try:
        return snapshot_download(
            name, revision=revision, token=token, cache_dir=cache_folder,
            local_files_only=local_files_only, allow_patterns=patterns,
        )
    except Exception as exc:  # offline, unknown repo, gated, ...
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline else ""
        raise OSError(f"could not get the Querit checkpoint {name!r} from the Hugging Face hub{hint}: {exc}") from exc


def backbone_config(folder: str, *, trust_remote_code: bool, model_type: str | None) -> Any:
    """The backbone's transformers config: native classes when transformers knows the model type."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    raw = json.loads(Path(folder, "config.json").read_text(encoding="utf8"))
    kind = model_type or raw.get("model_type")
    if kind in CONFIG_MAPPING:
        if model_type is not None:
            data = {k: v for k, v in raw.items() if k not in ("model_type", "auto_map", "transformers_version")}
            return CONFIG_MAPPING[kind].from_dict(data)
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        if getattr(config, "auto_map", None):
            # the native classes run it: a saved copy must not point transformers at remote code it does not carry
            logger.info(f"{folder}: model_type {kind!r} is built into transformers; its remote code is not used")
            del config.auto_map
        return config
    if not trust_remote_code:
        raise QueritCheckpointError(
            f"{folder}: model_type {kind!r} is not built into transformers {transformers.__version__}. Pass "
            f"trust_remote_code=True to run the checkpoint's own modeling code (read it first), or "
            f"model_type='deepseek_v3' / 'qwen3' if the config describes one of those architectures."
        )
    return AutoConfig.from_pretrained(folder, trust_remote_code=True)


def linear_from_state(state: Mapping[str, torch.Tensor], weight_key: str, bias_key: str, source: str) -> nn.Linear:
    weight = state[weight_key]
    if weight.ndim != 2 or weight.shape[0] != 2:
        raise QueritCheckpointError(
            f"{source}: {weight_key} has shape {tuple(weight.shape)}; a Querit head is a 2-way linear layer "
            f"([2, hidden_size])"
        )
    head = nn.Linear(weight.shape[1], 2)
    with torch.no_grad():
        head.weight.copy_(weight.float())
        if bias_key in state:
            head.bias.copy_(state[bias_key].float())
        else:
            logger.warning(f"{source}: no {bias_key}; the head gets a zero bias")
            head.bias.zero_()
    return head


def _weight_files(folder: str) -> list[tuple[str, dict[str, str] | None]]:
    """(file, key->file map for sharded checkpoints) for the model weights of a folder."""
    out: list[tuple[str, dict[str, str] | None]] = []
    for index_name, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = Path(folder, index_name)
        if index.is_file():
            out.append((str(index), json.loads(index.read_text(encoding="utf8"))["weight_map"]))
        elif Path(folder, single).is_file():
            out.append((str(Path(folder, single)), None))
    return out


def _read_tensors(
    folder: str, path: str, weight_map: dict[str, str] | None, keys: list[str]
) -> dict[str, torch.Tensor]:
    if weight_map is not None:
        by_file: dict[str, list[str]] = {}
        for k in keys:
            if k in weight_map:
                by_file.setdefault(weight_map[k], []).append(k)
        out: dict[str, torch.Tensor] = {}
        for fname, ks in by_file.items():
            out.update(_read_tensors(folder, str(Path(folder, fname)), None, ks))
        return out
    if path.endswith(".safetensors"):
        with safe_open(path, framework="pt") as f:
            names = set(f.keys())
            return {k: f.get_tensor(k) for k in keys if k in names}
    state = load_torch_weights(path)
    return {k: state[k] for k in keys if k in state}


def _all_keys(path: str, weight_map: dict[str, str] | None) -> list[str]:
    if weight_map is not None:
        return list(weight_map)
    if path.endswith(".safetensors"):
        with safe_open(path, framework="pt") as f:
            return list(f.keys())
    return list(load_torch_weights(path))


def find_head(folder: str, hidden_size: int, *, head_key: str | None, source: str) -> nn.Linear:
    """The 2-way head of a released checkpoint.

    Looked for, in order: a stand-alone head file (``querit_head.safetensors``, ``head.safetensors``, ``head.pt``,
    ``head.bin``; keys ``weight``/``bias``, optionally prefixed); then inside the model weights (single or sharded
    safetensors, then ``pytorch_model.bin``) under ``head_key`` or ``{prefix}{name}.weight`` for the names in
    :data:`HEAD_MODULE_NAMES` (the reference's ``QueritModel`` keeps it as ``head``, next to the backbone's
    ``model.*``).
    """
    names = [head_key[: -len(".weight")] if head_key.endswith(".weight") else head_key] if head_key else None
    searched: list[str] = []
    for fname in HEAD_FILES:
        path = Path(folder, fname)
        if not path.is_file():
            continue
        state = (
            load_safetensors_file(str(path))
            if fname.endswith(".safetensors")
            else load_torch_weights(str(path))
        )
        if isinstance(state, nn.Module):
            state = state.state_dict()
        candidates = names or ["", *HEAD_MODULE_NAMES]
        for name in candidates:
            prefix = f"{name}." if name else ""
            if f"{prefix}weight" in state:
                return linear_from_state(state, f"{prefix}weight", f"{prefix}bias", str(path))
        searched.append(f"{fname} (keys: {sorted(state)[:6]})")
    for path, weight_map in _weight_files(folder):
        keys = set(_all_keys(path, weight_map))
        if names is not None:
            wanted = [n for n in names if f"{n}.weight" in keys]
        else:
            wanted = [n for n in HEAD_MODULE_NAMES if f"{n}.weight" in keys]
            # a head nested under a wrapper prefix (e.g. "reranker.head.weight") with the right shape
            if not wanted:
                wanted = sorted(
                    k[: -len(".weight")]
                    for k in keys
                    if k.endswith(".weight") and k.split(".")[-2] in HEAD_MODULE_NAMES
                )
        for name in wanted:
            state = _read_tensors(folder, path, weight_map, [f"{name}.weight", f"{name}.bias"])
            weight = state[f"{name}.weight"]
            if weight.ndim == 2 and weight.shape[1] != hidden_size:
                continue
            return linear_from_state(state, f"{name}.weight", f"{name}.bias", f"{path}:{name}")
        searched.append(Path(path).name)
    looked = head_key or ", ".join(f"{n}.weight" for n in HEAD_MODULE_NAMES)
    raise QueritCheckpointError(
        f"No 2-way Querit scoring head in {source}: looked for {looked} in "
        f"{', '.join(searched) or 'no weight files at all'} (and for {', '.join(HEAD_FILES)}). Without the head a "
        f"Querit checkpoint gives constant scores (what plain CrossEncoder / AutoModelForSequenceClassification do). "
        f"Pass head_key='<name>.weight' if the checkpoint stores it under another name."
    )


def is_querit_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a local folder is a released-layout Querit decoder checkpoint (not a sentence-transformers save).

    True for a folder without ``modules.json`` whose ``config.json`` describes a decoder and that holds a 2-way head
    (see :func:`querit_st.cross_encoder.load_querit_checkpoint`). Only reads file headers and the head tensors.
    """
    folder = Path(path)
    if not folder.is_dir() or (folder / "modules.json").is_file() or not (folder / "config.json").is_file():
        return False
    try:
        hidden = json.loads((folder / "config.json").read_text(encoding="utf8")).get("hidden_size")
        if not isinstance(hidden, int):
            return False
        find_head(str(folder), hidden, head_key=None, source=str(folder))
    except (QueritCheckpointError, OSError, ValueError, KeyError):
        return False
    return True


def strip_remote_head(backbone: nn.Module) -> nn.Module:
    """A remote-code model that bundles its own head (``QueritModel``) -> its inner base model."""
    inner = getattr(backbone, "model", None)
    if isinstance(getattr(backbone, "head", None), nn.Linear) and isinstance(inner, nn.Module):
        return inner
    return backbone
