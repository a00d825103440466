"""Soft-label mining: columns, determinism, the bin sampler (hypothesis), real SIGKILL resume, multi-process shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from querit_st.utils import QueritInputError
from querit_st.mining import (
    MINED_COLUMNS,
    labelled_list,
    load_mined_dataset,
    mine_soft_labels,
    sample_across_bins,
    score_bins,
    to_listwise,
    to_pointwise,
    source_bonus_list,
    zscore_list,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(shared_data):
    from querit_st.data import load_corpus

    return load_corpus(shared_data / "xquad-r-en")


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emb_cache")


@pytest.fixture(scope="module")
def retriever(tiny_embedding_dir, emb_cache, corpus):
    from querit_st.retriever import DenseRetriever

    r = DenseRetriever(str(tiny_embedding_dir), cache_dir=emb_cache)
    r.index(corpus)
    return r


def _teacher():
    from querit_st.teachers import BM25Teacher

    return BM25Teacher(language="en")


def _rows(ds):
    return [dict(r) for r in ds]


# ---------------------------------------------------------------------------------------------------------- sampler
@settings(max_examples=500, deadline=None)
@given(
    scores=st.lists(st.integers(-20, 20), min_size=0, max_size=60).map(lambda xs: [x / 4 for x in xs]),
    num_candidates=st.integers(1, 24),
    num_bins=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_across_bins_properties(scores, num_candidates, num_bins, seed):
    idx = sample_across_bins(scores, num_candidates, num_bins, np.random.default_rng(seed))
    n = len(scores)
    assert idx.dtype == np.int64
    assert len(idx) == min(n, num_candidates)
    assert len(set(idx.tolist())) == len(idx)
    assert all(0 <= i < n for i in idx)
    if n == 0:
        return
    s = np.asarray(scores)
    assert idx[0] == int(np.argmax(s))  # the teacher's best, first
    # the first min(k, #non-empty bins) non-empty bins, from the top, each contribute a candidate
    bins = score_bins(s, num_bins)
    nonempty = sorted(set(bins.tolist()), reverse=True)
    picked = set(bins[idx].tolist())
    for b in nonempty[: min(len(idx), len(nonempty))]:
        assert b in picked
    # deterministic for the rng state
    again = sample_across_bins(scores, num_candidates, num_bins, np.random.default_rng(seed))
    assert idx.tolist() == again.tolist()


@settings(max_examples=500, deadline=None)
@given(
    scores=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40),
    num_candidates=st.integers(2, 10),
    data=st.data(),
)
def test_sample_across_bins_keeps_required(scores, num_candidates, data):
    r = data.draw(st.integers(0, len(scores) - 1))
    idx = sample_across_bins(scores, num_candidates, 16, np.random.default_rng(0), required=[r])
    assert r in idx.tolist() and int(np.argmax(scores)) in idx.tolist()
    assert len(idx) == min(len(scores), num_candidates)


def test_sample_across_bins_errors_and_edge_cases():
    rng = np.random.default_rng(0)
    assert sample_across_bins([], 4, 16, rng).tolist() == []
    assert sample_across_bins([1.0, 1.0, 1.0], 2, 16, rng).tolist()[0] == 0
    with pytest.raises(QueritInputError):
        sample_across_bins([1.0, float("nan")], 2, 16, rng)
    with pytest.raises(QueritInputError):
        sample_across_bins([1.0], 0, 16, rng)
    with pytest.raises(QueritInputError):
        sample_across_bins([1.0], 1, 0, rng)
    # spread: with 16 distinct bins, 8 candidates come from the top 8 bins (one each), not the top 8 scores
    s = np.repeat(np.arange(16.0), 3)
    idx = sample_across_bins(s, 8, 16, rng)
    assert sorted(set(s[idx].tolist()), reverse=True) == list(np.arange(15.0, 7.0, -1))


# ----------------------------------------------------------------------------------------------------- in memory
def _stage1_list_reference(t, ng, num_candidates, gold_bonus, rng):
    """Stage 1's per-query code as it was inlined in pipeline.pretrain_dataset (the reference for labelled_list)."""
    t = np.asarray(zscore_list(t))
    pool_len = len(t)
    neg_idx = sample_across_bins(t[ng:], max(num_candidates - ng, 1), 16, rng) if pool_len > ng else []
    keep = list(range(ng)) + [ng + int(i) for i in neg_idx]
    top_neg = t[ng:].max() if pool_len > ng else 0.0
    labels = [float(max(top_neg, t[i]) + gold_bonus) if i < ng else float(t[i]) for i in keep]
    return keep, labels


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(st.floats(-50, 50, allow_nan=False, width=32) | st.sampled_from([0.0, 1.0]), min_size=0, max_size=40),
    num_gold=st.integers(0, 6),
    num_candidates=st.integers(1, 20),
    gold_bonus=st.sampled_from([0.0, 0.5, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_labelled_list_equals_stage1_inline_code(scores, num_gold, num_candidates, gold_bonus, seed):
    """Same kept positions, bit-identical labels and the same RNG state afterwards (so later queries agree too)."""
    ng = min(num_gold, len(scores))
    r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
    want = _stage1_list_reference(scores, ng, num_candidates, gold_bonus, r1)
    got = labelled_list(scores, ng, num_candidates, r2, gold_bonus=gold_bonus)
    assert got[0] == want[0]
    assert [x.hex() for x in got[1]] == [x.hex() for x in want[1]]
    assert r1.integers(2**62) == r2.integers(2**62)
    keep, labels = got
    assert keep[:ng] == list(range(ng)) and len(set(keep)) == len(keep)
    if ng and len(keep) > ng:
        assert min(labels[:ng]) >= max(labels[ng:]) + gold_bonus - 1e-12


def test_columns_shapes_and_labels(corpus, retriever):
    from querit_st.data import doc_text

    teacher = _teacher()
    ds = mine_soft_labels(corpus, retriever, teacher, num_queries=12, top_k=20, num_candidates=6, shard_size=5,
                          show_progress_bar=False)
    assert ds.column_names == list(MINED_COLUMNS)
    assert len(ds) == 12
    hits = retriever.search({r["query_id"]: r["query"] for r in ds}, top_k=20)
    for row in ds:
        assert len(row["documents"]) == len(row["doc_ids"]) == len(row["scores"]) == 6
        assert len(set(row["doc_ids"])) == 6
        assert row["scores"] == sorted(row["scores"], reverse=True)
        assert all(doc_text(corpus[d]) == t for d, t in zip(row["doc_ids"], row["documents"]))
        assert row["source_doc_id"] in corpus and row["source_doc_id"] in row["doc_ids"]  # include_source_doc
        pool = list(hits[row["query_id"]]) + [row["source_doc_id"]]
        pool_scores = teacher.score([row["query"]] * len(pool), [doc_text(corpus[d]) for d in pool])
        assert row["scores"][0] == pytest.approx(pool_scores.max())  # the teacher's best is kept
        np.testing.assert_allclose(row["scores"], teacher.score([row["query"]] * 6, row["documents"]))

    lw = to_listwise(ds)
    assert lw.column_names == ["query", "documents", "scores"]
    pw = to_pointwise(ds)
    assert pw.column_names == ["query", "document", "score"] and len(pw) == 72
    from sentence_transformers.base.data_collator import DEFAULT_LABEL_COLUMNS

    assert lw.column_names[-1] in DEFAULT_LABEL_COLUMNS and pw.column_names[-1] in DEFAULT_LABEL_COLUMNS
    assert to_listwise(ds, label_column="label").column_names == ["query", "documents", "label"]
    z = to_listwise(ds, normalize="zscore")
    for raw, norm in zip(lw["scores"], z["scores"]):
        assert np.mean(norm) == pytest.approx(0.0, abs=1e-9) and np.std(norm) == pytest.approx(1.0)
        assert np.argsort(raw).tolist() == np.argsort(norm).tolist()  # same order, common scale
    assert zscore_list([2.0, 2.0]) == [0.0, 0.0]
    with pytest.raises(QueritInputError, match="normalize"):
        to_listwise(ds, normalize="minmax")
    # the source document (a label-free pseudo-positive) is lifted above the rest of its list, others unchanged
    b = to_listwise(ds, normalize="zscore", source_bonus=0.5)
    for row, norm, boosted in zip(ds, z["scores"], b["scores"]):
        i = row["doc_ids"].index(row["source_doc_id"])
        others = [x for j, x in enumerate(norm) if j != i]
        assert boosted[i] == pytest.approx(max(norm[i], max(others) + 0.5))
        assert [x for j, x in enumerate(boosted) if j != i] == pytest.approx(others)
    assert source_bonus_list([1.0, 3.0], ["a", "b"], "a", 1.0) == [4.0, 3.0]
    assert source_bonus_list([1.0, 3.0], ["a", "b"], None, 1.0) == [1.0, 3.0]  # given queries have no source
    assert source_bonus_list([1.0, 3.0], ["a", "b"], "z", 1.0) == [1.0, 3.0]
    with pytest.raises(QueritInputError, match="source_bonus"):
        to_listwise(ds, source_bonus=float("nan"))
    with pytest.raises(QueritInputError, match="source_bonus"):
        to_listwise(lw, source_bonus=1.0)  # no doc_ids / source_doc_id columns
    with pytest.raises(QueritInputError):
        to_pointwise(ds, label_column="target")
    with pytest.raises(QueritInputError):
        to_listwise(pw)


def test_given_queries_and_determinism(corpus, retriever):
    queries = {f"q{i}": q for i, q in enumerate(["Panthers defense points", "Kublai Khan invasion of Japan",
                                                  "Tesla alternating current", "Warsaw football league",
                                                  "oxygen discovery", "Black Death plague"])}
    kw = dict(queries=queries, top_k=30, num_candidates=8, shard_size=4, show_progress_bar=False)
    a = mine_soft_labels(corpus, retriever, _teacher(), seed=1, **kw)
    b = mine_soft_labels(corpus, retriever, _teacher(), seed=1, **kw)
    c = mine_soft_labels(corpus, retriever, _teacher(), seed=2, **kw)
    assert _rows(a) == _rows(b)
    assert [r["query_id"] for r in a] == list(queries)
    assert all(r["source_doc_id"] is None for r in a)
    assert [r["doc_ids"][0] for r in a] == [r["doc_ids"][0] for r in c]  # the best is always there
    assert _rows(a) != _rows(c)  # the rest of the sample depends on the seed
    # shard size does not change the rows (per-query RNG)
    d = mine_soft_labels(corpus, retriever, _teacher(), seed=1, **{**kw, "shard_size": 2})
    assert _rows(a) == _rows(d)


def test_bad_arguments(corpus, retriever):
    with pytest.raises(QueritInputError):
        mine_soft_labels(corpus, retriever, _teacher(), queries={"q": "x"}, num_candidates=0)
    with pytest.raises(QueritInputError):
        mine_soft_labels(corpus, retriever, _teacher(), queries={"q": ""})
    with pytest.raises(QueritInputError):
        mine_soft_labels(corpus, retriever, _teacher(), queries={"q": "x"}, num_shards_total=2, shard_index=0)
    with pytest.raises(QueritInputError):
        mine_soft_labels(corpus, None, _teacher(), queries={"q": "x"})
    with pytest.raises(QueritInputError):
        mine_soft_labels(corpus, retriever, "not a teacher", queries={"q": "x"})


# ------------------------------------------------------------------------------------------------------- on disk
def test_resume_config_mismatch_and_reset(corpus, retriever, tmp_path):
    out = tmp_path / "mined"
    kw = dict(num_queries=10, top_k=20, num_candidates=5, shard_size=3, output_dir=out, show_progress_bar=False)
    ref = mine_soft_labels(corpus, retriever, _teacher(), **kw)
    assert sorted(p.name for p in out.glob("shard-*.parquet")) == [f"shard-{k:05d}.parquet" for k in range(4)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] and len(manifest["complete"]) == 4 and manifest["num_shards"] == 4
    # a finished run is read back without scoring anything
    teacher = _teacher()
    again = mine_soft_labels(corpus, retriever, teacher, **kw)
    assert _rows(again) == _rows(ref) and teacher.cache_misses == 0
    assert _rows(load_mined_dataset(out)) == _rows(ref)
    # a different configuration is refused ...
    with pytest.raises(QueritInputError, match="different configuration"):
        mine_soft_labels(corpus, retriever, _teacher(), **{**kw, "num_candidates": 4})
    # ... unless resume=False, which clears the folder's mining files first
    (out / "notes.txt").write_text("kept")
    fresh = mine_soft_labels(corpus, retriever, _teacher(), **{**kw, "num_candidates": 4, "resume": False})
    assert all(len(r["doc_ids"]) == 4 for r in fresh)
    assert (out / "notes.txt").read_text() == "kept"
    # in-memory and on-disk runs give identical rows
    mem = mine_soft_labels(corpus, retriever, _teacher(), **{**kw, "output_dir": None})
    assert _rows(mem) == _rows(ref)


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import torch
    torch.set_num_threads(1)
    from querit_st.data import load_corpus
    from querit_st.mining import mine_soft_labels
    from querit_st.retriever import DenseRetriever
    from querit_st.teachers import BM25Teacher

    cfg = json.loads(sys.argv[1])
    corpus = load_corpus(cfg["data"])
    retriever = DenseRetriever(cfg["model"], cache_dir=cfg["cache"])
    teacher = BM25Teacher(language="en")
    if cfg.get("slow"):  # test instrumentation: make each shard take a while so the kill lands mid-run
        inner = teacher.score
        def slow_score(queries, documents):
            time.sleep(cfg["slow"])
            return inner(queries, documents)
        teacher.score = slow_score
    if cfg.get("slow_replace"):  # ... and every atomic rename wait, so a kill can land between a temp file and its rename
        real_replace = os.replace
        def slow_replace(src, dst):
            time.sleep(cfg["slow_replace"])
            real_replace(src, dst)
        os.replace = slow_replace
    print("started", flush=True)
    ds = mine_soft_labels(corpus, retriever, teacher, num_queries=cfg["num_queries"], top_k=cfg["top_k"],
                          num_candidates=cfg["num_candidates"], output_dir=cfg["out"], shard_size=cfg["shard_size"],
                          seed=cfg["seed"], show_progress_bar=False, num_shards_total=cfg.get("n", 1),
                          shard_index=cfg.get("i", 0))
    print(json.dumps({"rows": len(ds), "pairs_scored": teacher.cache_misses if not cfg.get("slow") else -1}),
          flush=True)
    """
)

_MINE_KW = dict(num_queries=60, top_k=25, num_candidates=8, shard_size=5, seed=7)


def _spawn(tmp_path, cfg):
    script = tmp_path / "mine_script.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))


def _cfg(shared_data, tiny_embedding_dir, emb_cache, out, **extra):
    return {"data": str(shared_data / "xquad-r-en"), "model": str(tiny_embedding_dir), "cache": str(emb_cache),
            "out": str(out), **_MINE_KW, **extra}


@pytest.fixture(scope="module")
def reference_rows(corpus, retriever):
    """The uninterrupted single-process run, in memory."""
    ds = mine_soft_labels(corpus, retriever, _teacher(), show_progress_bar=False, **_MINE_KW)
    assert len(ds) == 60
    return _rows(ds)


def test_sigkill_then_resume_equals_uninterrupted(
    shared_data, tiny_embedding_dir, emb_cache, corpus, retriever, reference_rows, tmp_path
):
    out = tmp_path / "mined"
    proc = _spawn(tmp_path, _cfg(shared_data, tiny_embedding_dir, emb_cache, out, slow=0.4))
    first = out / "shard-00000.parquet"
    deadline = time.monotonic() + 240
    try:
        while not first.exists():
            if proc.poll() is not None:
                pytest.fail(f"mining subprocess exited early: {proc.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("first shard never appeared")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = sorted(p.name for p in out.glob("shard-*.parquet"))
    assert 1 <= len(done) < 12, done  # killed mid-run
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["finished"]
    assert set(manifest["complete"]) <= set(done)  # the manifest never names a shard that is not on disk

    # start again (here in the test process; the killed one was a real separate process)
    teacher = _teacher()
    resumed = mine_soft_labels(corpus, retriever, teacher, output_dir=out, show_progress_bar=False, **_MINE_KW)
    # only the shards the killed run had not finished were scored (<= 26 candidates per query with the source doc)
    todo = 12 - len(manifest["complete"])
    assert 0 < teacher.cache_misses <= todo * 5 * 26
    assert _rows(resumed) == reference_rows  # no row lost, duplicated or changed
    assert _rows(load_mined_dataset(out)) == reference_rows
    assert json.loads((out / "manifest.json").read_text())["finished"]
    assert not list(out.glob(".*.tmp"))


def test_sigkill_three_times_at_random_moments_equals_uninterrupted(
    shared_data, tiny_embedding_dir, emb_cache, corpus, retriever, reference_rows, tmp_path
):
    """Three real SIGKILLs at seeded random moments (while scoring, between a temp file and its rename, between a
    shard and its manifest entry), each followed by a restart; the finished dataset equals the uninterrupted run."""
    import random

    out = tmp_path / "mined"
    rnd = random.Random(1207)
    slow, slow_replace = 0.3, 0.15
    period = slow + 2 * slow_replace  # one shard: scoring, then the shard's and the manifest's (slowed) renames
    killed_cfg = _cfg(shared_data, tiny_embedding_dir, emb_cache, out, slow=slow, slow_replace=slow_replace)
    done_after: list[int] = []
    for _ in range(3):
        # at least one new shard per run (progress), then a random phase of the next one; at most 3 * 3 < 12 shards
        wait_for = len(list(out.glob("shard-*.parquet"))) + rnd.randint(1, 2)
        delay = rnd.uniform(0.0, period)
        proc = _spawn(tmp_path, killed_cfg)
        deadline = time.monotonic() + 240
        try:
            while len(list(out.glob("shard-*.parquet"))) < wait_for:
                if proc.poll() is not None:
                    pytest.fail(f"mining subprocess exited early: {proc.communicate()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"shard {wait_for} never appeared")
                time.sleep(0.01)
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        on_disk = {p.name for p in out.glob("shard-*.parquet")}
        manifest = json.loads((out / "manifest.json").read_text())
        assert not manifest["finished"] and set(manifest["complete"]) <= on_disk  # never names a missing shard
        done_after.append(len(on_disk))
    assert done_after == sorted(set(done_after)) and 1 <= done_after[-1] < 12, done_after  # killed mid-run each time
    complete = len(json.loads((out / "manifest.json").read_text())["complete"])

    # the last restart (here, in the test process) runs to the end, scoring only what the killed runs had not finished
    teacher = _teacher()
    resumed = mine_soft_labels(corpus, retriever, teacher, output_dir=out, show_progress_bar=False, **_MINE_KW)
    assert 0 < teacher.cache_misses <= (12 - complete) * 5 * 26
    assert _rows(resumed) == _rows(load_mined_dataset(out))
    rows = _rows(resumed)
    ids = [r["query_id"] for r in rows]
    assert len(set(ids)) == len(ids) == 60 and ids == [r["query_id"] for r in reference_rows]  # none lost or twice
    assert rows == reference_rows
    assert json.loads((out / "manifest.json").read_text())["finished"]
    assert not list(out.glob(".*.tmp"))  # temp files of writes the kills interrupted are cleaned up


def test_multiprocess_shards_equal_single_process(
    shared_data, tiny_embedding_dir, emb_cache, corpus, retriever, reference_rows, tmp_path
):
    out = tmp_path / "mined"
    # worker 1 of 2 in a separate process, worker 0 here at the same time
    proc = _spawn(tmp_path, _cfg(shared_data, tiny_embedding_dir, emb_cache, out, n=2, i=1))
    try:
        part0 = mine_soft_labels(corpus, retriever, _teacher(), output_dir=out, show_progress_bar=False,
                                 num_shards_total=2, shard_index=0, **_MINE_KW)
    finally:
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert json.loads(stdout.strip().splitlines()[-1])["rows"] == 30
    assert len(part0) == 30 and [r["query_id"] for r in part0] == [
        r["query_id"] for k in range(0, 12, 2) for r in reference_rows[k * 5 : (k + 1) * 5]]
    assert sorted(p.name for p in out.glob("manifest*.json")) == [
        "manifest-worker000-of002.json", "manifest-worker001-of002.json"]
    assert len(list(out.glob("shard-*.parquet"))) == 12
    merged = load_mined_dataset(out)
    assert _rows(merged) == reference_rows


def test_load_mined_dataset_refuses_incomplete(corpus, retriever, tmp_path):
    out = tmp_path / "part"
    part = mine_soft_labels(corpus, retriever, _teacher(), num_queries=9, top_k=10, num_candidates=3, shard_size=3,
                            output_dir=out, num_shards_total=2, shard_index=1, show_progress_bar=False)
    assert len(part) == 3  # worker 1 of 2 mined shard 1 only
    with pytest.raises(QueritInputError, match="not complete"):
        load_mined_dataset(out)
    rest = mine_soft_labels(corpus, retriever, _teacher(), num_queries=9, top_k=10, num_candidates=3, shard_size=3,
                            output_dir=out, show_progress_bar=False)  # a single process fills the gaps
    assert len(rest) == 9 and _rows(load_mined_dataset(out)) == _rows(rest)
    with pytest.raises(QueritInputError):
        load_mined_dataset(tmp_path / "nothing")


def test_converted_datasets_train_with_the_soft_losses(corpus, retriever, tiny_cross_encoder_dir, tmp_path):
    """to_listwise / to_pointwise rows go through ST's own CrossEncoderDataCollator into the three losses."""
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    from querit_st.losses import ScoreGapHingeLoss, SoftLabelKLLoss, SoftLabelMSELoss

    ds = mine_soft_labels(corpus, retriever, _teacher(), num_queries=8, top_k=10, num_candidates=4,
                          show_progress_bar=False)
    model = CrossEncoder(str(tiny_cross_encoder_dir), max_length=64)
    for loss, train in ((SoftLabelKLLoss(model), to_listwise(ds)), (ScoreGapHingeLoss(model), to_listwise(ds)),
                        (SoftLabelMSELoss(model), to_pointwise(ds))):
        args = CrossEncoderTrainingArguments(
            output_dir=str(tmp_path / type(loss).__name__), max_steps=2, per_device_train_batch_size=4,
            report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True,
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=loss)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        assert len(losses) == 2 and all(np.isfinite(losses)), type(loss).__name__
