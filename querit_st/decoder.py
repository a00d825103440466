"""Decoder (Querit-4B / Querit A0.4B) rerankers as a sentence-transformers module.

The released Querit checkpoints (``Querit/Querit-4B``, from Qwen3-Embedding-4B, and ``Querit/Querit``, a
DeepSeek-V3-style MoE with 0.4B active parameters) are decoder backbones with a 2-way linear head read at a ``[CLS]``
token appended to the end of the prompt. Plain ``CrossEncoder(name)`` / ``AutoModelForSequenceClassification`` do not
know that head: they drop it and score every pair the same. This module runs them the way the reference does.

Reference: ``QueritWrapper`` in ``mteb/models/model_implementations/querit_models.py`` (mteb 2.26). What it does, and
what :class:`QueritDecoderScorer` reproduces:

1. Text: ``"Judge whether the Content meets the requirements based on the Query. Query: {q}; Content: {d}"``, or
   ``"{instruction} Query: {q}; Content: {d}"`` when the task has an instruction.
2. Tokens: ``tokenizer(texts, add_special_tokens=False, truncation=True, max_length=M)`` with
   ``M = min(max_length, tokenizer.model_max_length) - 1``; ``[CLS]`` appended; a sequence longer than ``M`` is
   clipped to its last ``M`` tokens (so a truncated text also loses its first token: a quirk of the reference that
   is kept by default, see ``mteb_truncation``); left padding with ``tokenizer.pad_token_id or 0``.
3. Attention: content attends causally to earlier content, ``[CLS]`` to every non-pad token, pad to nothing.
4. Score: ``softmax(head(h_last))``, ``p1 - p0`` in ``[-1, 1]`` (``h_last``: the backbone's last hidden state at the
   ``[CLS]`` position).

Two deliberate differences that do not change scores (beyond float rounding): the batch is padded to its longest
sequence instead of to ``M``, and position ids count from 0 at the first real token (RoPE only sees relative
positions, so the reference's offset by the padding cancels out). Pad rows attend to themselves instead of nothing,
which keeps every attention kernel free of fully masked rows; no real token ever attends to a pad.

Entry points:

- :func:`load_querit_checkpoint`: a released checkpoint folder / hub repo -> :class:`~querit_st.QueritCrossEncoder`.
- :class:`QueritDecoderScorer`: the module (``preprocess`` + ``forward`` -> ``{"scores": p1 - p0, "logits": ...}``),
  differentiable, saved / reloaded through ``modules.json``.
- :func:`querit_decoder_model_meta`: an ``mteb.ModelMeta`` whose loader runs a checkpoint through this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save_file as save_safetensors_file
from sentence_transformers.base.modules import InputModule
from sentence_transformers.util import import_from_string
from torch import nn

from querit_st._utils import load_torch_weights
from querit_st.cross_encoder import QUERIT_INSTRUCTION, QueritCrossEncoder

logger = logging.getLogger(__name__)

__all__ = [
    "QUERIT_CLS_TOKEN",
    "QUERIT_HEAD_FILE",
    "QueritCheckpointError",
    "QueritDecoderScorer",
    "QueritDecoderMTEBWrapper",
    "QueritModuleClasses",
    "build_querit_attention_mask",
    "is_querit_checkpoint",
    "load_querit_checkpoint",
    "querit_decoder_model_meta",
    "render_querit_text",
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

MaskMode = Literal["auto", "custom", "padding"]


class QueritCheckpointError(ValueError):
    """A Querit checkpoint cannot be run faithfully (no 2-way head, no ``[CLS]`` token, unknown architecture)."""


# ---------------------------------------------------------------------------------------------------------------------
# Text, tokens and masks
# ---------------------------------------------------------------------------------------------------------------------


def render_querit_text(query: str, doc: str, instruction: str | None = None, prompt: str | None = None) -> str:
    """The single sequence a Querit decoder scores.

    - ``instruction`` given: ``f"{instruction} Query: {query}; Content: {doc}"`` (exactly mteb's
      ``QueritWrapper.format_instruction``; the instruction is used verbatim).
    - else ``prompt`` given (what ``CrossEncoder.predict(prompt=...)`` and
      ``QueritCrossEncoder.predict(instruction=...)`` pass): a prompt ending in ``"Query:"`` / ``"Query: "`` is the
      prefix before the query (``f"{prompt}{query}; Content: {doc}"``, which is what
      :func:`querit_st.cross_encoder.querit_prefix` builds); any other prompt is an instruction.
    - neither (or empty): the paper's default instruction.
    """
    if instruction is None and prompt:
        if prompt.rstrip().endswith("Query:"):
            prefix = prompt if prompt.endswith(" ") else prompt + " "
            return f"{prefix}{query}; Content: {doc}"
        instruction = prompt.strip()
    if instruction is None:
        instruction = QUERIT_INSTRUCTION
    return f"{instruction} Query: {query}; Content: {doc}"


def querit_block_types(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-token block type of a left-padded batch: 0 pad, 1 content, 2 ``[CLS]`` (always the last position)."""
    types = (attention_mask != 0).long()
    types[:, -1] = types[:, -1] * 2
    return types


