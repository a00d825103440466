"""Mining itself: queries -> the shared retriever's candidate pools -> teacher scores -> bin-sampled rows, shard
by shard, resumable (see :mod:`querit_st.mining` for the determinism and restart contract)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from querit_st.data import corpus_items
from querit_st.mining.bins import sample_across_bins
from querit_st.mining.shards import (
    FORMAT_VERSION,
    clear_mining_files,
    read_manifests,
    read_shards,
    rows_to_dataset,
    shard_name,
    write_shard,
)
from querit_st.utils.hashing import stable_seed
from querit_st.retriever import candidate_pool
from querit_st.teachers import as_score_fn, model_fingerprint, teacher_fingerprint
from querit_st.utils import (
    QueritInputError, accepts_keyword, atomic_write_json, check_text, config_hash, sha256_texts,
)

logger = logging.getLogger(__name__)

__all__ = ["mine_soft_labels", "retriever_fingerprint", "query_rows", "mine_shard", "accepts_groups"]


def retriever_fingerprint(retriever: Any) -> dict[str, Any]:
    """What of a retriever decides the pools: its class, model id, prompts and truncation length."""
    model = getattr(retriever, "model", None)
    return {
        "class": type(retriever).__name__,
        "model": model_fingerprint(retriever),
        "query_prompt": getattr(retriever, "query_prompt", None),
        "passage_prompt": getattr(retriever, "passage_prompt", None),
        "max_seq_length": getattr(model, "max_seq_length", None),
    }


def query_rows(
    corpus: Any,
    queries: Any,
    query_generator: Any,
    num_queries: int | None,
    seed: int,
) -> list[tuple[str, str, str | None]]:
    """``[(query_id, text, source_doc_id or None)]``: the given queries checked, or one generated per sampled
    document; at most ``num_queries``, ids unique."""
    rows: list[tuple[str, str, str | None]] = []
    if queries is not None:
        if query_generator is not None:
            raise QueritInputError("give either queries or query_generator, not both")
        if isinstance(queries, str):
            raise QueritInputError(
                "queries must be {query_id: text}, a list of texts or a list of dicts, got a string"
            )
        if isinstance(queries, Mapping):
            for qid, text in queries.items():
                rows.append((str(qid), check_text(text, f"queries[{qid!r}]"), None))
        else:
            for i, q in enumerate(queries):
                if isinstance(q, Mapping):
                    qid = str(q.get("query_id", q.get("_id", i)))
                    src = q.get("source_doc_id", q.get("doc_id"))
                    text = check_text(q.get("query", q.get("text")), f"queries[{i}]")
                    rows.append((qid, text, None if src is None else str(src)))
                else:
                    rows.append((str(i), check_text(q, f"queries[{i}]"), None))
    else:
        from querit_st.querygen import TermQueryGenerator, make_query_generator

        gen = TermQueryGenerator(seed=seed) if query_generator is None else make_query_generator(query_generator)
        for g in gen.generate(corpus, num_queries_per_doc=1, max_docs=num_queries):
            rows.append((str(g["query_id"]), g["query"], str(g["doc_id"])))
        if not rows:
            raise QueritInputError("the query generator produced no queries for this corpus")
    if num_queries is not None:
        if not isinstance(num_queries, int) or num_queries <= 0:
            raise QueritInputError(f"num_queries must be a positive integer or None, got {num_queries!r}")
        rows = rows[:num_queries]
    if not rows:
        raise QueritInputError("no queries to mine")
    seen: set[str] = set()
    for qid, _, _ in rows:
        if qid in seen:
            raise QueritInputError(f"duplicate query id {qid!r}")
        seen.add(qid)
    return rows


def accepts_groups(fn: Callable[..., Any]) -> bool:
    """Whether a score function takes ``groups=`` (the query of each pair; ensembles normalise per query)."""
    return accepts_keyword(fn, "groups")


def mine_shard(
    qrows: list[tuple[str, str, str | None]],
    *,
    retriever: Any,
    score_fn: Callable[..., Any],
    pass_groups: bool,
    id_to_pos: dict[str, int],
    texts: list[str],
    top_k: int,
    num_candidates: int,
    num_bins: int,
    include_source_doc: bool,
    seed: int,
) -> list[dict[str, Any]]:
    """Rows of one shard of queries: retrieve, score every pool with the teacher in one call, sample each list
    with its own RNG seeded from ``(seed, query_id)`` (so a shard's rows do not depend on what ran before)."""
    hits = retriever.search({qid: text for qid, text, _ in qrows}, top_k=top_k)
    pools: list[list[str]] = []
    for qid, _, src in qrows:
        pool = candidate_pool(hits.get(qid, {}), top_k, known=id_to_pos)
        if include_source_doc and src is not None and src in id_to_pos and src not in pool:
            pool.append(src)
        pools.append(pool)
    flat_q = [text for (_, text, _), pool in zip(qrows, pools) for _ in pool]
    flat_d = [texts[id_to_pos[d]] for pool in pools for d in pool]
    if pass_groups:
        flat_g = [qid for (qid, _, _), pool in zip(qrows, pools) for _ in pool]
        scores = np.asarray(score_fn(flat_q, flat_d, groups=flat_g), dtype=np.float64) if flat_q else np.zeros(0)
    else:
        scores = np.asarray(score_fn(flat_q, flat_d), dtype=np.float64) if flat_q else np.zeros(0)
    if scores.shape[0] != len(flat_q):
        raise RuntimeError(f"teacher returned {scores.shape[0]} scores for {len(flat_q)} pairs")
    rows = []
    start = 0
    for (qid, text, src), pool in zip(qrows, pools):
        s = scores[start : start + len(pool)]
        start += len(pool)
        if len(pool) == 0:
            logger.warning("query %r: the retriever returned no candidates; row skipped", qid)
            continue
        rng = np.random.default_rng(stable_seed("mine", seed, qid))
        required = [pool.index(src)] if include_source_doc and src in pool else None
        idx = sample_across_bins(s, num_candidates, num_bins, rng, required=required)
        idx = sorted((int(i) for i in idx), key=lambda i: (-s[i], i))  # teacher order, ties by pool position
        rows.append({
            "query_id": qid,
            "query": text,
            "documents": [texts[id_to_pos[pool[i]]] for i in idx],
            "doc_ids": [pool[i] for i in idx],
            "scores": [float(s[i]) for i in idx],
            "source_doc_id": src,
        })
    return rows


def mine_soft_labels(
    corpus: Mapping[str, Any] | Sequence[str],
    retriever: Any,
    teacher: Any,
    *,
    queries: Mapping[str, str] | Sequence[Any] | None = None,
    query_generator: Any = None,
    num_queries: int | None = None,
    top_k: int = 100,
    num_candidates: int = 16,
    num_bins: int = 16,
    include_source_doc: bool = True,
    output_dir: str | os.PathLike | None = None,
    shard_size: int = 256,
    seed: int = 0,
    resume: bool = True,
    show_progress_bar: bool = True,
    num_shards_total: int = 1,
    shard_index: int = 0,
) -> Any:
    """Mine listwise soft-label rows for a corpus with the shared retriever and a teacher.

    Args:
        corpus: the target corpus: BEIR ``{doc_id: {"title", "text"}}``, ``{doc_id: text}`` or a list of texts.
        retriever: the shared first stage (a :class:`~querit_st.retriever.DenseRetriever`; it is indexed on the
            corpus here unless it already is).
        teacher: a teacher from :mod:`querit_st.teachers` or any ``(queries, docs) -> scores`` callable; its
            ``prepare(corpus_texts)`` is called first (BM25 fits on the corpus).
        queries: ``{query_id: text}``, a list of texts, or dicts with ``query_id``, ``query`` and optional
            ``source_doc_id``. ``None``: generated from the corpus.
        query_generator: a generator (``generate(corpus, num_queries_per_doc, max_docs)``) or a spec for
            :func:`~querit_st.querygen.make_query_generator`; ``None``: ``TermQueryGenerator(seed=seed)``.
        num_queries: use at most this many queries (generated: one per document of a seeded sample of documents).
        top_k: retriever depth; the teacher scores all of it.
        num_candidates: documents kept per query (see :func:`sample_across_bins`).
        num_bins: teacher-score bins the candidates are spread over.
        include_source_doc: keep a generated query's source document in its list even when the retriever misses it.
        output_dir: write shards + manifest here and resume from them (see the module docs); ``None``: in memory.
        shard_size: queries per shard.
        seed: the run is deterministic for a seed.
        resume: reuse complete shards of an identical configuration; ``False`` deletes the folder's mining files.
        num_shards_total, shard_index: this process mines the shards ``k`` with ``k % num_shards_total ==
            shard_index`` (needs ``output_dir``); merge with :func:`load_mined_dataset`.

    Returns:
        ``datasets.Dataset`` with columns ``query_id``, ``query``, ``documents``, ``doc_ids``, ``scores`` (the
        teacher's raw scores, in decreasing order) and ``source_doc_id`` (``None`` for given queries): all shards, or
        with ``num_shards_total > 1`` this worker's shards.
    """
    for name, value in (("top_k", top_k), ("num_candidates", num_candidates), ("num_bins", num_bins),
                        ("shard_size", shard_size), ("num_shards_total", num_shards_total)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise QueritInputError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards_total:
        raise QueritInputError(f"shard_index must be in [0, {num_shards_total}), got {shard_index!r}")
    if num_shards_total > 1 and output_dir is None:
        raise QueritInputError("num_shards_total > 1 needs output_dir (each worker writes its shards there)")
    if retriever is None or not callable(getattr(retriever, "search", None)):
        raise QueritInputError("retriever must have a search(queries, top_k) method (e.g. a DenseRetriever)")
    score_fn = as_score_fn(teacher)

    ids, texts = corpus_items(corpus)
    if list(getattr(retriever, "doc_ids", []) or []) != ids:
        retriever.index(dict(zip(ids, texts)))
    if hasattr(teacher, "prepare"):
        teacher.prepare(texts)
    qrows = query_rows(corpus, queries, query_generator, num_queries, seed)
    id_to_pos = {d: i for i, d in enumerate(ids)}
    missing_src = sum(1 for _, _, s in qrows if s is not None and s not in id_to_pos)
    if missing_src:
        logger.warning("%d queries name a source_doc_id that is not in the corpus; it cannot be included", missing_src)

    config = {
        "format": FORMAT_VERSION,
        "corpus": sha256_texts(ids + texts),
        "queries": sha256_texts([f"{q}\x1f{t}\x1f{s or ''}" for q, t, s in qrows]),
        "num_queries": len(qrows),
        "retriever": retriever_fingerprint(retriever),
        "teacher": teacher_fingerprint(teacher),
        "top_k": top_k,
        "num_candidates": num_candidates,
        "num_bins": num_bins,
        "include_source_doc": include_source_doc,
        "seed": seed,
        "shard_size": shard_size,
    }
    chash = config_hash(config, length=64)
    num_shards = math.ceil(len(qrows) / shard_size)
    mine_ids = [k for k in range(num_shards) if k % num_shards_total == shard_index]
    work = dict(
        retriever=retriever, score_fn=score_fn, pass_groups=accepts_groups(score_fn), id_to_pos=id_to_pos,
        texts=texts, top_k=top_k, num_candidates=num_candidates, num_bins=num_bins,
        include_source_doc=include_source_doc, seed=seed,
    )
    progress = progress_bar(mine_ids, show_progress_bar)

    if output_dir is None:
        rows: list[dict[str, Any]] = []
        for k in progress:
            rows.extend(mine_shard(qrows[k * shard_size : (k + 1) * shard_size], **work))
        return rows_to_dataset(rows)

    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / ("manifest.json" if num_shards_total == 1
                              else f"manifest-worker{shard_index:03d}-of{num_shards_total:03d}.json")
    if not resume:
        clear_mining_files(folder)
    # a kill during an atomic write leaves its temp file behind: remove this worker's own leftovers
    own = {manifest_path.name} | {shard_name(k) for k in mine_ids}
    for p in folder.glob(".*.tmp"):
        if any(p.name.startswith(f".{name}.") for name in own):
            p.unlink(missing_ok=True)
    complete: set[str] = set()
    for p, m in read_manifests(folder):
        if m.get("config_hash") != chash:
            raise QueritInputError(
                f"{str(folder)!r} holds a mining run with a different configuration ({p.name}: config hash "
                f"{str(m.get('config_hash'))[:12]}..., this run {chash[:12]}...); use another output_dir or pass "
                "resume=False to discard it"
            )
        complete.update(n for n in m.get("complete", []) if (folder / n).is_file())
    mine_names = [shard_name(k) for k in mine_ids]
    mine_complete = [n for n in mine_names if n in complete]
    manifest = {
        "format": "querit-st-mining",
        "version": FORMAT_VERSION,
        "config_hash": chash,
        "config": config,
        "num_queries": len(qrows),
        "num_shards": num_shards,
        "shard_size": shard_size,
        "worker": {"shard_index": shard_index, "num_shards_total": num_shards_total},
        "complete": mine_complete,
        "finished": len(mine_complete) == len(mine_names),
    }
    atomic_write_json(manifest_path, manifest)
    if mine_complete:
        logger.info("resuming %s: %d of %d shards already complete", folder, len(mine_complete), len(mine_names))
    for k in progress:
        name = shard_name(k)
        if name in complete:
            continue
        rows = mine_shard(qrows[k * shard_size : (k + 1) * shard_size], **work)
        write_shard(folder / name, rows)
        manifest["complete"] = sorted(set(manifest["complete"]) | {name})
        manifest["finished"] = len(manifest["complete"]) == len(mine_names)
        atomic_write_json(manifest_path, manifest)
    return read_shards([folder / n for n in mine_names])


def progress_bar(items: list[int], show: bool) -> Any:
    """The shard ids with progress when ``show``: a bar on a terminal, a progress line in a log file."""
    from querit_st.utils.progress import track

    return track(items, "mining", unit="shards", show=show, every_s=5.0)
