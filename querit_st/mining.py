"""Soft-label mining: queries -> shared retriever's top-k -> teacher scores -> binned candidate lists.

:func:`mine_soft_labels` turns a target corpus (and optionally queries; by default synthetic ones generated from the
corpus) into a ``datasets.Dataset`` of listwise rows ``(query, [documents], [teacher scores])``, ready for the soft
losses through :func:`to_listwise` / :func:`to_pointwise`.

For every query the retriever's ``top_k`` hits form the pool; the teacher scores the whole pool (its view of the
larger candidate set) and :func:`sample_across_bins` keeps ``num_candidates`` of them spread over ``num_bins``
equal-width bins of the teacher-score range (16 by default, as in the Querit paper), always keeping the teacher's
best. The labels are therefore continuous and cover the whole score range, not only the top.

Determinism and restarts
------------------------
Queries are cut into global shards of ``shard_size`` queries (shard ``k`` = queries ``k*S .. (k+1)*S-1``); each
shard is retrieved and scored on its own and every query samples with its own RNG seeded from ``(seed, query_id)``.
So the rows of a shard do not depend on which process computes it or on what ran before. With ``output_dir`` each
shard is written atomically as ``shard-00000.parquet`` etc. and a ``manifest.json`` (atomic too) lists the complete
shards and a hash of the configuration. A run killed at any point and started again skips the complete shards and
produces exactly the rows of an uninterrupted run; a different configuration is refused (``resume=False`` clears the
folder's mining files and starts over). ``num_shards_total=N, shard_index=i`` lets N independent processes (or
machines sharing the folder) split the shards (``k % N == i``); each keeps its own ``manifest-worker*.json`` and
:func:`load_mined_dataset` concatenates the shards of all workers in order, equal to a single-process run.

Exact equality holds when a pair's teacher score does not depend on what else is in the batch (BM25, an
:class:`~querit_st.teachers.EmbeddingTeacher` whose documents come from the retriever's index). Neural teachers that
encode documents on the fly can differ in the last float bits between runs because padding changes with the batch.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from querit_st._utils import QueritInputError, atomic_write_bytes, atomic_write_json, check_text, sha256_texts
from querit_st.querygen import stable_seed
from querit_st.teachers import as_score_fn, model_fingerprint, teacher_fingerprint

logger = logging.getLogger(__name__)

__all__ = [
    "MINED_COLUMNS",
    "mined_features",
    "sample_across_bins",
    "mine_soft_labels",
    "load_mined_dataset",
    "clear_mining_files",
    "to_listwise",
    "zscore_list",
    "source_bonus_list",
    "to_pointwise",
    "retriever_fingerprint",
]

MINED_COLUMNS = ("query_id", "query", "documents", "doc_ids", "scores", "source_doc_id")
FORMAT_VERSION = 1
_SHARD_FMT = "shard-{:05d}.parquet"


def mined_features() -> Any:
    from datasets import Features, List, Value

    return Features({
        "query_id": Value("string"),
        "query": Value("string"),
        "documents": List(Value("string")),
        "doc_ids": List(Value("string")),
        "scores": List(Value("float64")),
        "source_doc_id": Value("string"),
    })


# ----------------------------------------------------------------------------------------------------------- sampler
def score_bins(scores: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin of every score: the range ``[min, max]`` cut into ``num_bins`` equal-width bins (the max in the top bin)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = float(s.min()), float(s.max())
    if not hi > lo:
        return np.full(s.shape, num_bins - 1, dtype=np.int64)
    b = np.floor((s - lo) / (hi - lo) * num_bins).astype(np.int64)
    return np.clip(b, 0, num_bins - 1)


def sample_across_bins(
    scores: Sequence[float] | np.ndarray,
    num_candidates: int,
    num_bins: int,
    rng: np.random.Generator,
    required: Sequence[int] | None = None,
) -> np.ndarray:
    """Pick ``min(len(scores), num_candidates)`` indices spread over the teacher-score range.

    The range is cut into ``num_bins`` equal-width bins; candidates are taken round-robin from the non-empty bins,
    starting with the top bin, in a random order within each bin. The teacher's best (first arg-max) is always
    taken first and counts as the top bin's first pick; ``required`` indices (e.g. a known positive) come next and
    count as their bins' picks; they are kept as long as there is room.

    So the first ``min(k, number of non-empty bins)`` non-empty bins from the top each contribute a candidate when
    nothing is required. Deterministic for the state of ``rng``.

    Returns:
        int64 array of unique indices, in pick order (the arg-max first).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not isinstance(num_candidates, (int, np.integer)) or num_candidates <= 0:
        raise QueritInputError(f"num_candidates must be a positive integer, got {num_candidates!r}")
    if not isinstance(num_bins, (int, np.integer)) or num_bins <= 0:
        raise QueritInputError(f"num_bins must be a positive integer, got {num_bins!r}")
    n = s.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(s)):
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise QueritInputError(f"teacher score at position {bad} is {s[bad]}; expected finite scores")
    k = min(n, int(num_candidates))
    first = [int(np.argmax(s))]
    for r in required or ():
        r = int(r)
        if not 0 <= r < n:
            raise QueritInputError(f"required index {r} out of range for {n} scores")
        if r not in first:
            first.append(r)
    first = first[:k]
    bins = score_bins(s, num_bins)
    chosen = set(first)
    queues: list[list[int]] = []
    for b in range(num_bins - 1, -1, -1):  # top bin first
        members = np.flatnonzero(bins == b)
        if members.size == 0:
            continue
        pre = [i for i in first if bins[i] == b]
        rest = [int(i) for i in rng.permutation(members) if int(i) not in chosen]
        queues.append(pre + rest)
    order: list[int] = list(first)
    depth = 0
    while len(order) < k:
        progressed = False
        for q in queues:
            if depth < len(q):
                progressed = True
                if q[depth] not in chosen:
                    order.append(q[depth])
                    chosen.add(q[depth])
                    if len(order) == k:
                        break
        if not progressed:  # pragma: no cover - cannot happen: k <= n
            break
        depth += 1
    return np.asarray(order[:k], dtype=np.int64)


