"""Teachers: real pairs, cosine / BM25 maths, the pair cache, ensemble normalisation and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from querit_st.utils import QueritInputError
from querit_st.teachers import (
    BM25Teacher,
    CrossEncoderTeacher,
    EmbeddingTeacher,
    EnsembleTeacher,
    Teacher,
    normalize_group_scores,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The CI box has 2 cores shared by several workers: one thread is much faster than two fighting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def xquad_en(shared_data):
    from querit_st.data import load_beir

    return load_beir(shared_data / "xquad-r-en")


def _relevant_pairs(data, n=5):
    from querit_st.data import doc_text

    out = []
    for qid in list(data.qrels)[:n]:
        did = next(d for d, r in data.qrels[qid].items() if r > 0)
        out.append((data.queries[qid], doc_text(data.corpus[did])))
    return out


class FixedTeacher(Teacher):
    """A teacher with a lookup table; records every pair it is asked to score."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.seen: list[tuple[str, str]] = []

    def _score_pairs(self, queries, documents):
        self.seen.extend(zip(queries, documents))
        return [self.table[(q, d)] for q, d in zip(queries, documents)]


# ------------------------------------------------------------------------------------------------------------- BM25
def test_bm25_real_pairs_rank_relevant_above_random(xquad_en):
    from querit_st.data import doc_text

    texts = [doc_text(v) for v in xquad_en.corpus.values()]
    teacher = BM25Teacher(texts, language="en")
    pairs = _relevant_pairs(xquad_en, 8)
    rng = np.random.default_rng(0)
    randoms = [texts[int(i)] for i in rng.choice(len(texts), size=len(pairs), replace=False)]
    rel = teacher.score([q for q, _ in pairs], [d for _, d in pairs])
    rnd = teacher.score([q for q, _ in pairs], randoms)
    assert rel.shape == (len(pairs),) and rel.dtype == np.float64
    assert (rel > 0).all()
    assert rel.mean() > rnd.mean() + 1.0
    # indexed documents go through bm25s; the pure-python formula with the same statistics agrees
    for (q, d), s in zip(pairs, rel):
        assert s == pytest.approx(teacher.score_tokens(teacher.tokenize(q), teacher.tokenize(d)), rel=1e-5)


def test_bm25_unindexed_document_uses_corpus_statistics():
    teacher = BM25Teacher(["the cat sat", "the dog ran", "a bird flew"], language="en")
    # stopwords "the"/"a" removed: every corpus doc has 2 tokens -> avgdl = 2, N = 3, df(cat) = 1
    assert teacher.tokenize("The cats sat") == ["cat", "sat"]
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm = 1.5 * (1 - 0.75 + 0.75 * 3 / 2)
    expected = idf * 2 / (2 + norm)  # "cat cat dog": tf(cat) = 2, |d| = 3; "dog" is not in the query
    got = teacher.score(["cat"], ["cat cat dog"])[0]
    assert got == pytest.approx(expected, rel=1e-9)
    # a term unseen in the corpus has df = 0 and counts, with the corpus' N
    idf_new = math.log(1 + (3 + 0.5) / 0.5)
    assert teacher.score(["zebra"], ["zebra"])[0] == pytest.approx(idf_new * 1 / (1 + 1.5 * (1 - 0.75 + 0.75 / 2)))
    # an indexed document scores the same through bm25s as through the formula
    assert teacher.score(["cat"], ["the cat sat"])[0] == pytest.approx(
        teacher.score_tokens(["cat"], ["cat", "sat"]), rel=1e-6
    )


def test_bm25_languages(shared_data):
    de = BM25Teacher(language="de")
    assert de.tokenize("Häuser") == de.tokenize("Haus")
    ru = BM25Teacher(language="russian")
    assert ru.tokenize("защиты") == ru.tokenize("защита")
    zh = BM25Teacher(language="zh")  # no stemmer: CJK runs become character bigrams
    assert zh.tokenize("黑豹队 NFL") == ["黑豹", "豹队", "nfl"]

    from querit_st.data import doc_text, load_beir

    data = load_beir(shared_data / "xquad-r-zh")
    texts = [doc_text(v) for v in data.corpus.values()]
    zh.fit(texts)
    pairs = _relevant_pairs(data, 5)
    rel = zh.score([q for q, _ in pairs], [d for _, d in pairs])
    rnd = zh.score([q for q, _ in pairs], texts[-5:])
    assert rel.mean() > rnd.mean()


