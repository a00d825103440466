"""``BM25Teacher``: lexical BM25 (Lucene variant, ``bm25s``) with a per-language Snowball stemmer and stopwords.

Tokens are :func:`querit_st.utils.text.lexical_tokens` (NFKC, lower-cased words, CJK runs as character bigrams),
then stopwords are removed and the rest stemmed; language codes and names come from :mod:`querit_st.utils.lang`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from querit_st.teachers.base import Teacher
from querit_st.utils import QueritInputError, check_text, sha256_texts
from querit_st.utils.lang import LANGUAGE_CODES, language_name
from querit_st.utils.text import is_cjk_char, lexical_tokens

logger = logging.getLogger(__name__)

#: ISO codes of the languages bm25s ships a stopword list for (used with ``stopwords="auto"``).
BM25S_STOPWORD_LANGUAGES: frozenset[str] = frozenset({"en", "de", "es", "ru", "fr", "it", "pt", "nl", "sv", "no",
                                                      "da", "tr"})


def bm25s_stopwords(language: str) -> frozenset[str]:
    """bm25s' lower-cased stopword list for a language (code or name); empty when it has none."""
    code = LANGUAGE_CODES.get(language_name(language))
    if code not in BM25S_STOPWORD_LANGUAGES:
        return frozenset()
    from bm25s.tokenization import _infer_stopwords  # bm25s' own lookup of its lists by language code

    return frozenset(w.lower() for w in _infer_stopwords(code))


