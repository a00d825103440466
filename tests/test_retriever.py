"""DenseRetriever: BEIR-style results, chunked exact search, the embedding cache, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from querit_st import DenseRetriever, load_beir
from querit_st.utils import QueritInputError
from querit_st.retriever import exact_topk

CORPUS = {
    "d1": {"title": "magnetic", "text": "the magnetic field of a current"},
    "d2": {"title": "", "text": "super bowl football league points"},
    "d3": {"title": "energy", "text": "energy of a wave in a circuit"},
    "d4": {"title": "", "text": "city university school national"},
}


@pytest.fixture()
def retriever(tiny_embedding_dir, tmp_path) -> DenseRetriever:
    return DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path / "cache")


def test_search_returns_beir_results(retriever):
    retriever.index(CORPUS)
    res = retriever.search({"q1": "magnetic current", "q2": "football points"}, top_k=3)
    assert set(res) == {"q1", "q2"} and all(len(v) == 3 for v in res.values())
    q = retriever.encode_queries(["magnetic current"])[0]
    manual = retriever.embeddings @ q
    best = retriever.doc_ids[int(np.argmax(manual))]
    assert max(res["q1"], key=res["q1"].get) == best
    assert abs(res["q1"][best] - float(manual.max())) < 1e-5
    assert len(retriever.search(["x y"], top_k=100)["0"]) == 4  # capped at corpus size


def test_cache_reused_and_invalidated(retriever, tmp_path):
    retriever.index(CORPUS)
    assert not retriever.last_index_from_cache
    first = retriever.embeddings.copy()
    retriever.index(CORPUS)
    assert retriever.last_index_from_cache
    np.testing.assert_array_equal(first, retriever.embeddings)
    changed = dict(CORPUS, d4={"title": "", "text": "a different document about temperature"})
    retriever.index(changed)
    assert not retriever.last_index_from_cache
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_corrupt_cache_is_reencoded(retriever, tmp_path):
    retriever.index(CORPUS)
    (f,) = list((tmp_path / "cache").glob("*.npy"))
    f.write_bytes(f.read_bytes()[:40])  # a torn write
    retriever.index(CORPUS)
    assert not retriever.last_index_from_cache and retriever.embeddings.shape[0] == 4


_KILL_SCRIPT = """
import json, os, sys, time
import torch
torch.set_num_threads(1)
from querit_st.retriever import DenseRetriever

model, cache, corpus = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
real_replace = os.replace
def stalled_replace(src, dst):  # test instrumentation: the cache's bytes are in the temp file, the rename is pending
    print("writing", flush=True)
    time.sleep(60)
    real_replace(src, dst)
