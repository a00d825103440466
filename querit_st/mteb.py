"""MTEB (2.x) evaluation of querit-st rerankers, with results in the leaderboard layout.

* :func:`model_meta` describes a trained model as an :class:`mteb.ModelMeta` (``model_type=["cross-encoder"]``,
  parameter count, languages, licence, citation of the Querit-Reranker paper...) whose ``loader`` loads it back as
  a :class:`QueritMTEBWrapper` (mteb's ``CrossEncoderWrapper`` around a :class:`~querit_st.QueritCrossEncoder`).
* :func:`run_mteb` evaluates it on mteb tasks. Reranking tasks (the default list: the six reranking tasks of
  ``MTEB(Multilingual, v2)``) are scored on their own candidate lists. Retrieval tasks run in two stages, the way
  mteb evaluates cross-encoders: the package's :class:`~querit_st.retriever.DenseRetriever` is run through mteb
  with a ``prediction_folder`` (mteb's first-stage prediction format, ``{Task}_predictions.json``), the task is
  converted with ``AbsTaskRetrieval.convert_to_reranking(predictions, top_k=...)``, and the cross-encoder then
  reranks those top-k candidates.
* Results go to ``{output}/{org__model}/{revision}/{Task}.json`` plus ``model_meta.json`` (mteb's ``ResultCache``
  layout without its ``results/`` prefix), i.e. exactly the layout of the ``results/`` folder of
  https://github.com/embeddings-benchmark/results, ready to be copied there for a pull request
  (``docs/mteb_submission.md``). Naming the output folder ``results`` makes its parent a folder that
  ``mteb submit-results --output-folder <parent>`` reads directly.
* :func:`beir_task` turns a local BEIR folder into an mteb retrieval task (no download), which is how the
  offline test runs the whole path end to end.

Network: mteb's own hub tasks need the Hugging Face hub to download their datasets; nothing else here does (no
model-card or revision look-ups: the model meta is built locally and the model is passed to ``mteb.evaluate`` as an
already loaded wrapper, the results cache never fetches the remote repository, CO2 tracking is off).

Besides the results, ``{output}/_querit/`` holds the first-stage predictions, a run summary and
``{org__model}_model_meta.py``: the model's ``ModelMeta`` as python code for the model-registry pull request to
``embeddings-benchmark/mteb`` (:func:`mteb_registry_snippet`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import mteb
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.cache import ResultCache
from mteb.models.model_meta import ModelMeta
from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper

from querit_st._utils import QueritInputError, atomic_write_json, cache_root

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TASKS",
    "QUERIT_CITATION",
    "DenseRetrieverSearch",
    "LeaderboardResultCache",
    "QueritMTEBWrapper",
    "beir_task",
    "load_querit_mteb_model",
    "model_meta",
    "mteb_registry_snippet",
    "run_mteb",
]

#: The reranking tasks of ``MTEB(Multilingual, v2)``.
DEFAULT_TASKS: tuple[str, ...] = (
    "AlloprofReranking",
    "RuBQReranking",
    "T2Reranking",
    "VoyageMMarcoReranking",
    "WebLINXCandidatesReranking",
    "WikipediaRerankingMultilingual",
)

QUERIT_CITATION = """@misc{zhong2026queritrerankertrainingcompactmultilingual,
      title={Querit-Reranker: Training Compact Multilingual Rerankers via Efficient Label-Free Distribution Adaptation},
      author={Yunfei Zhong and Jun Yang and Wei Huang and Yinqiong Cai and Haosheng Qian and Yixing Fan and Ruqing Zhang and Lixin Su and Daiting Shi and Jiafeng Guo},
      year={2026},
      eprint={2606.19037},
      archivePrefix={arXiv},
      primaryClass={cs.IR},
      url={https://arxiv.org/abs/2606.19037},
}"""

#: hub ids of the offline backbones (for ``adapted_from`` and the first stage's model meta).
BACKBONE_HUB_IDS: dict[str, str] = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "multilingual-e5-small": "intfloat/multilingual-e5-small",
    "e5-small": "intfloat/multilingual-e5-small",
    "intfloat/multilingual-e5-small": "intfloat/multilingual-e5-small",
}

_RERANKING_TYPES = {"Reranking", "InstructionReranking"}
_RETRIEVAL_TYPES = {"Retrieval", "InstructionRetrieval"}
_WEIGHT_SUFFIXES = {".safetensors", ".bin"}


# ------------------------------------------------------------------------------------------------ model wrapper


class QueritMTEBWrapper(CrossEncoderWrapper):
    """mteb's ``CrossEncoderWrapper`` around a :class:`~querit_st.QueritCrossEncoder` (or any ``CrossEncoder``).

    Differences from the stock wrapper: all pairs of a task are scored in one ``predict`` call (length-sorted
    batching across queries), raw logits are returned (no sigmoid, so no saturated ties), texts are not re-validated
    (mteb corpora may hold empty documents), and an optional Querit ``instruction`` replaces the model's default
    prompt.
    """

    def __init__(
        self,
        model: Any,
        revision: str | None = None,
        device: str | None = None,
        *,
        instruction: str | None = None,
        meta: ModelMeta | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        from querit_st.cross_encoder import QueritCrossEncoder

        if isinstance(model, (str, os.PathLike)):
            model = QueritCrossEncoder(str(model), revision=revision, device=device, **kwargs)
        if max_length is not None:
            model.max_length = max_length
        super().__init__(model, revision=revision, device=device)
        self.instruction = instruction
        if meta is not None:
            self.mteb_model_meta = meta

    @staticmethod
    def _texts(loader: Any, prefix: str) -> list[str]:
        return [prefix + t for batch in loader for t in batch["text"]]

    def predict(  # type: ignore[override]
        self,
        inputs1: Any,
        inputs2: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        import torch

        from querit_st.cross_encoder import QueritCrossEncoder

        show = bool(kwargs.pop("show_progress_bar", False))
        batch_size = int(kwargs.pop("batch_size", 32))
        queries = self._texts(inputs1, self.query_prefix)
        docs = self._texts(inputs2, self.passage_prefix)
        if len(queries) != len(docs):
            raise ValueError(f"mteb gave {len(queries)} queries for {len(docs)} documents")
        if not queries:
            return np.array([], dtype=np.float32)
        extra: dict[str, Any] = {}
        if isinstance(self.model, QueritCrossEncoder):
            extra = {"validate": False, "instruction": self.instruction}
        with torch.inference_mode():
            scores = self.model.predict(
                list(zip(queries, docs)), batch_size=batch_size, show_progress_bar=show,
                activation_fn=torch.nn.Identity(), convert_to_numpy=True, **extra,
            )
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def load_querit_mteb_model(
    model_name: str,
    revision: str | None = None,
    *,
    model_path: str | None = None,
    device: str | None = None,
    instruction: str | None = None,
    max_length: int | None = None,
    **kwargs: Any,
) -> QueritMTEBWrapper:
    """The ``loader`` of :func:`model_meta`: loads ``model_path`` (a local folder) or else ``model_name`` from the hub."""
    source = model_path if model_path and Path(model_path).exists() else model_name
    if source == model_name and model_path:
        logger.warning("model folder %s not found; loading %s from the hub", model_path, model_name)
    return QueritMTEBWrapper(
        source, revision=revision if source == model_name else None, device=device,
        instruction=instruction, max_length=max_length, **kwargs,
    )


# ------------------------------------------------------------------------------------------------ model meta


def _folder_revision(folder: Path) -> str:
    """A stable revision id for a local model folder: sha1 over its weight files' names and contents' digests."""
    h = hashlib.sha1()  # noqa: S324 - an identifier shaped like a git revision, not a security hash
    files = sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name == "config.json"))
    for p in files:
        h.update(str(p.relative_to(folder)).encode())
        with open(p, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def _hub_commit(repo_id: str) -> str | None:
    """The hub's current commit of ``repo_id`` (``None`` offline or on any error)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no"):
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo_id, timeout=10).sha
    except Exception:  # noqa: BLE001 - best effort
        return None