class BM25Teacher(Teacher):
    """Lexical BM25 (Lucene variant: ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``) as teacher.

    Args:
        corpus_texts: texts whose statistics (document frequencies, average length) define the scores. ``None``:
            fit later with :meth:`fit` (mining and the collator call it with the target corpus); a teacher scored
            before fitting fits itself on the documents of its first call and warns.
        language: a PyStemmer algorithm name (``"english"``, ``"german"``, ``"russian"``, ...) or ISO code
            (``"en"``, ``"de"``, ...). Chinese / Japanese / Korean / Thai have no stemmer: text in those scripts is cut
            into overlapping character bigrams (in every language, so mixed-script text works too) and not stemmed.
        stemmer: apply the language's Snowball stemmer (when PyStemmer has one).
        stopwords: ``"auto"`` (bm25s' list for the language when it has one), ``None`` (keep all) or a list.
        k1, b: BM25 parameters.

    Documents in the fitted corpus are scored through ``bm25s`` (``get_scores``); any other document is scored with
    the same corpus statistics by the same formula in numpy (terms unseen in the corpus get ``df = 0``), so
    a pair's score does not depend on where the document comes from.
    """

    def __init__(
        self,
        corpus_texts: Sequence[str] | Mapping[str, Any] | None = None,
        language: str = "english",
        stemmer: bool = True,
        *,
        stopwords: str | Sequence[str] | None = "auto",
        k1: float = 1.5,
        b: float = 0.75,
        cache: bool = True,
    ) -> None:
        super().__init__(cache=cache)
        if not isinstance(language, str) or not language.strip():
            raise QueritInputError(f"language must be a language name or ISO code, got {language!r}")
        lang = language_name(language)
        self.language = lang
        self.k1, self.b = float(k1), float(b)
        self._stemmer = None
        if stemmer:
            import Stemmer

            if lang in Stemmer.algorithms():
                self._stemmer = Stemmer.Stemmer(lang)
            else:
                logger.info("BM25Teacher: no stemmer for language %r; tokens are not stemmed", lang)
        if stopwords == "auto":
            self._stopwords = bm25s_stopwords(lang)
        elif stopwords is None:
            self._stopwords = frozenset()
        elif isinstance(stopwords, str):
            raise QueritInputError(f"stopwords must be 'auto', None or a list of words, got {stopwords!r}")
        else:
            self._stopwords = frozenset(str(w).lower() for w in stopwords)
        self._stem_cache: dict[str, str] = {}
        self.retriever: Any = None
        self._doc_pos: dict[str, int] = {}
        self._df: dict[str, int] = {}
        self._num_docs = 0
        self._avgdl = 1.0
        self._corpus_hash = ""
        self._qcache: tuple[str, np.ndarray] | None = None
        if corpus_texts is not None:
            self.fit(corpus_texts)

    # ------------------------------------------------------------------ tokenisation
    def tokenize(self, text: str) -> list[str]:
        """Lower-case ``\\w+`` words, CJK runs as character bigrams, stopwords removed, stemmed."""
        toks = [t for t in lexical_tokens(text) if t not in self._stopwords]
        if self._stemmer is None:
            return toks
        out = []
        for t in toks:
            s = self._stem_cache.get(t)
            if s is None:
                s = t if is_cjk_char(t[0]) else self._stemmer.stemWord(t)
                self._stem_cache[t] = s
            out.append(s)
        return out

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return self.retriever is not None

    def fit(self, corpus_texts: Sequence[str] | Mapping[str, Any]) -> BM25Teacher:
        """Index the corpus with ``bm25s`` and keep its statistics (clears the pair cache)."""
        import bm25s

        from querit_st.data import doc_text

        if isinstance(corpus_texts, Mapping):
            texts = [doc_text(v) for v in corpus_texts.values()]
        elif isinstance(corpus_texts, str) or corpus_texts is None:
            raise QueritInputError("corpus_texts must be a list of texts or a {doc_id: doc} mapping")
        else:
            texts = list(corpus_texts)
        if not texts:
            raise QueritInputError("corpus_texts is empty; expected at least one document")
        for i, t in enumerate(texts):
            check_text(t, f"corpus_texts[{i}]")
        tokens = [self.tokenize(t) for t in texts]
        # bm25s needs a non-empty vocabulary; an all-stopword document simply has length 0.
        retriever = bm25s.BM25(method="lucene", k1=self.k1, b=self.b)
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in toks] for toks in tokens]
        if not vocab:
            vocab[""] = 0
        with contextlib.redirect_stderr(io.StringIO()):  # bm25s 0.3 ignores show_progress in one inner loop
            retriever.index((ids, vocab), show_progress=False)
        df: Counter[str] = Counter()
        for toks in tokens:
            df.update(set(toks))
        self.retriever = retriever
        self._df = dict(df)
        self._num_docs = len(texts)
        self._avgdl = max(sum(len(t) for t in tokens) / len(tokens), 1e-9)
        self._doc_pos = {}
        for i, t in enumerate(texts):
            self._doc_pos.setdefault(t, i)
        self._corpus_hash = sha256_texts(texts)
        self._qcache = None
        self.clear_cache()
        return self

    def prepare(self, corpus_texts: Sequence[str]) -> BM25Teacher:
        if not self.is_fitted:
            self.fit(corpus_texts)
        return self

    # ------------------------------------------------------------------ scoring
    def idf(self, term: str) -> float:
        df = self._df.get(term, 0)
        return math.log(1.0 + (self._num_docs - df + 0.5) / (df + 0.5))

    def score_tokens(self, query_tokens: Sequence[str], doc_tokens: Sequence[str]) -> float:
        """BM25 of one tokenised pair with the fitted corpus statistics (pure python; the reference formula)."""
        if not query_tokens or not doc_tokens:
            return 0.0
        tf = Counter(doc_tokens)
        norm = self.k1 * (1.0 - self.b + self.b * len(doc_tokens) / self._avgdl)
        total = 0.0
        for t in query_tokens:  # repeated query terms count repeatedly, as in bm25s
            f = tf.get(t, 0)
            if f:
                total += self.idf(t) * f / (f + norm)
        return total

    def _indexed_scores(self, query: str) -> np.ndarray:
        if self._qcache is not None and self._qcache[0] == query:
            return self._qcache[1]
        toks = [t for t in self.tokenize(query) if t in self.retriever.vocab_dict]
        if toks:
            scores = np.asarray(self.retriever.get_scores(toks), dtype=np.float64)
        else:
            scores = np.zeros(self._num_docs, dtype=np.float64)
        self._qcache = (query, scores)
        return scores

    def _score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        if not self.is_fitted:
            logger.warning(
                "BM25Teacher used before fit(): fitting its statistics on the %d documents of this call",
                len(documents),
            )
            self.fit(list(dict.fromkeys(documents)))
        out = np.empty(len(queries), dtype=np.float64)
        order = sorted(range(len(queries)), key=lambda i: queries[i])  # one get_scores per distinct query
        qtok: dict[str, list[str]] = {}
        for i in order:
            q, d = queries[i], documents[i]
            pos = self._doc_pos.get(d)
            if pos is not None:
                out[i] = self._indexed_scores(q)[pos]
            else:
                if q not in qtok:
                    qtok[q] = self.tokenize(q)
                out[i] = self.score_tokens(qtok[q], self.tokenize(d))
        return out

    def fingerprint(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "language": self.language, "stemmer": self._stemmer is not None,
                "stopwords": sha256_texts(sorted(self._stopwords))[:16], "k1": self.k1, "b": self.b,
                "corpus": self._corpus_hash}
