"""The small-scale reproduction of the paper's main table: label-free adaptation on every shared target, several
seeds, mean and spread of nDCG@10 for the retriever, the zero-training baselines (the teacher ensemble and the
retriever + BM25 hybrid), stage 1, the adapted checkpoints and the merged model; then the same per target group
(English domains, XQuAD-R) with the issue's bar checked leg by leg, paired t-tests over all the group's queries.

    python benchmarks/adaptation.py --config examples/configs/demo.yaml --targets vaswani xquad-r-de \
        --seeds 0 1 2 --output benchmarks/results/adaptation.json

Stage 1 is trained once (cached) and shared by all seeds; each seed runs stage 2 + merge + evaluation in its own
folder under ``--work-dir`` (resumable: finished seeds are reused).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from querit_st.utils import atomic_write_json
from querit_st.pipeline import load_config, machine_info, run_pipeline
from querit_st.pipeline.report import TARGET_GROUPS, system_name, target_scores

#: the target groups the bar is stated over (a group is summarised when all its targets were run)
GROUPS = TARGET_GROUPS
SHARED = [t for group in GROUPS.values() for t in group]
VARIANTS = {"fused": "", "alone": " (no fusion)"}


def finished_run(work: Path, cfg, targets: list[str]) -> dict | None:
    """The results of an earlier run in ``work`` with the same config (data root aside) and targets, else None."""
    path = work / "results.json"
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    strip = lambda c: {k: v for k, v in c.items() if k != "data_root"}  # noqa: E731
    if strip(old.get("config", {})) != strip(json.loads(json.dumps(cfg.to_dict()))):
        return None
    if sorted(old.get("results", {})) != sorted(Path(t).name for t in targets):
        return None
    print(f"reusing the finished run in {work}", flush=True)
    return old


def spread(values: list[float]) -> dict[str, float]:
    """mean / std (population) / min / max / n of one system's scores over seeds."""
    return {"values": values, "mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values),
            "n": len(values)}


def summarise(per_seed: dict[int, dict]) -> dict:
    """mean / std / min / max of nDCG@10 over seeds, per target and system (a seed's adapted checkpoint as
    ``adapted``: :func:`querit_st.pipeline.report.target_scores`)."""
    values: dict[str, dict[str, list[float]]] = {}
    for seed, res in per_seed.items():
        for target, rep in res.items():
            for name, score in target_scores(rep).items():
                values.setdefault(target, {}).setdefault(name, []).append(score)
    return {t: {name: spread(v) for name, v in systems.items()} for t, systems in values.items()}


def pooled_queries(per_query: dict[int, dict], targets: list[str], system: str) -> dict[str, float]:
    """``system``'s per-query nDCG@10 over all the targets' queries (keys ``<target>/<query id>``), averaged over
    seeds: the unit of the group's paired tests."""
    values: dict[str, list[float]] = {}
    for res in per_query.values():
        for t in targets:
            for name, scores in res.get(t, {}).items():
                if system_name(name) == system:
                    for q, v in scores.items():
                        values.setdefault(f"{t}/{q}", []).append(v)
    return {k: statistics.fmean(v) for k, v in values.items()}


def leg(better: str, worse: str, means: dict, pooled: dict, *, points: float | None = None,
        significant: bool = False) -> dict:
    """One leg of the bar: the group mean of ``better`` strictly above ``worse`` (``points`` None) or above it by at
    least ``points``; with the paired t-test over the group's queries when both have per-query scores in ``pooled``
    (p < 0.05 required when ``significant``). ``met`` is None when a system was not run."""
    from querit_st.evaluation import paired_p_value

    missing = [x for x in (better, worse) if x not in means]
    if missing:
        return {"met": None, "missing": missing}
    delta = 100 * (means[better]["mean"] - means[worse]["mean"])
    met = delta > 0 if points is None else delta >= points - 1e-9  # 4.9999999 points is 5
    out: dict = {"delta_points": round(delta, 2)}
    if better in pooled and worse in pooled:
        out["p"] = paired_p_value(pooled[worse], pooled[better])
        out["queries"] = len(set(pooled[worse]) & set(pooled[better]))
        met = met and (out["p"] < 0.05 or not significant)
    elif significant:
        met = None  # a significance leg without per-query scores cannot be decided
    return {**out, "met": met}


def group_summary(per_seed: dict[int, dict], per_query: dict[int, dict], groups: dict[str, list[str]]) -> dict:
    """Each group whose targets were all run, in every seed that ran them: per system the mean over the group's
    targets (mean and spread over seeds of that group mean), and the issue's bar for the merged model, fused and
    alone, leg by leg (paired tests over all the group's queries, seed-averaged); plus stage 1 alone against the
    retriever + 5 points. A variant ``met`` the bar when every leg did."""
    out: dict[str, dict] = {}
    for group, targets in groups.items():
        seeds = [s for s, res in per_seed.items() if all(t in res for t in targets)]
        if not seeds:
            continue
        scores = {s: {t: target_scores(per_seed[s][t]) for t in targets} for s in seeds}
        per_target = summarise({s: {t: per_seed[s][t] for t in targets} for s in seeds})
        names = {x for s in seeds for t in targets for x in scores[s][t]}
        means = {x: spread([statistics.fmean(scores[s][t][x] for t in targets) for s in seeds]) for x in sorted(names)
                 if all(x in scores[s][t] for s in seeds for t in targets)}
        pooled = {x: pooled_queries({s: per_query.get(s, {}) for s in seeds}, targets, x) for x in means}
        pooled = {x: q for x, q in pooled.items() if q}
        bar = {}
        for variant, suffix in VARIANTS.items():
            m = f"merged{suffix}"
            below = [t for t in targets
                     if m in means and per_target[t][m]["mean"] <= per_target[t]["retriever"]["mean"]]
            legs = {
                "retriever_plus_5": leg(m, "retriever", means, pooled, points=5.0),
                "above_retriever_on_every_target": {"below": below, "met": not below} if m in means
                else {"met": None, "missing": [m]},
                "stage1_plus_1_significant": leg(m, f"stage1{suffix}", means, pooled, points=1.0, significant=True),
                "above_hybrid": leg(m, "hybrid", means, pooled),
                "at_least_adapted_mean": leg(m, f"adapted{suffix}", means, pooled, points=0.0),
            }
            bar[variant] = {"legs": legs, "met": all(v["met"] is True for v in legs.values())}
        stage1 = leg("stage1 (no fusion)", "retriever", means, pooled, points=5.0)
        out[group] = {"targets": targets, "seeds": seeds, "nDCG@10": means, "bar": bar,
                      "stage1_alone_retriever_plus_5": stage1}
    return out


