"""Synthetic queries from a target corpus: the label-free half of domain adaptation.

Each generated query remembers the document it came from (``doc_id``), which mining may keep as a known positive.
Two generators share one interface, ``generate(corpus, num_queries_per_doc=1, max_docs=None) -> [{"query_id",
"query", "doc_id"}, ...]``, and the same post-processing (:class:`QueryFilter`: deduplication on normalised text and
removal of trivial queries):

- :class:`TermQueryGenerator`: model-free and offline. It mixes *salient-term* queries (terms sampled in proportion
  to their TF-IDF weight in the document, computed over the corpus, kept in the document's word order) and
  *span* queries (a contiguous 4-12 word window, favouring the opening span, which in abstracts and short passages
  often acts as a title). It works on the document's own tokens, so a query is always in the document's language;
  scripts written without spaces (Chinese, Japanese, Thai, Korean syllables) are handled as character sequences:
  salient terms are character bigrams, spans are character windows.
- :class:`Seq2SeqQueryGenerator`: a transformers model, either doc2query-T5 style (``AutoModelForSeq2SeqLM``) or an
  instruction-tuned chat model (``AutoModelForCausalLM`` + ``apply_chat_template``, asked to write the query in the
  document's language), for when such a model is available locally.

Stopwords are not taken from built-in lists: a term that occurs in more than ``max_df`` (30 %) of the corpus'
documents counts as a stopword, which works the same in every language and adapts to the corpus (in a physics
abstract collection "measurements" may well be one).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from querit_st._utils import QueritInputError, check_text
from querit_st.teachers import is_cjk_char

logger = logging.getLogger(__name__)

__all__ = [
    "QueryFilter",
    "CorpusStats",
    "TermQueryGenerator",
    "Seq2SeqQueryGenerator",
    "make_query_generator",
    "check_query_generator_spec",
    "normalize_query",
    "normalize_corpus",
]

_TOKEN_RE = re.compile(r"\w+(?:['’\-]\w+)*")
_CJK_LANGS = {"zh", "chinese", "ja", "japanese", "th", "thai", "ko", "korean", "zh-cn", "zh-tw"}


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from any values, stable across processes and Python versions (unlike ``hash``)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little")


def normalize_query(text: str) -> str:
    """Text used for deduplication and triviality checks: NFKC, case-folded, word characters only, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_TOKEN_RE.findall(text))


def _source_text(doc: Any) -> Any:
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
        items = [(str(k), _source_text(v)) for k, v in corpus.items()]
    else:
        items = [(str(i), _source_text(v)) for i, v in enumerate(corpus)]
    if not items:
        raise QueritInputError("corpus is empty; expected at least one document")
    for doc_id, text in items:
        check_text(text, f"corpus[{doc_id!r}]")
    return items


# ------------------------------------------------------------------------------------------------------ tokenisation
@dataclass
class _Unit:
    text: str  # surface form
    key: str  # lower-cased form for statistics
    cjk: bool
    start: int = 0  # character offsets in the (NFKC-normalised) text
    end: int = 0


def _units(text: str, char_mode: bool) -> list[_Unit]:
    """Word units of a document; in character mode runs of CJK characters are split into single characters."""
    text = unicodedata.normalize("NFKC", text)
    out: list[_Unit] = []
    for m in _TOKEN_RE.finditer(text):
        tok, base = m.group(0), m.start()
        if not char_mode or not any(is_cjk_char(c) for c in tok):
            out.append(_Unit(tok, tok.casefold(), False, base, m.end()))
            continue
        run, run_start = "", 0
        for j, c in enumerate(tok):
            if is_cjk_char(c):
                if run:
                    out.append(_Unit(run, run.casefold(), False, base + run_start, base + j))
                    run = ""
                out.append(_Unit(c, c, True, base + j, base + j + 1))
            else:
                if not run:
                    run_start = j
                run += c
        if run:
            out.append(_Unit(run, run.casefold(), False, base + run_start, base + len(tok)))
    return out


