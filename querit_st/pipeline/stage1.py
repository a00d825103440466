"""Stage 1: labelled ranking data -> teacher soft labels -> a cross-encoder from the embedding backbone (cached)."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from querit_st.pipeline.config import PipelineConfig, check_backbone_layers
from querit_st.pipeline.factories import build_retriever, build_teacher, corpus_language
from querit_st.pipeline.fingerprint import stage_fingerprint, use_or_clear
from querit_st.utils.progress import progress_line
from querit_st.utils import atomic_write_bytes, cache_root, config_hash

logger = logging.getLogger(__name__)


#: where a stage-1 folder keeps each dataset's labelled lists (one parquet file per dataset and split), so an
#: interrupted run labels only the datasets it has not finished
LABELLED_DIR = "labelled"


def labelled_lists(cfg: PipelineConfig, split: str | None = None, folder: str | os.PathLike | None = None) -> Any:
    """Labelled ranking data -> listwise soft labels: retriever candidates, teacher scores, gold bonus.

    For each query of each ``pretrain.datasets`` split: the retriever's top ``top_k``; the teacher ensemble scores
    them (z-normalised per query); the ``num_candidates`` kept are the gold documents plus candidates sampled across
    teacher-score bins, gold documents labelled ``max(teacher) + gold_bonus`` (:func:`querit_st.mining.labelled_list`).
    Each dataset samples from its own generator (seeded by the config's seed and the dataset's name), so a dataset's
    lists do not depend on which datasets come before it.

    ``folder``: each dataset's lists are written there (``labelled/<name>-<split>.parquet``, atomically) as soon as
    they are done, and read back instead of relabelled on the next call: a killed run resumes at the first dataset it
    had not finished. The caller owns the folder's validity (the stage-1 fingerprint clears it when settings change).
    """
    from datasets import Dataset

    p = cfg.pretrain
    split = split or p.split
    rows: dict[str, list[Any]] = {"query": [], "documents": [], "scores": []}
    t0 = time.perf_counter()
    for n, name in enumerate(p.datasets, 1):
        path = Path(folder) / LABELLED_DIR / f"{name}-{split}.parquet" if folder is not None else None
        if path is not None and path.is_file():
            part, how = read_lists(path), "read back"
        else:
            part, how = label_dataset(cfg, name, split), "labelled"
            if path is not None:
                write_lists(path, part)
        for k in rows:
            rows[k] += part[k]
        elapsed = time.perf_counter() - t0
        logger.info(progress_line("stage 1 labelling", n, len(p.datasets), n / elapsed, "datasets",
                                  f"{name} ({split}): {len(part['query'])} lists {how}, {len(rows['query'])} in all"))
    return Dataset.from_dict(rows).shuffle(seed=cfg.seed)


def label_dataset(cfg: PipelineConfig, name: str, split: str) -> dict[str, list[Any]]:
    """One dataset's labelled lists (``query``, ``documents``, ``scores`` columns): see :func:`labelled_lists`."""
    from querit_st.data import doc_text, load_beir
    from querit_st.mining import labelled_list
    from querit_st.retriever import candidate_pool

    p = cfg.pretrain
    retriever = build_retriever(cfg.retriever)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(name.encode("utf-8"))])
    data = load_beir(cfg.data_dir(name), split=split)
    texts = {d: doc_text(v) for d, v in data.corpus.items()}
    teacher = build_teacher(cfg.teachers, list(texts.values()), corpus_language(list(texts.values()), cfg.language))
    queries = {q: data.queries[q] for q in data.qrels if q in data.queries}
    if p.max_queries_per_dataset:
        queries = dict(list(queries.items())[: p.max_queries_per_dataset])
    retriever.index(data.corpus)
    hits = retriever.search(queries, top_k=p.top_k)
    pools: dict[str, tuple[list[str], int]] = {}
    flat_q, flat_d, groups = [], [], []
    for qid, q in queries.items():
        gold = [d for d, s in data.qrels[qid].items() if s > 0 and d in texts]
        pool = gold + candidate_pool(hits[qid], exclude=set(gold))
        pools[qid] = (pool, len(gold))
        flat_q += [q] * len(pool)
        flat_d += [texts[d] for d in pool]
        groups += [qid] * len(pool)
    # one teacher call per dataset: every unique text is encoded once, scores z-normalised per query
    flat_t = np.asarray(teacher.score(flat_q, flat_d, groups=groups) if hasattr(teacher, "teachers")
                        else teacher.score(flat_q, flat_d), dtype=np.float64)
    part: dict[str, list[Any]] = {"query": [], "documents": [], "scores": []}
    offset = 0
    for qid, q in queries.items():
        pool, ng = pools[qid]
        keep, labels = labelled_list(flat_t[offset: offset + len(pool)], ng, p.num_candidates, rng,
                                     gold_bonus=p.gold_bonus, num_bins=16)
        offset += len(pool)
        part["query"].append(q)
        part["documents"].append([texts[pool[i]] for i in keep])
        part["scores"].append([float(x) for x in labels])
    return part


