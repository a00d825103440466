"""Teachers: models that give every (query, document) pair a continuous relevance score (the soft label).

Every teacher has one interface, ``score(queries, documents) -> np.ndarray`` over *pairs* (two lists of the same
length; ``teacher(queries, documents)`` is the same call), so a teacher can label mined candidates
(:func:`querit_st.mining.mine_soft_labels`), label candidates during training
(:class:`querit_st.collator.TeacherMiningDataCollator`) or act as a reranker in the evaluation harness
(``evaluate_reranking(data, retriever, {"bm25": teacher.score})``).

- :class:`CrossEncoderTeacher`: a sentence-transformers ``CrossEncoder`` (logits, or sigmoid of them).
- :class:`EmbeddingTeacher`: cosine similarity of an embedding model, with the model family's query / passage
  prompts (the Querit paper's teacher is an embedding model). It reuses a :class:`DenseRetriever`'s corpus
  embeddings when the prompts agree, so labelling the retriever's own candidates costs only the query encodings.
- :class:`BM25Teacher`: lexical BM25 (Lucene variant, ``bm25s``) with a per-language PyStemmer stemmer.
- :class:`EnsembleTeacher`: a weighted sum of member teachers' scores normalised within each query's candidate
  group ("the teacher ensemble").

Caching: the single-model teachers remember every pair they scored (an in-memory dict keyed by a hash of the pair),
so no pair is ever scored twice in a run; :attr:`Teacher.cache_hits` / :attr:`Teacher.cache_misses` count lookups.
The ensemble's output depends on the whole candidate group, so it is not cached itself; its members are.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from querit_st._utils import QueritInputError, check_text, sha256_texts

logger = logging.getLogger(__name__)

__all__ = [
    "Teacher",
    "CrossEncoderTeacher",
    "EmbeddingTeacher",
    "BM25Teacher",
    "EnsembleTeacher",
    "normalize_group_scores",
    "pair_key",
    "check_pairs_lists",
    "teacher_fingerprint",
    "model_fingerprint",
    "model_weights_hash",
    "as_score_fn",
    "is_cjk_char",
]


def pair_key(query: str, document: str) -> bytes:
    """A 16-byte hash of a (query, document) pair; the length prefix keeps ``("ab", "c")`` != ``("a", "bc")``."""
    q = query.encode("utf-8")
    h = hashlib.blake2b(digest_size=16)
    h.update(len(q).to_bytes(8, "little"))
    h.update(q)
    h.update(document.encode("utf-8"))
    return h.digest()


def model_weights_hash(module: Any) -> str:
    """Content hash of a torch module's parameters and buffers (identifies an in-memory model across processes)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(retriever_or_model: Any) -> str:
    """A retriever's model id; in-memory models (whose id is only valid in this process) are hashed by content."""
    fp = getattr(retriever_or_model, "_fingerprint", None)
    if isinstance(fp, str) and not fp.startswith("in-memory"):
        return fp
    model = getattr(retriever_or_model, "model", retriever_or_model)
    try:
        return "weights-" + model_weights_hash(model)
    except Exception:  # pragma: no cover - not a torch module
        return str(fp or getattr(retriever_or_model, "name", type(retriever_or_model).__name__))


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
    """

    #: Whether scores of a pair are independent of the other pairs of the call (then they may be cached).
    cacheable: bool = True

    def __init__(self, cache: bool = True) -> None:
        self.cache_enabled = cache
        self._cache: dict[bytes, float] = {}
        self.cache_hits = 0
        self.cache_misses = 0

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
            self.cache_misses += len(queries)
            out[:] = np.asarray(self._score_pairs(queries, documents), dtype=np.float64).reshape(-1)
            return out
        todo: dict[bytes, list[int]] = {}
        for i, (q, d) in enumerate(zip(queries, documents)):
            key = pair_key(q, d)
            cached = self._cache.get(key)
            if cached is not None:
                out[i] = cached
                self.cache_hits += 1
            elif key in todo:  # the same pair twice in one call: scored once
                todo[key].append(i)
                self.cache_hits += 1
            else:
                todo[key] = [i]
        if todo:
            first = [idx[0] for idx in todo.values()]
            self.cache_misses += len(first)
            new = np.asarray(
                self._score_pairs([queries[i] for i in first], [documents[i] for i in first]), dtype=np.float64
            ).reshape(-1)
            if new.shape[0] != len(first):
                raise RuntimeError(f"{type(self).__name__} returned {new.shape[0]} scores for {len(first)} pairs")
            for (key, idx), value in zip(todo.items(), new):
                value = float(value)
                self._cache[key] = value
                out[idx] = value
        return out

    __call__ = score

    def prepare(self, corpus_texts: Sequence[str]) -> Teacher:
        """Hook called by mining / the collator with the target corpus (BM25 fits its statistics here)."""
        return self

    def clear_cache(self) -> None:
        self._cache.clear()
        self.cache_hits = 0
        self.cache_misses = 0

    def fingerprint(self) -> dict[str, Any]:
        """A JSON-able description that changes whenever the scores could (part of mining's config hash)."""
        return {"class": type(self).__name__}

    # ------------------------------------------------------------------ subclass API
    def _score_pairs(self, queries: list[str], documents: list[str]) -> Sequence[float]:  # pragma: no cover
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------- cross-encoder
class CrossEncoderTeacher(Teacher):
    """A sentence-transformers ``CrossEncoder`` as teacher.

    Args:
        model_or_path: a loaded ``CrossEncoder`` (e.g. a :class:`~querit_st.cross_encoder.QueritCrossEncoder`) or a
            folder / hub name that ``CrossEncoder(...)`` loads (the saved default prompt is applied).
        batch_size: pairs per forward pass.
        activation: ``"identity"`` (raw logits, the default: the soft losses normalise per query themselves) or
            ``"sigmoid"``.
        max_length: truncation length (``None``: the model's own).
        device: torch device when loading from a path.
        inference: a :mod:`querit_st.inference` mode applied to the model before scoring (``"fp32"``: as loaded;
            ``"onnx"`` gives the same scores faster on CPU). Part of the fingerprint, so mined labels scored in
            another mode are not reused.
    """

    def __init__(
        self,
        model_or_path: Any,
        batch_size: int = 32,
        activation: str = "identity",
        *,
        max_length: int | None = None,
        device: str | None = None,
        inference: str = "fp32",
        cache: bool = True,
    ) -> None:
        super().__init__(cache=cache)
        from sentence_transformers import CrossEncoder

        from querit_st.inference import MODES, inference_mode_of, optimize_for_inference

        if inference not in MODES:
            raise QueritInputError(f"inference must be one of {', '.join(MODES)}, got {inference!r}")

        if isinstance(model_or_path, CrossEncoder):
            self.model = model_or_path
            self.name = "in-memory"
            self._model_id = None  # hashed from the weights when a fingerprint is asked for
        else:
            if not isinstance(model_or_path, (str, os.PathLike)) or not str(model_or_path).strip():
                raise QueritInputError(
                    f"model_or_path must be a CrossEncoder or a model folder, got {model_or_path!r:.80}"
                )
            from querit_st.retriever import _model_fingerprint

            self.name = str(model_or_path)
            self.model = CrossEncoder(self.name, device=device, max_length=max_length)
            self._model_id = _model_fingerprint(self.name)
        if max_length is not None:
            self.model.max_length = max_length
        if activation not in ("identity", "sigmoid"):
            raise QueritInputError(f"activation must be 'identity' or 'sigmoid', got {activation!r}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise QueritInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.activation = activation
        self.batch_size = batch_size
        if inference != "fp32":
            in_memory = self._model_id is None
            if in_memory:  # a caller's model: hash it as given, and optimise a copy, not it
                self._model_id = "weights-" + model_weights_hash(self.model)
            self.model = optimize_for_inference(self.model, inference, inplace=not in_memory)
        self.inference = inference_mode_of(self.model) or "fp32"

    def _score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        import torch

        act = torch.nn.Sigmoid() if self.activation == "sigmoid" else torch.nn.Identity()
        scores = self.model.predict(
            list(zip(queries, documents)),
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=act,
            convert_to_numpy=True,
        )
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def fingerprint(self) -> dict[str, Any]:
        model_id = self._model_id or "weights-" + model_weights_hash(self.model)
        return {"class": type(self).__name__, "model": model_id, "activation": self.activation,
                "prompt": getattr(self.model, "default_prompt_name", None),
                "max_length": getattr(self.model, "max_length", None),
                **({"inference": self.inference} if self.inference != "fp32" else {})}


# --------------------------------------------------------------------------------------------------------- embedding
class EmbeddingTeacher(Teacher):
    """Cosine similarity of an embedding model as the teacher's score.

    Args:
        model_name_or_path: an offline backbone name (``"minilm-l6"``, ``"multilingual-e5-small"``), a local
            SentenceTransformer folder, a loaded ``SentenceTransformer``, or a :class:`DenseRetriever` (its model,
            prompts and, when the corpus is indexed, its corpus embeddings are reused).
        query_prompt / passage_prompt: ``None`` takes the retriever's (the family default: ``"query: "`` /
            ``"passage: "`` for e5 models, nothing otherwise).
        batch_size: encoding batch size.

    Every unique query and document text of a call is encoded once; the pair cache avoids re-encoding across calls.
    Documents that are in the wrapped retriever's index (and were embedded with the same passage prompt) use the
    index's embeddings, which also makes their scores independent of how calls are batched.
    """

    def __init__(
        self,
        model_name_or_path: Any = "minilm-l6",
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        *,
        batch_size: int = 64,
        max_seq_length: int | None = 256,
        cache_dir: Any = None,
        cache: bool = True,
    ) -> None:
        super().__init__(cache=cache)
        from querit_st.retriever import DenseRetriever

        if isinstance(model_name_or_path, DenseRetriever):
            self.retriever = model_name_or_path
        else:
            self.retriever = DenseRetriever(
                model_name_or_path, batch_size=batch_size, max_seq_length=max_seq_length, cache_dir=cache_dir
            )
        self.query_prompt = self.retriever.query_prompt if query_prompt is None else query_prompt
        self.passage_prompt = self.retriever.passage_prompt if passage_prompt is None else passage_prompt
        self.batch_size = batch_size
        self._index_ref: Any = None
        self._index_pos: dict[str, int] = {}

    def _encode(self, texts: list[str], prompt: str) -> np.ndarray:
        return self.retriever._encode([prompt + t for t in texts], self.batch_size)

    def _index_positions(self) -> dict[str, int]:
        r = self.retriever
        if r.embeddings is None or self.passage_prompt != r.passage_prompt:
            return {}
        if self._index_ref is not r.embeddings:
            self._index_ref = r.embeddings
            self._index_pos = {}
            for i, t in enumerate(r.doc_texts):
                self._index_pos.setdefault(t, i)
        return self._index_pos

    def encode_documents(self, documents: list[str]) -> np.ndarray:
        """L2-normalised embeddings of the documents (index rows where possible, encoded otherwise)."""
        pos = self._index_positions()
        missing = [d for d in dict.fromkeys(documents) if d not in pos]
        enc = dict(zip(missing, self._encode(missing, self.passage_prompt))) if missing else {}
        rows = [self.retriever.embeddings[pos[d]] if d in pos else enc[d] for d in documents]
        return np.asarray(rows, dtype=np.float32)

    def _score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        uq = list(dict.fromkeys(queries))
        ud = list(dict.fromkeys(documents))
        qe = dict(zip(uq, self._encode(uq, self.query_prompt)))
        de = dict(zip(ud, self.encode_documents(ud)))
        q = np.stack([qe[x] for x in queries]).astype(np.float64)
        d = np.stack([de[x] for x in documents]).astype(np.float64)
        qn = np.linalg.norm(q, axis=1)
        dn = np.linalg.norm(d, axis=1)
        return (q * d).sum(axis=1) / np.maximum(qn * dn, 1e-12)

    def fingerprint(self) -> dict[str, Any]:
        r = self.retriever
        return {"class": type(self).__name__, "model": model_fingerprint(r),
                "query_prompt": self.query_prompt, "passage_prompt": self.passage_prompt,
                "max_seq_length": r.model.max_seq_length}


# -------------------------------------------------------------------------------------------------------------- BM25
#: ISO 639-1 code -> PyStemmer algorithm name.
_LANG_ALIASES = {
    "en": "english", "de": "german", "es": "spanish", "ru": "russian", "fr": "french", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "ar": "arabic", "hi": "hindi", "el": "greek", "tr": "turkish",
    "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish", "hu": "hungarian", "ro": "romanian",
    "id": "indonesian", "ga": "irish", "lt": "lithuanian", "ne": "nepali", "fa": "persian", "pl": "polish",
    "sr": "serbian", "ta": "tamil", "ca": "catalan", "cs": "czech", "eu": "basque", "hy": "armenian",
    "et": "estonian", "zh": "chinese", "ja": "japanese", "ko": "korean", "th": "thai", "vi": "vietnamese",
    "zh-cn": "chinese", "cn": "chinese",
}
#: language -> bm25s stopword list name (bm25s ships these).
_BM25S_STOPWORDS = {"english": "en", "german": "de", "spanish": "es", "russian": "ru", "french": "fr",
                    "italian": "it", "portuguese": "pt", "dutch": "nl", "swedish": "sv", "norwegian": "no",
                    "danish": "da", "turkish": "tr"}

_CJK_RE = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u0e00-\u0e7f\U00020000-\U0002ffff]"
)
_WORD_RE = re.compile(r"\w+")


