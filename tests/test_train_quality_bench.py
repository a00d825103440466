"""benchmarks/train_quality.py's pure part: the fp32 vs fast comparison over seeds."""

import pytest


def _run(mode, fused, per_query):
    return {"mode": mode, "targets": {"t": {"fused": fused, "alone": fused, "per_query": {"fused": per_query,
                                                                                         "alone": per_query}}}}


def test_compare_paths_seed_means_spread_and_paired_test_over_seed_averaged_queries():
    from conftest import load_benchmark

    bench = load_benchmark("train_quality")
    off = [_run("off", 0.50, {"a": 0.4, "b": 0.6, "c": 0.5}), _run("off", 0.54, {"a": 0.5, "b": 0.6, "c": 0.52})]
    fast = [_run("auto", 0.51, {"a": 0.45, "b": 0.62, "c": 0.5}), _run("auto", 0.55, {"a": 0.4, "b": 0.7, "c": 0.5})]
    c = bench.compare_paths(off, fast, "t", "fused")
    assert c["fp32"] == pytest.approx(0.52) and c["fast"] == pytest.approx(0.53)
    assert c["fp32_sd"] == pytest.approx(0.02828, abs=1e-4)  # sample sd of 0.50 and 0.54
    assert c["delta_points"] == pytest.approx(1.0)
    from scipy.stats import ttest_rel

    # the queries' seed means: off a .45 b .6 c .51, fast a .425 b .66 c .5
    assert c["p_paired"] == pytest.approx(ttest_rel([0.45, 0.6, 0.51], [0.425, 0.66, 0.5]).pvalue)
    one = bench.compare_paths(off[:1], fast[:1], "t", "alone")
    assert one["fp32_sd"] == 0.0 and one["delta_points"] == pytest.approx(1.0)