def write_lists(path: Path, part: dict[str, list[Any]]) -> None:
    """One dataset's labelled lists as a parquet file, written atomically (a kill leaves it whole or absent)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(part), buf)
    atomic_write_bytes(path, buf.getvalue())


def read_lists(path: Path) -> dict[str, list[Any]]:
    """The columns :func:`write_lists` wrote."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pydict()


DEV_QUERIES_PER_DATASET = 30


def dev_samples(cfg: PipelineConfig, max_queries: int = DEV_QUERIES_PER_DATASET) -> list[dict[str, Any]]:
    """Reranking samples from the ``pretrain.dev_split`` of every stage-1 set, for checkpoint choice: each dev
    query (the first ``max_queries`` per set) with its gold passages and the retriever's top ``pretrain.top_k``
    (ranked), the input of sentence-transformers' ``CrossEncoderRerankingEvaluator``."""
    from querit_st.data import doc_text, load_beir
    from querit_st.retriever import candidate_pool

    retriever = build_retriever(cfg.retriever)
    samples = []
    for name in cfg.pretrain.datasets:
        folder = cfg.data_dir(name)
        if not (folder / "qrels" / f"{cfg.pretrain.dev_split}.tsv").is_file():
            continue  # e.g. XQuAD-R has train/test only: its dev queries come from nowhere, never from test
        data = load_beir(folder, split=cfg.pretrain.dev_split)
        queries = {q: data.queries[q] for q in list(data.qrels)[:max_queries] if q in data.queries}
        retriever.index(data.corpus)
        hits = retriever.search(queries, top_k=cfg.pretrain.top_k)
        for q, text in queries.items():
            gold = [doc_text(data.corpus[d]) for d, s in data.qrels[q].items() if s > 0 and d in data.corpus]
            ranked = [doc_text(data.corpus[d]) for d in candidate_pool(hits[q])]
            if gold:
                samples.append({"query": text, "positive": gold, "documents": ranked})
    return samples


def dev_evaluator(cfg: PipelineConfig) -> Any | None:
    """``CrossEncoderRerankingEvaluator`` named ``dev`` over :func:`dev_samples`, or None without a dev split."""
    if not cfg.pretrain.dev_split:
        return None
    samples = dev_samples(cfg)
    if not samples:
        return None
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    logger.info("stage 1 dev: %d queries from the %r splits choose the checkpoint (nDCG@10)", len(samples),
                cfg.pretrain.dev_split)
    return CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", batch_size=64, write_csv=False,
                                          always_rerank_positives=False)


def pretrain_dataset(cfg: PipelineConfig, folder: str | os.PathLike | None = None) -> Any:
    """The stage-1 training lists (the ``pretrain.split`` of every ``pretrain.datasets``): :func:`labelled_lists`
    (each dataset's lists kept in ``folder`` when given)."""
    return labelled_lists(cfg, folder=folder)


