"""benchmarks/adaptation.py's pure parts: the mean/spread table over seeds and the issue's bar check."""

import pytest


@pytest.fixture(scope="module")
def bench():
    from conftest import load_benchmark

    return load_benchmark("adaptation")


def _seed(retriever, stage1, adapted, merged, merged_alone, teacher):
    return {"t": {
        "retriever": {"nDCG@10": retriever},
        "stage1": {"nDCG@10": stage1},
        "stage1 (no fusion)": {"nDCG@10": stage1 - 0.01},
        "adapt-t-s0": {"nDCG@10": adapted},
        "adapt-t-s0 (no fusion)": {"nDCG@10": adapted - 0.02},
        "merged": {"nDCG@10": merged},
        "merged (no fusion)": {"nDCG@10": merged_alone},
        "teacher_ensemble": {"nDCG@10": teacher},
        "dataset": "t",  # not a metrics entry: ignored
    }}


def test_summarise_mean_spread_and_adapted_names(bench):
    table = bench.summarise({0: _seed(0.40, 0.44, 0.45, 0.46, 0.47, 0.50), 1: _seed(0.40, 0.44, 0.47, 0.50, 0.43, 0.50)})
    t = table["t"]
    assert set(t) == {"retriever", "stage1", "stage1 (no fusion)", "adapted", "adapted (no fusion)", "merged",
                      "merged (no fusion)", "teacher_ensemble"}
    assert t["merged"]["values"] == [0.46, 0.50]
    assert t["merged"]["mean"] == pytest.approx(0.48)
    assert t["merged"]["std"] == pytest.approx(0.02)  # population std of two values 0.04 apart
    assert (t["merged"]["min"], t["merged"]["max"], t["merged"]["n"]) == (0.46, 0.50, 2)
    assert t["adapted (no fusion)"]["mean"] == pytest.approx(0.44)
    assert t["retriever"]["std"] == 0.0


def test_bar_check_fused_and_alone(bench):
    table = bench.summarise({0: _seed(0.40, 0.44, 0.45, 0.46, 0.52, 0.50)})
    bar = bench.bar_check(table)["t"]
    # fused merged 0.46: +6 over the retriever, above stage 1 (0.44), below the teachers (0.50)
    assert bar["fused"] == {"beats_retriever_by_5": True, "beats_stage1": True, "beats_teacher_ensemble": False}
    # alone 0.52: compared with stage 1 alone (0.43) and the same teacher ensemble
    assert bar["no fusion"] == {"beats_retriever_by_5": True, "beats_stage1": True, "beats_teacher_ensemble": True}
    low = bench.bar_check(bench.summarise({0: _seed(0.40, 0.47, 0.45, 0.44, 0.41, 0.50)}))["t"]
    assert low["fused"] == {"beats_retriever_by_5": False, "beats_stage1": False, "beats_teacher_ensemble": False}