def build_querit_attention_mask(block_types: torch.Tensor, pad_attends_self: bool = True) -> torch.Tensor:
    """The reference's custom mask, batched: ``[batch, 1, n, n]`` bool, True where query ``i`` may attend key ``j``.

    Content attends to content ``j <= i``; ``[CLS]`` attends to every non-pad ``j <= i``; pad to nothing (or, with
    ``pad_attends_self``, to itself only, which avoids fully masked rows and changes no real token's output).
    Same rule as ``QueritWrapper.compute_mask_content_cls``.
    """
    n = block_types.shape[-1]
    idx = torch.arange(n, device=block_types.device)
    causal = (idx.view(1, n) <= idx.view(n, 1)).unsqueeze(0)
    rows = block_types.unsqueeze(-1)
    cols = block_types.unsqueeze(-2)
    mask = (((rows == 1) & (cols == 1)) | ((rows == 2) & (cols != 0))) & causal
    if pad_attends_self:
        mask = mask | (torch.eye(n, dtype=torch.bool, device=block_types.device).unsqueeze(0) & (rows == 0))
    return mask.unsqueeze(1)


def _cls_token_id(tokenizer: Any, cls_token: str, source: str) -> int:
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
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (the head keys are 'unexpected' for the bare backbone: we read them)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


# ---------------------------------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------------------------------


