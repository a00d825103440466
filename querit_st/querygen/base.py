"""What both query generators share: the corpus reader, corpus statistics, the query filter and the ``generate`` loop.

Stopwords are not taken from built-in lists: a term that occurs in more than ``max_df`` (30 %) of the corpus'
documents counts as a stopword, which works the same in every language and adapts to the corpus (in a physics
abstract collection "measurements" may well be one).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from querit_st.querygen.tokens import is_char_mode, normalize_query, split_units, unit_terms
from querit_st.utils import QueritInputError, check_text
from querit_st.utils.hashing import stable_seed
from querit_st.utils.text import is_cjk_char


def source_text(doc: Any) -> Any:
    """The text queries are generated from: a BEIR entry's ``text`` (its ``title`` only when the text is empty)."""
    if isinstance(doc, Mapping):
        return (doc.get("text") or "").strip() or (doc.get("title") or "")
    return doc


def normalize_corpus(corpus: Mapping[str, Any] | Sequence[str]) -> list[tuple[str, str]]:
    """``[(doc_id, text)]`` from ``{doc_id: text | {"title", "text"}}`` or a list of texts (ids ``"0"``, ``"1"``...).

    For BEIR entries the ``text`` field is used, not the title: a title such as ``"Super_Bowl_50"`` is metadata
    shared by many passages, not something a searcher types.
    """
    if corpus is None:
        raise QueritInputError("corpus is None; expected {doc_id: text} or a list of texts")
    if isinstance(corpus, str):
        raise QueritInputError("corpus must be a mapping or a list of texts, got a single string")
    if isinstance(corpus, Mapping):
        items = [(str(k), source_text(v)) for k, v in corpus.items()]
    else:
        items = [(str(i), source_text(v)) for i, v in enumerate(corpus)]
    if not items:
        raise QueritInputError("corpus is empty; expected at least one document")
    for doc_id, text in items:
        check_text(text, f"corpus[{doc_id!r}]")
    return items


# ---------------------------------------------------------------------------------------------------- corpus stats
@dataclass
class CorpusStats:
    """Document frequencies over a corpus and the stopwords they imply (``df > max_df * N``)."""

    num_docs: int = 0
    df: Counter = field(default_factory=Counter)
    max_df: float = 0.3
    min_docs_for_stopwords: int = 20

    @classmethod
    def fit(cls, texts: Sequence[str], *, language: str | None = None, max_df: float = 0.3,
            min_docs_for_stopwords: int = 20) -> CorpusStats:
        stats = cls(num_docs=len(texts), max_df=max_df, min_docs_for_stopwords=min_docs_for_stopwords)
        for t in texts:
            units = split_units(t, is_char_mode(t, language))
            keys = {k for k, _, _ in unit_terms(units)} | {u.key for u in units}
            stats.df.update(keys)
        return stats

    def is_stopword(self, key: str) -> bool:
        if self.num_docs < self.min_docs_for_stopwords:
            return False
        return self.df.get(key, 0) > self.max_df * self.num_docs

    def is_trivial_token(self, key: str) -> bool:
        """Stopword, a number, or a single non-CJK character."""
        if key.isdigit() or self.is_stopword(key):
            return True
        return len(key) < 2 and not any(is_cjk_char(c) for c in key)

    def idf(self, key: str) -> float:
        return math.log((self.num_docs + 1.0) / (self.df.get(key, 0) + 0.5))


# ----------------------------------------------------------------------------------------------------------- filter
class QueryFilter:
    """Dedup and triviality filter shared by the generators.

    A query is rejected when, after :func:`normalize_query`, it is empty, shorter than ``min_units`` words (CJK
    characters count one each) or ``min_chars`` characters, made only of stopwords / numbers / single letters, equal
    to its whole source document, or a duplicate of a query already kept.
    """

    def __init__(
        self, stats: CorpusStats, *, min_units: int = 2, min_chars: int = 3, language: str | None = None
    ) -> None:
        self.stats = stats
        self.min_units = min_units
        self.min_chars = min_chars
        self.language = language
        self.seen: set[str] = set()
        self.rejected: Counter = Counter()

    def why_rejected(self, query: str, doc: str) -> str | None:
        norm = normalize_query(query)
        if not norm:
            return "empty"
        units = split_units(query, True)
        if len(units) < self.min_units or len(norm.replace(" ", "")) < self.min_chars:
            return "too_short"
        keys = [u.key for u in units]
        terms = [k for k, _, _ in unit_terms(units)]
        if all(self.stats.is_trivial_token(k) for k in keys) and all(self.stats.is_trivial_token(k) for k in terms):
            return "only_stopwords"
        if norm == normalize_query(doc):
            return "whole_document"
        if norm in self.seen:
            return "duplicate"
        return None

    def accept(self, query: str, doc: str) -> bool:
        reason = self.why_rejected(query, doc)
        if reason is not None:
            self.rejected[reason] += 1
            return False
        self.seen.add(normalize_query(query))
        return True


# -------------------------------------------------------------------------------------------------- generate loop
class QueryGenerator:
    """Base of the generators: corpus normalisation, document sampling, retries, filter and ids.

    Subclasses set ``seed``, ``language`` and ``filter`` and implement :meth:`_candidates` (candidate queries per
    document, best first; the loop keeps the first ones the filter accepts).
    """

    seed: int
    language: str | None
    filter: bool
    max_attempts: int = 5

    def _select_docs(self, items: list[tuple[str, str]], max_docs: int | None) -> list[int]:
        n = len(items)
        if max_docs is None or max_docs >= n:
            return list(range(n))
        if not isinstance(max_docs, int) or max_docs <= 0:
            raise QueritInputError(f"max_docs must be a positive integer or None, got {max_docs!r}")
        rng = np.random.default_rng(stable_seed("docs", self.seed))
        return sorted(int(i) for i in rng.choice(n, size=max_docs, replace=False))

    def generate(
        self,
        corpus: Mapping[str, Any] | Sequence[str],
        num_queries_per_doc: int = 1,
        max_docs: int | None = None,
        filter: bool | None = None,
    ) -> list[dict[str, str]]:
        """Queries for (a seeded sample of ``max_docs`` of) the corpus' documents, in corpus order.

        Returns:
            ``[{"query_id": "gen-<doc_id>-<k>", "query": str, "doc_id": str}, ...]``; at most
            ``num_queries_per_doc`` per document (fewer when every attempt is filtered out).
        """
        if not isinstance(num_queries_per_doc, int) or num_queries_per_doc <= 0:
            raise QueritInputError(f"num_queries_per_doc must be a positive integer, got {num_queries_per_doc!r}")
        items = normalize_corpus(corpus)
        stats = CorpusStats.fit([t for _, t in items], language=self.language)
        use_filter = self.filter if filter is None else filter
        qfilter = QueryFilter(stats, language=self.language)
        chosen = [items[i] for i in self._select_docs(items, max_docs)]
        candidates = self._candidates(chosen, stats, num_queries_per_doc)
        out: list[dict[str, str]] = []
        for (doc_id, text), cands in zip(chosen, candidates):
            k = 0
            for q in cands:
                if k >= num_queries_per_doc:
                    break
                q = " ".join(q.split())
                if not q:
                    continue
                if use_filter and not qfilter.accept(q, text):
                    continue
                out.append({"query_id": f"gen-{doc_id}-{k}", "query": q, "doc_id": doc_id})
                k += 1
        self.last_rejected = dict(qfilter.rejected)
        return out

    def _candidates(  # pragma: no cover
        self, docs: list[tuple[str, str]], stats: CorpusStats, n: int
    ) -> list[list[str]]:
        raise NotImplementedError