def _adjacent_cjk(a: _Unit, b: _Unit) -> bool:
    """Two CJK characters with nothing between them in the source."""
    return a.cjk and b.cjk and a.end == b.start


def _join(units: Sequence[_Unit]) -> str:
    """Join units with spaces, except between two CJK characters adjacent in the source text."""
    parts: list[str] = []
    prev: _Unit | None = None
    for u in units:
        if prev is not None and not _adjacent_cjk(prev, u):
            parts.append(" ")
        parts.append(u.text)
        prev = u
    return "".join(parts)


def _is_char_mode(text: str, language: str | None) -> bool:
    if language is not None:
        return language.lower() in _CJK_LANGS
    letters = [c for c in text if c.isalnum()]
    if not letters:
        return False
    return sum(is_cjk_char(c) for c in letters) / len(letters) > 0.3


def _terms(units: Sequence[_Unit]) -> list[tuple[str, int, int]]:
    """``(term key, start unit, end unit)``: non-CJK words, and bigrams of consecutive CJK characters."""
    out = []
    for i, u in enumerate(units):
        if not u.cjk:
            out.append((u.key, i, i + 1))
        elif i + 1 < len(units) and _adjacent_cjk(u, units[i + 1]):
            out.append((u.key + units[i + 1].key, i, i + 2))
        elif i == 0 or not _adjacent_cjk(units[i - 1], u):  # an isolated CJK character
            out.append((u.key, i, i + 1))
    return out


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
            units = _units(t, _is_char_mode(t, language))
            keys = {k for k, _, _ in _terms(units)} | {u.key for u in units}
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
        units = _units(query, True)
        if len(units) < self.min_units or len(norm.replace(" ", "")) < self.min_chars:
            return "too_short"
        keys = [u.key for u in units]
        terms = [k for k, _, _ in _terms(units)]
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


class _Generator:
    """Shared ``generate`` loop: corpus normalisation, document sampling, retries, filter and ids."""

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


# --------------------------------------------------------------------------------------------------- term generator
class TermQueryGenerator(_Generator):
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
            units = _units(text, _is_char_mode(text, self.language))
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

    def term_query(self, units: list[_Unit], stats: CorpusStats, rng: np.random.Generator) -> str | None:
        """Salient terms sampled by TF-IDF weight, without replacement, in the document's order."""
        first: dict[str, tuple[int, int]] = {}
        tf: Counter = Counter()
        for key, s, e in _terms(units):
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
            elif merged and s == merged[-1][1] and _adjacent_cjk(units[s - 1], units[s]):
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        return " ".join(_join(units[s:e]) for s, e in merged)

    def span_query(self, units: list[_Unit], rng: np.random.Generator, stats: CorpusStats | None = None) -> str | None:
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
        return _join(units[start:end])


# ------------------------------------------------------------------------------------------------ seq2seq generator
DEFAULT_SEQ2SEQ_PROMPT = "Generate a search query for this passage: {doc}"
DEFAULT_CHAT_PROMPT = (
    "Write one short search query that the following document answers. Write the query in the same language as "
    "the document. Reply with the query only.\n\nDocument: {doc}"
)