def _folder_of(model: Any) -> Path | None:
    for cand in (getattr(getattr(model, "model", None), "name_or_path", None),
                 getattr(getattr(getattr(model, "model", None), "config", None), "_name_or_path", None)):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "model"


def model_meta(
    model_path_or_model: Any,
    name: str | None = None,
    revision: str | None = None,
    languages: Sequence[str] | None = None,
    training_datasets: Iterable[str] | None = None,
    adapted_from: str | None = None,
    license: str = "apache-2.0",  # noqa: A002 - mteb's field name
    *,
    release_date: str | None = None,
    reference: str | None = None,
    public_training_code: str | None = None,
    public_training_data: str | bool | None = None,
    instruction: str | None = None,
    contacts: Sequence[str] | None = None,
) -> ModelMeta:
    """An :class:`mteb.ModelMeta` for a trained querit-st reranker.

    Args:
        model_path_or_model: the model folder (or hub id), or a loaded ``QueritCrossEncoder``.
        name: ``"org/name"`` under which the results are filed (default ``"querit/<folder name>"``); for a
            leaderboard submission use the model's hub id.
        revision: the model revision (default: the hub commit when known, else a sha1 of the local weight files).
        languages: ISO 639-3 + script codes, e.g. ``["eng-Latn", "deu-Latn"]`` (``None``: unknown).
        training_datasets: names (as mteb spells them) of the datasets the model saw, labelled or not
            (``None``: unknown; an empty set claims zero-shot on every task).
        adapted_from: the model it was initialised from (default: the training record's ``initialised_from``,
            offline backbone names mapped to their hub ids).
        license: licence of the weights.
        release_date: ``YYYY-MM-DD`` (default: the date of the weight files, else today).
        instruction: a Querit instruction the loader applies instead of the model's default prompt.

    The ``loader`` is :func:`load_querit_mteb_model`, with the local folder in ``loader_kwargs["model_path"]`` so that
    ``meta.load_model()`` works offline.
    """
    from querit_st.cross_encoder import QueritCrossEncoder

    folder: Path | None = None
    loaded = None
    if isinstance(model_path_or_model, QueritMTEBWrapper):
        model_path_or_model = model_path_or_model.model
    if isinstance(model_path_or_model, (str, os.PathLike)):
        from querit_st.backbones import resolve

        text = str(model_path_or_model)
        if not text.strip():
            raise QueritInputError("model path is empty")
        source = resolve(text) if not Path(text).expanduser().exists() else Path(text).expanduser()
        if isinstance(source, Path):
            folder = source.resolve()
        try:
            loaded = QueritCrossEncoder(str(source), device="cpu")
        except OSError as e:
            raise QueritInputError(f"could not load reranker {text!r}: {str(e).splitlines()[0][:300]}") from None
    else:
        loaded = model_path_or_model
        if not hasattr(loaded, "model") or not hasattr(loaded, "predict"):
            raise QueritInputError(f"expected a model folder or a CrossEncoder, got {type(loaded).__name__}")
        folder = _folder_of(loaded)

    if name is None:
        base = folder.name if folder is not None else str(model_path_or_model).rstrip("/").split("/")[-1]
        name = f"querit/{_slug(base)}"
    if "/" not in name:
        raise QueritInputError(f"model name must look like 'org/name', got {name!r}")
    if revision is None:
        commit = getattr(getattr(loaded.model, "config", None), "_commit_hash", None)
        if not commit and folder is None and isinstance(model_path_or_model, str):
            commit = _hub_commit(model_path_or_model)
        revision = commit or (_folder_revision(folder) if folder is not None else "no_revision_available")
    record = dict(getattr(loaded, "training_record", {}) or {})
    if adapted_from is None and record.get("initialised_from"):
        init = str(record["initialised_from"])
        adapted_from = BACKBONE_HUB_IDS.get(init.lower(), init if not Path(init).exists() else None)
    if release_date is None:
        stamp = None
        if folder is not None:
            weights = [p for p in folder.rglob("*") if p.suffix in _WEIGHT_SUFFIXES]
            if weights:
                stamp = max(p.stat().st_mtime for p in weights)
        date = _dt.datetime.fromtimestamp(stamp, _dt.timezone.utc) if stamp else _dt.datetime.now(_dt.timezone.utc)
        release_date = date.strftime("%Y-%m-%d")

    params = list(loaded.model.parameters())
    n_parameters = int(sum(p.numel() for p in params))
    memory_mb = round(sum(p.numel() * p.element_size() for p in params) / 2**20, 1)
    try:
        n_embedding = int(loaded.model.get_input_embeddings().weight.numel())
    except Exception:  # noqa: BLE001 - optional
        n_embedding = None
    max_tokens = getattr(loaded, "max_length", None) or getattr(loaded.tokenizer, "model_max_length", None)

    loader_kwargs: dict[str, Any] = {}
    if folder is not None:
        loader_kwargs["model_path"] = str(folder)
    if instruction is not None:
        loader_kwargs["instruction"] = instruction
    try:
        return ModelMeta(
            loader=load_querit_mteb_model,
            loader_kwargs=loader_kwargs,
            name=name,
            revision=revision,
            release_date=release_date,
            languages=list(languages) if languages is not None else None,
            n_parameters=n_parameters,
            n_embedding_parameters=n_embedding,
            memory_usage_mb=memory_mb,
            max_tokens=int(max_tokens) if max_tokens else None,
            embed_dim=None,
            license=license,
            open_weights=True,
            public_training_code=public_training_code,
            public_training_data=public_training_data,
            framework=["Sentence Transformers", "PyTorch"],
            reference=reference or (f"https://huggingface.co/{name}" if not name.startswith("querit/") else None),
            similarity_fn_name=None,
            use_instructions=True,
            training_datasets=set(training_datasets) if training_datasets is not None else None,
            adapted_from=adapted_from,
            model_type=["cross-encoder"],
            citation=QUERIT_CITATION,
            contacts=list(contacts) if contacts else None,
        )
    except ValueError as e:  # pydantic validation: bad language code, name, date...
        raise QueritInputError(f"invalid model metadata: {e}") from None


