"""``mteb.ModelMeta`` for querit-st rerankers: :func:`model_meta` (a trained student, with ``adapted_from`` and
``training_datasets`` read from its training record), :func:`querit_decoder_model_meta` (a released Querit decoder
checkpoint), :func:`retriever_meta` (the first stage) and :func:`mteb_registry_snippet` (the meta as python code for
mteb's model registry).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mteb.models.model_meta import ModelMeta
from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper

from querit_st import backbones
from querit_st.citation import QUERIT_CITATION
from querit_st.cross_encoder import QueritCrossEncoder
from querit_st.mteb.wrapper import QueritDecoderMTEBWrapper, QueritMTEBWrapper, load_querit_mteb_model
from querit_st.utils import QueritInputError

__all__ = [
    "BACKBONE_HUB_IDS",
    "MTEB_DATASET_NAMES",
    "QUERIT_CITATION",
    "model_meta",
    "mteb_registry_snippet",
    "querit_decoder_model_meta",
    "record_adapted_from",
    "record_training_datasets",
    "retriever_meta",
    "slug",
]

#: every spelling of an offline backbone (lower-case) -> the hub id of its original model (``adapted_from``).
BACKBONE_HUB_IDS: dict[str, str] = {
    alias: backbones.BACKBONE_HUB_IDS[short] for alias, short in backbones.BACKBONE_ALIASES.items()
}

#: local dataset folder names (without the ``-<lang>`` suffix) -> the mteb task built on the same source data.
MTEB_DATASET_NAMES: dict[str, str] = {"xquad-r": "XQuADRetrieval", "tydi": "MrTidyRetrieval"}

WEIGHT_SUFFIXES = {".safetensors", ".bin"}


def slug(text: str) -> str:
    """``text`` as one path- and name-safe word (``[A-Za-z0-9._-]``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "model"


def folder_revision(folder: Path) -> str:
    """A stable revision id for a local model folder: sha1 over its weight files' names and contents' digests."""
    h = hashlib.sha1()  # noqa: S324 - an identifier shaped like a git revision, not a security hash
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json"))
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


# ------------------------------------------------------------------------------------------------ training record


def record_adapted_from(record: Mapping[str, Any]) -> str | None:
    """The hub id a model was initialised from, per its training record (``initialised_from``, offline backbone
    names mapped to their hub ids); ``None`` when unknown or a local folder."""
    init = record.get("initialised_from")
    if not init:
        return None
    init = str(init)
    return backbones.hub_id(init) or (init if not Path(init).exists() else None)


def _mteb_dataset_name(name: str) -> str:
    base = Path(name).name
    return MTEB_DATASET_NAMES.get(re.sub(r"-[a-z]{2,3}$", "", base.lower()), base)


def record_training_datasets(record: Mapping[str, Any]) -> set[str] | None:
    """Every dataset a model saw, labelled or not, per its training record: the ``datasets`` of its stages
    (stage 1) and their ``target`` corpora (stage 2, label-free), named as mteb names the task built on the same
    data where there is one (:data:`MTEB_DATASET_NAMES`), else as recorded. ``None`` without any stage record."""
    stages = [s for s in record.get("stages", []) or [] if isinstance(s, Mapping)]
    if not stages:
        return None
    names: set[str] = set()
    for stage in stages:
        for name in list(stage.get("datasets") or []) + ([stage["target"]] if stage.get("target") else []):
            names.add(_mteb_dataset_name(str(name)))
    return names


# ------------------------------------------------------------------------------------------------ model meta


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
        training_datasets: names (as mteb spells them) of the datasets the model saw, labelled or not (default:
            those of the training record, :func:`record_training_datasets`; ``None`` there too: unknown; an empty
            set claims zero-shot on every task).
        adapted_from: the model it was initialised from (default: the training record's, :func:`record_adapted_from`).
        license: licence of the weights.
        release_date: ``YYYY-MM-DD`` (default: the date of the weight files, else today).
        instruction: a Querit instruction the loader applies instead of the model's default prompt.

    The ``loader`` is :func:`load_querit_mteb_model`, with the local folder in ``loader_kwargs["model_path"]`` so that
    ``meta.load_model()`` works offline.
    """
    folder: Path | None = None
    loaded = None
    if isinstance(model_path_or_model, QueritMTEBWrapper):
        model_path_or_model = model_path_or_model.model
    if isinstance(model_path_or_model, (str, os.PathLike)):
        text = str(model_path_or_model)
        if not text.strip():
            raise QueritInputError("model path is empty")
        source = backbones.resolve(text) if not Path(text).expanduser().exists() else Path(text).expanduser()
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
        name = f"querit/{slug(base)}"
    if "/" not in name:
        raise QueritInputError(f"model name must look like 'org/name', got {name!r}")
    if revision is None:
        commit = getattr(getattr(loaded.model, "config", None), "_commit_hash", None)
        if not commit and folder is None and isinstance(model_path_or_model, str):
            commit = _hub_commit(model_path_or_model)
        revision = commit or (folder_revision(folder) if folder is not None else "no_revision_available")
    record = dict(getattr(loaded, "training_record", {}) or {})
    if adapted_from is None:
        adapted_from = record_adapted_from(record)
    if training_datasets is None:
        training_datasets = record_training_datasets(record)
    if release_date is None:
        stamp = None
        if folder is not None:
            weights = [p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
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


def retriever_meta(retriever: Any, spec: str | None = None) -> ModelMeta:
    """A ModelMeta naming the first stage (recorded in the reranker's scores as ``previous_results_model_meta``)."""
    spec = spec or str(getattr(retriever, "name", "retriever"))
    hub = backbones.hub_id(spec)
    if hub is None:
        p = Path(spec)
        hub = f"local/{slug(p.name)}" if p.exists() or "/" not in spec else spec
    return ModelMeta.create_empty(overwrites=dict(
        name=hub,
        revision=str(getattr(retriever, "fingerprint", None) or "no_revision_available")[:40],
        framework=["Sentence Transformers", "PyTorch"],
        model_type=["dense"],
        similarity_fn_name="cosine",
    ))


def querit_decoder_model_meta(
    name: str = "Querit/Querit-4B",
    *,
    revision: str | None = None,
    loader_kwargs: dict[str, Any] | None = None,
    **fields: Any,
) -> ModelMeta:
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
