"""``TermQueryGenerator``: model-free queries from a document's own TF-IDF salient terms and opening / random spans.

It works on the document's own tokens, so a query is always in the document's language; scripts written without
spaces (Chinese, Japanese, Thai, Korean syllables) are handled as character sequences: salient terms are character
bigrams, spans are character windows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from querit_st.querygen.base import CorpusStats, QueryGenerator
from querit_st.querygen.tokens import Unit, adjacent_cjk, is_char_mode, join_units, split_units, unit_terms
from querit_st.utils import QueritInputError
from querit_st.utils.hashing import stable_seed


class TermQueryGenerator(QueryGenerator):
    """Model-free query generator: TF-IDF salient terms and opening / random spans of the document itself.

    Args:
        num_terms: ``(min, max)`` number of salient terms of a term query.
        strategy: ``"terms"``, ``"span"`` or ``"mixed"`` (each query picks one of the two at random).
        seed: the generator is deterministic for a seed (each document has its own random stream, seeded from
            ``(seed, doc_id)``, so a document's queries do not depend on the rest of the corpus' order).
        language: ``None`` detects per document whether it is written without spaces (CJK); an ISO code or name
            forces it (``"zh"`` / ``"ja"`` / ``"th"`` / ``"ko"``: character mode, anything else: word mode).
        span_length: ``(min, max)`` length of span queries in words (characters in character mode).
        opening_span_prob: probability that a span query is the document's opening span.
        filter: apply :class:`QueryFilter` (dedup and trivial-query removal).
    """

    def __init__(
        self,
        num_terms: tuple[int, int] = (3, 6),
        strategy: str = "mixed",
        seed: int = 0,
        language: str | None = None,
        *,
        span_length: tuple[int, int] = (4, 12),
        opening_span_prob: float = 0.5,
        filter: bool = True,
    ) -> None:
        if strategy not in ("terms", "span", "mixed"):
            raise QueritInputError(f"strategy must be 'terms', 'span' or 'mixed', got {strategy!r}")
        lo, hi = num_terms
        if not (1 <= lo <= hi):
            raise QueritInputError(f"num_terms must be (min, max) with 1 <= min <= max, got {num_terms!r}")
        slo, shi = span_length
        if not (1 <= slo <= shi):
            raise QueritInputError(f"span_length must be (min, max) with 1 <= min <= max, got {span_length!r}")
        self.num_terms = (int(lo), int(hi))
        self.strategy = strategy
        self.seed = int(seed)
        self.language = language
        self.span_length = (int(slo), int(shi))
        self.opening_span_prob = float(opening_span_prob)
        self.filter = filter

    def config(self) -> dict[str, Any]:
        return {"type": "terms", "num_terms": list(self.num_terms), "strategy": self.strategy, "seed": self.seed,
                "language": self.language, "span_length": list(self.span_length),
                "opening_span_prob": self.opening_span_prob, "filter": self.filter}

    def _candidates(self, docs: list[tuple[str, str]], stats: CorpusStats, n: int) -> list[list[str]]:
        out = []
        for doc_id, text in docs:
            rng = np.random.default_rng(stable_seed("query", self.seed, doc_id))
            units = split_units(text, is_char_mode(text, self.language))
            cands = []
            for _ in range(n * self.max_attempts):
                strategy = self.strategy
                if strategy == "mixed":
                    strategy = "terms" if rng.random() < 0.5 else "span"
                q = self.term_query(units, stats, rng) if strategy == "terms" else self.span_query(units, rng, stats)
                if q is None and self.strategy == "mixed":  # e.g. too few salient terms: fall back to a span
                    q = self.span_query(units, rng, stats)
                if q:
                    cands.append(q)
            out.append(cands)
        return out

    def term_query(self, units: list[Unit], stats: CorpusStats, rng: np.random.Generator) -> str | None:
        """Salient terms sampled by TF-IDF weight, without replacement, in the document's order."""
        first: dict[str, tuple[int, int]] = {}
        tf: Counter = Counter()
        for key, s, e in unit_terms(units):
            tf[key] += 1
            first.setdefault(key, (s, e))
        # CJK bigrams seen in a single document are mostly fragments across a word boundary: skip them.
        keys = [k for k in first if not stats.is_trivial_token(k)
                and not (units[first[k][0]].cjk and first[k][1] - first[k][0] == 2 and stats.df.get(k, 0) < 2)]
        if len(keys) < 2:
            return None
        # tf * idf^2 sharpens the sampling towards the distinctive terms (tf * idf alone picks many filler words)
        w = np.array([tf[k] * max(stats.idf(k), 1e-6) ** 2 for k in keys], dtype=np.float64)
        lo, hi = self.num_terms
        k = min(int(rng.integers(lo, hi + 1)), len(keys))
        pick = rng.choice(len(keys), size=k, replace=False, p=w / w.sum())
        spans = sorted(first[keys[int(i)]] for i in pick)
        merged: list[list[int]] = []  # overlapping / touching CJK bigrams become one piece
        for s, e in spans:
            if merged and s < merged[-1][1]:  # overlapping CJK bigrams
                merged[-1][1] = max(merged[-1][1], e)
            elif merged and s == merged[-1][1] and adjacent_cjk(units[s - 1], units[s]):
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        return " ".join(join_units(units[s:e]) for s, e in merged)

    def span_query(self, units: list[Unit], rng: np.random.Generator, stats: CorpusStats | None = None) -> str | None:
        """A contiguous window (the opening one with probability ``opening_span_prob``), stopwords at its ends cut."""
        n = len(units)
        if n < 2:
            return None
        lo, hi = self.span_length
        length = int(rng.integers(lo, hi + 1))
        length = min(length, n - 1) if n > lo else min(length, n)  # never the whole document when avoidable
        if rng.random() < self.opening_span_prob:
            start = 0
        else:
            start = int(rng.integers(0, n - length + 1))
        end = start + length
        if stats is not None:
            while start < end and stats.is_stopword(units[start].key):
                start += 1
            while end > start and stats.is_stopword(units[end - 1].key):
                end -= 1
        if end - start < 2:
            return None
        return join_units(units[start:end])
