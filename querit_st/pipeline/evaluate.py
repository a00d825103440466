"""Stage 3 and the evaluation of a pipeline run: SLERP-merge the adapted checkpoints, then score the retriever,
the zero-training baselines and every model on the target's test qrels."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from querit_st.pipeline.config import PipelineConfig, TeacherSpec
from querit_st.pipeline.factories import build_retriever, build_teacher, corpus_language, ensemble_members
from querit_st.utils import atomic_dir

logger = logging.getLogger(__name__)


def merge_checkpoints(paths: list[Path], output_dir: str | os.PathLike, t: float | list[float] = 0.5, *,
                      weights: list[float] | None = None, overwrite: bool = True) -> Path:
    """Stage 3: SLERP two checkpoints at ``t`` (or by ``weights``), or N checkpoints by ``weights`` (equal shares
    when None)."""
    from querit_st import merge as M

    if len(paths) == 1:
        with atomic_dir(output_dir, overwrite=overwrite) as tmp:
            shutil.copytree(paths[0], tmp, dirs_exist_ok=True)
        return Path(output_dir)
    if len(paths) == 2 and weights is None:
        return Path(M.slerp_merge(str(paths[0]), str(paths[1]), t=t, output_dir=str(output_dir), overwrite=overwrite,
                                  show_progress_bar=False))
    return Path(M.slerp_merge_many([str(p) for p in paths], weights, output_dir=str(output_dir), overwrite=overwrite,
                                   show_progress_bar=False))


def hybrid_specs(cfg: PipelineConfig, language: str) -> list[TeacherSpec]:
    """The zero-training hybrid a user gets without this package: the shared retriever + BM25, plus MiniLM on
    English, z-fused per query."""
    specs = [TeacherSpec("embedding", cfg.retriever), TeacherSpec("bm25")]
    if language == "english" and cfg.retriever not in ("minilm-l6", "all-MiniLM-L6-v2"):
        specs.append(TeacherSpec("embedding", "minilm-l6"))
    return specs


def reranker_scorer(cfg: PipelineConfig, path: str | os.PathLike) -> Any:
    """A saved reranker as the evaluation scores it: ``evaluate.inference`` mode, ``evaluate.instruction``, raw
    logits; with ``evaluate.cache`` its scores are kept on disk by weights (so stage 1 is scored once per target
    across runs and seeds, and an interrupted evaluation resumes)."""
    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.teachers import CrossEncoderTeacher

    e = cfg.evaluate
    model = QueritCrossEncoder(str(path), max_length=cfg.max_length)
    scorer = CrossEncoderTeacher(model, batch_size=e.batch_size, inference=e.inference, instruction=e.instruction,
                                 inplace=True)  # the model is ours: no second copy of its weights
    return scorer.persist() if e.cache else scorer


def evaluate_models(
    cfg: PipelineConfig,
    target: str | os.PathLike,
    models: dict[str, str | os.PathLike],
    *,
    include_teacher: bool = True,
) -> dict[str, Any]:
    """Retriever alone, the zero-training baselines (the teacher ensemble and the retriever + BM25 hybrid) and each
    model (fused with the retriever's score, and alone)."""
    from querit_st.data import doc_text, load_beir
    from querit_st.evaluation import compute_metrics, evaluate_reranking, per_query_ndcg, rerank_results

    e = cfg.evaluate
    data = load_beir(cfg.data_dir(str(target)), split=e.split)
    retriever = build_retriever(cfg.retriever)
    rerankers = {name: reranker_scorer(cfg, path) for name, path in models.items()}
    report = evaluate_reranking(data, retriever, rerankers, top_k=e.top_k, batch_size=e.batch_size,
                                fusion_weight=e.fusion_weight, max_queries=e.max_queries)
    for name, scorer in rerankers.items():
        if scorer.store is not None:
            logger.info("[evaluate %s] %s: %d pairs scored, %d answered without scoring (the score cache, or a pair "
                        "repeated) (%s)", data.name, name, scorer.cache_misses, scorer.cache_hits, scorer.store.path)
    queries = {q: data.queries[q] for q in report["per_query_nDCG@10"]["retriever"]}
    first = retriever.search(queries, top_k=e.top_k)
    qrels = {q: data.qrels[q] for q in queries}
    if include_teacher:
        texts = [doc_text(v) for v in data.corpus.values()]
        language = corpus_language(texts, cfg.language)
        baselines = {"teacher_ensemble": cfg.teachers, "hybrid": hybrid_specs(cfg, language)}
        scored: dict[tuple[Any, ...], str] = {}
        for name, specs in baselines.items():
            same = scored.setdefault(ensemble_members(specs, language), name)
            if same != name:  # the same members and weights (the demo's teachers are the hybrid): scored once
                report[name], report["per_query_nDCG@10"][name] = report[same], report["per_query_nDCG@10"][same]
                continue
            teacher = build_teacher(specs, texts, language)
            res = rerank_results(teacher.score, queries, data.corpus, first, e.top_k)
            report[name] = compute_metrics(qrels, res, (10, e.top_k))
            report["per_query_nDCG@10"][name] = per_query_ndcg(qrels, res)
        report["language"] = language
    report["dataset"] = data.name
    report["checksum"] = data.checksum
    return report
