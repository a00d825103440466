"""The three-stage recipe driven by one YAML config: pretrain -> label-free adapt -> SLERP merge -> evaluate.

Data flows one way::

    BEIR corpus --querygen--> synthetic queries --DenseRetriever--> candidates --teacher--> soft labels
    --losses + CrossEncoderTrainer--> adapted checkpoints --slerp--> merged model --harness--> results.json

Stage 2 reads **only** the target's ``corpus.jsonl`` (``querit_st.data.load_corpus``); its queries and qrels are
opened by the evaluation step alone, after training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from querit_st._utils import QueritInputError, atomic_dir, atomic_write_json, cache_root

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- configuration
@dataclass
class TeacherSpec:
    """One teacher of the ensemble: ``embedding`` (cosine of an embedding model), ``bm25``, ``cross-encoder``, or
    ``stage1`` (the stage-1 cross-encoder itself; stage 2 only: the adapted student then learns the off-the-shelf
    teachers *and* what stage 1 learnt from labelled data, and the baseline ensemble leaves it out).

    ``languages``: use this member only for targets in these languages (e.g. ``[english]`` for an English-only
    embedding model); ``None``: every language.
    ``inference``: ``cross-encoder`` / ``stage1`` members only: the :mod:`querit_st.inference` mode they score with
    (``"onnx"``: ONNX Runtime, the same scores as ``"fp32"`` and faster on CPU; the int8 modes are faster still
    but change the labels slightly).
    """

    type: str = "embedding"
    model: str | None = None
    weight: float = 1.0
    languages: list[str] | None = None
    inference: str = "fp32"


@dataclass
class TrainSpec:
    """Trainer settings shared by both training stages."""

    loss: str = "hinge"  # hinge | kl | mse
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    save_steps: int = 200
    logging_steps: int = 20
    bf16: bool = False
    lora: bool = False
    lora_r: int = 16
    freeze_embeddings: bool = True  # e5's 250k x 384 word embeddings: dense AdamW updates dominate CPU step time


@dataclass
class PretrainSpec:
    datasets: list[str] = field(default_factory=lambda: ["xquad-r-en"])
    split: str = "train"
    top_k: int = 30
    num_candidates: int = 8
    max_queries_per_dataset: int | None = None
    gold_bonus: float = 1.0
    train: TrainSpec = field(default_factory=TrainSpec)


@dataclass
class AdaptSpec:
    query_generator: str | dict[str, Any] = "terms"
    num_queries: int = 1000
    top_k: int = 50
    num_candidates: int = 16
    num_bins: int = 16
    label_normalization: str = "zscore"  # per-list z-score of the teacher scores (stage 1 uses the same scale); or none
    # the generated query's source document gets max(other labels) + source_bonus (a label-free pseudo-positive, as
    # stage 1's gold bonus); None: it keeps its teacher score
    source_bonus: float | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    train: TrainSpec = field(default_factory=TrainSpec)


@dataclass
class MergeSpec:
    t: float | list[float] = 0.5
    include_stage1: bool = False


@dataclass
class EvalSpec:
    top_k: int = 100
    fusion_weight: float = 1.0
    split: str = "test"
    max_queries: int | None = None
    batch_size: int = 64
    inference: str = "fp32"  # any querit_st.inference mode; "packed" / "onnx" are exact and faster on CPU


@dataclass
class PipelineConfig:
    retriever: str = "minilm-l6"
    backbone: str = "multilingual-e5-small"
    # keep only the backbone's first n transformer layers (a compact, faster reranker; None: all of them)
    backbone_layers: int | None = None
    max_length: int = 192
    seed: int = 0
    data_root: str | None = None
    stage1_cache: str | None = None
    teachers: list[TeacherSpec] = field(
        default_factory=lambda: [TeacherSpec("embedding", "multilingual-e5-small"), TeacherSpec("embedding", "minilm-l6"), TeacherSpec("bm25")]
    )
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)
    adapt: AdaptSpec = field(default_factory=AdaptSpec)
    merge: MergeSpec = field(default_factory=MergeSpec)
    evaluate: EvalSpec = field(default_factory=EvalSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_dir(self, name: str) -> Path:
        from querit_st.data import default_data_root

        p = Path(name)
        if p.is_dir():
            return p
        root = Path(self.data_root) if self.data_root else default_data_root()
        if not (root / name).is_dir():
            raise QueritInputError(f"dataset {name!r} is neither a folder nor under the data root {str(root)!r}")
        return root / name


def _build(cls: type, values: Any, where: str) -> Any:
    """Build a config dataclass from a dict, rejecting unknown keys (never evaluating anything)."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise QueritInputError(f"config section {where!r} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise QueritInputError(f"config section {where!r} has unknown key(s) {unknown}; expected some of {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    nested = {"pretrain": PretrainSpec, "adapt": AdaptSpec, "merge": MergeSpec, "evaluate": EvalSpec, "train": TrainSpec}
    for k, v in values.items():
        if k in nested:
            kwargs[k] = _build(nested[k], v, f"{where}.{k}")
        elif k == "teachers":
            if not isinstance(v, list) or not v:
                raise QueritInputError(f"config {where}.teachers must be a non-empty list")
            kwargs[k] = [_build(TeacherSpec, t, f"{where}.teachers[{i}]") for i, t in enumerate(v)]
        else:
            kwargs[k] = v
    return cls(**kwargs)


def merge_config_values(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested mappings merge key by key, other values (lists too) replace.
    Neither argument is changed."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config_values(out[key], value)
        else:
            out[key] = value
    return out


def read_config_values(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping a YAML config file holds, with its ``base`` resolved.

    ``base: demo.yaml`` (a path relative to the file's folder, or absolute) names a config this one extends: the
    base's values are read first (recursively) and this file's values are merged over them by
    :func:`merge_config_values`, so a variant states only what it changes."""
    p = Path(path)
    if not p.is_file():
        raise QueritInputError(f"config file {str(p)!r} does not exist")
    if p.resolve() in _chain:
        cycle = " -> ".join(str(c) for c in (*_chain, p.resolve()))
        raise QueritInputError(f"config file {str(p)!r} extends itself through 'base': {cycle}")
    try:
        values = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise QueritInputError(f"config file {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise QueritInputError(f"config file {str(p)!r} must hold a mapping at the top level")
    if "base" not in values:
        return values
    base = values.pop("base")
    if not isinstance(base, str) or not base:
        raise QueritInputError(f"config file {str(p)!r}: 'base' must be the path of another config file, got {base!r}")
    base_path = Path(base) if Path(base).is_absolute() else p.parent / base
    if not base_path.is_file():
        raise QueritInputError(f"config file {str(p)!r}: its base {str(base_path)!r} does not exist")
    return merge_config_values(read_config_values(base_path, (*_chain, p.resolve())), values)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a YAML config (``yaml.safe_load``: no value is ever evaluated as code); unknown keys are errors.

    A ``base:`` key extends another config file (:func:`read_config_values`). ``overrides`` are merged into the
    file's values by :func:`merge_config_values` (``{"adapt": {"num_queries": 600}}`` changes that one key and keeps
    the rest of ``adapt``)."""
    values: dict[str, Any] = read_config_values(path) if path is not None else {}
    values = merge_config_values(values, overrides or {})
    cfg = _build(PipelineConfig, values, "config")
    for spec in (cfg.pretrain.train, cfg.adapt.train):
        if spec.loss not in LOSSES:
            raise QueritInputError(f"unknown loss {spec.loss!r}; expected one of {sorted(LOSSES)}")
    check_backbone_layers(cfg.backbone_layers)
    from querit_st.inference import MODES

    modes = [("evaluate.inference", cfg.evaluate.inference)] + [(f"teachers[{i}].inference", t.inference)
                                                               for i, t in enumerate(cfg.teachers)]
    for where, mode in modes:
        if mode not in MODES:
            raise QueritInputError(f"unknown {where} {mode!r}; expected one of {', '.join(MODES)}")
    for i, t in enumerate(cfg.teachers):
        if t.inference != "fp32" and t.type != "stage1" and t.type not in _CROSS_ENCODER_TYPES:
            raise QueritInputError(f"teachers[{i}].inference applies to cross-encoder and stage1 teachers only, "
                                   f"not to type {t.type!r}; leave it out")
    check_config(cfg)
    return cfg


def check_backbone_layers(layers: Any) -> int | None:
    """``backbone_layers`` must be a positive integer or None; returns it."""
    if layers is not None and (not isinstance(layers, int) or isinstance(layers, bool) or layers <= 0):
        raise QueritInputError(f"backbone_layers must be a positive integer or null, got {layers!r}")
    return layers


def check_config(cfg: PipelineConfig) -> None:
    """Checks done by ``load_config`` before anything runs: the free-form option mappings (``*.train.loss_kwargs``,
    ``adapt.query_generator``) must name real options with valid values."""
    from querit_st.losses import check_loss_kwargs
    from querit_st.querygen import check_query_generator_spec

    for where, spec in (("pretrain.train", cfg.pretrain.train), ("adapt.train", cfg.adapt.train)):
        try:
            check_loss_kwargs(LOSSES[spec.loss], spec.loss_kwargs)
        except QueritInputError as e:
            raise QueritInputError(f"config {where}.loss_kwargs: {e}") from None
    try:
        check_query_generator_spec(cfg.adapt.query_generator)
    except QueritInputError as e:
        raise QueritInputError(f"config adapt.query_generator: {e}") from None


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- factories
LOSSES: dict[str, str] = {"hinge": "ScoreGapHingeLoss", "kl": "SoftLabelKLLoss", "mse": "SoftLabelMSELoss"}

_CROSS_ENCODER_TYPES = ("cross-encoder", "cross_encoder")

_LANGUAGES = {"en": "english", "de": "german", "es": "spanish", "ru": "russian", "ar": "arabic", "hi": "hindi", "zh": "chinese"}


def guess_language(name: str) -> str:
    """Language of a shared dataset from its folder name (``xquad-r-de`` -> german; default english)."""
    suffix = Path(name).name.rsplit("-", 1)[-1]
    return _LANGUAGES.get(suffix, "english")


_RETRIEVERS: dict[str, Any] = {}


def build_retriever(name: str) -> Any:
    """The shared retriever, one instance per process and name."""
    from querit_st.retriever import DenseRetriever

    if name not in _RETRIEVERS:
        _RETRIEVERS[name] = DenseRetriever(name)
    return _RETRIEVERS[name]


def build_teacher(
    specs: list[TeacherSpec], corpus_texts: list[str], language: str = "english", *, stage1: str | os.PathLike | None = None,
    max_length: int | None = None,
) -> Any:
    """The teacher ensemble (z-normalised per query, weighted sum) for one corpus.

    Members restricted to other ``languages`` are left out; ``stage1`` members only take part when the stage-1 model
    is given (stage 2), so stage 1 and the baseline "teacher ensemble" use the off-the-shelf teachers alone.
    """
    from querit_st import teachers as T

    members, weights = [], []
    for spec in specs:
        if spec.languages is not None and language not in spec.languages:
            continue
        if spec.type == "stage1":
            if stage1 is not None:
                members.append(T.CrossEncoderTeacher(str(stage1), batch_size=64, max_length=max_length,
                                                     inference=spec.inference))
                weights.append(spec.weight)
            continue
        if spec.type == "embedding":
            members.append(T.EmbeddingTeacher(build_retriever(spec.model or "minilm-l6")))
        elif spec.type == "bm25":
            members.append(T.BM25Teacher(corpus_texts, language=language))
        elif spec.type in _CROSS_ENCODER_TYPES:
            members.append(T.CrossEncoderTeacher(spec.model, inference=spec.inference))
        else:
            raise QueritInputError(f"unknown teacher type {spec.type!r}; expected embedding, bm25, cross-encoder or stage1")
        weights.append(spec.weight)
    if not members:
        raise QueritInputError(f"no teacher of the config applies to language {language!r}; check teachers[].languages")
    if len(members) == 1:
        return members[0]
    return T.EnsembleTeacher(members, weights=weights, normalization="zscore")


def build_loss(model: Any, spec: TrainSpec) -> Any:
    from querit_st import losses

    return getattr(losses, LOSSES[spec.loss])(model, **spec.loss_kwargs)


# ----------------------------------------------------------------------------- training
def _latest_checkpoint(folder: Path) -> Path | None:
    ckpts = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return ckpts[-1] if ckpts else None


def train_model(
    model: Any,
    dataset: Any,
    spec: TrainSpec,
    output_dir: str | os.PathLike,
    *,
    seed: int = 0,
    resume: bool = True,
    record: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> Path:
    """Train ``model`` on a listwise soft-label dataset with ``CrossEncoderTrainer``; save to ``output_dir/model``.

    Checkpoints go to ``output_dir/checkpoints`` every ``save_steps``; with ``resume`` a killed run continues from the
    last one with the same step count. The final model is written atomically. Under ``torchrun`` / ``accelerate
    launch`` the run is DDP (HF Trainer); only the main process writes the model and the log, the others wait.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    output_dir = Path(output_dir)
    final = output_dir / "model"
    if final.is_dir() and resume:
        logger.info("%s exists; skipping training", final)
        return final
    ckpt_dir = output_dir / "checkpoints"
    prompt = model.prompts.get(model.default_prompt_name) if model.default_prompt_name else None
    if spec.freeze_embeddings and not spec.lora:
        freeze_word_embeddings(model)
    if spec.lora:
        from peft import LoraConfig, TaskType

        model.add_adapter(LoraConfig(task_type=TaskType.SEQ_CLS, r=spec.lora_r, lora_alpha=2 * spec.lora_r, lora_dropout=0.05))
    args = CrossEncoderTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        warmup_steps=spec.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=spec.weight_decay,
        logging_steps=spec.logging_steps,
        save_strategy="steps",
        save_steps=spec.save_steps,
        save_total_limit=2,
        report_to=[],
        seed=seed,
        data_seed=seed,
        bf16=spec.bf16,
        use_cpu=not _has_cuda(),
        # every parameter takes part in each step, and the listwise losses run several forward passes (mini-batches)
        # before one backward, which DDP's unused-parameter search rejects
        ddp_find_unused_parameters=False,
        prompts=prompt or None,
        dataloader_drop_last=False,
        disable_tqdm=not sys.stderr.isatty(),
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=build_loss(model, spec), callbacks=callbacks)
    last = _latest_checkpoint(ckpt_dir) if resume else None
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    elapsed = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if spec.lora:
        model.transformers_model.merge_and_unload() if hasattr(model.transformers_model, "merge_and_unload") else None
    entry = {
        **(record or {}),
        "loss": spec.loss,
        "loss_kwargs": spec.loss_kwargs,
        "steps": trainer.state.global_step,
        "rows": len(dataset),
        "train_seconds": round(elapsed, 1),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "world_size": args.world_size,
        "seed": seed,
    }
    if trainer.is_world_process_zero():
        model.record(stages=entry)
        with atomic_dir(final, overwrite=True) as tmp:
            model.save_pretrained(str(tmp))
        atomic_write_json(output_dir / "train_log.json", {"log_history": trainer.state.log_history, **entry})
    trainer.accelerator.wait_for_everyone()
    return final


def distributed_state() -> Any:
    """accelerate's ``PartialState`` when this process is one of several (``torchrun``, ``accelerate launch``), else None.

    Creating it joins the process group (gloo on CPU, nccl on GPUs), as HF Trainer would a moment later.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not _has_cuda())


def main_process_first() -> Any:
    """Context: the main process runs the block first (mining, filling caches), then the others (cache hits)."""
    import contextlib

    state = distributed_state()
    return state.main_process_first() if state is not None else contextlib.nullcontext()


def is_main_process() -> bool:
    state = distributed_state()
    return state is None or state.is_main_process


def freeze_word_embeddings(model: Any) -> int:
    """Stop gradients into the (large, multilingual) word-embedding matrix; returns the frozen parameter count."""
    emb = model.transformers_model.get_input_embeddings()
    n = 0
    for p in emb.parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------- stage 1
def pretrain_dataset(cfg: PipelineConfig) -> Any:
    """Labelled ranking data -> listwise soft labels: retriever candidates, teacher scores, gold bonus.

    For each query of each ``pretrain.datasets`` split: the retriever's top ``top_k``; the teacher ensemble scores
    them (z-normalised per query); the ``num_candidates`` kept are the gold documents plus candidates sampled across
    teacher-score bins; gold documents get ``max(teacher) + gold_bonus`` so the list's order respects the labels.
    """
    from datasets import Dataset

    from querit_st.data import doc_text, load_beir
    from querit_st.mining import sample_across_bins, zscore_list

    p = cfg.pretrain
    retriever = build_retriever(cfg.retriever)
    rows: dict[str, list[Any]] = {"query": [], "documents": [], "scores": []}
    rng = np.random.default_rng(cfg.seed)
    for name in p.datasets:
        data = load_beir(cfg.data_dir(name), split=p.split)
        texts = {d: doc_text(v) for d, v in data.corpus.items()}
        teacher = build_teacher(cfg.teachers, list(texts.values()), guess_language(name))
        queries = {q: data.queries[q] for q in data.qrels if q in data.queries}
        if p.max_queries_per_dataset:
            queries = dict(list(queries.items())[: p.max_queries_per_dataset])
        retriever.index(data.corpus)
        hits = retriever.search(queries, top_k=p.top_k)
        pools: dict[str, tuple[list[str], int]] = {}
        flat_q, flat_d, groups = [], [], []
        for qid, q in queries.items():
            gold = [d for d, s in data.qrels[qid].items() if s > 0 and d in texts]
            pool = gold + [d for d in hits[qid] if d not in gold]
            pools[qid] = (pool, len(gold))
            flat_q += [q] * len(pool)
            flat_d += [texts[d] for d in pool]
            groups += [qid] * len(pool)
        # one teacher call per dataset: every unique text is encoded once, scores z-normalised per query
        flat_t = np.asarray(teacher.score(flat_q, flat_d, groups=groups) if hasattr(teacher, "teachers")
                            else teacher.score(flat_q, flat_d), dtype=np.float64)
        offset = 0
        for qid, q in queries.items():
            pool, ng = pools[qid]
            t = flat_t[offset : offset + len(pool)]
            offset += len(pool)
            t = np.asarray(zscore_list(t))
            neg_idx = sample_across_bins(t[ng:], max(p.num_candidates - ng, 1), 16, rng) if len(pool) > ng else []
            keep = list(range(ng)) + [ng + int(i) for i in neg_idx]
            top_neg = t[ng:].max() if len(pool) > ng else 0.0
            labels = [float(max(top_neg, t[i]) + p.gold_bonus) if i < ng else float(t[i]) for i in keep]
            rows["query"].append(q)
            rows["documents"].append([texts[pool[i]] for i in keep])
            rows["scores"].append(labels)
    return Dataset.from_dict(rows).shuffle(seed=cfg.seed)


def stage1_dir(cfg: PipelineConfig) -> Path:
    """The stage-1 cache folder: keyed by everything stage 1 reads (``stage1`` teachers only act in stage 2, so they
    are left out of the key: changing their weight reuses the cached model)."""
    teachers = [{k: v for k, v in dataclasses.asdict(t).items() if not (k == "inference" and v == "fp32")}
                for t in cfg.teachers if t.type != "stage1"]  # the default inference mode keeps earlier cache keys
    key = config_hash({"backbone": cfg.backbone, "retriever": cfg.retriever, "max_length": cfg.max_length,
                       **({"backbone_layers": cfg.backbone_layers} if cfg.backbone_layers else {}),
                       "teachers": teachers, "pretrain": dataclasses.asdict(cfg.pretrain),
                       "seed": cfg.seed})
    root = Path(cfg.stage1_cache) if cfg.stage1_cache else cache_root() / "stage1"
    return root / f"{Path(cfg.backbone).name}-{key}"


def pretrain(cfg: PipelineConfig, output_dir: str | os.PathLike | None = None, *, resume: bool = True) -> Path:
    """Stage 1: a cross-encoder from the embedding backbone, trained on labelled ranking data with soft labels.

    Returns the model folder (``<output_dir>/model``); an existing one for the same config is reused.
    """
    from querit_st.cross_encoder import QueritCrossEncoder

    out = Path(output_dir) if output_dir else stage1_dir(cfg)
    if (out / "model").is_dir() and resume:
        logger.info("reusing stage-1 model %s", out / "model")
        return out / "model"
    out.mkdir(parents=True, exist_ok=True)
    with main_process_first():
        dataset = pretrain_dataset(cfg)
    from transformers import set_seed

    set_seed(cfg.seed)  # the fresh scoring head is drawn from the config's seed
    layers = check_backbone_layers(cfg.backbone_layers)  # a config built in code skips load_config
    model = QueritCrossEncoder.from_embedding_model(
        cfg.backbone, max_length=cfg.max_length, config_kwargs={"num_hidden_layers": layers} if layers else None)
    model.record(pipeline="querit-st", backbone=cfg.backbone, backbone_layers=layers, retriever=cfg.retriever,
                 teachers=[dataclasses.asdict(t) for t in cfg.teachers])
    return train_model(model, dataset, cfg.pretrain.train, out, seed=cfg.seed, resume=resume,
                       record={"stage": "pretrain", "datasets": cfg.pretrain.datasets, "split": cfg.pretrain.split})


# ----------------------------------------------------------------------------- stage 2
def adapt(
    cfg: PipelineConfig,
    target: str | os.PathLike,
    base_model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    seed: int | None = None,
    resume: bool = True,
) -> Path:
    """Stage 2 on one target corpus, label-free: only ``corpus.jsonl`` is read.

    Synthetic queries -> shared retriever -> teacher ensemble -> 16-bin sampled soft labels (mined in resumable
    shards under ``output_dir/mined``) -> training from ``base_model``. Returns ``output_dir/model``.
    """
    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.data import doc_text, load_corpus
    from querit_st.mining import clear_mining_files, load_mined_dataset, mine_soft_labels, to_listwise
    from querit_st.querygen import make_query_generator

    seed = cfg.seed if seed is None else seed
    target = cfg.data_dir(str(target))
    out = Path(output_dir)
    if (out / "model").is_dir() and resume:
        return out / "model"
    corpus = load_corpus(target)  # never the queries or qrels; checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    texts = {d: doc_text(v) for d, v in corpus.items()}
    a = cfg.adapt
    teacher = build_teacher(cfg.teachers, list(texts.values()), guess_language(target.name), stage1=base_model,
                            max_length=cfg.max_length)
    retriever = build_retriever(cfg.retriever)
    retriever.index(corpus)
    generator = make_query_generator(a.query_generator if isinstance(a.query_generator, (str, dict)) else "terms", seed=seed)
    mine_kw = dict(query_generator=generator, num_queries=a.num_queries, top_k=a.top_k, num_candidates=a.num_candidates,
                   num_bins=a.num_bins, output_dir=out / "mined", seed=seed, show_progress_bar=False)
    state = distributed_state()
    if state is None or state.num_processes <= 1:
        mined = mine_soft_labels(texts, retriever, teacher, resume=resume, **mine_kw)
    else:  # under DDP every rank mines its own shards (k % world == rank), then all read the merged dataset
        if not resume and state.is_main_process:
            clear_mining_files(out / "mined")  # once, before any rank writes (a rank clearing would race the others)
        state.wait_for_everyone()
        mine_soft_labels(texts, retriever, teacher, resume=True, num_shards_total=state.num_processes,
                         shard_index=state.process_index, **mine_kw)
        state.wait_for_everyone()
        mined = load_mined_dataset(out / "mined")
    dataset = to_listwise(mined, normalize=a.label_normalization, source_bonus=a.source_bonus).shuffle(seed=seed)
    model = QueritCrossEncoder(str(base_model), max_length=cfg.max_length)
    return train_model(model, dataset, a.train, out, seed=seed, resume=resume,
                       record={"stage": "adapt", "target": target.name, "reads": "corpus.jsonl only",
                               "num_queries": len(mined), "query_generator": a.query_generator,
                               "from": str(base_model)})


# ----------------------------------------------------------------------------- stage 3 + evaluation
def merge_checkpoints(paths: list[Path], output_dir: str | os.PathLike, t: float | list[float] = 0.5, *, overwrite: bool = True) -> Path:
    """Stage 3: SLERP two checkpoints (``t``), or N by sequential SLERP with equal shares."""
    from querit_st import merge as M

    if len(paths) == 1:
        with atomic_dir(output_dir, overwrite=overwrite) as tmp:
            shutil.copytree(paths[0], tmp, dirs_exist_ok=True)
        return Path(output_dir)
    if len(paths) == 2:
        return Path(M.slerp_merge(str(paths[0]), str(paths[1]), t=t, output_dir=str(output_dir), overwrite=overwrite, show_progress_bar=False))
    return Path(M.slerp_merge_many([str(p) for p in paths], output_dir=str(output_dir), overwrite=overwrite, show_progress_bar=False))


def evaluate_models(
    cfg: PipelineConfig,
    target: str | os.PathLike,
    models: dict[str, str | os.PathLike],
    *,
    include_teacher: bool = True,
) -> dict[str, Any]:
    """Retriever alone, the teacher ensemble (no training) and each model (fused with the retriever's score)."""
    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.data import doc_text, load_beir
    from querit_st.evaluation import compute_metrics, evaluate_reranking, per_query_ndcg, rerank_results

    e = cfg.evaluate
    data = load_beir(cfg.data_dir(str(target)), split=e.split)
    retriever = build_retriever(cfg.retriever)
    rerankers = {name: QueritCrossEncoder(str(path), max_length=cfg.max_length) for name, path in models.items()}
    if e.inference != "fp32":
        from querit_st.inference import optimize_for_inference

        rerankers = {name: optimize_for_inference(m, e.inference) for name, m in rerankers.items()}
    report = evaluate_reranking(data, retriever, rerankers, top_k=e.top_k, batch_size=e.batch_size,
                                fusion_weight=e.fusion_weight, max_queries=e.max_queries)
    queries = {q: data.queries[q] for q in report["per_query_nDCG@10"]["retriever"]}
    first = retriever.search(queries, top_k=e.top_k)
    qrels = {q: data.qrels[q] for q in queries}
    if include_teacher:
        texts = [doc_text(v) for v in data.corpus.values()]
        teacher = build_teacher(cfg.teachers, texts, guess_language(Path(str(target)).name))
        res = rerank_results(teacher.score, queries, data.corpus, first, e.top_k)
        report["teacher_ensemble"] = compute_metrics(qrels, res, (10, e.top_k))
        report["per_query_nDCG@10"]["teacher_ensemble"] = per_query_ndcg(qrels, res)
    report["dataset"] = data.name
    report["checksum"] = data.checksum
    return report


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of nDCG@10 per target (rows) and system (columns)."""
    systems: list[str] = []
    for rep in results.values():
        for k, v in rep.items():
            if isinstance(v, dict) and "nDCG@10" in v and k not in systems:
                systems.append(k)
    head = "| target | " + " | ".join(systems) + " |"
    sep = "|---" * (len(systems) + 1) + "|"
    lines = [head, sep]
    for target, rep in results.items():
        cells = [f"{rep[s]['nDCG@10']:.4f}" if s in rep else "" for s in systems]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(results: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path | None:
    """A PNG bar chart of nDCG@10 per target and system (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib not installed; no chart")
        return None
    targets = list(results)
    systems = [k for k, v in next(iter(results.values())).items() if isinstance(v, dict) and "nDCG@10" in v and "no fusion" not in k]
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(targets)), 4))
    for i, s in enumerate(systems):
        vals = [results[t].get(s, {}).get("nDCG@10", 0.0) for t in targets]
        ax.bar(np.arange(len(targets)) + i * width, vals, width, label=s)
    ax.set_xticks(np.arange(len(targets)) + 0.4 - width / 2)
    ax.set_xticklabels(targets)
    ax.set_ylabel("nDCG@10")
    ax.set_title("querit-st: retriever vs rerankers")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def machine_info() -> dict[str, Any]:
    import torch

    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform(), "python": sys.version.split()[0]}


def run_pipeline(
    cfg: PipelineConfig,
    targets: list[str],
    output_dir: str | os.PathLike,
    *,
    resume: bool = True,
    evaluate: bool = True,
) -> dict[str, Any]:
    """All stages: stage 1 (cached), stage 2 per target and seed, merge, and evaluation when targets have qrels.

    Writes ``output_dir/results.json``, ``output_dir/results.png`` and returns the results.
    """
    if not targets:
        raise QueritInputError("no targets given; expected at least one BEIR folder")
    for t in targets:  # fail early, before hours of training
        if not (cfg.data_dir(t) / "corpus.jsonl").is_file():
            raise QueritInputError(f"target {t!r} has no corpus.jsonl")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    stage1 = pretrain(cfg, resume=resume)
    timings["pretrain"] = time.perf_counter() - t0
    adapted: list[Path] = []
    names: dict[str, Path] = {}
    for t in targets:
        for seed in cfg.adapt.seeds:
            t1 = time.perf_counter()
            name = f"adapt-{Path(t).name}-s{seed}"
            path = adapt(cfg, t, stage1, out / name, seed=seed, resume=resume)
            timings[name] = time.perf_counter() - t1
            adapted.append(path)
            names[name] = path
    if not is_main_process():  # DDP: the other ranks trained with the main one; merge and evaluation are single-process
        return {"stage1": str(stage1), "adapted": {n: str(p) for n, p in names.items()}}
    t1 = time.perf_counter()
    to_merge = ([stage1] if cfg.merge.include_stage1 else []) + adapted
    merged = merge_checkpoints(to_merge, out / "merged", t=cfg.merge.t)
    timings["merge"] = time.perf_counter() - t1
    results: dict[str, Any] = {}
    if evaluate:
        for t in targets:
            if not (cfg.data_dir(t) / "qrels" / f"{cfg.evaluate.split}.tsv").is_file():
                continue
            t1 = time.perf_counter()
            own = {n: p for n, p in names.items() if n.startswith(f"adapt-{Path(t).name}-s")}
            models = {"stage1": stage1, **own, "merged": merged}
            results[Path(t).name] = evaluate_models(cfg, t, models)
            timings[f"evaluate-{Path(t).name}"] = time.perf_counter() - t1
    summary = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "config": cfg.to_dict(),
        "stage1": str(stage1),
        "adapted": {n: str(p) for n, p in names.items()},
        "merged": str(merged),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "results": results,
    }
    atomic_write_json(out / "results.json", summary)
    if results:
        summary["table"] = results_table(results)
        chart = bar_chart(results, out / "results.png")
        summary["chart"] = str(chart) if chart else None
        atomic_write_json(out / "results.json", summary)
    return summary
