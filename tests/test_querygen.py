"""Synthetic queries: determinism, dedup, filtering, language kept, seq2seq / chat plumbing, the factory."""

from __future__ import annotations

import re
import unicodedata

import pytest

from querit_st.utils import QueritInputError
from querit_st.querygen import (
    CorpusStats,
    QueryFilter,
    Seq2SeqQueryGenerator,
    TermQueryGenerator,
    make_query_generator,
    normalize_query,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CITIES = ["oxford", "paris", "berlin", "tokyo", "moscow", "lima", "cairo", "delhi", "quito", "oslo"]


def _toy_corpus(n=30):
    topics = ["magnetic field measurement", "electric circuit design", "wave frequency theory",
              "linear equation method", "temperature of superconductors", "power system stability"]
    return {
        f"d{i}": f"the study of {topics[i % len(topics)]} and the results of experiment {i} in the laboratory of "
                 f"{CITIES[i % len(CITIES)]} with {i * 7} samples"
        for i in range(n)
    }


@pytest.fixture(scope="module")
def corpora(shared_data):
    from querit_st.data import load_corpus

    return {lang: load_corpus(shared_data / f"xquad-r-{lang}") for lang in ("en", "de", "zh", "ru")}


def test_deterministic_for_a_seed_and_seed_matters(corpora):
    corpus = corpora["en"]
    a = TermQueryGenerator(seed=3).generate(corpus, num_queries_per_doc=2, max_docs=40)
    b = TermQueryGenerator(seed=3).generate(corpus, num_queries_per_doc=2, max_docs=40)
    c = TermQueryGenerator(seed=4).generate(corpus, num_queries_per_doc=2, max_docs=40)
    assert a == b
    assert a != c
    assert 40 <= len(a) <= 80
    ids = [r["query_id"] for r in a]
    assert len(ids) == len(set(ids))
    per_doc: dict[str, int] = {}
    for r in a:
        assert set(r) == {"query_id", "query", "doc_id"} and r["doc_id"] in corpus
        per_doc[r["doc_id"]] = per_doc.get(r["doc_id"], 0) + 1
    assert len(per_doc) <= 40 and max(per_doc.values()) <= 2
    # a document's queries do not depend on which other documents are in the sample (per-doc RNG)
    one = next(iter(per_doc))
    solo = TermQueryGenerator(seed=3).generate({**corpus}, num_queries_per_doc=2)
    assert [r["query"] for r in solo if r["doc_id"] == one][:1] == [r["query"] for r in a if r["doc_id"] == one][:1]


@pytest.mark.parametrize("strategy", ["terms", "span", "mixed"])
def test_strategies_and_dedup(strategy):
    corpus = _toy_corpus()
    corpus.update({f"dup{i}": corpus["d0"] for i in range(5)})  # identical documents -> identical candidate queries
    out = TermQueryGenerator(strategy=strategy, seed=0).generate(corpus, num_queries_per_doc=3)
    norms = [normalize_query(r["query"]) for r in out]
    assert len(norms) == len(set(norms)) and len(out) > 30
    for r in out:
        doc_words = set(normalize_query(corpus[r["doc_id"]]).split())
        assert set(normalize_query(r["query"]).split()) <= doc_words
    if strategy == "span":  # spans are contiguous in the document
        for r in out:
            assert normalize_query(r["query"]) in normalize_query(corpus[r["doc_id"]])
    if strategy == "terms":
        # corpus-derived stopwords (df > 30 %: "the", "of", "and", ...) are never picked as salient terms
        stats = CorpusStats.fit(list(corpus.values()))
        assert stats.is_stopword("the") and stats.is_stopword("of") and not stats.is_stopword("oxford")
        for r in out:
            assert not any(stats.is_stopword(w) for w in normalize_query(r["query"]).split())


def test_filtering_of_trivial_queries():
    corpus = _toy_corpus()
    stats = CorpusStats.fit(list(corpus.values()))
    f = QueryFilter(stats)
    doc = corpus["d1"]
    assert f.why_rejected("", doc) == "empty"
    assert f.why_rejected("magnetic", doc) == "too_short"
    assert f.why_rejected("the of and 123", doc) == "only_stopwords"
    assert f.why_rejected(doc.upper() + " !", doc) == "whole_document"
    assert f.accept("electric circuit design", doc)
    assert f.why_rejected("Electric  circuit, design", doc) == "duplicate"

    # documents whose every possible query is trivial produce none
    tricky = dict(corpus)
    tricky["stop"] = "the of the of and 12 34"
    tricky["short"] = "superconductivity"
    tricky["two"] = "zirconium hafnium"  # any query would be the whole document
    out = TermQueryGenerator(seed=0).generate(tricky, num_queries_per_doc=2)
    assert not [r for r in out if r["doc_id"] in ("stop", "short", "two")]
    raw = TermQueryGenerator(seed=0, filter=False).generate(tricky, num_queries_per_doc=2)
    assert len(raw) >= len(out)


def _words(text):
    return set(normalize_query(text).split())


def test_language_kept_german_russian(corpora):
    for lang, script in (("de", None), ("ru", re.compile("[\u0400-\u04ff]"))):
        corpus = corpora[lang]
        out = TermQueryGenerator(seed=0).generate(corpus, num_queries_per_doc=1, max_docs=40)
        assert len(out) >= 30
        for r in out:
            src = corpus[r["doc_id"]]["text"]
            assert _words(r["query"]) <= _words(src), (lang, r)
        if script is not None:
            assert sum(bool(script.search(r["query"])) for r in out) >= 0.9 * len(out)
    # German umlauts / ß survive untouched
    de_out = TermQueryGenerator(seed=1).generate(corpora["de"], num_queries_per_doc=2, max_docs=100)
    assert any(re.search("[äöüÄÖÜß]", r["query"]) for r in de_out)


def test_language_kept_chinese_character_mode(corpora):
    corpus = corpora["zh"]
    out = TermQueryGenerator(seed=0).generate(corpus, num_queries_per_doc=2, max_docs=40)
    assert len(out) >= 40
    han = re.compile("[\u4e00-\u9fff]")
    for r in out:
        src = unicodedata.normalize("NFKC", corpus[r["doc_id"]]["text"])
        chars = [c for c in r["query"] if not c.isspace()]
        assert chars and all(c in src for c in chars), r
        assert han.search(r["query"])
        # character n-gram pieces: every space-separated piece occurs contiguously in the document
        for piece in r["query"].split():
            assert piece in src, (piece, r)
    # Chinese text is not split into whitespace words: spans are character windows
    spans = TermQueryGenerator(strategy="span", seed=0).generate(corpus, max_docs=20)
    assert any(" " not in r["query"] and len(r["query"]) >= 4 for r in spans)


def test_input_validation():
    g = TermQueryGenerator()
    with pytest.raises(QueritInputError):
        g.generate(None)
    with pytest.raises(QueritInputError):
        g.generate({})
    with pytest.raises(QueritInputError, match="corpus\\['b'\\]"):
        g.generate({"a": "some text here", "b": "  "})
    with pytest.raises(QueritInputError):
        g.generate(["a b c d"], num_queries_per_doc=0)
    with pytest.raises(QueritInputError):
        TermQueryGenerator(strategy="questions")
    with pytest.raises(QueritInputError):
        TermQueryGenerator(num_terms=(4, 2))
    # a list corpus gets ids "0", "1", ...
    out = TermQueryGenerator().generate([v for v in _toy_corpus().values()])
    assert {r["doc_id"] for r in out} <= {str(i) for i in range(30)}


# ------------------------------------------------------------------------------------------------- model generators
_WORDS = ("field measurement magnetic electric circuit design wave frequency theory linear equation method "
          "temperature power system stability results laboratory samples experiment query search what how").split()


def _word_level_tokenizer(folder, chat_template=None):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in _WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(folder)
    return len(vocab)


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny_t5")
    n = _word_level_tokenizer(folder)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=n, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny_chat")
    template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                "{% if add_generation_prompt %}<|assistant|> query {% endif %}")
    n = _word_level_tokenizer(folder, chat_template=template)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=n, n_positions=512, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1,
                     pad_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder


def test_seq2seq_t5_plumbing(tiny_t5_dir):
    corpus = _toy_corpus(24)
    gen = Seq2SeqQueryGenerator(str(tiny_t5_dir), max_new_tokens=6, num_return_sequences=2, batch_size=5, seed=0,
                                generation_kwargs={"min_new_tokens": 3, "bad_words_ids": [[0], [2]]})
    assert gen.is_seq2seq and not gen.use_chat_template
    assert gen.format_prompt("abc") == "Generate a search query for this passage: abc"
    raw = gen.generate(corpus, num_queries_per_doc=2, filter=False)
    assert len(raw) == 48  # unfiltered: every generation is kept (min_new_tokens makes them non-empty)
    assert all(r["query"] and set(r["query"].split()) <= set(_WORDS) for r in raw)
    assert raw == gen.generate(corpus, num_queries_per_doc=2, filter=False)  # seeded sampling repeats
    kept = gen.generate(corpus, num_queries_per_doc=2)
    norms = [normalize_query(r["query"]) for r in kept]
    assert len(norms) == len(set(norms)) and len(kept) <= len(raw)
    assert {(r["doc_id"], r["query"]) for r in kept} <= {(r["doc_id"], r["query"]) for r in raw}
    assert all(QueryFilter(CorpusStats()).why_rejected(r["query"], "") in (None, "duplicate") for r in kept)
    # greedy decoding with several queries per document switches to beam search (distinct sequences)
    greedy = Seq2SeqQueryGenerator(str(tiny_t5_dir), max_new_tokens=4, do_sample=False,
                                   generation_kwargs={"min_new_tokens": 2, "bad_words_ids": [[0], [2]]})
    g = greedy.generate(_toy_corpus(4), num_queries_per_doc=2, filter=False)
    assert len(g) == 8 and g == greedy.generate(_toy_corpus(4), num_queries_per_doc=2, filter=False)