def is_cjk_char(ch: str) -> bool:
    """Characters of scripts written without spaces between words (Han, kana, Hangul syllables, Thai)."""
    return bool(_CJK_RE.match(ch))


def _split_cjk(token: str) -> list[str]:
    """Split a ``\\w+`` token into runs: CJK runs become overlapping character bigrams, other runs stay whole."""
    if not _CJK_RE.search(token):
        return [token]
    out: list[str] = []
    run, run_cjk = "", None
    for ch in token + " ":
        c = ch != " " and is_cjk_char(ch)
        if ch == " " or (run and c != run_cjk):
            if run:
                if run_cjk:
                    out.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
                else:
                    out.append(run)
            run = ""
        if ch != " ":
            run += ch
            run_cjk = c
    return out


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
        lang = _LANG_ALIASES.get(language.strip().lower(), language.strip().lower())
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
            name = _BM25S_STOPWORDS.get(lang)
            if name:
                from bm25s.tokenization import _infer_stopwords

                self._stopwords = frozenset(w.lower() for w in _infer_stopwords(name))
            else:
                self._stopwords = frozenset()
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
        text = unicodedata.normalize("NFKC", text).lower()
        toks: list[str] = []
        for w in _WORD_RE.findall(text):
            toks.extend(_split_cjk(w))
        toks = [t for t in toks if t not in self._stopwords]
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
        import contextlib
        import io

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


