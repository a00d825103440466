"""The teacher interface: pair validation, the pair cache and ``score(queries, documents)``; :func:`as_score_fn`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from querit_st.teachers.store import ScoreStore
from querit_st.utils import QueritInputError, cache_root, check_text
from querit_st.utils.hashing import config_hash


def pair_key(query: str, document: str) -> bytes:
    """A 16-byte hash of a (query, document) pair; the length prefix keeps ``("ab", "c")`` != ``("a", "bc")``."""
    q = query.encode("utf-8")
    h = hashlib.blake2b(digest_size=16)
    h.update(len(q).to_bytes(8, "little"))
    h.update(q)
    h.update(document.encode("utf-8"))
    return h.digest()


def check_pairs_lists(queries: Any, documents: Any) -> tuple[list[str], list[str]]:
    """Validate two parallel lists of non-empty strings; errors name the offending index."""
    if queries is None:
        raise QueritInputError("queries is None; expected a list of strings (one per pair)")
    if documents is None:
        raise QueritInputError("documents is None; expected a list of strings (one per pair)")
    if isinstance(queries, str) or isinstance(documents, str):
        raise QueritInputError("queries and documents must be lists of strings (one per pair), got a single string")
    queries, documents = list(queries), list(documents)
    if len(queries) != len(documents):
        raise QueritInputError(
            f"queries and documents must have the same length (one query per document), got {len(queries)} "
            f"queries and {len(documents)} documents"
        )
    for i, (q, d) in enumerate(zip(queries, documents)):
        check_text(q, f"queries[{i}]")
        check_text(d, f"documents[{i}]")
    return queries, documents


class Teacher:
    """Base class: validation, the pair cache and ``__call__``. Subclasses implement :meth:`_score_pairs`.

    ``_score_pairs`` receives unique, not yet cached pairs and returns one float per pair.
    :attr:`cache_hits` / :attr:`cache_misses` count the pairs answered from the cache / scored.
    :meth:`persist` also keeps the scores on disk (a :class:`~querit_st.teachers.store.ScoreStore`), for later runs
    and for a run resumed after an interruption.
    """

    #: Whether scores of a pair are independent of the other pairs of the call (then they may be cached).
    cacheable: bool = True
    #: Pairs per :meth:`_score_pairs` call while a store is attached: each chunk is on disk before the next starts.
    store_chunk: int = 4096

    def __init__(self, cache: bool = True) -> None:
        self.cache_enabled = cache
        self._cache: dict[bytes, float] = {}
        self._store: ScoreStore | None = None
        self._hits = 0
        self._misses = 0

    @property
    def cache_hits(self) -> int:
        """Pairs answered from the cache (or scored once for a repeat within a call) since the last clear."""
        return self._hits

    @property
    def cache_misses(self) -> int:
        """Pairs actually scored since the last :meth:`clear_cache`."""
        return self._misses

    # ------------------------------------------------------------------ public
    def score(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Scores of the pairs ``(queries[i], documents[i])`` as a float64 array of the same length.

        Raises:
            QueritInputError: a ``None``, empty or non-string entry (the message names its index), or lists of
                different lengths.
        """
        queries, documents = check_pairs_lists(queries, documents)
        out = np.empty(len(queries), dtype=np.float64)
        if not queries:
            return out
        if not (self.cache_enabled and self.cacheable):
            self._misses += len(queries)
            out[:] = np.asarray(self._score_pairs(queries, documents), dtype=np.float64).reshape(-1)
            return out
        todo: dict[bytes, list[int]] = {}
        for i, (q, d) in enumerate(zip(queries, documents)):
            key = pair_key(q, d)
            cached = self._cache.get(key)
            if cached is not None:
                out[i] = cached
                self._hits += 1
            elif key in todo:  # the same pair twice in one call: scored once
                todo[key].append(i)
                self._hits += 1
            else:
                todo[key] = [i]
        if todo and self._store is not None:
            for key, value in self._store.get(list(todo)).items():
                idx = todo.pop(key)
                self._cache[key] = value
                out[idx] = value
                self._hits += 1  # its repeats in this call were counted above
        items = list(todo.items())
        step = self.store_chunk if self._store is not None else max(len(items), 1)
        for start in range(0, len(items), step):
            part = items[start:start + step]
            first = [idx[0] for _, idx in part]
            self._misses += len(first)
            new = np.asarray(
                self._score_pairs([queries[i] for i in first], [documents[i] for i in first]), dtype=np.float64
            ).reshape(-1)
            if new.shape[0] != len(first):
                raise RuntimeError(f"{type(self).__name__} returned {new.shape[0]} scores for {len(first)} pairs")
            values = {key: float(value) for (key, _), value in zip(part, new)}
            for key, idx in part:
                self._cache[key] = values[key]
                out[idx] = values[key]
            if self._store is not None:
                self._store.put(values)
        return out

    __call__ = score

    def prepare(self, corpus_texts: Sequence[str]) -> Teacher:
        """Hook called by mining / the collator with the target corpus (BM25 fits its statistics here)."""
        return self

    def persist(self, folder: str | os.PathLike | None = None) -> Teacher:
        """Keep every pair this teacher scores on disk, in ``folder`` (default: ``<cache_root>/scores``), in a file
        named by a hash of :meth:`store_key`; pairs already there are read back instead of scored. Returns self.

        Raises:
            QueritInputError: the teacher's scores depend on the other pairs of a call (not :attr:`cacheable`), or
                its cache is off.
        """
        if not (self.cacheable and self.cache_enabled):
            raise QueritInputError(f"{type(self).__name__}: only a cacheable teacher with cache=True can persist "
                                   "its scores (its scores depend on the other pairs of a call, or the cache is off)")
        root = Path(folder).expanduser() if folder is not None else cache_root() / "scores"
        self._store = ScoreStore(root / f"{config_hash(self.store_key(), 24)}.sqlite")
        return self

    @property
    def store(self) -> ScoreStore | None:
        """The on-disk store :meth:`persist` attached, or None."""
        return self._store

    def store_key(self) -> dict[str, Any]:
        """What decides this teacher's score of a pair, for the on-disk store's file name (default: the
        :meth:`fingerprint`)."""
        return self.fingerprint()

    def clear_cache(self) -> None:
        """Forget the in-memory scores and the counters (an attached on-disk store is kept)."""
        self._cache.clear()
        self._hits = 0
        self._misses = 0

    def fingerprint(self) -> dict[str, Any]:
        """A JSON-able description that changes whenever the scores could (part of mining's config hash)."""
        return {"class": type(self).__name__}

    # ------------------------------------------------------------------ subclass API
    def _score_pairs(self, queries: list[str], documents: list[str]) -> Sequence[float]:  # pragma: no cover
        raise NotImplementedError


def as_score_fn(teacher: Any) -> Callable[[list[str], list[str]], np.ndarray]:
    """``teacher.score`` for teachers, the callable itself for plain ``(queries, docs) -> scores`` functions."""
    fn = getattr(teacher, "score", None)
    if callable(fn):
        return fn
    if callable(teacher):
        return teacher
    raise QueritInputError(f"teacher must have a score(queries, documents) method or be callable, got {teacher!r:.80}")
