"""``QueritCrossEncoder``: a sentence-transformers ``CrossEncoder`` with Querit prompts, embedding-model
initialisation, batched reranking and a training record that travels with the saved model; and
:func:`load_querit_checkpoint`, a released Querit decoder checkpoint as a ``QueritCrossEncoder``.

Prompt format
-------------
The paper scores the single sequence ``"{instruction} Query: {query}; Content: {doc}"`` with the default
instruction ``"Judge whether the Content meets the requirements based on the Query."``. An encoder
cross-encoder reads a *pair* of segments separated by ``[SEP]``, so the same prompt is realised as the pair
``("{instruction} Query: {query}", doc)``: the ``[SEP]`` plays the part of ``"; Content:"``. The prefix is stored
in sentence-transformers' own ``prompts`` / ``default_prompt_name`` fields of the saved model, which is what makes
plain ``CrossEncoder(path)`` apply it and give the very same scores. The prompt text lives in
:mod:`querit_st.prompts`, the score fusion rule in :mod:`querit_st.utils.scores`; both are re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder
from sentence_transformers.base.modules import Transformer

from querit_st.decoder import (
    DEFAULT_MAX_LENGTH,
    QUERIT_CLS_TOKEN,
    MaskMode,
    QueritDecoderScorer,
    QueritModuleClasses,
    is_querit_checkpoint,
)
from querit_st.prompts import (  # re-exported: this module was their home before querit_st.prompts
    QUERIT_INSTRUCTION,
    QUERIT_PROMPT,
    QUERIT_PROMPT_NAME,
    QUERIT_TEMPLATE,
    format_querit_prompt,
    querit_prefix,
)
from querit_st.utils import QueritInputError, check_text
from querit_st.utils.scores import fuse_scores, zscore  # re-exported for older callers

logger = logging.getLogger(__name__)

__all__ = [
    "QUERIT_INSTRUCTION",
    "QUERIT_PROMPT",
    "QUERIT_PROMPT_NAME",
    "QUERIT_TEMPLATE",
    "QueritCrossEncoder",
    "check_pairs",
    "ensure_padding_token",
    "format_querit_prompt",
    "fuse_scores",
    "load_querit_checkpoint",
    "querit_prefix",
    "training_record_markdown",
    "zscore",
]


def check_pairs(pairs: Any, name: str = "pairs") -> list[tuple[str, str]]:
    """Validate ``[(query, document), ...]``: every element a pair of non-empty strings."""
    if pairs is None:
        raise QueritInputError(f"{name} is None; expected a list of (query, document) pairs")
    out = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise QueritInputError(f"{name}[{i}] must be a (query, document) pair, got {pair!r:.80}")
        out.append((check_text(pair[0], f"{name}[{i}] query"), check_text(pair[1], f"{name}[{i}] document")))
    return out


def _transformer_subfolder(folder: Path) -> Path:
    """For a SentenceTransformer folder, the folder of its Transformer module (often the root)."""
    modules = folder / "modules.json"
    if modules.is_file():
        for entry in json.loads(modules.read_text()):
            if entry.get("type", "").endswith("Transformer"):
                return folder / entry.get("path", "")
    return folder


class QueritCrossEncoder(CrossEncoder):
    """A :class:`~sentence_transformers.CrossEncoder` for Querit-style reranking.

    Everything a plain ``CrossEncoder`` does works unchanged (``predict``, ``rank``, ``CrossEncoderTrainer``);
    on top of it:

    - ``predict(..., instruction=...)`` / ``rank(..., instruction=...)``: the Querit prompt with a task instruction,
      per call; the model's default prompt (``use_querit_prompt=True`` at creation) is saved with it.
    - :meth:`from_embedding_model`: a cross-encoder initialised from an embedding model's backbone with a fresh
      scoring head (the paper starts from Qwen3-Embedding; offline here: ``"minilm-l6"``,
      ``"multilingual-e5-small"``).
    - :meth:`rerank`: ids and scores sorted, batched, with optional fusion of first-stage scores.
    - :attr:`training_record`: how the model was trained (stages, data, losses, teachers, merges); saved in
      ``config_sentence_transformers.json`` and as a section of the model card.

    Example:
        ::

            from querit_st import QueritCrossEncoder

            model = QueritCrossEncoder.from_embedding_model("multilingual-e5-small")
            model.rerank("what is a dielectric?", ["a dielectric is an insulator ...", "the sun is a star"])
    """

    # saved decoder models reload without trust_remote_code: querit_st's own module classes, listed explicitly
    _module_classes = QueritModuleClasses()

    def __init__(self, *args: Any, training_record: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.training_record: dict[str, Any] = dict(training_record or {})
        super().__init__(*args, **kwargs)
        self._clamp_max_length()

    def _clamp_max_length(self) -> None:
        """Never truncate beyond the backbone's position table (a too-large ``max_length`` would crash)."""
        try:
            config = self.model.config if self.model is not None else None
            limit = getattr(config, "max_position_embeddings", None)
            if limit and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
                limit -= 2  # position ids start after the padding index
            if limit and self.max_seq_length and self.max_seq_length > limit:
                self.max_seq_length = limit
        except (AttributeError, TypeError):
            pass

    def _load_default_modules(self, model_name_or_path: str, *args: Any, **kwargs: Any) -> Any:
        """A released Querit decoder checkpoint (decoder config + 2-way head) loads through
        :class:`~querit_st.decoder.QueritDecoderScorer`; anything else as ``CrossEncoder`` does."""
        if is_querit_checkpoint(model_name_or_path):
            if self.activation_fn is None:
                self.activation_fn = torch.nn.Identity()
            trust = bool(kwargs.get("trust_remote_code", False))
            return [QueritDecoderScorer.from_checkpoint(model_name_or_path, trust_remote_code=trust)], {}
        return super()._load_default_modules(model_name_or_path, *args, **kwargs)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_embedding_model(
        cls,
        model_name_or_path: str | os.PathLike,
        *,
        max_length: int | None = 256,
        use_querit_prompt: bool = True,
        device: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> QueritCrossEncoder:
        """A cross-encoder whose backbone is an embedding model's transformer, with a fresh 1-logit head.

        Args:
            model_name_or_path: an offline backbone name (``"minilm-l6"``, ``"multilingual-e5-small"``), a local
                SentenceTransformer / transformers folder, or a hub name.
            max_length: truncation length of the (query, document) pair.
            use_querit_prompt: make the Querit prompt the saved default.
            device, model_kwargs, config_kwargs: passed to the underlying modules.
        """
        from querit_st.backbones import resolve

        source = resolve(str(model_name_or_path))
        folder = Path(source)
        path = str(_transformer_subfolder(folder)) if folder.is_dir() else str(source)
        config_kwargs = {"num_labels": 1, **(config_kwargs or {})}
        transformer = Transformer(
            path,
            transformer_task="sequence-classification",
            model_kwargs=model_kwargs,
            config_kwargs=config_kwargs,
            max_seq_length=max_length,
        )
        ensure_padding_token(transformer)
        kept = config_kwargs.get("num_hidden_layers")
        if kept is not None:  # transformers' load report lists every dropped layer; say once what was kept
            logger.info("backbone %s: kept its first %d transformer layers (backbone_layers / num_hidden_layers); the "
                        "dropped layers' weights are ignored and the scoring head is new", model_name_or_path, kept)
        prompts = {QUERIT_PROMPT_NAME: QUERIT_PROMPT} if use_querit_prompt else {}
        model = cls(
            modules=[transformer],
            device=device,
            prompts=prompts,
            default_prompt_name=QUERIT_PROMPT_NAME if use_querit_prompt else None,
            **kwargs,
        )
        model.training_record.setdefault("initialised_from", str(model_name_or_path))
        model.model_card_data.base_model = str(model_name_or_path) if not folder.is_dir() else None
        return model

    # ------------------------------------------------------------------ prompts
    def _prompt_for(self, prompt: str | None, prompt_name: str | None, instruction: str | None) -> dict[str, Any]:
        if instruction is not None:
            if prompt is not None or prompt_name is not None:
                raise QueritInputError("give at most one of instruction, prompt and prompt_name")
            return {"prompt": querit_prefix(instruction)}
        return {"prompt": prompt, "prompt_name": prompt_name}

    def predict(  # type: ignore[override]
        self,
        inputs: Any,
        prompt_name: str | None = None,
        prompt: str | None = None,
        *args: Any,
        instruction: str | None = None,
        validate: bool = True,
        **kwargs: Any,
    ) -> Any:
        """``CrossEncoder.predict`` plus ``instruction=`` (the Querit prompt with a task instruction).

        Text pairs are validated: an empty or ``None`` query or document, or a non-string, raises
        :class:`~querit_st.utils.QueritInputError` naming the offending pair. ``prompt=""`` scores plain pairs.
        """
        if validate and inputs is not None and len(inputs) > 0:
            single = isinstance(inputs, (list, tuple)) and len(inputs) == 2 and isinstance(inputs[0], str)
            check_pairs([inputs] if single else inputs, "inputs")
        elif inputs is None:
            raise QueritInputError("inputs is None; expected a list of (query, document) pairs")
        p = self._prompt_for(prompt, prompt_name, instruction)
        return super().predict(inputs, p.get("prompt_name"), p.get("prompt"), *args, **kwargs)

    def rank(  # type: ignore[override]
        self, query: Any, documents: Sequence[Any], *args: Any, instruction: str | None = None, **kwargs: Any
    ) -> Any:
        check_text(query, "query")
        if documents is None or len(documents) == 0:
            raise QueritInputError("documents is empty; expected at least one document")
        for i, d in enumerate(documents):
            check_text(d, f"documents[{i}]")
        if instruction is not None:
            kwargs["prompt"] = querit_prefix(instruction)
        return super().rank(query, documents, *args, **kwargs)

    # ------------------------------------------------------------------ reranking
    def rerank(
        self,
        query: str,
        documents: Sequence[str] | dict[str, str],
        top_k: int | None = None,
        *,
        batch_size: int = 32,
        instruction: str | None = None,
        first_stage_scores: Sequence[float] | dict[str, float] | None = None,
        fusion_weight: float = 0.0,
        show_progress_bar: bool = False,
    ) -> list[dict[str, Any]]:
        """Score ``documents`` for ``query`` and return them best first.

        Args:
            query: the query text.
            documents: a list of texts (ids are their positions) or ``{doc_id: text}``.
            top_k: keep the best ``top_k`` (all when ``None``).
            batch_size: pairs per forward pass.
            instruction: a task instruction for the Querit prompt (``None``: the model's default prompt).
            first_stage_scores: the retriever's scores for the same documents; fused when ``fusion_weight > 0``
                as ``z(reranker) + fusion_weight * z(retriever)`` (z-scores over this candidate list).
            fusion_weight: weight of the first-stage score in the fusion (0: reranker only).

        Returns:
            ``[{"corpus_id": id, "score": float}, ...]`` sorted by score, descending.
        """
        check_text(query, "query")
        if isinstance(documents, dict):
            ids, texts = list(documents.keys()), list(documents.values())
        else:
            if documents is None:
                raise QueritInputError("documents is None; expected a list of document texts")
            texts = list(documents)
            ids = list(range(len(texts)))
        if not texts:
            raise QueritInputError("documents is empty; expected at least one document")
        if top_k is not None and top_k <= 0:
            raise QueritInputError(f"top_k must be a positive integer or None, got {top_k}")
        pairs = [(query, check_text(t, f"documents[{ids[i]!r}]")) for i, t in enumerate(texts)]
        scores = np.asarray(
            self.predict(pairs, batch_size=batch_size, instruction=instruction, show_progress_bar=show_progress_bar,
                         activation_fn=torch.nn.Identity(), validate=False),
            dtype=np.float64,
        )
        if fusion_weight and first_stage_scores is not None:
            fs = (
                np.array([first_stage_scores[i] for i in ids], dtype=np.float64)
                if isinstance(first_stage_scores, dict)
                else np.asarray(first_stage_scores, dtype=np.float64)
            )
            if fs.shape != scores.shape:
                raise QueritInputError(f"first_stage_scores has {fs.size} entries for {scores.size} documents")
            scores = fuse_scores(scores, fs, fusion_weight)
        order = np.argsort(-scores, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        return [{"corpus_id": ids[i], "score": float(scores[i])} for i in order]

    # ------------------------------------------------------------------ saving
    def _get_model_config(self) -> dict[str, Any]:
        config = super()._get_model_config()
        if self.training_record:
            config["querit"] = self.training_record
        return config

    def _parse_model_config(self, model_config: dict[str, Any]) -> None:
        super()._parse_model_config(model_config)
        record = model_config.get("querit")
        if isinstance(record, dict) and not getattr(self, "training_record", None):
            self.training_record = dict(record)

    def record(self, **entries: Any) -> None:
        """Add entries to the training record (e.g. ``stage="adapt"``, ``loss=...``); lists are appended to."""
        for key, value in entries.items():
            if key == "stages":
                self.training_record.setdefault("stages", []).append(value)
            else:
                self.training_record[key] = value

    def _create_model_card(self, path: str, model_name: str | None = None, train_datasets: Any = "deprecated") -> None:
        super()._create_model_card(path, model_name, train_datasets)
        readme = Path(path) / "README.md"
        section = training_record_markdown(self.training_record)
        if section:
            text = readme.read_text(encoding="utf8") if readme.exists() else ""
            readme.write_text(text.rstrip() + "\n\n" + section, encoding="utf8")


def ensure_padding_token(transformer: Transformer) -> None:
    """Give a backbone without a padding token one, so that batches of pairs can be scored and trained on.

    Decoder backbones (Qwen3, Llama, ...) often ship without a pad token, and transformers' sequence-classification
    heads then refuse any batch of more than one pair. The eos token pads (a new ``[PAD]`` token when there is no
    eos either, with the embeddings resized), and the model config records its id: the head reads the last
    non-pad token, and a saved folder reloads with the same padding.
    """
    tokenizer = transformer.tokenizer
    if tokenizer is None:
        return
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "[PAD]"})
            if len(tokenizer) > transformer.model.get_input_embeddings().weight.shape[0]:
                transformer.model.resize_token_embeddings(len(tokenizer))
        logger.info("the backbone has no padding token; padding with %r", tokenizer.pad_token)
    if getattr(transformer.config, "pad_token_id", None) is None:
        transformer.config.pad_token_id = tokenizer.pad_token_id


def training_record_markdown(record: dict[str, Any]) -> str:
    """The model-card section that records how a querit-st model was trained."""
    if not record:
        return ""
    lines = ["## How this model was trained (querit-st)", ""]
    for key, value in record.items():
        if key == "stages":
            continue
        lines.append(f"- **{key}**: `{json.dumps(value, default=str)}`")
    for i, stage in enumerate(record.get("stages", []), 1):
        lines.append(f"\n### Stage {i}: {stage.get('stage', '?') if isinstance(stage, dict) else stage}\n")
        lines.append("```json\n" + json.dumps(stage, indent=2, default=str) + "\n```")
    return "\n".join(lines) + "\n"


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
        querit_st.decoder.QueritCheckpointError: no 2-way head in the checkpoint, no ``[CLS]`` token in its
            tokenizer, or an unknown architecture without ``trust_remote_code=True``.
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
    kw.setdefault("activation_fn", torch.nn.Identity())
    model = QueritCrossEncoder(modules=[scorer], device=device, **kw)
    model.training_record.setdefault("initialised_from", str(path_or_name))
    if not os.path.isdir(path_or_name):
        model.model_card_data.base_model = str(path_or_name)
    return model