def test_bm25_unfitted_fits_on_first_call_and_prepare_fits():
    t = BM25Teacher(language="en")
    assert not t.is_fitted
    t.prepare(["alpha beta", "gamma delta"])
    assert t.is_fitted and t._num_docs == 2
    t.prepare(["other corpus"])  # prepare never refits a fitted teacher
    assert t._num_docs == 2
    u = BM25Teacher(language="en")
    s = u.score(["alpha"], ["alpha beta"])
    assert u.is_fitted and s[0] > 0


# -------------------------------------------------------------------------------------------------------- embedding
def test_embedding_teacher_cosine_equals_manual(tiny_embedding_dir):
    from sentence_transformers import SentenceTransformer

    queries = ["how many points", "who won the super bowl", "how many points"]
    docs = ["the defense gave up 308 points", "the broncos won the game", "a computer system"]
    teacher = EmbeddingTeacher(str(tiny_embedding_dir), cache_dir=False)
    got = teacher.score(queries, docs)
    st = SentenceTransformer(str(tiny_embedding_dir))
    st.max_seq_length = 256
    q = st.encode(queries, convert_to_numpy=True)
    d = st.encode(docs, convert_to_numpy=True)
    manual = (q * d).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(d, axis=1))
    np.testing.assert_allclose(got, manual, rtol=1e-5, atol=1e-6)

    # e5-style prompts are prepended to queries / passages
    e5 = EmbeddingTeacher(st, query_prompt="query: ", passage_prompt="passage: ")
    got = e5.score(queries[:2], docs[:2])
    q = st.encode(["query: " + x for x in queries[:2]])
    d = st.encode(["passage: " + x for x in docs[:2]])
    np.testing.assert_allclose(got, (q * d).sum(1), rtol=1e-5, atol=1e-6)


def test_embedding_teacher_reuses_retriever_index(tiny_embedding_dir, tmp_path):
    from querit_st.retriever import DenseRetriever

    corpus = {"a": "the defense gave up 308 points", "b": "the broncos won the game", "c": "a computer system"}
    retriever = DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path)
    retriever.index(corpus)
    teacher = EmbeddingTeacher(retriever)
    encoded: list[str] = []
    original = teacher._encode

    def spy(texts, prompt):
        encoded.extend(texts)
        return original(texts, prompt)

    teacher._encode = spy
    scores = teacher.score(["points", "points"], [corpus["a"], "a document outside the index"])
    assert encoded == ["points", "a document outside the index"]  # the indexed doc was not re-encoded
    q = retriever.encode_queries(["points"])[0]
    assert scores[0] == pytest.approx(float(q @ retriever.embeddings[0]), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- cross-encoder
def test_cross_encoder_teacher(tiny_cross_encoder_dir, xquad_en):
    import torch
    from sentence_transformers import CrossEncoder

    pairs = _relevant_pairs(xquad_en, 4)
    teacher = CrossEncoderTeacher(str(tiny_cross_encoder_dir), batch_size=2)
    got = teacher([q for q, _ in pairs], [d for _, d in pairs])
    ref = CrossEncoder(str(tiny_cross_encoder_dir)).predict(pairs, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(got, np.asarray(ref, dtype=np.float64), rtol=1e-4, atol=1e-5)
    sig = CrossEncoderTeacher(teacher.model, activation="sigmoid")
    s = sig.score([q for q, _ in pairs], [d for _, d in pairs])
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-got)), rtol=1e-4)
    with pytest.raises(QueritInputError):
        CrossEncoderTeacher(teacher.model, activation="softmax")


def test_cross_encoder_teacher_inference_mode(tiny_cross_encoder_dir, xquad_en):
    """``inference="onnx"`` scores like fp32 (ONNX Runtime, exact), is part of the fingerprint (labels scored in
    another mode are not reused), and leaves a caller's model as it was."""
    from sentence_transformers import CrossEncoder

    from querit_st.inference import inference_mode_of

    pairs = _relevant_pairs(xquad_en, 6)
    qs, ds = [q for q, _ in pairs], [d for _, d in pairs]
    fp32 = CrossEncoderTeacher(str(tiny_cross_encoder_dir))
    onnx = CrossEncoderTeacher(str(tiny_cross_encoder_dir), inference="onnx")
    assert onnx.inference == "onnx" and inference_mode_of(onnx.model) == "onnx"
    np.testing.assert_allclose(onnx.score(qs, ds), fp32.score(qs, ds), rtol=1e-4, atol=1e-4)
    assert onnx.fingerprint()["inference"] == "onnx" and "inference" not in fp32.fingerprint()
    assert onnx.fingerprint()["model"] == fp32.fingerprint()["model"]
    given = CrossEncoder(str(tiny_cross_encoder_dir))
    in_memory = CrossEncoderTeacher(given, inference="onnx")
    assert inference_mode_of(given) is None and in_memory.model is not given
    assert in_memory.fingerprint() == {**CrossEncoderTeacher(given).fingerprint(), "inference": "onnx"}
    with pytest.raises(QueritInputError, match="inference must be one of"):
        CrossEncoderTeacher(given, inference="fast")


