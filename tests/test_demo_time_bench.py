"""benchmarks/demo_time.py's pure parts: what of the cache the second run keeps."""

import argparse

import pytest


@pytest.fixture(scope="module")
def bench():
    from conftest import load_benchmark

    return load_benchmark("demo_time")


def test_keep_names_cache_parts(bench):
    assert bench.parse_keep("stage1, backbones") == ["stage1", "backbones"]
    with pytest.raises(argparse.ArgumentTypeError, match="'stage-1'.*stage1, embeddings, scores, backbones"):
        bench.parse_keep("stage1,stage-1")


def test_prune_cache_keeps_only_the_named_parts(bench, tmp_path):
    cache = tmp_path / "cache"
    for part in ("stage1", "embeddings", "scores", "backbones"):
        (cache / part).mkdir(parents=True)
        (cache / part / "x").write_text("1")
    (cache / "stray.lock").write_text("")
    assert bench.prune_cache(cache, ["stage1", "backbones"]) == ["embeddings", "scores", "stray.lock"]
    assert sorted(p.name for p in cache.iterdir()) == ["backbones", "stage1"]
    assert (cache / "stage1" / "x").read_text() == "1"
    assert bench.prune_cache(tmp_path / "missing", ["stage1"]) == []


def test_work_folder_with_content_is_refused_before_anything_runs(bench, tmp_path, shared_data):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        bench.main(["--data", str(shared_data), "--work", str(tmp_path)])
    assert (tmp_path / "keep.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