# ------------------------------------------------------------------------------------------------ first stage


def _texts_of(dataset: Any, prompt_type: Any) -> list[str]:
    """The texts mteb itself would give a model (document: title + text; query: text + instruction)."""
    try:
        from mteb._create_dataloaders import _retrieval_texts

        return list(_retrieval_texts(dataset, prompt_type))
    except ImportError:  # pragma: no cover - other mteb versions
        from querit_st.data import doc_text

        if prompt_type.value == "document":
            return [doc_text({"title": r.get("title") or "", "text": r.get("text") or ""}) for r in dataset]
        return [r["text"] for r in dataset]


def retriever_meta(retriever: Any, spec: str | None = None) -> ModelMeta:
    """A ModelMeta naming the first stage (recorded in the reranker's scores as ``previous_results_model_meta``)."""
    spec = spec or str(getattr(retriever, "name", "retriever"))
    hub = BACKBONE_HUB_IDS.get(spec.lower())
    if hub is None:
        p = Path(spec)
        hub = f"local/{_slug(p.name)}" if p.exists() or "/" not in spec else spec
    return ModelMeta.create_empty(overwrites=dict(
        name=hub,
        revision=str(getattr(retriever, "_fingerprint", None) or "no_revision_available")[:40],
        framework=["Sentence Transformers", "PyTorch"],
        model_type=["dense"],
        similarity_fn_name="cosine",
    ))