class QueritDecoderScorer(InputModule):
    """A decoder backbone + ``[CLS]`` + 2-way head, as a sentence-transformers input module for ``CrossEncoder``.

    ``preprocess(pairs, prompt=None, instruction=None)`` renders the Querit prompt, tokenises it the reference's way
    and left-pads; ``forward(features)`` runs the backbone with the custom attention mask and returns the features
    with ``"scores"`` (``p1 - p0``, shape ``[batch, 1]``, differentiable) and ``"logits"`` (``[batch, 2]``). The head
    runs in float32 whatever the backbone's dtype.

    Args:
        backbone: a transformers base model returning ``last_hidden_state`` (``Qwen3Model``, ``DeepseekV3Model``, ...).
        tokenizer: its tokenizer; must contain ``cls_token``.
        head: the 2-way ``nn.Linear(hidden_size, 2)``; a freshly initialised one when None.
        max_seq_length: ``M``, the longest sequence fed to the backbone, ``[CLS]`` included. None: mteb's default,
            ``min(4096, tokenizer.model_max_length) - 1``.
        cls_token: the token whose hidden state is scored.
        instruction: the instruction used when a call gives neither ``instruction`` nor ``prompt`` (None: the
            paper's ``"Judge whether the Content meets the requirements based on the Query."``).
        mteb_truncation: True (default) reproduces the reference exactly: text truncated to ``M`` tokens, ``[CLS]``
            appended, then clipped to the last ``M`` tokens, so an overlong text also loses its first token. False
            truncates the text to ``M - 1`` tokens and keeps its beginning. Only overlong texts differ.
        mask_mode: ``"custom"`` passes the reference's 4D mask (bool for sdpa, additive float for eager);
            ``"padding"`` passes the 2D padding mask and lets transformers build causal + padding, which is the same
            mask here (``[CLS]`` is last) and works with flash attention; ``"auto"`` picks ``"custom"`` for sdpa and
            eager, else ``"padding"``.
    """

    config_file_name = "querit_decoder_config.json"
    config_keys = ["max_seq_length", "cls_token", "instruction", "mteb_truncation", "mask_mode"]
    save_in_root = True

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer: Any,
        head: nn.Linear | None = None,
        *,
        max_seq_length: int | None = None,
        cls_token: str = QUERIT_CLS_TOKEN,
        instruction: str | None = None,
        mteb_truncation: bool = True,
        mask_mode: MaskMode = "auto",
    ) -> None:
        super().__init__()
        if mask_mode not in ("auto", "custom", "padding"):
            raise ValueError(f"mask_mode must be 'auto', 'custom' or 'padding', got {mask_mode!r}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.cls_token = cls_token
        self.cls_token_id = _cls_token_id(tokenizer, cls_token, type(backbone).__name__)
        self.pad_token_id = tokenizer.pad_token_id or 0  # as the reference: `pad_token_id or 0`
        hidden = int(backbone.config.hidden_size)
        if head is None:
            head = nn.Linear(hidden, 2)
            nn.init.normal_(head.weight, std=getattr(backbone.config, "initializer_range", 0.02))
            nn.init.zeros_(head.bias)
        if not isinstance(head, nn.Linear) or head.out_features != 2 or head.in_features != hidden:
            raise QueritCheckpointError(f"the Querit head must be nn.Linear({hidden}, 2), got {head!r}")
        self.head = head.float()
        if max_seq_length is None:
            max_seq_length = min(DEFAULT_MAX_LENGTH, int(tokenizer.model_max_length)) - 1
        if max_seq_length < 2:
            raise ValueError(f"max_seq_length must leave room for text and [CLS] (>= 2), got {max_seq_length}")
        self.max_seq_length = int(max_seq_length)
        self.instruction = instruction
        self.mteb_truncation = bool(mteb_truncation)
        self.mask_mode = mask_mode

    # ------------------------------------------------------------------ properties
    @property
    def processor(self) -> Any:
        return self.tokenizer

    def get_embedding_dimension(self) -> int:
        return int(self.backbone.config.hidden_size)

    def _resolved_mask_mode(self) -> str:
        if self.mask_mode != "auto":
            return self.mask_mode
        impl = getattr(self.backbone.config, "_attn_implementation", None) or "eager"
        return "custom" if impl in ("sdpa", "eager") else "padding"

    # ------------------------------------------------------------------ preprocessing
    def render(
        self, inputs: Sequence[Any], prompt: str | None = None, instruction: str | Sequence[str | None] | None = None
    ) -> list[str]:
        """The prompt text of every (query, document) pair; a plain string is taken as already rendered."""
        n = len(inputs)
        if instruction is None or isinstance(instruction, str):
            instructions: list[str | None] = [instruction] * n
        else:
            instructions = list(instruction)
            if len(instructions) != n:
                raise ValueError(f"got {len(instructions)} instructions for {n} pairs")
        texts = []
        for i, (pair, instr) in enumerate(zip(inputs, instructions, strict=False)):
            if isinstance(pair, str):  # already rendered (or a lone text, e.g. the model card's token counts)
                texts.append(pair)
                continue
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
                raise ValueError(f"input {i} must be a (query, document) pair of strings, got {pair!r:.80}")
            if instr is None and not prompt:
                instr = self.instruction
            texts.append(render_querit_text(pair[0], pair[1], instruction=instr, prompt=prompt))
        return texts

    def tokenize_texts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokens of rendered texts: truncated, ``[CLS]`` appended, left-padded to the batch's longest."""
        m = self.max_seq_length
        enc = self.tokenizer(
            texts,
            add_special_tokens=False,
            truncation=True,
            max_length=m if self.mteb_truncation else m - 1,
            padding=False,
        )
        seqs = []
        for ids in enc["input_ids"]:
            ids = list(ids) + [self.cls_token_id]
            if len(ids) > m:
                ids = ids[-m:]
            seqs.append(ids)
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, ids in enumerate(seqs):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, width - len(ids) :] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def preprocess(
        self,
        inputs: Sequence[Any],
        prompt: str | None = None,
        instruction: str | Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Render, tokenise and pad (query, document) pairs.

        Args:
            inputs: ``[(query, document), ...]`` (a plain string is tokenised as it is).
            prompt: a CrossEncoder prompt (see :func:`render_querit_text`): a ``"... Query: "`` prefix or an
                instruction.
            instruction: a task instruction, or one per pair; wins over ``prompt``.
            **kwargs: ignored (``task`` and others that losses / ``predict`` pass along).
        """
        if not inputs:
            return {}
        return self.tokenize_texts(self.render(inputs, prompt=prompt, instruction=instruction))

    # ------------------------------------------------------------------ forward
    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        input_ids = features["input_ids"]
        padding = features["attention_mask"]
        position_ids = (padding.long().cumsum(-1) - 1).clamp(min=0)
        if self._resolved_mask_mode() == "custom":
            mask = build_querit_attention_mask(querit_block_types(padding))
            impl = getattr(self.backbone.config, "_attn_implementation", None)
            if impl != "sdpa":  # eager and friends add the mask to the attention logits
                dtype = self.backbone.get_input_embeddings().weight.dtype
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(dtype).min
                )
        else:
            mask = padding
        out = self.backbone(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        cls_hidden = hidden[:, -1, :]
        with torch.autocast(device_type=cls_hidden.device.type, enabled=False):
            logits = F.linear(cls_hidden.float(), self.head.weight.float(), self.head.bias.float())
        probs = torch.softmax(logits, dim=-1)
        features["logits"] = logits
        features["scores"] = probs[:, 1:2] - probs[:, 0:1]
        return features

    # ------------------------------------------------------------------ model hooks
    def on_model_ready(self, model: Any) -> None:
        # p1 - p0 is already a score in [-1, 1]: a CrossEncoder built around this module without an explicit
        # activation would otherwise squash it with a sigmoid (its default for one output).
        if getattr(model, "activation_fn", "unset") is None:
            model.activation_fn = nn.Identity()

    # ------------------------------------------------------------------ save / load
    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        os.makedirs(output_path, exist_ok=True)
        self.backbone.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.save_tokenizer(output_path)
        head = {k: v.detach().float().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_safetensors_file(head, os.path.join(output_path, QUERIT_HEAD_FILE), metadata={"format": "pt"})
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        backend: str = "torch",
        **kwargs: Any,
    ) -> QueritDecoderScorer:
        from transformers import AutoModel, AutoTokenizer

        if backend != "torch":
            raise ValueError(f"QueritDecoderScorer supports only the torch backend, got {backend!r}")
        folder = cls.load_dir_path(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        head_path = os.path.join(folder, QUERIT_HEAD_FILE)
        if not os.path.isfile(head_path):
            raise QueritCheckpointError(
                f"{model_name_or_path}: {QUERIT_HEAD_FILE} is missing; a QueritDecoderScorer folder keeps its 2-way "
                f"head there. For a released Querit checkpoint use load_querit_checkpoint()."
            )
        head = _linear_from_state(load_safetensors_file(head_path), "weight", "bias", head_path)
        config = cls.load_config(folder)
        # the hub options are spent (the folder is local now); trust_remote_code is passed explicitly
        hub_keys = ("token", "revision", "local_files_only", "trust_remote_code", "cache_dir")
        processor_kwargs = {k: v for k, v in (processor_kwargs or {}).items() if k not in hub_keys}
        if "model_max_length" in processor_kwargs:  # CrossEncoder(path, max_length=...): the sequence budget
            config["max_seq_length"] = int(processor_kwargs.pop("model_max_length"))
        backbone_kwargs = {
            k: v for k, v in {**(config_kwargs or {}), **(model_kwargs or {})}.items() if k not in hub_keys
        }
        with _quiet_transformers():
            backbone = AutoModel.from_pretrained(folder, trust_remote_code=trust_remote_code, **backbone_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, **processor_kwargs)
        return cls(backbone, tokenizer, head, **config)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls,
        path_or_name: str | os.PathLike,
        max_length: int = DEFAULT_MAX_LENGTH,
        *,
        revision: str | None = None,
        trust_remote_code: bool = False,
        model_type: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        cls_token: str = QUERIT_CLS_TOKEN,
        head_key: str | None = None,
        token: bool | str | None = None,
        cache_folder: str | None = None,
        local_files_only: bool = False,
        **module_kwargs: Any,
    ) -> QueritDecoderScorer:
        """The module for a released Querit checkpoint; see :func:`load_querit_checkpoint`."""
        from transformers import AutoModel, AutoTokenizer

        folder = _resolve_checkpoint_dir(
            path_or_name, revision=revision, token=token, cache_folder=cache_folder,
            local_files_only=local_files_only, trust_remote_code=trust_remote_code,
        )
        config = _backbone_config(folder, trust_remote_code=trust_remote_code, model_type=model_type)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        _cls_token_id(tokenizer, cls_token, str(path_or_name))  # fail before loading gigabytes of weights
        head = _find_head(folder, int(config.hidden_size), head_key=head_key, source=str(path_or_name))
        with _quiet_transformers():
            backbone = AutoModel.from_pretrained(
                folder, config=config, trust_remote_code=trust_remote_code, **(model_kwargs or {})
            )
        backbone = _strip_remote_head(backbone)
        max_seq_length = min(int(max_length), int(tokenizer.model_max_length)) - 1  # as QueritWrapper
        return cls(backbone, tokenizer, head, max_seq_length=max_seq_length, cls_token=cls_token, **module_kwargs)

    @classmethod
    def from_backbone(
        cls,
        model_name_or_path: str | os.PathLike,
        *,
        max_seq_length: int | None = 512,
        add_cls_token: bool = True,
        cls_token: str = QUERIT_CLS_TOKEN,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        **module_kwargs: Any,
    ) -> QueritDecoderScorer:
        """A new Querit-style scorer on a decoder backbone (e.g. a Qwen3-Embedding folder) with a fresh head.

        With ``add_cls_token`` a missing ``[CLS]`` is added to the tokenizer and the embeddings are resized.
        """
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path), trust_remote_code=trust_remote_code)
        with _quiet_transformers():
            backbone = AutoModel.from_pretrained(
                str(model_name_or_path), trust_remote_code=trust_remote_code, **(model_kwargs or {})
            )
        if cls_token not in tokenizer.get_vocab() and add_cls_token:
            tokenizer.add_special_tokens({"additional_special_tokens": [cls_token]})
            if len(tokenizer) > backbone.get_input_embeddings().weight.shape[0]:
                backbone.resize_token_embeddings(len(tokenizer))
        return cls(backbone, tokenizer, None, max_seq_length=max_seq_length, cls_token=cls_token, **module_kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Reading released checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def _resolve_checkpoint_dir(
    path_or_name: str | os.PathLike,
    *,
    revision: str | None,
    token: bool | str | None,
    cache_folder: str | None,
    local_files_only: bool,
    trust_remote_code: bool,
) -> str:
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


def _backbone_config(folder: str, *, trust_remote_code: bool, model_type: str | None) -> Any:
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


def _linear_from_state(state: Mapping[str, torch.Tensor], weight_key: str, bias_key: str, source: str) -> nn.Linear:
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


def _find_head(folder: str, hidden_size: int, *, head_key: str | None, source: str) -> nn.Linear:
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
                return _linear_from_state(state, f"{prefix}weight", f"{prefix}bias", str(path))
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
            return _linear_from_state(state, f"{name}.weight", f"{name}.bias", f"{path}:{name}")
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
    (see :func:`load_querit_checkpoint`). Only reads file headers and the head tensors.
    """
    folder = Path(path)
    if not folder.is_dir() or (folder / "modules.json").is_file() or not (folder / "config.json").is_file():
        return False
    try:
        hidden = json.loads((folder / "config.json").read_text(encoding="utf8")).get("hidden_size")
        if not isinstance(hidden, int):
            return False
        _find_head(str(folder), hidden, head_key=None, source=str(folder))
    except (QueritCheckpointError, OSError, ValueError, KeyError):
        return False
    return True


def _strip_remote_head(backbone: nn.Module) -> nn.Module:
    """A remote-code model that bundles its own head (``QueritModel``) -> its inner base model."""
    inner = getattr(backbone, "model", None)
    if isinstance(getattr(backbone, "head", None), nn.Linear) and isinstance(inner, nn.Module):
        return inner
    return backbone


def load_querit_checkpoint(
    path_or_name: str | os.PathLike,
    max_length: int = DEFAULT_MAX_LENGTH,
    *,
    revision: str | None = None,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    model_type: str | None = None,
    cls_token: str = QUERIT_CLS_TOKEN,
    head_key: str | None = None,
    instruction: str | None = None,
    mteb_truncation: bool = True,
    mask_mode: MaskMode = "auto",
    token: bool | str | None = None,
    cache_folder: str | None = None,
    local_files_only: bool = False,
    **kw: Any,
) -> QueritCrossEncoder:
    """A released Querit checkpoint (folder or hub repo) as a :class:`~querit_st.QueritCrossEncoder`.

    ``model.predict(pairs)`` then gives the reference's ``p1 - p0`` scores (``activation_fn`` is the identity);
    ``model.save(path)`` writes a folder that ``QueritCrossEncoder(path)`` reloads without ``trust_remote_code``.

    Args:
        path_or_name: a local folder or a hub id (``"Querit/Querit-4B"``, ``"Querit/Querit"``).
        max_length: as mteb's ``QueritWrapper``: at most ``min(max_length, tokenizer.model_max_length) - 1`` tokens
            reach the backbone, ``[CLS]`` included.
        revision, token, cache_folder, local_files_only: hub download options.
        device: where the model runs (default: sentence-transformers' choice).
        dtype: the backbone's dtype (``torch.bfloat16`` as mteb runs it, ``torch.float32`` on CPU).
        model_kwargs: more ``AutoModel.from_pretrained`` options (``attn_implementation``, ``device_map`` ...).
        trust_remote_code: run the checkpoint's own code. Not needed when transformers knows its ``model_type``
            (``qwen3``, ``deepseek_v3``): the native classes are used.
        model_type: read ``config.json`` as this native type (e.g. ``"deepseek_v3"``) when it names another one.
        cls_token: the token appended to every prompt.
        head_key: where the head's weight lives in the checkpoint, if not under a usual name.
        instruction, mteb_truncation, mask_mode: see :class:`QueritDecoderScorer`.
        **kw: passed to :class:`~querit_st.QueritCrossEncoder` (``prompts``, ``training_record`` ...).

    Raises:
        QueritCheckpointError: no 2-way head in the checkpoint, no ``[CLS]`` token in its tokenizer, or an unknown
            architecture without ``trust_remote_code=True``.
    """
    model_kwargs = dict(model_kwargs or {})
    if dtype is not None:
        model_kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    scorer = QueritDecoderScorer.from_checkpoint(
        path_or_name,
        max_length,
        revision=revision,
        trust_remote_code=trust_remote_code,
        model_type=model_type,
        model_kwargs=model_kwargs,
        cls_token=cls_token,
        head_key=head_key,
        token=token,
        cache_folder=cache_folder,
        local_files_only=local_files_only,
        instruction=instruction,
        mteb_truncation=mteb_truncation,
        mask_mode=mask_mode,
    )
    kw.setdefault("activation_fn", nn.Identity())
    model = QueritCrossEncoder(modules=[scorer], device=device, **kw)
    model.training_record.setdefault("initialised_from", str(path_or_name))
    if not os.path.isdir(path_or_name):
        model.model_card_data.base_model = str(path_or_name)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Loading saved folders without trust_remote_code
# ---------------------------------------------------------------------------------------------------------------------


class QueritModuleClasses(Mapping):
    """``modules.json`` class refs of querit_st's own modules -> classes, imported on first lookup.

    sentence-transformers 6 refuses to import a module class outside ``sentence_transformers.*`` unless
    ``trust_remote_code=True``, except for the classes a model lists in ``_module_classes``. querit_st's modules are
    installed code the caller already runs, so ``QueritCrossEncoder`` lists them (``base`` keeps any other entries).
    """

    refs: tuple[str, ...] = ("querit_st.decoder.QueritDecoderScorer",)

    def __init__(self, base: Mapping[str, type] | None = None) -> None:
        self._base = dict(base or {})

    def __getitem__(self, ref: str) -> type:
        if ref in self.refs:
            return import_from_string(ref)
        return self._base[ref]

    def __iter__(self) -> Iterator[str]:
        yield from self.refs
        yield from (k for k in self._base if k not in self.refs)

    def __len__(self) -> int:
        return len(set(self.refs) | set(self._base))


def _register_module_classes() -> None:
    """Let ``QueritCrossEncoder(path)`` reload a saved decoder model without ``trust_remote_code``.

    A no-op when ``QueritCrossEncoder`` already resolves the class (``cross_encoder.py`` declares the mapping).
    """
    current = QueritCrossEncoder.__dict__.get("_module_classes")
    if current is not None and all(ref in current for ref in QueritModuleClasses.refs):
        return
    QueritCrossEncoder._module_classes = QueritModuleClasses(current or {})


_register_module_classes()


# ---------------------------------------------------------------------------------------------------------------------
# MTEB
# ---------------------------------------------------------------------------------------------------------------------


class QueritDecoderMTEBWrapper:
    """mteb cross-encoder loader running a Querit checkpoint through :class:`QueritDecoderScorer`.

    Same inputs and outputs as mteb's ``QueritWrapper`` (instructions per query when the task has them, else the
    default instruction), scored with :func:`load_querit_checkpoint`'s model.

    Args:
        model_name: folder or hub id, or a ready ``CrossEncoder`` holding a :class:`QueritDecoderScorer` via ``model``.
        revision: hub revision.
        device: torch device.
        batch_size: pairs per forward pass (a ``batch_size`` passed to ``predict`` wins).
        max_length: as mteb's ``QueritWrapper``.
        fp_options: the backbone dtype, ``"bfloat16"`` / ``"float16"`` / ``"float32"`` / ``torch.dtype``.
        **kwargs: passed to :func:`load_querit_checkpoint`.
    """

    def __init__(
        self,
        model_name: str,
        revision: str | None = None,
        device: str | None = None,
        *,
        model: Any = None,
        batch_size: int = 32,
        max_length: int = DEFAULT_MAX_LENGTH,
        fp_options: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        if model is None:
            dtype = fp_options
            if isinstance(dtype, str):
                dtype = None if dtype == "auto" else getattr(torch, dtype)
            model = load_querit_checkpoint(
                model_name, max_length, revision=revision, device=device, dtype=dtype, **kwargs
            )
        self.model = model
        self.batch_size = batch_size

    def score_pairs(
        self, pairs: list[tuple[str, str]], instruction: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """``p1 - p0`` for pairs, with one instruction (None: the model's default)."""
        from sentence_transformers import CrossEncoder

        if not pairs:
            return np.zeros(0, dtype=np.float32)
        # CrossEncoder.predict (not QueritCrossEncoder's) forwards `instruction` verbatim to the module's preprocess
        scores = CrossEncoder.predict(
            self.model, pairs, batch_size=batch_size or self.batch_size, show_progress_bar=False,
            activation_fn=nn.Identity(), instruction=instruction,
        )
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def predict(
        self,
        inputs1: Any,
        inputs2: Any,
        *,
        task_metadata: Any = None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        queries: list[str] = []
        instructions: list[str | None] = []
        for batch in inputs1:
            queries.extend(batch["text"])
            batch_instr = batch.get("instruction") if hasattr(batch, "get") else None
            instructions.extend(batch_instr if batch_instr is not None else [None] * len(batch["text"]))
        passages = [text for batch in inputs2 for text in batch["text"]]
        if len(queries) != len(passages):
            raise ValueError(f"got {len(queries)} queries for {len(passages)} passages")
        scores = np.zeros(len(queries), dtype=np.float32)
        batch_size = kwargs.get("batch_size", self.batch_size)
        groups: dict[str | None, list[int]] = {}
        for i, instr in enumerate(instructions):
            groups.setdefault(instr, []).append(i)
        for instr, idx in groups.items():
            pairs = [(queries[i], passages[i]) for i in idx]
            scores[idx] = self.score_pairs(pairs, instruction=instr, batch_size=batch_size)
        return scores


def querit_decoder_model_meta(
    name: str = "Querit/Querit-4B",
    *,
    revision: str | None = None,
    loader_kwargs: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """An ``mteb.ModelMeta`` for a Querit decoder checkpoint whose loader is :class:`QueritDecoderMTEBWrapper`.

    For the released names the stock metadata of mteb's registry is reused (languages, revision, sizes, citation,
    training data), with only the loader swapped; other names (local folders, fine-tuned repos) get a minimal
    cross-encoder meta. ``loader_kwargs`` (e.g. ``{"fp_options": "float32", "max_length": 512}``) and ``fields``
    (any ModelMeta field) override.

    Example::

        meta = querit_decoder_model_meta("Querit/Querit-4B", loader_kwargs={"fp_options": "bfloat16"})
        model = meta.load_model()          # QueritDecoderMTEBWrapper
        mteb.evaluate(model, tasks)
    """
    from mteb.models.model_meta import ModelMeta

    base = None
    if name in ("Querit/Querit-4B", "Querit/Querit"):
        try:
            from mteb.models.model_implementations import querit_models

            base = {
                "Querit/Querit-4B": querit_models.Querit_Reranker_4B,
                "Querit/Querit": querit_models.Querit_Reranker_A0_4B,
            }[name]
        except (ImportError, AttributeError):  # another mteb version
            base = None
    kwargs = dict(base.loader_kwargs) if base is not None else {}
    kwargs.update(loader_kwargs or {})
    update: dict[str, Any] = {
        "loader": QueritDecoderMTEBWrapper,
        "loader_kwargs": kwargs,
        "framework": ["Sentence Transformers", "PyTorch"],
        "model_type": ["cross-encoder"],
    }
    if revision is not None:
        update["revision"] = revision
    update.update(fields)
    if base is not None:
        return base.model_copy(update=update)
    update.setdefault("name", name)
    update.setdefault("open_weights", True)
    update.setdefault("similarity_fn_name", None)
    return ModelMeta.create_empty(overwrites=update)
