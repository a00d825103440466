"""``QueritDecoderScorer``: a decoder backbone + ``[CLS]`` + 2-way head as a sentence-transformers input module.

What it reproduces of the reference (``QueritWrapper`` in mteb's ``querit_models.py``, mteb 2.26):

1. Text: :func:`querit_st.prompts.render_querit_text`.
2. Tokens: ``tokenizer(texts, add_special_tokens=False, truncation=True, max_length=M)`` with
   ``M = min(max_length, tokenizer.model_max_length) - 1``; ``[CLS]`` appended; a sequence longer than ``M`` is
   clipped to its last ``M`` tokens (so a truncated text also loses its first token: a quirk of the reference that
   is kept by default, see ``mteb_truncation``); left padding with ``tokenizer.pad_token_id or 0``.
3. Attention: :func:`querit_st.decoder.masks.build_querit_attention_mask`.
4. Score: ``softmax(head(h_last))``, ``p1 - p0`` in ``[-1, 1]`` (``h_last``: the backbone's last hidden state at the
   ``[CLS]`` position).

Two deliberate differences that do not change scores (beyond float rounding): the batch is padded to its longest
sequence instead of to ``M``, and position ids count from 0 at the first real token (RoPE only sees relative
positions, so the reference's offset by the padding cancels out). Pad rows attend to themselves instead of nothing,
which keeps every attention kernel free of fully masked rows; no real token ever attends to a pad.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save_file as save_safetensors_file
from sentence_transformers.base.modules import InputModule
from torch import nn

from querit_st.decoder.checkpoint import (
    DEFAULT_MAX_LENGTH,
    QUERIT_CLS_TOKEN,
    QUERIT_HEAD_FILE,
    QueritCheckpointError,
    backbone_config,
    cls_token_id,
    find_head,
    linear_from_state,
    quiet_transformers,
    resolve_checkpoint_dir,
    strip_remote_head,
)
from querit_st.decoder.masks import build_querit_attention_mask, querit_block_types
from querit_st.prompts import render_querit_text

__all__ = ["MaskMode", "QueritDecoderScorer"]

MaskMode = Literal["auto", "custom", "padding"]


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

    # saved ``modules.json`` files name the class by its public path, ``querit_st.decoder.QueritDecoderScorer``
    __module__ = "querit_st.decoder"

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
        self.cls_token_id = cls_token_id(tokenizer, cls_token, type(backbone).__name__)
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
        head = linear_from_state(load_safetensors_file(head_path), "weight", "bias", head_path)
        config = cls.load_config(folder)
        # the hub options are spent (the folder is local now); trust_remote_code is passed explicitly
        hub_keys = ("token", "revision", "local_files_only", "trust_remote_code", "cache_dir")
        processor_kwargs = {k: v for k, v in (processor_kwargs or {}).items() if k not in hub_keys}
        if "model_max_length" in processor_kwargs:  # CrossEncoder(path, max_length=...): the sequence budget
            config["max_seq_length"] = int(processor_kwargs.pop("model_max_length"))
        backbone_kwargs = {
            k: v for k, v in {**(config_kwargs or {}), **(model_kwargs or {})}.items() if k not in hub_keys
        }
        with quiet_transformers():
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
        """The module for a released Querit checkpoint; see :func:`querit_st.cross_encoder.load_querit_checkpoint`."""
        from transformers import AutoModel, AutoTokenizer

        folder = resolve_checkpoint_dir(
            path_or_name, revision=revision, token=token, cache_folder=cache_folder,
            local_files_only=local_files_only, trust_remote_code=trust_remote_code,
        )
        config = backbone_config(folder, trust_remote_code=trust_remote_code, model_type=model_type)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        cls_token_id(tokenizer, cls_token, str(path_or_name))  # fail before loading gigabytes of weights
        head = find_head(folder, int(config.hidden_size), head_key=head_key, source=str(path_or_name))
        with quiet_transformers():
            backbone = AutoModel.from_pretrained(
                folder, config=config, trust_remote_code=trust_remote_code, **(model_kwargs or {})
            )
        backbone = strip_remote_head(backbone)
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
        with quiet_transformers():
            backbone = AutoModel.from_pretrained(
                str(model_name_or_path), trust_remote_code=trust_remote_code, **(model_kwargs or {})
            )
        if cls_token not in tokenizer.get_vocab() and add_cls_token:
            tokenizer.add_special_tokens({"additional_special_tokens": [cls_token]})
            if len(tokenizer) > backbone.get_input_embeddings().weight.shape[0]:
                backbone.resize_token_embeddings(len(tokenizer))
        return cls(backbone, tokenizer, None, max_seq_length=max_seq_length, cls_token=cls_token, **module_kwargs)