def test_fingerprints_of_in_memory_models_are_content_based(tiny_cross_encoder_dir, tiny_embedding_dir):
    """Mining's config hash must match across processes, so in-memory models are identified by their weights."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    a = CrossEncoderTeacher(CrossEncoder(str(tiny_cross_encoder_dir))).fingerprint()
    b = CrossEncoderTeacher(CrossEncoder(str(tiny_cross_encoder_dir))).fingerprint()
    assert a == b and a["model"].startswith("weights-")
    other = CrossEncoder(str(tiny_cross_encoder_dir))
    with torch_no_grad():
        next(other.parameters()).add_(1.0)
    assert CrossEncoderTeacher(other).fingerprint() != a
    e1 = EmbeddingTeacher(SentenceTransformer(str(tiny_embedding_dir))).fingerprint()
    e2 = EmbeddingTeacher(SentenceTransformer(str(tiny_embedding_dir))).fingerprint()
    assert e1 == e2


def torch_no_grad():
    import torch

    return torch.no_grad()


# ------------------------------------------------------------------------------------------------------------ cache
def test_cache_never_scores_a_pair_twice():
    table = {("q1", "a"): 1.0, ("q1", "b"): 2.0, ("q2", "a"): 3.0}
    t = FixedTeacher(table)
    s = t.score(["q1", "q1", "q2", "q1"], ["a", "b", "a", "a"])
    np.testing.assert_array_equal(s, [1.0, 2.0, 3.0, 1.0])
    assert (t.cache_misses, t.cache_hits) == (3, 1)
    s = t.score(["q2", "q1"], ["a", "b"])
    np.testing.assert_array_equal(s, [3.0, 2.0])
    assert (t.cache_misses, t.cache_hits) == (3, 3)
    assert sorted(t.seen) == sorted(set(t.seen)) and len(t.seen) == 3

    bm25 = BM25Teacher(["the cat sat", "the dog ran"], language="en")
    bm25.score(["cat", "dog"], ["the cat sat", "the dog ran"])
    bm25.score(["cat", "dog"], ["the cat sat", "the dog ran"])
    assert (bm25.cache_misses, bm25.cache_hits) == (2, 2)


# --------------------------------------------------------------------------------------------------------- ensemble
def test_ensemble_zscore_math_by_hand():
    # query q1 has three candidates, q2 two; pairs are interleaved to check grouping by query
    t1 = FixedTeacher({("q1", "a"): 1.0, ("q1", "b"): 2.0, ("q1", "c"): 3.0, ("q2", "a"): 5.0, ("q2", "b"): 5.0})
    t2 = FixedTeacher({("q1", "a"): 10.0, ("q1", "b"): 10.0, ("q1", "c"): 40.0, ("q2", "a"): 0.0, ("q2", "b"): 2.0})
    ens = EnsembleTeacher([t1, t2], weights=[0.75, 0.25])
    queries = ["q1", "q2", "q1", "q2", "q1"]
    docs = ["a", "a", "b", "b", "c"]
    got = ens.score(queries, docs)
    # q1: t1 z = [-1.2247, 0, 1.2247] (std sqrt(2/3)); t2: mean 20, std sqrt(200) -> [-0.7071, -0.7071, 1.4142]
    z1 = np.array([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3)
    z2 = np.array([-10.0, -10.0, 20.0]) / math.sqrt(200)
    q1 = 0.75 * z1 + 0.25 * z2
    # q2: t1 constant -> 0; t2 [0, 2] -> [-1, 1]
    q2 = 0.75 * np.zeros(2) + 0.25 * np.array([-1.0, 1.0])
    expected = np.array([q1[0], q2[0], q1[1], q2[1], q1[2]])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert got[0] == pytest.approx(0.75 * -1.224744871 + 0.25 * -0.707106781, abs=1e-8)

    # equal weights by default; members keep caching
    eq = EnsembleTeacher([t1, t2])
    np.testing.assert_allclose(eq.score(queries, docs), (np.array([z1[0], 0, z1[1], 0, z1[2]])
                                                         + np.array([z2[0], -1, z2[1], 1, z2[2]])) / 2, atol=1e-12)
    assert eq.cache_hits >= 10


def test_group_normalisations():
    s = np.array([1.0, 3.0, 2.0, 3.0])
    np.testing.assert_allclose(normalize_group_scores(s, "minmax"), [0.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(normalize_group_scores(s, "rank"), [0.0, 2.5 / 3, 1 / 3, 2.5 / 3])
    np.testing.assert_allclose(normalize_group_scores(s, "zscore"), (s - 2.25) / s.std())
    np.testing.assert_allclose(normalize_group_scores(np.array([4.0, 4.0]), "zscore"), [0.0, 0.0])
    np.testing.assert_allclose(normalize_group_scores(np.array([4.0, 4.0]), "minmax"), [0.5, 0.5])
    np.testing.assert_allclose(normalize_group_scores(np.array([7.0]), "rank"), [0.5])
    with pytest.raises(QueritInputError):
        normalize_group_scores(s, "softmax")

    t = FixedTeacher({("q", "a"): 1.0, ("q", "b"): 3.0, ("q", "c"): 2.0})
    ens = EnsembleTeacher([t], normalization="minmax")
    np.testing.assert_allclose(ens.score(["q", "q", "q"], ["a", "b", "c"]), [0.0, 1.0, 0.5])
    # explicit groups override grouping by query text
    np.testing.assert_allclose(ens.score(["q", "q", "q"], ["a", "b", "c"], groups=[0, 0, 1]), [0.0, 1.0, 0.5])


def test_ensemble_of_real_teachers(xquad_en, tiny_embedding_dir):
    from querit_st.data import doc_text

    texts = [doc_text(v) for v in xquad_en.corpus.values()]
    bm25 = BM25Teacher(texts, language="en")
    emb = EmbeddingTeacher(str(tiny_embedding_dir), cache_dir=False)
    ens = EnsembleTeacher([bm25, emb], weights=[2.0, 1.0])
    pairs = _relevant_pairs(xquad_en, 3)
    q = [pairs[0][0]] * 3
    d = [p[1] for p in pairs]
    s = ens(q, d)
    zb = normalize_group_scores(bm25.score(q, d))
    ze = normalize_group_scores(emb.score(q, d))
    np.testing.assert_allclose(s, 2 * zb + ze, atol=1e-9)


# ------------------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "queries, docs, match",
    [
        (None, ["a"], "queries is None"),
        (["a"], None, "documents is None"),
        ("abc", ["a"], "single string"),
        (["a", "b"], ["x"], "same length"),
        (["a", ""], ["x", "y"], r"queries\[1\] is empty"),
        (["a", None], ["x", "y"], r"queries\[1\] is None"),
        (["a", "b"], ["x", 3], r"documents\[1\] must be a string"),
        (["a", "b"], ["x", "   "], r"documents\[1\] is empty"),
    ],
)
def test_bad_inputs(queries, docs, match):
    t = BM25Teacher(["some text here", "more words"], language="en")
    with pytest.raises(QueritInputError, match=match):
        t.score(queries, docs)
    with pytest.raises(QueritInputError, match=match):
        EnsembleTeacher([t]).score(queries, docs)


def test_bad_constructor_arguments():
    t = BM25Teacher(["a b"], language="en")
    with pytest.raises(QueritInputError):
        EnsembleTeacher([])
    with pytest.raises(QueritInputError):
        EnsembleTeacher([t, t], weights=[1.0])
    with pytest.raises(QueritInputError):
        EnsembleTeacher([object()])
    with pytest.raises(QueritInputError):
        EnsembleTeacher([t], normalization="softmax")
    with pytest.raises(QueritInputError):
        BM25Teacher(language="")
    with pytest.raises(QueritInputError):
        BM25Teacher([], language="en")


def test_accepts_keyword_named_and_var_keyword():
    from querit_st.utils import accepts_keyword

    def named(pairs, instruction=None): ...
    def loose(pairs, **kwargs): ...

    assert accepts_keyword(named, "instruction") and not accepts_keyword(named, "groups")
    assert not accepts_keyword(loose, "instruction")  # a **kwargs that might forward it elsewhere is not enough ...
    assert accepts_keyword(loose, "instruction", var_keyword=True)  # ... unless the caller says it is
    assert accepts_keyword(max, "key") is False  # a builtin without a readable signature: not assumed