os.replace = stalled_replace
DenseRetriever(model, cache_dir=cache).index(corpus)
"""


def test_cache_killed_mid_write_is_never_read_back(tiny_embedding_dir, tmp_path):
    """A real SIGKILL while the embedding cache is being written: the cache path never holds a partial file, and the
    next index() re-encodes (then caches) instead of reading anything damaged."""
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    big = {f"x{i}": f"document {i} about {CORPUS[f'd{i % 4 + 1}']['text']}" for i in range(400)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tiny_embedding_dir), str(cache), json.dumps(big)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "writing", proc.communicate(timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not list(cache.glob("*.npy"))  # only the temp file is left: the final name never sees partial bytes
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")]
    r = DenseRetriever(str(tiny_embedding_dir), cache_dir=cache)
    r.index(big)
    assert not r.last_index_from_cache and r.embeddings.shape[0] == 400
    again = DenseRetriever(str(tiny_embedding_dir), cache_dir=cache)
    again.index(big)
    assert again.last_index_from_cache
    np.testing.assert_array_equal(again.embeddings, r.embeddings)


def test_exact_topk_chunked_equals_full():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(103, 8)).astype(np.float32)
    s1, i1 = exact_topk(q, d, 10, chunk_size=7)
    s2, i2 = exact_topk(q, d, 10, chunk_size=1000)
    np.testing.assert_array_equal(i1, i2)
    full = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(i1, full)


def test_bad_input(retriever):
    with pytest.raises(QueritInputError, match="empty"):
        retriever.index({})
    with pytest.raises(QueritInputError, match="before index"):
        DenseRetriever.search(retriever, ["q"])
    with pytest.raises(QueritInputError, match=r"corpus\['x'\]"):
        retriever.index({"x": {"title": "", "text": ""}})
    retriever.index(CORPUS)
    with pytest.raises(QueritInputError, match=r"queries\['q'\]"):
        retriever.search({"q": ""})
    with pytest.raises(QueritInputError, match="top_k"):
        retriever.search({"q": "a"}, top_k=0)
    with pytest.raises(QueritInputError):
        DenseRetriever("")


def test_real_beir_folder_retrieval(tiny_embedding_dir, shared_data, tmp_path):
    from querit_st.evaluation import evaluate_reranking

    data = load_beir(shared_data / "xquad-r-en", split="test")
    assert len(data.queries) == 265 and data.checksum
    rep = evaluate_reranking(data, DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path), top_k=100, max_queries=40)
    assert 0.0 <= rep["retriever"]["nDCG@10"] <= 1.0 and rep["num_queries"] == 40


def test_candidate_pool_rule():
    """The one hits -> pool rule: decreasing score, ties in the hits' order, cut at top_k, then filters; str ids."""
    from querit_st.retriever import candidate_pool

    hits = {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.5, 7: 0.3}
    assert candidate_pool(hits) == ["b", "c", "d", "7", "a"]
    assert candidate_pool(hits, 3) == ["b", "c", "d"]
    assert candidate_pool(hits, 3, known={"b", "d", "a"}) == ["b", "d"]  # cut first, then filtered: shorter pool
    assert candidate_pool(hits, 4, exclude={"b"}) == ["c", "d", "7"]
    assert candidate_pool(hits, 2, with_scores=True) == [("b", 0.9), ("c", 0.5)]
    assert candidate_pool({}, 5) == []
    # equal to the three places that had their own copy (mining, collator, evaluation)
    for k in (1, 3, 10):
        ranked = sorted(hits.items(), key=lambda kv: -kv[1])[:k]
        assert candidate_pool(hits, k) == [str(d) for d, _ in ranked]
        assert candidate_pool(hits, k, with_scores=True) == [(str(d), s) for d, s in ranked]


def test_index_uses_the_shared_corpus_checks(retriever):
    with pytest.raises(QueritInputError, match="None"):
        retriever.index(None)
    with pytest.raises(QueritInputError, match="single string"):
        retriever.index("one document")
    retriever.index(["first text here", "second text there"])
    assert retriever.doc_ids == ["0", "1"] and retriever.embeddings.shape[0] == 2
    np.testing.assert_array_equal(retriever.encode([retriever.passage_prompt + "x"]), retriever.encode_passages(["x"]))
    np.testing.assert_array_equal(retriever.encode([retriever.query_prompt + "x"]), retriever.encode_queries(["x"]))


def test_precision_bf16_is_close_to_fp32_and_cached_apart(tiny_embedding_dir, tmp_path, monkeypatch):
    import querit_st.retriever as retriever_module

    fp32 = DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path / "c", precision="fp32").index(CORPUS)
    bf16 = DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path / "c", precision="bf16").index(CORPUS)
    assert not bf16.last_index_from_cache  # bf16 embeddings never stand in for fp32 ones (nor the reverse)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2
    assert bf16.embeddings.dtype == np.float32
    cos = (fp32.embeddings * bf16.embeddings).sum(1)
    assert cos.min() > 0.99, cos
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(retriever_module, "native_bf16", lambda native=native: native)
        assert DenseRetriever(str(tiny_embedding_dir), cache_dir=False).precision == expected
    with pytest.raises(QueritInputError, match="precision must be one of"):
        DenseRetriever(str(tiny_embedding_dir), precision="int4")