def stage1_key(cfg: PipelineConfig) -> dict[str, Any]:
    """Everything stage 1 reads (``stage1`` teachers only act in stage 2, so they are left out: changing their
    weight reuses the cached model)."""
    teachers = [{k: v for k, v in t.cache_key().items() if not (k == "inference" and v == "fp32")}
                for t in cfg.teachers if t.type != "stage1"]  # the default inference mode keeps earlier cache keys
    pretrain = dataclasses.asdict(cfg.pretrain)
    if pretrain.get("dev_split") is None:
        pretrain.pop("dev_split", None)  # keeps earlier cache keys
    train = pretrain["train"]
    if train.get("head_learning_rate") is None:
        train.pop("head_learning_rate", None)  # keeps earlier cache keys
    if train.get("fast") == "auto":
        train.pop("fast")  # the fast path is the same function of the model: it does not change the key
    return {"backbone": cfg.backbone, "retriever": cfg.retriever, "max_length": cfg.max_length,
            **({"backbone_layers": cfg.backbone_layers} if cfg.backbone_layers else {}),
            **({"language": cfg.language} if cfg.language else {}),
            "teachers": teachers, "pretrain": pretrain, "seed": cfg.seed}


def stage1_teachers(cfg: PipelineConfig, *, resume: bool = True) -> dict[int, Path]:
    """The larger stage-1 models that ``{type: stage1, layers: n}`` teachers score with, keyed by ``n``: stage 1
    (:func:`pretrain`) on the same data and settings with ``n`` backbone layers, each cached by its own key, so the
    first stage 2 trains it and every later one reuses it. Empty when no teacher asks for one."""
    models: dict[int, Path] = {}
    for spec in cfg.teachers:
        if spec.type == "stage1" and spec.layers is not None and spec.layers not in models:
            logger.info("stage-1 teacher with %d layers: %s", spec.layers, "training or reusing its cached model")
            models[spec.layers] = pretrain(dataclasses.replace(cfg, backbone_layers=spec.layers), resume=resume)
    return models


def stage1_dir(cfg: PipelineConfig) -> Path:
    """The stage-1 cache folder, named by the hash of :func:`stage1_key`."""
    root = Path(cfg.stage1_cache) if cfg.stage1_cache else cache_root() / "stage1"
    return root / f"{Path(cfg.backbone).name}-{config_hash(stage1_key(cfg))}"


def pretrain(cfg: PipelineConfig, output_dir: str | os.PathLike | None = None, *, resume: bool = True) -> Path:
    """Stage 1: a cross-encoder from the embedding backbone, trained on labelled ranking data with soft labels.

    Returns the model folder (``<output_dir>/model``); an existing one made with the same settings is reused, one made
    with other settings is retrained (its folder's fingerprint says which).
    """
    from transformers import set_seed

    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.training import is_main_process, main_process_first, train_model

    out = Path(output_dir) if output_dir else stage1_dir(cfg)
    fingerprint = stage_fingerprint("pretrain", stage1_key(cfg))
    if use_or_clear(out, fingerprint, resume=resume, trust_unmarked=output_dir is None):
        logger.info("reusing stage-1 model %s", out / "model")
        return out / "model"
    out.mkdir(parents=True, exist_ok=True)
    fingerprint.write(out)  # first: an interrupted run resumes (same settings), a changed one starts afresh
    with main_process_first():
        if not resume and is_main_process():
            shutil.rmtree(out / LABELLED_DIR, ignore_errors=True)  # resume=False: every dataset labelled afresh
        dataset = pretrain_dataset(cfg, out)
        evaluator = dev_evaluator(cfg)
    set_seed(cfg.seed)  # the fresh scoring head is drawn from the config's seed
    layers = check_backbone_layers(cfg.backbone_layers)  # a config built in code skips load_config
    model = QueritCrossEncoder.from_embedding_model(
        cfg.backbone, max_length=cfg.max_length, config_kwargs={"num_hidden_layers": layers} if layers else None)
    model.record(pipeline="querit-st", backbone=cfg.backbone, backbone_layers=layers, retriever=cfg.retriever,
                 teachers=[dataclasses.asdict(t) for t in cfg.teachers])
    return train_model(model, dataset, cfg.pretrain.train, out, seed=cfg.seed, resume=resume, label="stage 1 train",
                       evaluator=evaluator, best_metric="dev_ndcg@10" if evaluator is not None else None,
                       record={"stage": "pretrain", "datasets": cfg.pretrain.datasets, "split": cfg.pretrain.split,
                               "lists": len(dataset)})
