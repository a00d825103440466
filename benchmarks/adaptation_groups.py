"""The label-free adaptation table over target groups, in the shape outside checks read
(``benchmarks/results/adaptation_groups.json``, see ../shared/API.md): one entry per group with each target's
retriever / hybrid / stage-1 / adapted (one per seed) / merged nDCG@10, the group means and the paired tests of the
merged model against stage 1 and the hybrid; plus the stage-1 run's cost and quality.

It reads what the runs wrote, nothing is re-scored: one or more ``benchmarks/adaptation.py`` results (a group is
taken from the file that ran all its targets in the most seeds) and a ``benchmarks/stage1.py`` result.

    python benchmarks/adaptation_groups.py \
        --results benchmarks/results/adaptation_scale_english.json benchmarks/results/adaptation_scale_xquad.json \
        --stage1 benchmarks/results/stage1_scale_500.json --output benchmarks/results/adaptation_groups.json

``merged`` is the deliverable scored the configured way: fused with the retriever's score when the run's
``evaluate.fusion_weight`` is above 0 (``merged_mode: "fused"``), else alone; the other mode is kept beside it
(``*_other_mode``), and both bars as ``adaptation.py`` checked them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from querit_st.pipeline.report import target_scores
from querit_st.utils import atomic_write_json

SUFFIX = {"fused": "", "alone": " (no fusion)"}
SYSTEMS = ("retriever", "hybrid", "stage1", "adapted", "merged")
#: systems whose score has a fused and an alone variant (the retriever and the hybrid are one ranking each)
MODED = ("stage1", "adapted", "merged")


def system_key(name: str, mode: str) -> str:
    """A system's name in ``adaptation.py``'s reports for ``mode`` (the retriever and the hybrid have one ranking)."""
    return name + SUFFIX[mode] if name in MODED else name


def merged_mode(config: dict) -> str:
    """``"fused"`` when the run fused the rerankers' scores with the retriever's (``evaluate.fusion_weight`` > 0)."""
    return "fused" if float(config.get("evaluate", {}).get("fusion_weight", 0) or 0) > 0 else "alone"


def per_target(per_seed: dict[str, dict], target: str, seeds: list[str], mode: str, top_k: int | None = None) -> dict:
    """One target's scores in ``mode``: seed-independent systems as their mean over seeds, ``adapted`` and
    ``merged`` as one value per seed too (``merged`` the mean, ``merged_seeds`` the values); the retriever's
    Recall@``top_k`` (the candidate depth: every reranker's ceiling) when the run recorded it."""
    scores = {s: target_scores(per_seed[s][target]) for s in seeds}
    other = "alone" if mode == "fused" else "fused"
    out: dict = {}
    recall = per_seed[seeds[0]][target].get("retriever", {}).get(f"Recall@{top_k}")
    if recall is not None:
        out[f"retriever_recall@{top_k}"] = recall
    for name in SYSTEMS:
        modes = ((mode, name), (other, f"{name}_other_mode")) if name in MODED else ((mode, name),)
        for m, label in modes:
            values = [scores[s][system_key(name, m)] for s in seeds if system_key(name, m) in scores[s]]
            if values:
                out[label] = values if name == "adapted" else statistics.fmean(values)
                if label == "merged":
                    out["merged_seeds"] = values
    return out


def group_entry(result: dict, group: str, mode: str) -> dict:
    """A group's entry of the table from one ``adaptation.py`` result that summarised it."""
    g = result["groups"][group]
    seeds = [str(s) for s in g["seeds"]]
    per_seed = {str(k): v for k, v in result["per_seed"].items()}
    means = g["nDCG@10"]
    legs = g["bar"][mode]["legs"]
    top_k = result.get("config", {}).get("evaluate", {}).get("top_k")
    mean, spread = {}, {}
    for name in SYSTEMS:
        key = system_key(name, mode)
        if key in means:
            mean[name], spread[name] = means[key]["mean"], means[key]["std"]
    return {
        "targets": g["targets"], "seeds": g["seeds"],
        "per_target": {t: per_target(per_seed, t, seeds, mode, top_k) for t in g["targets"]},
        "mean": mean, "std_over_seeds": spread, "top_k": top_k,
        "p_merged_vs_stage1": legs["stage1_plus_1_significant"].get("p"),
        "p_merged_vs_hybrid": legs["above_hybrid"].get("p"),
        "queries": legs["stage1_plus_1_significant"].get("queries"),
        "bar": g["bar"], "stage1_alone_retriever_plus_5": g["stage1_alone_retriever_plus_5"],
        "source": result.get("command"),
    }


def stage1_entry(stage1: dict) -> dict:
    """The stage-1 run's cost and quality as ``benchmarks/stage1.py`` recorded it (a resumed call's wall time
    covers that call only: ``wall_s_covers`` says so)."""
    s = stage1["stage1"]
    resumed = s.get("resumed_from_step") or 0
    out = {"wall_s": s.get("wall_s", s.get("wall_s_this_call")),
           "wall_s_covers": f"steps {resumed + 1}-{s.get('steps')} (resumed)" if resumed else "the whole run",
           "lists": s.get("lists"), "steps": s.get("steps"), "datasets": s.get("datasets"),
           "dev_ndcg@10": s.get("dev", {}).get("best"), "command": stage1.get("command"), "date": stage1.get("date")}
    for k in ("train_pairs_per_s_incl_dev_eval", "train_pairs_per_s_excl_dev_eval", "note"):
        if k in s:
            out[k] = s[k]
    if "test" in stage1:
        out["test"] = stage1["test"]
    return out


def build(results: list[dict], stage1: dict | None) -> dict:
    """The whole table: for each group the result that ran it in the most seeds."""
    chosen: dict[str, tuple[dict, str]] = {}
    for result in results:
        mode = merged_mode(result.get("config", {}))
        for group, g in result.get("groups", {}).items():
            if group not in chosen or len(g["seeds"]) > len(chosen[group][0]["seeds"]):
                chosen[group] = (group_entry(result, group, mode), mode)
    if not chosen:
        raise ValueError("none of the results summarised a whole target group: run benchmarks/adaptation.py "
                         "with all of a group's targets (querit_st.pipeline.report.TARGET_GROUPS)")
    modes = {mode for _, mode in chosen.values()}
    if len(modes) > 1:
        raise ValueError(f"the groups were scored in different modes {sorted(modes)}: use runs with one "
                         "evaluate.fusion_weight")
    groups = {group: entry for group, (entry, _) in chosen.items()}
    return {"merged_mode": modes.pop(), "stage1": stage1_entry(stage1) if stage1 else None, "groups": groups}


def markdown(table: dict) -> str:
    """The README table: per group its targets and mean, nDCG@10 of each system (``adapted`` and ``merged`` as
    mean +- spread over seeds), the merged model in the configured mode and the other one."""
    mode = table["merged_mode"]
    other = "alone" if mode == "fused" else "fused"
    head = ["target", "retriever", "hybrid", f"stage 1 ({mode})", f"adapted ({mode})", f"merged ({mode})",
            f"stage 1 ({other})", f"merged ({other})"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(v: float | list | None) -> str:
        if v is None:
            return ""
        if isinstance(v, list):
            return f"{statistics.fmean(v):.4f} ± {statistics.pstdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"
        return f"{v:.4f}"

    for group, g in table["groups"].items():
        for t, s in g["per_target"].items():
            recall = s.get(f"retriever_recall@{g['top_k']}")
            retriever = cell(s.get("retriever")) + (f" (R@{g['top_k']} {recall:.3f})" if recall else "")
            rows.append("| " + " | ".join([t, retriever, cell(s.get("hybrid")), cell(s.get("stage1")),
                                           cell(s.get("adapted")), cell(s.get("merged_seeds")),
                                           cell(s.get("stage1_other_mode")), cell(s.get("merged_other_mode"))]) + " |")
        m, sd = g["mean"], g["std_over_seeds"]
        pm = lambda k: f"**{m[k]:.4f} ± {sd[k]:.4f}**" if k in m else ""  # noqa: E731
        other_mean = lambda k: cell(statistics.fmean(  # noqa: E731
            s[k] for s in g["per_target"].values())) if all(k in s for s in g["per_target"].values()) else ""
        rows.append("| " + " | ".join([f"**{group} mean** ({len(g['seeds'])} seeds)", pm("retriever"), pm("hybrid"),
                                       pm("stage1"), pm("adapted"), pm("merged"), other_mean("stage1_other_mode"),
                                       other_mean("merged_other_mode")]) + " |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", nargs="+", type=Path, required=True, help="benchmarks/adaptation.py results JSON")
    p.add_argument("--stage1", type=Path, default=None, help="benchmarks/stage1.py results JSON")
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/adaptation_groups.json"))
    args = p.parse_args()
    for path in [*args.results, *([args.stage1] if args.stage1 else [])]:
        if not path.is_file():
            p.error(f"{path}: no such results file")
    try:
        table = build([json.loads(f.read_text()) for f in args.results],
                      json.loads(args.stage1.read_text()) if args.stage1 else None)
    except (ValueError, KeyError) as e:
        p.error(f"{', '.join(map(str, args.results))}: {e}")
    table = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
             "machine": json.loads(args.results[0].read_text()).get("machine"), **table}
    atomic_write_json(args.output, table)
    print(markdown(table) + "\n")
    for group, g in table["groups"].items():
        m = g["mean"]
        print(f"{group} ({len(g['targets'])} targets, seeds {g['seeds']}, merged {table['merged_mode']}): "
              + ", ".join(f"{k} {v:.4f}" for k, v in m.items())
              + f"; p merged vs stage1 {g['p_merged_vs_stage1']}, vs hybrid {g['p_merged_vs_hybrid']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