class Seq2SeqQueryGenerator(_Generator):
    """Queries from a transformers model: doc2query-T5 style or an instruction-tuned chat model.

    Args:
        model_name_or_path: a local folder (or hub name, offline only from the local cache). Encoder-decoder
            configs load with ``AutoModelForSeq2SeqLM``; others with ``AutoModelForCausalLM`` and are prompted
            through ``tokenizer.apply_chat_template`` when the tokenizer has a chat template.
        prompt: format string with ``{doc}``. ``None``: ``"Generate a search query for this passage: {doc}"`` for
            seq2seq models, an instruction to answer with a query in the document's language for chat models.
        max_new_tokens, num_return_sequences, do_sample, temperature, top_p, top_k: ``model.generate`` settings
            (``generate(..., num_queries_per_doc=n)`` asks for at least ``n`` sequences per document).
        batch_size: documents per ``generate`` call.
        max_doc_chars: documents are cut to this many characters before prompting.
        seed: sampling is seeded per batch (``seed + batch index``) inside a forked torch RNG, so runs repeat.
        filter: apply :class:`QueryFilter` (pass ``filter=False`` to ``generate`` to see raw generations).
        generation_kwargs: extra ``model.generate`` arguments.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        prompt: str | None = None,
        max_new_tokens: int = 32,
        num_return_sequences: int = 1,
        do_sample: bool = True,
        *,
        temperature: float = 1.0,
        top_p: float | None = 0.95,
        top_k: int | None = None,
        batch_size: int = 8,
        max_doc_chars: int = 2000,
        seed: int = 0,
        language: str | None = None,
        filter: bool = True,
        device: str | None = None,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        if not isinstance(model_name_or_path, (str, os.PathLike)) or not str(model_name_or_path).strip():
            raise QueritInputError(
                f"model_name_or_path must be a model folder or name, got {model_name_or_path!r:.80}"
            )
        self.name = str(model_name_or_path)
        config = AutoConfig.from_pretrained(self.name)
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.tokenizer = AutoTokenizer.from_pretrained(self.name)
        if self.is_seq2seq:
            self.model = AutoModelForSeq2SeqLM.from_pretrained(self.name)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(self.name)
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = torch.device(device) if device else torch.device("cpu")
        self.model.to(self.device).eval()
        self.use_chat_template = not self.is_seq2seq and bool(getattr(self.tokenizer, "chat_template", None))
        if prompt is None:
            prompt = DEFAULT_SEQ2SEQ_PROMPT if self.is_seq2seq else DEFAULT_CHAT_PROMPT
        if "{doc}" not in prompt:
            raise QueritInputError(f"prompt must contain '{{doc}}', got {prompt!r}")
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.num_return_sequences = num_return_sequences
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.batch_size = batch_size
        self.max_doc_chars = max_doc_chars
        self.seed = int(seed)
        self.language = language
        self.filter = filter
        self.generation_kwargs = dict(generation_kwargs or {})

    def config(self) -> dict[str, Any]:
        return {"type": "seq2seq", "model": self.name, "prompt": self.prompt, "max_new_tokens": self.max_new_tokens,
                "num_return_sequences": self.num_return_sequences, "do_sample": self.do_sample,
                "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed,
                "filter": self.filter}

    def format_prompt(self, doc: str) -> str:
        text = self.prompt.replace("{doc}", doc[: self.max_doc_chars])
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text

    @staticmethod
    def clean(text: str) -> str:
        """First non-empty line, without a leading ``Query:`` label or surrounding quotes."""
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return ""
        line = re.sub(r"^(search\s+)?query\s*[:：]\s*", "", lines[0], flags=re.IGNORECASE)
        return line.strip().strip("\"'“”«»「」").strip()

    def generate_raw(self, docs: Sequence[str], num_return_sequences: int | None = None) -> list[list[str]]:
        """``num_return_sequences`` cleaned generations per document (unfiltered)."""
        import torch

        k = num_return_sequences or self.num_return_sequences
        out: list[list[str]] = []
        for b, start in enumerate(range(0, len(docs), self.batch_size)):
            batch = [self.format_prompt(d) for d in docs[start : start + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=self.is_seq2seq,
                                 max_length=512 if self.is_seq2seq else None)
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            kwargs: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "num_return_sequences": k,
                "do_sample": self.do_sample,
                "pad_token_id": self.tokenizer.pad_token_id,
            }
            if self.do_sample:
                kwargs["temperature"] = self.temperature
                if self.top_p is not None:
                    kwargs["top_p"] = self.top_p
                if self.top_k is not None:
                    kwargs["top_k"] = self.top_k
            elif k > 1:  # several greedy sequences need beams
                kwargs["num_beams"] = k
            kwargs.update(self.generation_kwargs)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(self.seed + b)
                ids = self.model.generate(**enc, **kwargs)
            if not self.is_seq2seq:
                ids = ids[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            for i in range(len(batch)):
                out.append([self.clean(t) for t in texts[i * k : (i + 1) * k]])
        return out

    def _candidates(self, docs: list[tuple[str, str]], stats: CorpusStats, n: int) -> list[list[str]]:
        # at least as many sequences as queries wanted per document (more leave room for the filter)
        return self.generate_raw([t for _, t in docs], max(self.num_return_sequences, n))


# ------------------------------------------------------------------------------------------------------------ factory
def make_query_generator(spec: str | Mapping[str, Any] | None = "terms", **overrides: Any) -> Any:
    """A query generator from a spec.

    - ``None`` / ``"terms"``: :class:`TermQueryGenerator` with defaults.
    - any other string: a model folder or name for :class:`Seq2SeqQueryGenerator`.
    - a dict: ``{"type": "terms", ...kwargs}`` or ``{"type": "seq2seq", "model_name_or_path": ..., ...kwargs}``
      (``"model"`` is accepted for ``model_name_or_path``; a dict with a model and no type means seq2seq).
    - an object that already has ``generate`` is returned as is.

    Raises:
        QueritInputError: an unknown type or option name, or a bad option value.
    """
    if hasattr(spec, "generate") and not isinstance(spec, (str, Mapping)):
        return spec
    cls, kwargs = _resolve_spec(spec, overrides)
    return cls(**kwargs)


def check_query_generator_spec(spec: str | Mapping[str, Any] | None) -> None:
    """Validate a spec for :func:`make_query_generator` without loading a model (e.g. a config, before any work).

    Option names are checked for both kinds; a terms generator is built (cheap), so its values are checked too.
    """
    if hasattr(spec, "generate") and not isinstance(spec, (str, Mapping)):
        return
    cls, kwargs = _resolve_spec(spec, {})
    if cls is TermQueryGenerator:
        cls(**kwargs)


def _resolve_spec(spec: Any, overrides: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """The generator class and its keyword arguments for a spec (see :func:`make_query_generator`)."""
    if spec is None:
        spec = "terms"
    if isinstance(spec, str):
        if not spec.strip():
            raise QueritInputError("query generator spec is empty; use 'terms' or a model path")
        if spec.strip().lower() in ("terms", "term", "tfidf"):
            return TermQueryGenerator, _check_options(TermQueryGenerator, dict(overrides))
        return Seq2SeqQueryGenerator, _check_options(Seq2SeqQueryGenerator, {"model_name_or_path": spec, **overrides})
    if isinstance(spec, Mapping):
        kwargs = {**dict(spec), **overrides}
        kind = str(kwargs.pop("type", "") or "").lower()
        if "model" in kwargs:
            kwargs["model_name_or_path"] = kwargs.pop("model")
        if kind in ("", "seq2seq", "model", "causal", "chat") and "model_name_or_path" in kwargs:
            return Seq2SeqQueryGenerator, _check_options(Seq2SeqQueryGenerator, kwargs)
        if kind in ("", "terms", "term", "tfidf"):
            for name in ("num_terms", "span_length"):
                if name in kwargs:
                    value = kwargs[name]
                    if not isinstance(value, (list, tuple)) or len(value) != 2:
                        raise QueritInputError(f"query generator option {name} must be [min, max], got {value!r}")
                    kwargs[name] = tuple(value)
            return TermQueryGenerator, _check_options(TermQueryGenerator, kwargs)
        raise QueritInputError(f"unknown query generator type {kind!r}; expected 'terms' or 'seq2seq'")
    raise QueritInputError(f"query generator spec must be a string or dict, got {type(spec).__name__}")


def _check_options(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` if every name is a parameter of ``cls``, else an error listing the unknown ones."""
    import inspect

    params = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise QueritInputError(f"query generator {cls.__name__} has no option(s) {unknown}; expected some of {params}")
    return kwargs
