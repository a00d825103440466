"""The harness' core: first stage with the shared retriever, rerank the top-k, score with pytrec_eval.

Every nDCG@10 the package reports (benchmarks, ``querit-st evaluate``, the pipeline's results table) goes through
:func:`compute_metrics`, so retriever-alone numbers agree everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from querit_st.data import BeirData, doc_text
from querit_st.retriever import candidate_pool
from querit_st.utils import QueritInputError, accepts_keyword
from querit_st.utils.progress import log_done

logger = logging.getLogger(__name__)

Results = dict[str, dict[str, float]]


def compute_metrics(qrels: Mapping[str, Mapping[str, int]], results: Results, k_values: tuple[int, ...] = (10, 100)) -> dict[str, float]:
    """nDCG@k, MAP@k, Recall@k, P@k (pytrec_eval through beir) and MRR@k, averaged over queries with qrels.

    Queries with qrels but no results count as zeros; results for queries without qrels are ignored.
    """
    from beir.retrieval.evaluation import EvaluateRetrieval

    qrels = {q: dict(r) for q, r in qrels.items() if any(v > 0 for v in r.values())}
    if not qrels:
        raise QueritInputError("qrels hold no relevant documents; nothing to evaluate")
    full = {q: dict(results.get(q, {})) or {"__none__": 0.0} for q in qrels}
    ndcg, _map, recall, precision = EvaluateRetrieval.evaluate(qrels, full, list(k_values), ignore_identical_ids=False)
    mrr = EvaluateRetrieval.evaluate_custom(qrels, full, list(k_values), metric="mrr")
    out: dict[str, float] = {}
    for d in (ndcg, _map, recall, precision, mrr):
        for k, v in d.items():
            out[k.replace("NDCG", "nDCG")] = float(v)
    return out


def per_query_ndcg(qrels: Mapping[str, Mapping[str, int]], results: Results, k: int = 10) -> dict[str, float]:
    """nDCG@k per query (for paired comparisons and standard errors)."""
    import pytrec_eval

    qrels = {q: dict(r) for q, r in qrels.items() if any(v > 0 for v in r.values())}
    full = {q: dict(results.get(q, {})) or {"__none__": 0.0} for q in qrels}
    ev = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}"})
    return {q: v[f"ndcg_cut_{k}"] for q, v in ev.evaluate(full).items()}


def paired_p_value(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Two-sided paired t-test p-value of per-query scores over the queries both have (scipy's ``ttest_rel``);
    1.0 when the scores are identical or fewer than two queries are shared."""
    from scipy.stats import ttest_rel

    keys = sorted(set(a) & set(b))
    if len(keys) < 2 or all(a[k] == b[k] for k in keys):
        return 1.0
    return float(ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue)