def test_chat_model_plumbing(tiny_chat_dir):
    gen = Seq2SeqQueryGenerator(str(tiny_chat_dir), max_new_tokens=5, max_doc_chars=200, seed=1,
                                generation_kwargs={"min_new_tokens": 2, "bad_words_ids": [[0], [2]]})
    assert not gen.is_seq2seq and gen.use_chat_template
    prompt = gen.format_prompt("magnetic field")
    assert prompt.startswith("<|user|>") and "same language as the document" in prompt
    assert prompt.rstrip().endswith("<|assistant|> query")
    raw = gen.generate(_toy_corpus(6), filter=False)
    assert len(raw) == 6 and all(r["query"] for r in raw)
    assert Seq2SeqQueryGenerator.clean('Query: "magnetic field"\nmore') == "magnetic field"


def test_make_query_generator(tiny_t5_dir):
    assert isinstance(make_query_generator("terms"), TermQueryGenerator)
    assert isinstance(make_query_generator(None), TermQueryGenerator)
    g = make_query_generator({"type": "terms", "seed": 5, "num_terms": [2, 3]})
    assert isinstance(g, TermQueryGenerator) and g.seed == 5 and g.num_terms == (2, 3)
    s = make_query_generator(str(tiny_t5_dir))
    assert isinstance(s, Seq2SeqQueryGenerator)
    s2 = make_query_generator({"model": str(tiny_t5_dir), "max_new_tokens": 4})
    assert isinstance(s2, Seq2SeqQueryGenerator) and s2.max_new_tokens == 4
    assert make_query_generator(g) is g
    with pytest.raises(QueritInputError):
        make_query_generator({"type": "magic"})
    with pytest.raises(QueritInputError):
        make_query_generator("  ")