# ------------------------------------------------------------------------------------------------------- fingerprints
def retriever_fingerprint(retriever: Any) -> dict[str, Any]:
    model = getattr(retriever, "model", None)
    return {
        "class": type(retriever).__name__,
        "model": model_fingerprint(retriever),
        "query_prompt": getattr(retriever, "query_prompt", None),
        "passage_prompt": getattr(retriever, "passage_prompt", None),
        "max_seq_length": getattr(model, "max_seq_length", None),
    }


def _config_hash(config: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------------------ inputs
def _corpus_items(corpus: Any) -> tuple[list[str], list[str]]:
    from querit_st.data import doc_text

    if corpus is None:
        raise QueritInputError(
            "corpus is None; expected {doc_id: {'title', 'text'}}, {doc_id: text} or a list of texts"
        )
    if isinstance(corpus, str):
        raise QueritInputError("corpus must be a mapping or a list of texts, got a single string")
    if isinstance(corpus, Mapping):
        ids = [str(k) for k in corpus]
        texts = [v if isinstance(v, str) else doc_text(v) if isinstance(v, Mapping) else v for v in corpus.values()]
    else:
        texts = list(corpus)
        ids = [str(i) for i in range(len(texts))]
    if not texts:
        raise QueritInputError("corpus is empty; expected at least one document")
    if len(set(ids)) != len(ids):
        raise QueritInputError("corpus has duplicate document ids")
    for i, t in zip(ids, texts):
        check_text(t, f"corpus[{i!r}]")
    return ids, texts


def _query_rows(
    corpus: Any,
    queries: Any,
    query_generator: Any,
    num_queries: int | None,
    seed: int,
) -> list[tuple[str, str, str | None]]:
    """``[(query_id, text, source_doc_id or None)]``, given or generated."""
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


# ------------------------------------------------------------------------------------------------------ shard files
def _write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=mined_features().arrow_schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def _rows_to_dataset(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(pa.Table.from_pylist(rows, schema=mined_features().arrow_schema)))


def _read_shards(paths: list[Path]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.table import InMemoryTable

    schema = mined_features().arrow_schema
    tables = []
    for p in paths:
        try:
            tables.append(pq.read_table(p).cast(schema))
        except Exception as e:  # a shard is written atomically, so this means outside interference
            raise QueritInputError(f"mined shard {str(p)!r} is unreadable ({e}); rerun with resume=False") from e
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return Dataset(InMemoryTable(table))


def _mining_files(folder: Path) -> list[Path]:
    pats = ("shard-*.parquet", "manifest*.json", ".shard-*.tmp", ".manifest*.tmp")
    return sorted({p for pat in pats for p in folder.glob(pat)})


def clear_mining_files(output_dir: str | os.PathLike) -> int:
    """Delete a folder's mining files (shards, manifests, temp files of killed writes); other files stay.

    What ``resume=False`` does first. With several workers sharing a folder, call it once (one process) before they
    start, not per worker: a worker clearing the folder would delete the others' shards. Returns the count deleted.
    """
    folder = Path(output_dir)
    files = _mining_files(folder) if folder.is_dir() else []
    for p in files:
        p.unlink(missing_ok=True)
    return len(files)


def _read_manifests(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for p in sorted(folder.glob("manifest*.json")):
        try:
            out.append((p, json.loads(p.read_text(encoding="utf-8"))))
        except (OSError, json.JSONDecodeError) as e:
            raise QueritInputError(f"mining manifest {str(p)!r} is unreadable ({e}); rerun with resume=False") from e
    return out


def load_mined_dataset(output_dir: str | os.PathLike) -> Any:
    """All shards of a mining folder (every worker's) concatenated in shard order.

    Raises:
        QueritInputError: no manifest, manifests of different configurations, or shards still missing.
    """
    folder = Path(output_dir)
    manifests = _read_manifests(folder) if folder.is_dir() else []
    if not manifests:
        raise QueritInputError(f"{str(folder)!r} holds no mining manifest (manifest*.json)")
    hashes = {m["config_hash"] for _, m in manifests}
    if len(hashes) != 1:
        raise QueritInputError(f"{str(folder)!r} mixes mining runs of different configurations: {sorted(hashes)}")
    num_shards = manifests[0][1]["num_shards"]
    complete = {name for _, m in manifests for name in m.get("complete", [])}
    names = [_SHARD_FMT.format(k) for k in range(num_shards)]
    missing = [n for n in names if n not in complete or not (folder / n).is_file()]
    if missing:
        raise QueritInputError(
            f"{str(folder)!r}: {len(missing)} of {num_shards} shards are not complete yet (e.g. {missing[0]}); "
            "run the missing workers (or mine_soft_labels with the same arguments) to finish them"
        )
    return _read_shards([folder / n for n in names])


# -------------------------------------------------------------------------------------------------------------- mine
def _accepts_groups(fn: Callable[..., Any]) -> bool:
    try:
        return "groups" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _mine_shard(
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
    hits = retriever.search({qid: text for qid, text, _ in qrows}, top_k=top_k)
    pools: list[list[str]] = []
    for qid, _, src in qrows:
        ranked = sorted(hits.get(qid, {}).items(), key=lambda kv: -kv[1])[:top_k]  # stable: keeps the retriever's ties
        pool = [str(d) for d, _ in ranked if str(d) in id_to_pos]
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

    ids, texts = _corpus_items(corpus)
    if list(getattr(retriever, "doc_ids", []) or []) != ids:
        retriever.index(dict(zip(ids, texts)))
    if hasattr(teacher, "prepare"):
        teacher.prepare(texts)
    qrows = _query_rows(corpus, queries, query_generator, num_queries, seed)
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
    chash = _config_hash(config)
    num_shards = math.ceil(len(qrows) / shard_size)
    mine_ids = [k for k in range(num_shards) if k % num_shards_total == shard_index]
    work = dict(
        retriever=retriever, score_fn=score_fn, pass_groups=_accepts_groups(score_fn), id_to_pos=id_to_pos,
        texts=texts, top_k=top_k, num_candidates=num_candidates, num_bins=num_bins,
        include_source_doc=include_source_doc, seed=seed,
    )
    progress = _progress(mine_ids, show_progress_bar)

    if output_dir is None:
        rows: list[dict[str, Any]] = []
        for k in progress:
            rows.extend(_mine_shard(qrows[k * shard_size : (k + 1) * shard_size], **work))
        return _rows_to_dataset(rows)

    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / ("manifest.json" if num_shards_total == 1
                              else f"manifest-worker{shard_index:03d}-of{num_shards_total:03d}.json")
    if not resume:
        clear_mining_files(folder)
    # a kill during an atomic write leaves its temp file behind: remove this worker's own leftovers
    own = {manifest_path.name} | {_SHARD_FMT.format(k) for k in mine_ids}
    for p in folder.glob(".*.tmp"):
        if any(p.name.startswith(f".{name}.") for name in own):
            p.unlink(missing_ok=True)
    complete: set[str] = set()
    for p, m in _read_manifests(folder):
        if m.get("config_hash") != chash:
            raise QueritInputError(
                f"{str(folder)!r} holds a mining run with a different configuration ({p.name}: config hash "
                f"{str(m.get('config_hash'))[:12]}..., this run {chash[:12]}...); use another output_dir or pass "
                "resume=False to discard it"
            )
        complete.update(n for n in m.get("complete", []) if (folder / n).is_file())
    mine_names = [_SHARD_FMT.format(k) for k in mine_ids]
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
        name = _SHARD_FMT.format(k)
        if name in complete:
            continue
        rows = _mine_shard(qrows[k * shard_size : (k + 1) * shard_size], **work)
        _write_shard(folder / name, rows)
        manifest["complete"] = sorted(set(manifest["complete"]) | {name})
        manifest["finished"] = len(manifest["complete"]) == len(mine_names)
        atomic_write_json(manifest_path, manifest)
    return _read_shards([folder / n for n in mine_names])


def _progress(items: list[int], show: bool) -> Any:
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="mining shards", unit="shard")


# -------------------------------------------------------------------------------------------------------- converters
def zscore_list(scores: Sequence[float]) -> list[float]:
    """Scores of one query's list shifted to mean 0 and scaled to std 1 (all zeros when the list is constant)."""
    t = np.asarray(scores, dtype=np.float64)
    sd = t.std()
    return ((t - t.mean()) / sd).tolist() if sd > 1e-9 else [0.0] * len(t)


def source_bonus_list(scores: Sequence[float], doc_ids: Sequence[str], source_doc_id: str | None, bonus: float) -> list[float]:
    """Raise the source document's label to ``max(other labels) + bonus`` (a label-free pseudo-positive: the query
    was generated from it), as stage 1's gold bonus does for labelled positives. Lists without it are unchanged."""
    t = [float(x) for x in scores]
    if source_doc_id is None or source_doc_id not in doc_ids:
        return t
    i = list(doc_ids).index(source_doc_id)
    others = [x for j, x in enumerate(t) if j != i]
    t[i] = max(t[i], max(others) + bonus) if others else t[i]
    return t


def to_listwise(
    dataset: Any, label_column: str = "scores", normalize: str | None = None, source_bonus: float | None = None
) -> Any:
    """``(query, documents, scores)`` rows for the listwise soft losses (inputs first, the label column last).

    ``label_column`` must be one of sentence-transformers' label names (``label``, ``labels``, ``score``, ``scores``)
    so that ``CrossEncoderDataCollator`` hands it to the loss as labels rather than as an input.
    ``normalize="zscore"`` rescales each list's teacher scores to mean 0 / std 1 (:func:`zscore_list`), so label
    gaps -- and the hinge's margins -- have the same scale whatever the teacher (an ensemble's weighted sum of
    z-scores is several times wider than one teacher's). ``source_bonus`` then lifts each generated query's source
    document above the rest of its list (:func:`source_bonus_list`; needs the ``doc_ids`` and ``source_doc_id``
    columns of a mined dataset).
    """
    _check_label_column(label_column)
    _check_mined(dataset)
    if normalize not in (None, "none", "zscore"):
        raise QueritInputError(f"normalize must be None, 'none' or 'zscore', got {normalize!r}")
    if source_bonus is not None:
        if not isinstance(source_bonus, (int, float)) or isinstance(source_bonus, bool) or not math.isfinite(source_bonus):
            raise QueritInputError(f"source_bonus must be a finite number or None, got {source_bonus!r}")
        missing = {"doc_ids", "source_doc_id"} - set(dataset.column_names)
        if missing:
            raise QueritInputError(f"source_bonus needs the mined columns doc_ids and source_doc_id; missing {sorted(missing)}")
    ds = dataset
    if normalize == "zscore":
        ds = ds.map(lambda row: {"scores": zscore_list(row["scores"])})
    if source_bonus is not None:
        ds = ds.map(lambda row: {"scores": source_bonus_list(row["scores"], row["doc_ids"], row["source_doc_id"], source_bonus)})
    ds = ds.select_columns(["query", "documents", "scores"])
    if label_column != "scores":
        ds = ds.rename_column("scores", label_column)
    return ds


def to_pointwise(dataset: Any, label_column: str = "score") -> Any:
    """``(query, document, score)`` rows, one per mined pair, for pointwise :class:`SoftLabelMSELoss`."""
    from datasets import Dataset, Features, Value

    _check_label_column(label_column)
    _check_mined(dataset)
    q: list[str] = []
    d: list[str] = []
    s: list[float] = []
    for row in dataset.select_columns(["query", "documents", "scores"]):
        n = len(row["documents"])
        q.extend([row["query"]] * n)
        d.extend(row["documents"])
        s.extend(float(x) for x in row["scores"])
    features = Features({"query": Value("string"), "document": Value("string"), label_column: Value("float64")})
    return Dataset.from_dict({"query": q, "document": d, label_column: s}, features=features)


def _check_label_column(name: str) -> None:
    from sentence_transformers.base.data_collator import DEFAULT_LABEL_COLUMNS

    if name not in DEFAULT_LABEL_COLUMNS:
        raise QueritInputError(
            f"label_column must be one of {list(DEFAULT_LABEL_COLUMNS)} (sentence-transformers' label names), "
            f"got {name!r}"
        )


def _check_mined(dataset: Any) -> None:
    cols = set(getattr(dataset, "column_names", []) or [])
    missing = {"query", "documents", "scores"} - cols
    if missing:
        raise QueritInputError(
            f"expected a mined dataset with columns query, documents, scores; missing {sorted(missing)}"
        )