def paired_stderr(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Standard error of the mean per-query difference ``b - a``."""
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        return float("nan")
    d = np.array([b[k] - a[k] for k in keys])
    return float(d.std(ddof=1) / np.sqrt(len(d)))


def score_candidates(
    reranker: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, Any],
    first_stage: Results,
    top_k: int = 100,
    *,
    batch_size: int = 64,
    instruction: str | None = None,
) -> list[tuple[str, list[str], np.ndarray, np.ndarray]]:
    """Score each query's first-stage top-``k`` with ``reranker``: ``[(qid, doc_ids, reranker, first_stage)]``.

    ``reranker`` is any sentence-transformers ``CrossEncoder`` (a ``QueritCrossEncoder`` uses its default prompt) or
    a callable ``(queries: list[str], docs: list[str]) -> scores`` (e.g. a teacher's ``score``). All pairs go to one
    ``predict`` call so length-sorted batching works across queries.
    """
    groups, pairs = [], []
    for qid, hits in first_stage.items():
        if qid not in queries:
            continue
        top = candidate_pool(hits, top_k, with_scores=True)
        start = len(pairs)
        for did, _ in top:
            doc = corpus[did]
            pairs.append((queries[qid], doc if isinstance(doc, str) else doc_text(doc)))
        groups.append((qid, [d for d, _ in top], np.array([s for _, s in top], dtype=np.float64), start, len(pairs)))
    if not pairs:
        return []
    if callable(reranker) and not hasattr(reranker, "predict"):
        scores = np.asarray(reranker([p[0] for p in pairs], [p[1] for p in pairs]), dtype=np.float64)
    else:
        import torch

        kwargs: dict[str, Any] = {"batch_size": batch_size, "show_progress_bar": False, "activation_fn": torch.nn.Identity()}
        if instruction is not None:
            kwargs["instruction"] = instruction
        scores = np.asarray(reranker.predict(pairs, **kwargs), dtype=np.float64)
    return [(qid, dids, scores[s:e], fs) for qid, dids, fs, s, e in groups]


def fuse_results(scored: list[tuple[str, list[str], np.ndarray, np.ndarray]], fusion_weight: float = 0.0) -> Results:
    """Turn :func:`score_candidates` output into results, fusing ``z(reranker) + w * z(first stage)`` when w > 0."""
    from querit_st.utils.scores import fuse_scores

    out: Results = {}
    for qid, dids, sc, fs in scored:
        if fusion_weight:
            sc = fuse_scores(sc, fs, fusion_weight)
        out[qid] = {d: float(v) for d, v in zip(dids, sc)}
    return out


def rerank_results(
    reranker: Any,
    queries: Mapping[str, str],
    corpus: Mapping[str, Any],
    first_stage: Results,
    top_k: int = 100,
    *,
    batch_size: int = 64,
    fusion_weight: float = 0.0,
    instruction: str | None = None,
) -> Results:
    """Rerank each query's first-stage top-``k``; with ``fusion_weight > 0`` the final score is
    ``z(reranker) + fusion_weight * z(first stage)`` per query (the retriever's score costs nothing at query time)."""
    scored = score_candidates(reranker, queries, corpus, first_stage, top_k, batch_size=batch_size, instruction=instruction)
    return fuse_results(scored, fusion_weight)


def evaluate_reranking(
    data: BeirData,
    retriever: Any,
    rerankers: Mapping[str, Any] | None = None,
    *,
    top_k: int = 100,
    batch_size: int = 64,
    fusion_weight: float = 0.0,
    k_values: tuple[int, ...] = (10, 100),
    queries: Mapping[str, str] | None = None,
    max_queries: int | None = None,
    report_unfused: bool = True,
    instruction: str | None = None,
) -> dict[str, Any]:
    """Retriever alone vs each reranker on one BEIR split.

    Args:
        data: a loaded :class:`~querit_st.data.BeirData`.
        retriever: a :class:`~querit_st.retriever.DenseRetriever` (indexed here on ``data.corpus``).
        rerankers: ``{name: CrossEncoder or callable}``.
        top_k: first-stage depth that is reranked (Recall@top_k is reported too).
        fusion_weight: fuse the retriever's score into each reranker's (see :func:`rerank_results`).
        queries: override the queries (cross-lingual runs: queries of one language, corpus of another).
        max_queries: evaluate only the first ``n`` queries (quick checks).
        report_unfused: with fusion, also report each reranker alone (same scores, no extra pass).
        instruction: a task instruction for the rerankers that take one (``QueritCrossEncoder``; None: its default).

    Returns:
        ``{"retriever": metrics, "<name>": metrics, ..., "per_query": {...}, "timing_s": {...}}``.
    """
    if not all(hasattr(data, a) for a in ("name", "corpus", "queries", "qrels")):
        raise QueritInputError(f"data must be a BeirData (querit_st.data.load_beir), got {type(data).__name__}")
    if retriever is None or not callable(getattr(retriever, "search", None)):
        raise QueritInputError("retriever must have index(corpus) and search(queries, top_k) (e.g. a DenseRetriever)")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0:
        raise QueritInputError(f"top_k must be a positive integer, got {top_k!r}")
    ks = tuple(sorted(set(k_values) | {top_k}))
    queries = dict(queries if queries is not None else data.queries)
    queries = {q: t for q, t in queries.items() if q in data.qrels}
    if max_queries:
        queries = dict(list(queries.items())[:max_queries])
    qrels = {q: data.qrels[q] for q in queries}
    if not queries:
        raise QueritInputError(f"{data.name}: no queries with qrels to evaluate")
    t0 = time.perf_counter()
    retriever.index(data.corpus)
    first = retriever.search(queries, top_k=top_k)
    timing = {"retriever": time.perf_counter() - t0}
    report: dict[str, Any] = {"retriever": compute_metrics(qrels, first, ks)}
    per_query = {"retriever": per_query_ndcg(qrels, first)}
    for name, model in (rerankers or {}).items():
        t0 = time.perf_counter()
        takes_instruction = (instruction is not None and hasattr(model, "predict")
                             and accepts_keyword(model.predict, "instruction", var_keyword=True))
        scored = score_candidates(model, queries, data.corpus, first, top_k, batch_size=batch_size,
                                  instruction=instruction if takes_instruction else None)
        timing[name] = time.perf_counter() - t0
        log_done(f"evaluate {data.name}", len(queries), timing[name], "queries",
                 f"{name}: {sum(len(d) for _, d, _, _ in scored)} pairs reranked")
        variants = {name: fuse_results(scored, fusion_weight)}
        if fusion_weight and report_unfused:  # same scores, no second pass
            variants[f"{name} (no fusion)"] = fuse_results(scored, 0.0)
        for vname, res in variants.items():
            report[vname] = compute_metrics(qrels, res, ks)
            per_query[vname] = per_query_ndcg(qrels, res)
            report[vname]["delta_nDCG@10_vs_retriever"] = report[vname]["nDCG@10"] - report["retriever"]["nDCG@10"]
            report[vname]["stderr_delta_nDCG@10"] = paired_stderr(per_query["retriever"], per_query[vname])
    report["per_query_nDCG@10"] = per_query
    report["timing_s"] = timing
    report["num_queries"] = len(queries)
    return report
