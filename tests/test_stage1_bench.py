"""benchmarks/stage1.py's pure part: per-target table, means and paired tests over the pooled queries."""

import pytest


def _dataset(name, per_query):
    results = {x: {"nDCG@10": sum(v.values()) / len(v)} for x, v in per_query.items()}
    results["retriever"]["Recall@20"] = 0.9
    return {"name": name, "results": results, "per_query_nDCG@10": per_query}


def test_summarise_targets_means_recall_and_paired_tests():
    from scipy.stats import ttest_rel

    from conftest import load_benchmark

    bench = load_benchmark("stage1")
    a = {"retriever": {"1": 0.5, "2": 0.3}, "stage1": {"1": 0.7, "2": 0.4}, "stage1 (no fusion)": {"1": 0.6, "2": 0.5},
         "small": {"1": 0.6, "2": 0.3}, "small (no fusion)": {"1": 0.6, "2": 0.2}}
    b = {"retriever": {"1": 0.8, "2": 0.2}, "stage1": {"1": 0.9, "2": 0.2}, "stage1 (no fusion)": {"1": 1.0, "2": 0.1},
         "small": {"1": 0.8, "2": 0.3}, "small (no fusion)": {"1": 0.7, "2": 0.3}}
    out = bench.summarise_targets({"datasets": [_dataset("x", a), _dataset("y", b)]}, ["stage1", "small"], 20)
    assert out["per_target"]["x"]["stage1"] == pytest.approx(0.55)
    assert out["per_target"]["y"]["retriever Recall@20"] == 0.9
    assert out["mean"]["stage1"] == pytest.approx((0.55 + 0.55) / 2)
    assert out["mean"]["retriever"] == pytest.approx((0.4 + 0.5) / 2)
    vs_ret = out["paired"]["stage1 vs retriever"]
    assert vs_ret["queries"] == 4  # both targets' queries pooled, the same id in two targets kept apart
    assert vs_ret["delta_points"] == pytest.approx(10.0)
    assert vs_ret["p"] == pytest.approx(ttest_rel([0.5, 0.3, 0.8, 0.2], [0.7, 0.4, 0.9, 0.2]).pvalue)
    assert set(out["paired"]) == {"stage1 vs retriever", "stage1 (no fusion) vs retriever", "small vs retriever",
                                  "small (no fusion) vs retriever", "stage1 vs small",
                                  "stage1 (no fusion) vs small (no fusion)"}
    assert out["paired"]["stage1 vs small"]["delta_points"] == pytest.approx(100 * (0.55 - 0.5))


def test_checkpoint_progress_reads_steps_dev_scores_and_loss():
    from conftest import load_benchmark

    bench = load_benchmark("stage1")
    state = {"global_step": 800, "max_steps": 1750, "log_history": [
        {"step": 50, "loss": 1.58}, {"step": 400, "loss": 1.2}, {"step": 400, "eval_dev_ndcg@10": 0.61},
        {"step": 800, "eval_dev_ndcg@10": 0.66}]}
    out = bench.checkpoint_progress(state)
    assert (out["steps"], out["max_steps"], out["checkpoint"]) == (800, 1750, True)
    assert out["dev"] == [{"step": 400, "ndcg@10": 0.61}, {"step": 800, "ndcg@10": 0.66}]
    assert out["loss_curve"] == [[50, 1.58], [400, 1.2]]
