"""benchmarks/teacher_combinations.py's pure parts: per-query z-scores and nDCG@10 of every member combination."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench():
    from conftest import load_benchmark

    return load_benchmark("teacher_combinations")


def test_zscore_per_query_normalises_each_query_alone(bench):
    z = bench.zscore_per_query([1.0, 2.0, 3.0, 100.0, 100.0, 300.0], ["a", "a", "a", "b", "b", "b"])
    a, b = z[:3], z[3:]
    assert a.mean() == pytest.approx(0.0) and a.std() == pytest.approx(1.0)
    assert b.mean() == pytest.approx(0.0) and b.std() == pytest.approx(1.0)
    assert np.allclose(a, [-1.2247449, 0.0, 1.2247449])
    assert (bench.zscore_per_query([5.0, 5.0], ["c", "c"]) == 0).all()  # a constant query gives zeros


def test_combination_ndcg_sums_members(bench):
    groups = [("q1", "d1"), ("q1", "d2"), ("q1", "d3")]
    qrels = {"q1": {"d1": 1}}
    z = {"good": np.array([1.0, 0.0, -1.0]),   # ranks the relevant d1 first
         "bad": np.array([-3.0, 1.0, 2.0]),    # ranks it last
         "meh": np.array([0.0, 1.5, -1.0])}    # ranks it second
    out = bench.combination_ndcg(z, groups, qrels)
    assert len(out) == 7 and list(out.values()) == sorted(out.values(), reverse=True)
    assert out["good"] == 1.0
    assert out["meh"] == pytest.approx(1 / np.log2(3), abs=1e-4)
    assert out["bad"] == pytest.approx(0.5, abs=1e-4)                 # third place: 1 / log2(4)
    assert out["good+bad"] == pytest.approx(0.5, abs=1e-4)            # sums -2, 1, 1: d1 still last
    assert out["good+meh"] == pytest.approx(1 / np.log2(3), abs=1e-4)  # sums 1, 1.5, -2: d1 second
    assert out["good+bad+meh"] == pytest.approx(0.5, abs=1e-4)       # sums -2, 2.5, 0: d1 last
