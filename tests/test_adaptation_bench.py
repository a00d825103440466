"""benchmarks/adaptation.py's pure parts: the mean/spread table over seeds and the issue's bar check."""

import json

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



def _group_run(seed: int, targets: list[str], shift: dict[str, float], noise: float = 0.005):
    """One seed's reports and per-query scores for ``targets``: 40 queries each, every system the retriever's
    per-query scores plus its ``shift`` (plus seeded noise of the given size), nDCG@10 the mean of them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    reports, per_query = {}, {}
    for t in targets:
        base = rng.uniform(0.2, 0.8, size=40)
        scores = {}
        for system, d in shift.items():
            name = system.replace("adapted", f"adapt-{t}-s{seed}")
            scores[name] = {f"q{i}": float(v) for i, v in enumerate(base + d + noise * rng.standard_normal(40))}
        reports[t] = {name: {"nDCG@10": float(np.mean(list(s.values())))} for name, s in scores.items()}
        reports[t]["retriever"]["Recall@20"] = 0.9
        per_query[t] = scores
    return reports, per_query


SHIFTS = {"retriever": 0.0, "hybrid": 0.03, "stage1": 0.04, "stage1 (no fusion)": 0.01, "adapted": 0.065,
          "adapted (no fusion)": 0.05, "merged": 0.07, "merged (no fusion)": 0.055}


def test_group_summary_means_and_every_leg_met(bench):
    groups = {"g": ["a", "b"]}
    runs = {s: _group_run(s, ["a", "b"], SHIFTS) for s in (0, 1)}
    out = bench.group_summary({s: r[0] for s, r in runs.items()}, {s: r[1] for s, r in runs.items()}, groups)["g"]
    assert out["seeds"] == [0, 1] and out["targets"] == ["a", "b"]
    means = out["nDCG@10"]
    assert set(means) == set(SHIFTS)  # the seed's own adapted checkpoint is called "adapted"
    assert means["merged"]["mean"] - means["retriever"]["mean"] == pytest.approx(0.07, abs=0.002)
    assert means["merged"]["n"] == 2
    fused = out["bar"]["fused"]
    assert fused["met"] is True
    assert fused["legs"]["retriever_plus_5"]["delta_points"] == pytest.approx(7.0, abs=0.2)
    assert fused["legs"]["stage1_plus_1_significant"]["queries"] == 80  # both targets' queries, seed-averaged
    assert fused["legs"]["stage1_plus_1_significant"]["p"] < 0.05
    assert fused["legs"]["above_retriever_on_every_target"] == {"below": [], "met": True}
    # alone: merged (no fusion) +0.5 over adapted (no fusion), +4.5 over stage 1 alone, +5.5 over the retriever
    alone = out["bar"]["alone"]["legs"]
    assert alone["at_least_adapted_mean"]["met"] is True
    assert alone["at_least_adapted_mean"]["delta_points"] == pytest.approx(0.5, abs=0.2)
    assert alone["retriever_plus_5"]["met"] is True and out["bar"]["alone"]["met"] is True
    # stage 1 alone is +1 over the retriever: its own +5 leg fails
    assert out["stage1_alone_retriever_plus_5"]["met"] is False
    assert out["stage1_alone_retriever_plus_5"]["delta_points"] == pytest.approx(1.0, abs=0.2)


def test_group_summary_legs_fail_for_the_right_reasons(bench):
    groups = {"g": ["a", "b"], "other": ["a", "c"]}
    # merged only +0.5 over stage 1 but very consistent (significant), and below the retriever on target "b"
    runs = {}
    for s in (0, 1):
        reports, pq = _group_run(s, ["a", "b"], {**SHIFTS, "merged": 0.045})
        for q in pq["b"]["merged"]:
            pq["b"]["merged"][q] = pq["b"]["retriever"][q] - 0.01
        reports["b"]["merged"]["nDCG@10"] = reports["b"]["retriever"]["nDCG@10"] - 0.01
        del reports["a"]["hybrid"], reports["b"]["hybrid"]  # an older run without the hybrid baseline
        runs[s] = (reports, pq)
    out = bench.group_summary({s: r[0] for s, r in runs.items()}, {s: r[1] for s, r in runs.items()}, groups)
    assert set(out) == {"g"}  # "other" needs target "c", which was not run
    legs = out["g"]["bar"]["fused"]["legs"]
    assert legs["above_retriever_on_every_target"] == {"below": ["b"], "met": False}
    assert legs["stage1_plus_1_significant"]["met"] is False  # below stage 1 on b: not +1 point
    assert legs["above_hybrid"] == {"met": None, "missing": ["hybrid"]}
    assert out["g"]["bar"]["fused"]["met"] is False


def test_group_summary_plus_one_needs_significance(bench):
    # merged +1.5 over stage 1 on average, but with per-query noise far larger than that: not significant
    runs = {s: _group_run(s, ["a"], {**SHIFTS, "merged": 0.055}, noise=0.0) for s in (0, 1)}
    for s, (reports, pq) in runs.items():
        import numpy as np

        rng = np.random.default_rng(10 + s)
        noisy = {q: v + float(rng.normal(0, 0.4)) for q, v in pq["a"]["merged"].items()}
        shift = 0.055 - (np.mean(list(noisy.values())) - np.mean(list(pq["a"]["retriever"].values())))
        pq["a"]["merged"] = {q: v + float(shift) for q, v in noisy.items()}
        reports["a"]["merged"]["nDCG@10"] = float(np.mean(list(pq["a"]["merged"].values())))
    out = bench.group_summary({s: r[0] for s, r in runs.items()}, {s: r[1] for s, r in runs.items()},
                              {"g": ["a"]})["g"]["bar"]["fused"]["legs"]["stage1_plus_1_significant"]
    assert out["delta_points"] == pytest.approx(1.5, abs=0.2)
    assert out["p"] > 0.05 and out["met"] is False


def _result(bench, targets, seeds, fusion_weight=1.0):
    """An adaptation.py result for ``targets`` (the group "g") as write_result builds it from its seeds."""
    runs = {s: _group_run(s, targets, SHIFTS) for s in seeds}
    per_seed, per_query = {s: r[0] for s, r in runs.items()}, {s: r[1] for s, r in runs.items()}
    groups = bench.group_summary(per_seed, per_query, {"g": targets})
    # as read back from JSON: seed keys are strings
    return json.loads(json.dumps({"command": "python benchmarks/adaptation.py", "machine": {"cpu_count": 2},
                                  "config": {"evaluate": {"fusion_weight": fusion_weight, "top_k": 20}},
                                  "per_seed": per_seed, "groups": groups}))


def test_adaptation_groups_table_in_the_api_shape(bench, tmp_path):
    from conftest import load_benchmark

    groups_bench = load_benchmark("adaptation_groups")
    one_seed, two_seeds = _result(bench, ["a", "b"], [0]), _result(bench, ["a", "b"], [0, 1])
    table = groups_bench.build([one_seed, two_seeds], None)
    assert table["merged_mode"] == "fused" and table["stage1"] is None
    g = table["groups"]["g"]
    assert g["seeds"] == [0, 1]  # the run with more seeds wins
    a = g["per_target"]["a"]
    assert set(a) >= {"retriever", "hybrid", "stage1", "adapted", "merged"}
    assert len(a["adapted"]) == 2 and len(a["merged_seeds"]) == 2
    assert a["retriever_recall@20"] == 0.9 and g["top_k"] == 20  # the candidate depth's ceiling
    assert a["merged"] == pytest.approx(sum(a["merged_seeds"]) / 2)
    assert a["merged"] - a["retriever"] == pytest.approx(0.07, abs=0.01)  # fused variant
    assert a["merged_other_mode"] - a["retriever"] == pytest.approx(0.055, abs=0.01)  # alone
    assert g["mean"]["merged"] == pytest.approx(two_seeds["groups"]["g"]["nDCG@10"]["merged"]["mean"])
    assert 0 < g["p_merged_vs_stage1"] < 0.05 and g["queries"] == 80
    assert g["p_merged_vs_hybrid"] is not None
    alone = groups_bench.build([_result(bench, ["a", "b"], [0], fusion_weight=0.0)], None)
    assert alone["merged_mode"] == "alone"
    assert alone["groups"]["g"]["per_target"]["a"]["merged"] - alone["groups"]["g"]["per_target"]["a"]["retriever"] \
        == pytest.approx(0.055, abs=0.01)
    other = _result(bench, ["a", "b"], [0], fusion_weight=0.0)
    other["groups"] = {"h": other["groups"]["g"]}
    with pytest.raises(ValueError, match="different modes"):
        groups_bench.build([one_seed, other], None)
    with pytest.raises(ValueError, match="whole target group"):
        groups_bench.build([{**one_seed, "groups": {}}], None)


def test_adaptation_groups_stage1_entry_from_the_committed_run():
    from conftest import REPO, load_benchmark

    stage1 = json.loads((REPO / "benchmarks" / "results" / "stage1_scale_500.json").read_text())
    entry = load_benchmark("adaptation_groups").stage1_entry(stage1)
    assert entry["lists"] == 7000 and entry["steps"] == 1750
    assert entry["wall_s"] == stage1["stage1"]["wall_s_this_call"]
    assert entry["wall_s_covers"] == "steps 1201-1750 (resumed)"  # a resumed call's seconds are not the run's
    assert 0.5 < entry["dev_ndcg@10"] < 1 and "per_target" in entry["test"]


def test_adaptation_groups_markdown_rows():
    from conftest import load_benchmark

    groups_bench = load_benchmark("adaptation_groups")
    bench = load_benchmark("adaptation")
    text = groups_bench.markdown(groups_bench.build([_result(bench, ["a", "b"], [0, 1])], None))
    lines = text.splitlines()
    assert lines[0].startswith("| target | retriever | hybrid | stage 1 (fused)")
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| a", "| b", "| **g mean** (2 seeds)"]
    assert "(R@20 0.900)" in lines[2] and "±" in lines[2].split(" | ")[5]  # merged over two seeds: mean ± spread
