"""The pipeline's YAML config: the dataclass schema, reading (``base:`` chains, ``--set`` overrides) and checking.

Every value is checked when the config loads, before anything is written or trained: its type (from the
dataclass annotations), its range (``field(metadata={"min": ...})``) and its meaning (known losses, teacher types,
inference modes, merge settings). A bad value is one :class:`~querit_st.utils.QueritInputError` naming the key, the
value and what was expected (the CLI prints it and exits 2).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from querit_st.training.objectives import LOSSES
from querit_st.utils import QueritInputError


def _min(value: float, *, exclusive: bool = False) -> dict[str, Any]:
    return {"min": value, "exclusive": exclusive}


@dataclass
class TeacherSpec:
    """One teacher of the ensemble: ``embedding`` (cosine of an embedding model), ``bm25``, ``cross-encoder``, or
    ``stage1`` (the stage-1 cross-encoder itself; stage 2 only: the adapted student then learns the off-the-shelf
    teachers *and* what stage 1 learnt from labelled data, and the baseline ensemble leaves it out).

    ``languages``: use this member only for targets in these languages (names or ISO codes, e.g. ``[english]``
    for an English-only embedding model); ``None``: every language.
    ``inference``: ``cross-encoder`` / ``stage1`` members only: the :mod:`querit_st.inference` mode they score with.
    ``layers``: ``stage1`` members only: a larger stage-1 model as the teacher, the same stage-1 data and settings
    with this many backbone layers (e.g. 12, all of e5-small's: too slow to deploy, fine to label with; trained and
    cached like stage 1, apart from it); ``None``: the stage-1 model the student starts from.
    """

    type: str = "embedding"
    model: str | None = None
    weight: float = field(default=1.0, metadata=_min(0.0))
    languages: list[str] | None = None
    inference: str = "fp32"
    layers: int | None = field(default=None, metadata=_min(1))

    def cache_key(self) -> dict[str, Any]:
        """The settings that go into a stage's cache key: ``layers`` (added later) is left out at its default, so
        adding the field kept every earlier stage-1 and stage-2 cache valid."""
        key = dataclasses.asdict(self)
        if key.get("layers") is None:
            key.pop("layers", None)
        return key


TEACHER_TYPES = ("embedding", "bm25", "cross-encoder", "cross_encoder", "stage1")
CROSS_ENCODER_TYPES = ("cross-encoder", "cross_encoder")


@dataclass
class TrainSpec:
    """Trainer settings shared by both training stages."""

    loss: str = "hinge"  # hinge | kl | mse
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: float = field(default=1.0, metadata=_min(0.0, exclusive=True))
    max_steps: int = -1
    batch_size: int = field(default=4, metadata=_min(1))
    learning_rate: float = field(default=3e-5, metadata=_min(0.0, exclusive=True))
    # the scoring head (pooler + classifier, fresh in stage 1) at its own rate: a larger one shortens the loss plateau
    # a fresh head starts on (sentence-transformers' learning_rate_mapping); None: learning_rate
    head_learning_rate: float | None = field(default=None, metadata=_min(0.0, exclusive=True))
    warmup_ratio: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    weight_decay: float = field(default=0.01, metadata=_min(0.0))
    save_steps: int = field(default=200, metadata=_min(1))
    logging_steps: int = field(default=20, metadata=_min(1))
    bf16: bool = False
    # the fast CPU training path (querit_st.training.fast): "auto" picks what wins on this CPU, "off" is plain fp32
    fast: str = "auto"
    lora: bool = False
    lora_r: int = field(default=16, metadata=_min(1))
    freeze_embeddings: bool = True  # e5's 250k x 384 word embeddings: dense AdamW updates dominate CPU step time


@dataclass
class PretrainSpec:
    datasets: list[str] = field(default_factory=lambda: ["xquad-r-en"])
    split: str = "train"
    dev_split: str | None = None  # e.g. "dev": the stage-1 sets' dev qrels, for checkpoint choice and the cost report
    top_k: int = field(default=30, metadata=_min(1))
    num_candidates: int = field(default=8, metadata=_min(2))
    max_queries_per_dataset: int | None = field(default=None, metadata=_min(1))
    gold_bonus: float = field(default=1.0, metadata=_min(0.0))
    train: TrainSpec = field(default_factory=TrainSpec)


@dataclass
class AdaptSpec:
    query_generator: str | dict[str, Any] = "terms"
    num_queries: int = field(default=1000, metadata=_min(1))
    top_k: int = field(default=50, metadata=_min(1))
    num_candidates: int = field(default=16, metadata=_min(2))
    num_bins: int = field(default=16, metadata=_min(1))
    label_normalization: str = "zscore"  # per-list z-score of the teacher scores (stage 1 uses the same scale); or none
    # the generated query's source document gets max(other labels) + source_bonus (a label-free pseudo-positive, as
    # stage 1's gold bonus); None: it keeps its teacher score
    source_bonus: float | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    train: TrainSpec = field(default_factory=TrainSpec)


@dataclass
class MergeSpec:
    """``t``: the SLERP position between two checkpoints (0 = the first); ``weights``: one share per checkpoint
    for an N-way merge (normalised to sum 1; None: equal shares, or ``t`` when there are two)."""

    t: float | list[float] = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # a list: a layer gradient
    weights: list[float] | None = None
    include_stage1: bool = False


@dataclass
class EvalSpec:
    top_k: int = field(default=100, metadata=_min(1))
    fusion_weight: float = 1.0
    split: str = "test"
    max_queries: int | None = field(default=None, metadata=_min(1))
    batch_size: int = field(default=64, metadata=_min(1))
    inference: str = "fp32"  # any querit_st.inference mode; "packed" / "onnx" are exact and faster on CPU
    instruction: str | None = None  # a task instruction for the rerankers (None: the Querit default)
    # keep each model's scores on disk (<cache>/scores, keyed by its weights and scoring settings): a model is never
    # scored twice on a pair (stage 1 across runs and seeds), and an interrupted evaluation resumes
    cache: bool = True


@dataclass
class PipelineConfig:
    retriever: str = "multilingual-e5-small"  # the shared first-stage retriever (multilingual, like the paper's)
    backbone: str = "multilingual-e5-small"
    # keep only the backbone's first n transformer layers (a compact, faster reranker; None: all of them)
    backbone_layers: int | None = field(default=None, metadata=_min(1))
    max_length: int = field(default=192, metadata=_min(8))
    seed: int = 0
    # the targets' language (ISO code or name); None: detected from each corpus's text (querit_st.data.detect_language)
    language: str | None = None
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
        """A dataset folder (or, for targets, a corpus file): a path as given, else ``name`` under the data root."""
        from querit_st.data import default_data_root

        p = Path(name)
        if p.is_dir() or p.is_file():
            return p
        root = Path(self.data_root) if self.data_root else default_data_root()
        if not (root / name).is_dir():
            raise QueritInputError(f"dataset {name!r} is neither a folder nor under the data root {str(root)!r}")
        return root / name


_NESTED: dict[str, type] = {"pretrain": PretrainSpec, "adapt": AdaptSpec, "merge": MergeSpec, "evaluate": EvalSpec,
                            "train": TrainSpec}


# ----------------------------------------------------------------------------------------------- type checking
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(arg)}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_matches(v, arg) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def check_value(where: str, value: Any, tp: Any, metadata: typing.Mapping[str, Any]) -> Any:
    """``value`` if it has type ``tp`` and lies in the field's range, else a QueritInputError naming ``where``."""
    if not _matches(value, tp):
        raise QueritInputError(f"config {where} = {value!r}: expected {_type_name(tp)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = metadata.get("min"), metadata.get("max")
        if lo is not None and (value < lo or (metadata.get("exclusive") and value == lo)):
            raise QueritInputError(f"config {where} = {value!r}: expected a value {'>' if metadata.get('exclusive') else '>='} {lo}")
        if hi is not None and value > hi:
            raise QueritInputError(f"config {where} = {value!r}: expected a value <= {hi}")
    return value  # an int where a float is expected stays an int (it keeps earlier stage-1 cache keys)


def build_section(cls: type, values: Any, where: str) -> Any:
    """Build a config dataclass from a dict: unknown keys, wrong types and out-of-range values are errors (nothing
    is ever evaluated)."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise QueritInputError(f"config section {where!r} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise QueritInputError(f"config section {where!r} has unknown key(s) {unknown}; expected some of {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for k, v in values.items():
        if k in _NESTED:
            kwargs[k] = build_section(_NESTED[k], v, f"{where}.{k}")
        elif k == "teachers":
            if not isinstance(v, list) or not v:
                raise QueritInputError(f"config {where}.teachers must be a non-empty list")
            kwargs[k] = [build_section(TeacherSpec, t, f"{where}.teachers[{i}]") for i, t in enumerate(v)]
        else:
            kwargs[k] = check_value(f"{where}.{k}".removeprefix("config."), v, hints[k], fields[k].metadata)
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------- reading
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
    """Read a YAML config (``yaml.safe_load``: no value is ever evaluated as code) and check every value.

    A ``base:`` key extends another config file (:func:`read_config_values`). ``overrides`` are merged into the
    file's values by :func:`merge_config_values` (``{"adapt": {"num_queries": 600}}`` changes that one key and keeps
    the rest of ``adapt``)."""
    values: dict[str, Any] = read_config_values(path) if path is not None else {}
    values = merge_config_values(values, overrides or {})
    cfg = build_section(PipelineConfig, values, "config")
    check_config(cfg)
    return cfg


def check_backbone_layers(layers: Any) -> int | None:
    """``backbone_layers`` must be a positive integer or None; returns it."""
    if layers is not None and (not isinstance(layers, int) or isinstance(layers, bool) or layers <= 0):
        raise QueritInputError(f"backbone_layers must be a positive integer or null, got {layers!r}")
    return layers


FAST_CHOICES = ("auto", "off", "bf16", "fp32")


def check_config(cfg: PipelineConfig) -> None:
    """The checks of meaning, done by ``load_config`` before anything runs (``run_pipeline`` repeats them for a
    config built in code): losses and their options, teacher types and inference modes, the query generator, the
    merge settings, the language."""
    from querit_st.inference import MODES
    from querit_st.losses import check_loss_kwargs
    from querit_st.querygen import check_query_generator_spec
    from querit_st.utils.lang import LANGUAGES, language_code

    def check_language(value: Any, where: str) -> None:
        if not isinstance(value, str) or language_code(value) not in LANGUAGES:
            raise QueritInputError(f"{where} = {value!r}: expected a language name or ISO 639-1 code "
                                   f"(e.g. en, english, de, zh)")

    check_backbone_layers(cfg.backbone_layers)
    for where, spec in (("pretrain.train", cfg.pretrain.train), ("adapt.train", cfg.adapt.train)):
        if spec.loss not in LOSSES:
            raise QueritInputError(f"unknown loss {spec.loss!r} ({where}.loss); expected one of {sorted(LOSSES)}")
        if spec.fast not in FAST_CHOICES:
            raise QueritInputError(f"config {where}.fast = {spec.fast!r}: expected one of {', '.join(FAST_CHOICES)}")
        try:
            check_loss_kwargs(LOSSES[spec.loss], spec.loss_kwargs)
        except QueritInputError as e:
            raise QueritInputError(f"config {where}.loss_kwargs: {e}") from None
    modes = [("evaluate.inference", cfg.evaluate.inference)] + [(f"teachers[{i}].inference", t.inference)
                                                               for i, t in enumerate(cfg.teachers)]
    for where, mode in modes:
        if mode not in MODES:
            raise QueritInputError(f"unknown {where} {mode!r}; expected one of {', '.join(MODES)}")
    for i, t in enumerate(cfg.teachers):
        if t.type not in TEACHER_TYPES:
            raise QueritInputError(f"config teachers[{i}].type = {t.type!r}: expected embedding, bm25, cross-encoder or stage1")
        if t.type in CROSS_ENCODER_TYPES and not t.model:
            raise QueritInputError(f"config teachers[{i}]: a {t.type} teacher needs a model")
        if t.layers is not None and t.type != "stage1":
            raise QueritInputError(f"config teachers[{i}].layers applies to stage1 teachers only, not to type "
                                   f"{t.type!r}; leave it out")
        if t.inference != "fp32" and t.type != "stage1" and t.type not in CROSS_ENCODER_TYPES:
            raise QueritInputError(f"teachers[{i}].inference applies to cross-encoder and stage1 teachers only, "
                                   f"not to type {t.type!r}; leave it out")
        for lang in t.languages or []:
            check_language(lang, f"config teachers[{i}].languages")
    if cfg.language is not None:
        check_language(cfg.language, "config language")
    try:
        check_query_generator_spec(cfg.adapt.query_generator)
    except QueritInputError as e:
        raise QueritInputError(f"config adapt.query_generator: {e}") from None
    if cfg.merge.weights is not None:  # the merge's own check; the count needs the targets (run_pipeline's preflight)
        from querit_st.merge.schedule import check_weights

        try:
            check_weights(cfg.merge.weights)
        except QueritInputError as e:
            raise QueritInputError(f"config merge.weights = {cfg.merge.weights!r}: {e}") from None