def bar_check(table: dict) -> dict[str, dict[str, dict[str, bool]]]:
    """The issue's bar per target, for the merged model as configured (fused with the retriever's score) and alone:
    beats the retriever by >= 5 points, stage 1 (the same variant), and the teacher ensemble."""
    out: dict[str, dict[str, dict[str, bool]]] = {}
    for target, s in table.items():
        for variant, suffix in (("fused", ""), ("no fusion", " (no fusion)")):
            if f"merged{suffix}" not in s:
                continue
            m = s[f"merged{suffix}"]["mean"]
            out.setdefault(target, {})[variant] = {
                "beats_retriever_by_5": m - s["retriever"]["mean"] >= 0.05,
                "beats_stage1": m > s.get(f"stage1{suffix}", {}).get("mean", float("inf")),
                "beats_teacher_ensemble": m > s.get("teacher_ensemble", {}).get("mean", float("inf")),
            }
    return out


def write_result(args: argparse.Namespace, overrides: dict, per_seed: dict[int, dict], per_query: dict[int, dict],
                 timings: dict[int, dict], start: float) -> tuple[dict, dict]:
    """Summarise the seeds finished so far and write ``args.output`` (``seeds_done`` names them)."""
    table = summarise(per_seed)
    groups = group_summary(per_seed, per_query, GROUPS)
    result = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "config": load_config(args.config, overrides).to_dict(),
        "targets": args.targets,
        "seeds": args.seeds,
        "seeds_done": sorted(per_seed),
        "nDCG@10": table,
        "bar": bar_check(table),
        "groups": groups,
        "per_seed": per_seed,
        "per_query_nDCG@10": per_query,
        "timings_s": timings,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(args.output, result)
    return table, groups


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="examples/configs/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides, as querit-st's --set (e.g. pretrain.max_queries_per_dataset=500)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--targets", nargs="+", default=SHARED)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--work-dir", default="runs/adaptation")
    p.add_argument("--output", default="benchmarks/results/adaptation.json")
    args = p.parse_args()

    from querit_st.cli import parse_overrides
    from querit_st.utils.progress import configure_output

    configure_output()  # the stages' progress lines (steps, ETA), not the libraries' bars
    overrides = parse_overrides(args.overrides)
    start = time.perf_counter()
    per_seed: dict[int, dict] = {}
    per_query: dict[int, dict] = {}
    timings: dict[int, dict] = {}
    for seed in args.seeds:
        cfg = load_config(args.config, overrides)
        if args.data_root:
            cfg.data_root = args.data_root
        cfg.adapt.seeds = [seed]
        work = Path(args.work_dir) / f"seed{seed}"
        summary = finished_run(work, cfg, args.targets) or run_pipeline(cfg, args.targets, work)
        per_seed[seed] = {t: {k: v for k, v in rep.items() if isinstance(v, dict) and "nDCG@10" in v}
                          for t, rep in summary["results"].items()}
        per_query[seed] = {t: rep.get("per_query_nDCG@10", {}) for t, rep in summary["results"].items()}
        timings[seed] = summary["timings_s"]
        print(f"seed {seed}:\n{summary.get('table', '')}\n", flush=True)
        # written after every seed: an interrupted run leaves the seeds it finished (and resumes from them)
        table, groups = write_result(args, overrides, per_seed, per_query, timings, start)
    systems = sorted({s for t in table.values() for s in t})
    print("| target | " + " | ".join(systems) + " |\n" + "|---" * (len(systems) + 1) + "|")
    for target, s in table.items():
        cells = [f"{s[n]['mean']:.4f} ± {s[n]['std']:.4f}" if n in s else "" for n in systems]
        print(f"| {target} | " + " | ".join(cells) + " |")
    for group, g in groups.items():
        print(f"\n{group} ({len(g['targets'])} targets, seeds {g['seeds']}): "
              + ", ".join(f"{x} {v['mean']:.4f} ± {v['std']:.4f}" for x, v in g["nDCG@10"].items()))
        for variant, b in g["bar"].items():
            print(f"  merged {variant}: bar {'met' if b['met'] else 'not met'}: "
                  + "; ".join(f"{name} {v.get('delta_points', '')} {v['met']}" for name, v in b["legs"].items()))
        print(f"  stage 1 alone vs retriever + 5: {g['stage1_alone_retriever_plus_5']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