class DenseRetrieverSearch:
    """mteb ``SearchProtocol`` around the package's :class:`~querit_st.retriever.DenseRetriever`.

    ``mteb.evaluate(DenseRetrieverSearch(...), task, prediction_folder=DIR)`` scores the retriever and writes mteb's
    first-stage prediction file ``DIR/{Task}_predictions.json``. ``max_hits`` caps the hits kept per query (mteb asks
    for its largest k, 1000, by default).
    """

    def __init__(self, retriever: Any, *, spec: str | None = None, max_hits: int | None = None,
                 cache_dir: str | os.PathLike | None = None, device: str | None = None) -> None:
        from querit_st.retriever import DenseRetriever

        if not isinstance(retriever, DenseRetriever):
            spec = spec or str(retriever)
            retriever = DenseRetriever(retriever, cache_dir=cache_dir, device=device)
        self.retriever = retriever
        self.max_hits = max_hits
        self.mteb_model_meta = retriever_meta(retriever, spec)

    def index(self, corpus: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
              encode_kwargs: Any = None, num_proc: int | None = None, **kwargs: Any) -> None:
        from mteb.types import PromptType

        texts = _texts_of(corpus, PromptType.document)
        ids = [str(i) for i in corpus["id"]]
        # some mteb corpora hold empty documents; the retriever refuses empty texts, so they get a placeholder
        self.retriever.index({i: _nonempty(t) for i, t in zip(ids, texts)})

    def search(self, queries: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               top_k: int = 100, encode_kwargs: Any = None, top_ranked: Any = None, num_proc: int | None = None,
               **kwargs: Any) -> dict[str, dict[str, float]]:
        from mteb.types import PromptType

        texts = _texts_of(queries, PromptType.query)
        ids = [str(i) for i in queries["id"]]
        k = min(top_k, self.max_hits) if self.max_hits else top_k
        return self.retriever.search({i: _nonempty(t) for i, t in zip(ids, texts)}, top_k=k)


