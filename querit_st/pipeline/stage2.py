"""Stage 2, label-free: synthetic queries from the target corpus -> shared retriever -> teachers -> binned soft
labels -> training from the stage-1 model. Only the target's corpus is read, never its queries or qrels."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from querit_st.pipeline.config import PipelineConfig
from querit_st.pipeline.factories import build_retriever, build_teacher, corpus_language
from querit_st.pipeline.fingerprint import stage_fingerprint, use_or_clear
from querit_st.pipeline.stage1 import stage1_teachers
from querit_st.utils import QueritInputError, sha256_file

logger = logging.getLogger(__name__)


def model_identity(path: str | os.PathLike) -> str:
    """What identifies a model folder's weights for a fingerprint: the hash of its weight files."""
    folder = Path(path)
    files = sorted(p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    return ",".join(f"{p.name}:{sha256_file(p)[:16]}" for p in files) or str(folder.resolve())


def adapt_settings(cfg: PipelineConfig, target: Path, base_model: str | os.PathLike, seed: int, corpus: Any,
                   fields: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Everything stage 2 reads: the adapt section, teachers, retriever, the base model's weights, the corpus."""
    from querit_st.data import corpus_checksum

    return {"adapt": dataclasses.asdict(cfg.adapt), "teachers": [t.cache_key() for t in cfg.teachers],
            "retriever": cfg.retriever, "max_length": cfg.max_length, "language": cfg.language, "seed": seed,
            "base_model": model_identity(base_model), "corpus": corpus_checksum(target), "documents": len(corpus),
            **({"fields": fields} if fields and any(fields.values()) else {})}


def target_name(target: str | os.PathLike) -> str:
    """A target's short name: the BEIR folder's name, or a corpus file's name without its suffixes."""
    p = Path(target)
    return p.name.split(".")[0] if p.is_file() else p.name


def check_base_model(base_model: str | os.PathLike) -> Path:
    base = Path(base_model)
    if not base.is_dir() or not ((base / "config.json").is_file() or (base / "modules.json").is_file()):
        raise QueritInputError(f"base model {str(base_model)!r} is not a model folder (no config.json); expected the "
                               "stage-1 model folder (querit-st pretrain prints it)")
    return base


def adapt(
    cfg: PipelineConfig,
    target: str | os.PathLike,
    base_model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    seed: int | None = None,
    resume: bool = True,
    fields: dict[str, str | None] | None = None,
) -> Path:
    """Stage 2 on one target corpus, label-free: only ``corpus.jsonl`` is read (or the corpus file given as
    ``target``: JSONL, CSV, Parquet or a saved Hugging Face dataset, with ``fields`` = ``{"id_field", "text_field",
    "title_field"}`` naming its columns; see :func:`querit_st.data.load_corpus_file`).

    Synthetic queries -> shared retriever -> teacher ensemble -> 16-bin sampled soft labels (mined in resumable
    shards under ``output_dir/mined``) -> training from ``base_model``. Returns ``output_dir/model``. A folder made
    with other settings (or another base model or corpus) is retrained, never reused.
    """
    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.data import doc_text, load_corpus
    from querit_st.mining import clear_mining_files, load_mined_dataset, mine_soft_labels, to_listwise
    from querit_st.querygen import make_query_generator
    from querit_st.training import distributed_state, train_model

    seed = cfg.seed if seed is None else seed
    target = cfg.data_dir(str(target))
    base = check_base_model(base_model)  # before anything is written
    out = Path(output_dir)
    corpus = load_corpus(target, **(fields or {}))  # never the queries or qrels; checked before anything is written
    fingerprint = stage_fingerprint("adapt", adapt_settings(cfg, target, base, seed, corpus, fields))
    if use_or_clear(out, fingerprint, resume=resume):
        return out / "model"
    out.mkdir(parents=True, exist_ok=True)
    fingerprint.write(out)
    texts = {d: doc_text(v) for d, v in corpus.items()}
    a = cfg.adapt
    language = corpus_language(list(texts.values()), cfg.language)
    teacher = build_teacher(cfg.teachers, list(texts.values()), language, stage1=base, max_length=cfg.max_length,
                            larger_stage1=stage1_teachers(cfg, resume=resume))
    retriever = build_retriever(cfg.retriever)
    retriever.index(corpus)
    generator = make_query_generator(a.query_generator if isinstance(a.query_generator, (str, dict)) else "terms", seed=seed)
    mine_kw = dict(query_generator=generator, num_queries=a.num_queries, top_k=a.top_k, num_candidates=a.num_candidates,
                   num_bins=a.num_bins, output_dir=out / "mined", seed=seed, show_progress_bar=True)
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
    model = QueritCrossEncoder(str(base), max_length=cfg.max_length)
    return train_model(model, dataset, a.train, out, seed=seed, resume=resume, label=f"adapt {target_name(target)} s{seed}",
                       record={"stage": "adapt", "target": target_name(target), "reads": "the corpus only",
                               "num_queries": len(mined), "query_generator": a.query_generator, "language": language,
                               "top_k": a.top_k, "num_candidates": a.num_candidates, "num_bins": a.num_bins,
                               "source_bonus": a.source_bonus, "from": str(base)})
