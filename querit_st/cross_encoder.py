"""``QueritCrossEncoder``: a sentence-transformers ``CrossEncoder`` with Querit prompts, embedding-model
initialisation, batched reranking and a training record that travels with the saved model.

Prompt format
-------------
The paper scores the single sequence ``"{instruction} Query: {query}; Content: {doc}"`` with the default
instruction ``"Judge whether the Content meets the requirements based on the Query."``. An encoder
cross-encoder reads a *pair* of segments separated by ``[SEP]``, so the same prompt is realised as the pair
``("{instruction} Query: {query}", doc)``: the ``[SEP]`` plays the part of ``"; Content:"``. The prefix is stored
in sentence-transformers' own ``prompts`` / ``default_prompt_name`` fields of the saved model, which is what makes
plain ``CrossEncoder(path)`` apply it and give the very same scores.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder
from sentence_transformers.base.modules import Transformer

from querit_st._utils import QueritInputError, check_text

logger = logging.getLogger(__name__)

QUERIT_INSTRUCTION = "Judge whether the Content meets the requirements based on the Query."
QUERIT_PROMPT_NAME = "querit"
#: The query-side prefix of the Querit prompt for pair (encoder) models.
QUERIT_PROMPT = f"{QUERIT_INSTRUCTION} Query: "
#: The full single-sequence template used by decoder (Querit/Qwen3) checkpoints.
QUERIT_TEMPLATE = "{instruction} Query: {query}; Content: {doc}"


def querit_prefix(instruction: str | None = None) -> str:
    """The query prefix for an instruction (``None`` gives the paper's default instruction)."""
    instruction = QUERIT_INSTRUCTION if instruction is None else instruction.strip()
    return f"{instruction} Query: " if instruction else "Query: "


def format_querit_prompt(query: str, doc: str, instruction: str | None = None) -> str:
    """The paper's single-sequence prompt: ``"{instruction} Query: {query}; Content: {doc}"``."""
    instruction = QUERIT_INSTRUCTION if instruction is None else instruction.strip()
    return QUERIT_TEMPLATE.format(instruction=instruction, query=query, doc=doc)


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


class _QueritModuleClasses(Mapping):
    """``modules.json`` class refs of querit_st's own modules, imported on first lookup.

    sentence-transformers refuses to import a module class outside ``sentence_transformers.*`` unless
    ``trust_remote_code=True``, except the classes a model lists in ``_module_classes``. These are installed code the
    caller already runs, so listing them is not remote code.
    """

    refs: tuple[str, ...] = ("querit_st.decoder.QueritDecoderScorer",)

    def __getitem__(self, ref: str) -> type:
        if ref not in self.refs:
            raise KeyError(ref)
        from sentence_transformers.util import import_from_string

        return import_from_string(ref)

    def __contains__(self, ref: object) -> bool:
        return ref in self.refs

    def __iter__(self) -> Iterator[str]:
        return iter(self.refs)

    def __len__(self) -> int:
        return len(self.refs)


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

    _module_classes = _QueritModuleClasses()

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
        from querit_st.decoder import QueritDecoderScorer, is_querit_checkpoint

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
        :class:`~querit_st._utils.QueritInputError` naming the offending pair. ``prompt=""`` scores plain pairs.
        """
        if validate and inputs is not None and len(inputs) > 0:
            single = isinstance(inputs, (list, tuple)) and len(inputs) == 2 and isinstance(inputs[0], str)
            check_pairs([inputs] if single else inputs, "inputs")
        elif inputs is None:
            raise QueritInputError("inputs is None; expected a list of (query, document) pairs")
        p = self._prompt_for(prompt, prompt_name, instruction)
        return super().predict(inputs, p.get("prompt_name"), p.get("prompt"), *args, **kwargs)

    def rank(self, query: Any, documents: Sequence[Any], *args: Any, instruction: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
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


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-list z-score; a constant list maps to zeros."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def fuse_scores(reranker: np.ndarray, first_stage: np.ndarray, weight: float) -> np.ndarray:
    """``z(reranker) + weight * z(first_stage)`` over one query's candidate list."""
    return zscore(reranker) + weight * zscore(first_stage)
