"""The small-scale reproduction of the paper's main table: label-free adaptation on every shared target, several
seeds, mean and spread of nDCG@10 for the retriever, the teacher ensemble (no training), stage 1, the adapted
checkpoints and the merged model.

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

SHARED = ["vaswani", "xquad-r-en", "xquad-r-de", "xquad-r-es", "xquad-r-ru", "xquad-r-zh", "xquad-r-ar", "xquad-r-hi"]


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


def summarise(per_seed: dict[int, dict]) -> dict:
    """mean / std / min / max of nDCG@10 over seeds, per target and system."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for seed, res in per_seed.items():
        for target, rep in res.items():
            for system, metrics in rep.items():
                if not isinstance(metrics, dict) or "nDCG@10" not in metrics:
                    continue
                name = "adapted" if system.startswith("adapt-") and "no fusion" not in system else system
                if system.startswith("adapt-") and "no fusion" in system:
                    name = "adapted (no fusion)"
                table.setdefault(target, {}).setdefault(name, {}).setdefault("values", []).append(metrics["nDCG@10"])
    for target, systems in table.items():
        for name, entry in systems.items():
            v = entry["values"]
            entry.update(mean=statistics.fmean(v), std=statistics.pstdev(v) if len(v) > 1 else 0.0, min=min(v), max=max(v), n=len(v))
    return table


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="examples/configs/demo.yaml")
    p.add_argument("--data-root", default=None)
    p.add_argument("--targets", nargs="+", default=SHARED)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--work-dir", default="runs/adaptation")
    p.add_argument("--output", default="benchmarks/results/adaptation.json")
    args = p.parse_args()

    start = time.perf_counter()
    per_seed: dict[int, dict] = {}
    timings: dict[int, dict] = {}
    for seed in args.seeds:
        cfg = load_config(args.config)
        if args.data_root:
            cfg.data_root = args.data_root
        cfg.adapt.seeds = [seed]
        work = Path(args.work_dir) / f"seed{seed}"
        summary = finished_run(work, cfg, args.targets) or run_pipeline(cfg, args.targets, work)
        per_seed[seed] = {t: {k: v for k, v in rep.items() if isinstance(v, dict) and "nDCG@10" in v}
                          for t, rep in summary["results"].items()}
        timings[seed] = summary["timings_s"]
        print(f"seed {seed}:\n{summary.get('table', '')}\n", flush=True)
    table = summarise(per_seed)
    result = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "config": load_config(args.config).to_dict(),
        "targets": args.targets,
        "seeds": args.seeds,
        "nDCG@10": table,
        "bar": bar_check(table),
        "per_seed": per_seed,
        "timings_s": timings,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(args.output, result)
    systems = sorted({s for t in table.values() for s in t})
    print("| target | " + " | ".join(systems) + " |\n" + "|---" * (len(systems) + 1) + "|")
    for target, s in table.items():
        cells = [f"{s[n]['mean']:.4f} ± {s[n]['std']:.4f}" if n in s else "" for n in systems]
        print(f"| {target} | " + " | ".join(cells) + " |")
    print(json.dumps(result["bar"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