# ---------------------------------------------------------------------------------------------------------- ensemble
def normalize_group_scores(scores: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Normalise one query's candidate scores.

    - ``"zscore"``: ``(s - mean) / std`` (population std); a constant group gives zeros.
    - ``"minmax"``: ``(s - min) / (max - min)``; a constant group gives 0.5.
    - ``"rank"``: average rank scaled to [0, 1] (lowest 0, highest 1, ties share their mean rank); a single or
      constant group gives 0.5.
    - ``"none"``: unchanged.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or method == "none":
        return s.copy()
    if method == "zscore":
        sd = s.std()
        return np.zeros_like(s) if sd <= 1e-12 * max(1.0, float(np.abs(s).max())) else (s - s.mean()) / sd
    if method == "minmax":
        lo, hi = s.min(), s.max()
        return np.full_like(s, 0.5) if hi - lo <= 1e-12 * max(1.0, abs(hi)) else (s - lo) / (hi - lo)
    if method == "rank":
        if s.size == 1:
            return np.full_like(s, 0.5)
        from scipy.stats import rankdata

        return (rankdata(s, method="average") - 1.0) / (s.size - 1)
    raise QueritInputError(f"normalization must be one of 'zscore', 'minmax', 'rank', 'none', got {method!r}")


def normalize_rows_by_group(rows: np.ndarray, groups: Sequence[Any], method: str = "zscore") -> np.ndarray:
    """Each row of ``rows`` (members x pairs) normalised within each group of pairs (:func:`normalize_group_scores`);
    ``groups[i]`` names the group (query) of pair i. Returns a new float64 array of the same shape."""
    raw = np.asarray(rows, dtype=np.float64)
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    out = np.zeros_like(raw)
    for idx in by_group.values():
        ix = np.asarray(idx)
        for r in range(raw.shape[0]):
            out[r, ix] = normalize_group_scores(raw[r, ix], method)
    return out


class EnsembleTeacher(Teacher):
    """Weighted sum of member teachers' scores, each normalised within each query's candidate group.

    For the pairs of one call, the pairs are grouped by query string; every member's scores of a group are normalised
    (``"zscore"`` by default, or ``"minmax"`` / ``"rank"`` / ``"none"``, see :func:`normalize_group_scores`) and the
    ensemble score is ``sum_t w_t * norm(score_t)``. Because the normalisation is relative to the group, score each
    query's whole candidate list in one call (mining and the collator do). ``groups`` overrides the grouping (e.g.
    query ids, when two queries share a text).

    Args:
        teachers: the member teachers (anything with ``score(queries, documents)``).
        weights: one weight per member (``None``: equal weights ``1 / len(teachers)``).
        normalization: per-group normalisation of every member's scores.
    """

    cacheable = False

    def __init__(
        self,
        teachers: Sequence[Any],
        weights: Sequence[float] | None = None,
        normalization: str = "zscore",
    ) -> None:
        super().__init__(cache=False)
        teachers = list(teachers or [])
        if not teachers:
            raise QueritInputError("EnsembleTeacher needs at least one teacher")
        for i, t in enumerate(teachers):
            if not callable(getattr(t, "score", None)):
                raise QueritInputError(f"teachers[{i}] has no score(queries, documents) method: {t!r:.80}")
        if weights is None:
            weights = [1.0 / len(teachers)] * len(teachers)
        weights = [float(w) for w in weights]
        if len(weights) != len(teachers):
            raise QueritInputError(f"got {len(weights)} weights for {len(teachers)} teachers")
        if not all(math.isfinite(w) for w in weights):
            raise QueritInputError(f"weights must be finite numbers, got {weights}")
        normalize_group_scores(np.zeros(1), normalization)  # validates the name
        self.teachers = teachers
        self.weights = weights
        self.normalization = normalization

    @property
    def cache_hits(self) -> int:  # type: ignore[override]
        return sum(getattr(t, "cache_hits", 0) for t in self.teachers)

    @cache_hits.setter
    def cache_hits(self, value: int) -> None:
        pass

    @property
    def cache_misses(self) -> int:  # type: ignore[override]
        return sum(getattr(t, "cache_misses", 0) for t in self.teachers)

    @cache_misses.setter
    def cache_misses(self, value: int) -> None:
        pass

    def member_scores(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Raw scores of every member, shape ``[num_teachers, num_pairs]``."""
        queries, documents = check_pairs_lists(queries, documents)
        return np.stack([np.asarray(t.score(queries, documents), dtype=np.float64) for t in self.teachers])

    def score(  # type: ignore[override]
        self, queries: Sequence[str], documents: Sequence[str], groups: Sequence[Any] | None = None
    ) -> np.ndarray:
        queries, documents = check_pairs_lists(queries, documents)
        if not queries:
            return np.empty(0, dtype=np.float64)
        if groups is None:
            groups = queries
        elif len(groups) != len(queries):
            raise QueritInputError(f"groups has {len(groups)} entries for {len(queries)} pairs")
        out = np.zeros(len(queries), dtype=np.float64)
        for w, row in zip(self.weights, normalize_rows_by_group(self.member_scores(queries, documents), groups,
                                                                 self.normalization)):
            out += w * row  # members in order, as a per-pair sum
        return out

    __call__ = score

    def prepare(self, corpus_texts: Sequence[str]) -> EnsembleTeacher:
        for t in self.teachers:
            if hasattr(t, "prepare"):
                t.prepare(corpus_texts)
        return self

    def clear_cache(self) -> None:
        for t in self.teachers:
            if hasattr(t, "clear_cache"):
                t.clear_cache()

    def fingerprint(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "weights": self.weights, "normalization": self.normalization,
                "teachers": [teacher_fingerprint(t) for t in self.teachers]}


def teacher_fingerprint(teacher: Any) -> dict[str, Any]:
    """A teacher's :meth:`Teacher.fingerprint`, or a best-effort description of a plain callable."""
    fp = getattr(teacher, "fingerprint", None)
    if callable(fp):
        return fp()
    return {"class": type(teacher).__name__, "callable": getattr(teacher, "__qualname__", repr(teacher))[:200]}


def as_score_fn(teacher: Any) -> Callable[[list[str], list[str]], np.ndarray]:
    """``teacher.score`` for teachers, the callable itself for plain ``(queries, docs) -> scores`` functions."""
    fn = getattr(teacher, "score", None)
    if callable(fn):
        return fn
    if callable(teacher):
        return teacher
    raise QueritInputError(f"teacher must have a score(queries, documents) method or be callable, got {teacher!r:.80}")