def _nonempty(text: Any) -> str:
    return text if isinstance(text, str) and text.strip() else "[empty]"


# ------------------------------------------------------------------------------------------------ local tasks


def beir_task(
    folder: str | os.PathLike,
    split: str = "test",
    *,
    name: str | None = None,
    max_queries: int | None = None,
    languages: Sequence[str] = ("eng-Latn",),
    queries_from: str | os.PathLike | None = None,
    main_score: str = "ndcg_at_10",
) -> AbsTaskRetrieval:
    """An mteb retrieval task over a local BEIR folder (read with :func:`querit_st.data.load_beir`; no network).

    Args:
        folder: BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
        split: the qrels split, also the task's eval split.
        name: task name (default ``"Local<FolderName>Retrieval"``); results are filed as ``{name}.json``.
        max_queries: keep only the first ``n`` queries with qrels (quick runs).
        languages: the task's ``eval_langs``.
        queries_from: another BEIR folder to take the queries from (cross-lingual, same query ids).
    """
    from querit_st.data import load_beir

    folder = Path(folder)
    data = load_beir(folder, split)  # validates now: a bad folder fails before anything runs
    queries = dict(data.queries)
    if queries_from is not None:
        queries = load_beir(queries_from, split).queries
    queries = {q: t for q, t in queries.items() if q in data.qrels}
    if max_queries:
        queries = dict(list(queries.items())[:max_queries])
    if not queries:
        raise QueritInputError(f"{folder}: no queries with qrels for split {split!r}")
    task_name = name or "Local" + "".join(w.capitalize() for w in re.split(r"[^A-Za-z0-9]+", folder.name) if w) + "Retrieval"
    revision = data.checksum[:16] + (f"-q{max_queries}" if max_queries else "")
    metadata = TaskMetadata(
        name=task_name,
        description=f"Local BEIR folder {folder.name} ({split} split"
        + (f", first {max_queries} queries" if max_queries else "") + "), read from disk by querit-st.",
        dataset={"path": str(folder.resolve()), "revision": revision},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=list(languages),
        main_score=main_score,
        reference=None,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation="",
    )
    corpus = data.corpus
    qrels = {q: data.qrels[q] for q in queries}

    class LocalBeirRetrieval(AbsTaskRetrieval):
        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            from datasets import Dataset

            from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

            self.dataset = {"default": {split: RetrievalSplitData(
                queries=Dataset.from_list([{"id": q, "text": t} for q, t in queries.items()]),
                corpus=Dataset.from_list([{"id": d, "title": v.get("title") or "", "text": v.get("text") or ""}
                                          for d, v in corpus.items()]),
                relevant_docs={q: dict(r) for q, r in qrels.items()},
                top_ranked=None,
            )}}
            self.data_loaded = True

    LocalBeirRetrieval.metadata = metadata
    LocalBeirRetrieval.__name__ = LocalBeirRetrieval.__qualname__ = re.sub(r"\W", "_", task_name)
    return LocalBeirRetrieval()


# ------------------------------------------------------------------------------------------------ results


class LeaderboardResultCache(ResultCache):
    """A :class:`mteb.ResultCache` that writes ``{folder}/{org__model}/{revision}/{Task}.json`` (+ ``model_meta.json``).

    mteb's own cache puts the same tree under ``{cache}/results/``; here ``folder`` *is* that results folder, which is
    the layout of ``results/`` in the results repository.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__(cache_path=Path(folder))

    def get_task_result_path(self, task_name: str, model_name: Any, model_revision: str | None = None,
                             remote: bool = False, experiment_name: str | None = None) -> Path:
        path = super().get_task_result_path(task_name, model_name, model_revision, remote, experiment_name)
        if remote:
            return path
        return self.cache_path / path.relative_to(self.cache_path / "results")


def _load_tasks(tasks: Sequence[Any] | None) -> list[Any]:
    names = list(tasks) if tasks else list(DEFAULT_TASKS)
    out: list[Any] = []
    wanted = [t for t in names if isinstance(t, str)]
    found: dict[str, Any] = {}
    if wanted:
        try:
            found = {t.metadata.name: t for t in mteb.get_tasks(tasks=wanted)}
        except (KeyError, ValueError) as e:
            raise QueritInputError(f"unknown mteb task in {wanted}: {e}") from None
        missing = [t for t in wanted if t not in found]
        if missing:
            raise QueritInputError(f"unknown mteb task(s): {', '.join(missing)}")
    for t in names:
        out.append(found[t] if isinstance(t, str) else t)
    return out


def _task_scores(result: Any) -> dict[str, Any]:
    """Main score (and nDCG@10) per split, averaged over the split's subsets."""
    out: dict[str, Any] = {}
    for split, entries in result.scores.items():
        main = [e["main_score"] for e in entries if "main_score" in e]
        ndcg = [e["ndcg_at_10"] for e in entries if "ndcg_at_10" in e]
        out[split] = {
            "main_score": float(np.mean(main)) if main else None,
            "ndcg_at_10": float(np.mean(ndcg)) if ndcg else None,
            "subsets": len(entries),
        }
    return out


def run_mteb(
    model: Any,
    tasks: Sequence[Any] | None = None,
    *,
    output: str | os.PathLike = "mteb_results/results",
    meta: ModelMeta | None = None,
    retriever: Any = "multilingual-e5-small",
    top_k: int = 100,
    batch_size: int = 32,
    predictions_dir: str | os.PathLike | None = None,
    retriever_cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | None = None,
    instruction: str | None = None,
    show_progress_bar: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Evaluate a reranker on mteb tasks and write the results in the leaderboard layout.

    Args:
        model: a model folder / hub id, a loaded ``QueritCrossEncoder`` or a :class:`QueritMTEBWrapper`.
        tasks: mteb task names or task objects (e.g. from :func:`beir_task`); default :data:`DEFAULT_TASKS`.
        output: results folder; files land in ``{output}/{org__model}/{revision}/{Task}.json`` + ``model_meta.json``.
        meta: the model's :class:`mteb.ModelMeta` (default: :func:`model_meta` of ``model``).
        retriever: first stage for *retrieval* tasks (reranking tasks bring their own candidates): a
            ``DenseRetriever``, or a name/folder for one.
        top_k: candidates per query that the cross-encoder reranks in retrieval tasks.
        predictions_dir: where first-stage predictions are written / reused
            (default ``{output}/_querit/first_stage/<retriever>``; kept out of the ``org__model`` folders).
        overwrite: re-run tasks (and first stages) whose results already exist (default: resume, skip them).

    Returns:
        ``{"model": ..., "revision": ..., "results_dir": ..., "tasks": {name: {...}}}``.
    """
    if not isinstance(top_k, int) or top_k <= 0:
        raise QueritInputError(f"top_k must be a positive integer, got {top_k!r}")
    task_objs = _load_tasks(tasks)
    for t in task_objs:
        if t.metadata.type not in _RERANKING_TYPES | _RETRIEVAL_TYPES:
            raise QueritInputError(f"task {t.metadata.name} is a {t.metadata.type} task; a reranker runs on retrieval "
                                   "and reranking tasks only")

    if isinstance(model, QueritMTEBWrapper):
        wrapper = model
    else:
        if isinstance(model, (str, os.PathLike)):
            meta = meta or model_meta(model, instruction=instruction)
            src = meta.loader_kwargs.get("model_path") or str(model)
            from querit_st.cross_encoder import QueritCrossEncoder

            try:
                model = QueritCrossEncoder(str(src), device=device)
            except OSError as e:
                raise QueritInputError(f"could not load reranker {src!r}: {str(e).splitlines()[0][:300]}") from None
        wrapper = QueritMTEBWrapper(model, instruction=instruction)
    meta = meta or (wrapper.mteb_model_meta if isinstance(model, QueritMTEBWrapper) else model_meta(wrapper.model))
    # the files written for submission name no local path
    saved_meta = meta.model_copy(update={"loader_kwargs": {k: v for k, v in meta.loader_kwargs.items()
                                                           if k != "model_path"}})
    wrapper.mteb_model_meta = saved_meta

    output = Path(output).expanduser()
    output_existed = output.exists()
    cache = LeaderboardResultCache(output)
    encode_kwargs = {"batch_size": batch_size, "show_progress_bar": show_progress_bar}
    strategy = "always" if overwrite else "only-missing"
    summary: dict[str, Any] = {
        "model": saved_meta.name,
        "revision": saved_meta.revision,
        "results_dir": str(output / saved_meta.model_name_as_path() / str(saved_meta.revision)),
        "top_k": top_k,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "tasks": {},
    }
    first_stage: DenseRetrieverSearch | None = None
    try:
        for task in task_objs:
            tname = task.metadata.name
            entry: dict[str, Any] = {"type": task.metadata.type, "main_score_name": task.metadata.main_score}
            if task.metadata.type in _RETRIEVAL_TYPES:
                if first_stage is None:
                    first_stage = retriever if isinstance(retriever, DenseRetrieverSearch) else DenseRetrieverSearch(
                        retriever, max_hits=max(top_k, 100), cache_dir=retriever_cache_dir, device=device)
                fs_meta = first_stage.mteb_model_meta
                pred_dir = (Path(predictions_dir) if predictions_dir
                            else output / "_querit" / "first_stage" / fs_meta.model_name_as_path())
                pred_file = pred_dir / f"{tname}_predictions.json"
                if not task.data_loaded:
                    task.load_data()
                if overwrite or not pred_file.is_file():
                    pred_file.unlink(missing_ok=True)  # mteb merges into an existing file
                    fs_result = mteb.evaluate(first_stage, task, cache=None, prediction_folder=pred_dir,
                                              encode_kwargs=dict(encode_kwargs), co2_tracker=False,
                                              show_progress_bar=show_progress_bar)
                    if fs_result.exceptions:
                        raise RuntimeError(f"first stage failed on {tname}: {fs_result.exceptions[0].exception}")
                    entry["first_stage"] = _task_scores(fs_result.task_results[0])
                entry["first_stage_model"] = {"name": fs_meta.name, "revision": fs_meta.revision,
                                              "predictions": str(pred_file)}
                task = task.convert_to_reranking(pred_file, top_k=top_k)
                entry["reranked_top_k"] = top_k
            result = mteb.evaluate(wrapper, task, cache=cache, overwrite_strategy=strategy,
                                   encode_kwargs=dict(encode_kwargs), co2_tracker=False,
                                   show_progress_bar=show_progress_bar)
            if result.exceptions:
                raise RuntimeError(f"mteb failed on {tname}: {result.exceptions[0].exception}")
            entry["scores"] = _task_scores(result.task_results[0])
            entry["file"] = str(cache.get_task_result_path(tname, saved_meta))
            summary["tasks"][tname] = entry
            logger.info("%s: %s", tname, entry["scores"])
    except BaseException:
        # a run that failed before writing any result leaves no (empty) output folder behind
        if not output_existed and output.is_dir() and not any(p.is_file() for p in output.rglob("*")):
            shutil.rmtree(output, ignore_errors=True)
        raise
    side = output / "_querit"
    side.mkdir(parents=True, exist_ok=True)
    stem = saved_meta.model_name_as_path()
    summary["summary_file"] = str(side / f"{stem}_summary.json")
    summary["registry_snippet"] = str(side / f"{stem}_model_meta.py")
    (side / f"{stem}_model_meta.py").write_text(mteb_registry_snippet(meta), encoding="utf-8")
    write_summary(summary, side / f"{stem}_summary.json")
    return summary


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike) -> None:
    atomic_write_json(path, dict(summary))


def mteb_registry_snippet(meta: ModelMeta) -> str:
    """The model's ``ModelMeta`` as python code for ``mteb/models/model_implementations/`` (mteb's model registry).

    The registry entry loads the model with mteb's stock ``CrossEncoderWrapper``: a saved ``QueritCrossEncoder``
    is a plain sentence-transformers ``CrossEncoder`` folder that carries its Querit prompt, so mteb needs no
    querit-st code to reproduce the scores (it applies a sigmoid to the logits, which leaves every ranking as is).
    """
    registry = meta.model_copy(update={"loader": CrossEncoderWrapper, "loader_kwargs": {}})
    var = re.sub(r"\W", "_", (meta.name or "model").split("/")[-1]).strip("_") or "model"
    if var[0].isdigit():
        var = f"m_{var}"
    note = ""
    if meta.loader_kwargs.get("instruction"):
        note = (f"# NOTE: these results used the instruction {meta.loader_kwargs['instruction']!r} instead of the "
                "model's default prompt;\n# save the model with that prompt as its default before submitting.\n")
    return (
        "from mteb.models.model_meta import ModelMeta\n"
        "from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper\n\n"
        f"{note}{var} = {registry.to_python()}\n"
    )


def default_work_dir() -> Path:
    return cache_root() / "mteb"


def summary_table(summary: Mapping[str, Any]) -> str:
    """A markdown table of main score (and first-stage nDCG@10 for retrieval tasks) per task and split."""
    lines = [f"MTEB results for {summary['model']} (revision {str(summary['revision'])[:12]})", "",
             "| task | split | main score | value | nDCG@10 | first stage nDCG@10 |", "|---|---|---|---|---|---|"]
    for tname, e in summary["tasks"].items():
        for split, s in e["scores"].items():
            fs = (e.get("first_stage") or {}).get(split, {}).get("ndcg_at_10")
            lines.append(
                f"| {tname} | {split} | {e['main_score_name']} | {s['main_score']:.4f} | "
                + (f"{s['ndcg_at_10']:.4f}" if s.get("ndcg_at_10") is not None else "-") + " | "
                + (f"{fs:.4f}" if fs is not None else "-") + " |"
            )
    return "\n".join(lines)


def json_dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
