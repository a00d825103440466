"""Equal quality of the fast training path: the same stage-1 run (same rows, seed and steps) trained plain fp32
(``fast: off``, sentence-transformers' way) and the fast way (``fast: auto``), then nDCG@10 of both on the test
qrels of the given targets, with a paired test over the queries, and both loss curves side by side.

    python benchmarks/train_quality.py --config examples/configs/demo.yaml --targets xquad-r-de vaswani [--seeds 0 1 2]

With several seeds each path is trained once per seed (the two paths draw different dropout masks, so one seed
cannot separate trajectory noise from a real gap): the comparison is between the paths' seed means, with their
spread, and the paired test runs over the queries' seed-averaged nDCG@10.

Writes ``--output`` (``benchmarks/results/train_quality.json``) and copies its summary into ``--speed-json`` under
``train.quality``. Resumable: each run trains into ``--work/<mode>`` (seed 0; other seeds ``--work/<mode>-s<seed>``)
and a finished one is reused.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
MODES = ("off", "auto")


def train_and_score(cfg: Any, folder: Path, targets: list[str], *, mode: str, seed: int) -> dict[str, Any]:
    """Stage 1 into ``folder`` (reused when finished), then its nDCG@10 on each target's test qrels."""
    from querit_st.pipeline import evaluate_models, pretrain

    t0 = time.perf_counter()
    model = pretrain(cfg, folder)
    log = json.loads((folder / "train_log.json").read_text())
    run = {"mode": mode, "seed": seed, "model": str(model), "wall_s": round(time.perf_counter() - t0, 1),
           "train_seconds": log["train_seconds"], "steps": log["steps"], "rows": log["rows"],
           "fast_path": log.get("fast_path"),
           "loss_curve": [[h["step"], h["loss"]] for h in log["log_history"] if "loss" in h], "targets": {}}
    for target in targets:
        rep = evaluate_models(cfg, target, {"stage1": model}, include_teacher=False)
        run["targets"][target] = {
            "fused": rep["stage1"]["nDCG@10"], "alone": rep["stage1 (no fusion)"]["nDCG@10"],
            "retriever": rep["retriever"]["nDCG@10"], "queries": rep["num_queries"],
            "per_query": {"fused": rep["per_query_nDCG@10"]["stage1"],
                          "alone": rep["per_query_nDCG@10"]["stage1 (no fusion)"]}}
        print(f"[{mode} seed {seed}] {target}: fused {run['targets'][target]['fused']:.4f} "
              f"alone {run['targets'][target]['alone']:.4f}", flush=True)
    return run


def compare_paths(off: list[dict[str, Any]], fast: list[dict[str, Any]], target: str, key: str) -> dict[str, Any]:
    """fp32 vs fast on one target and score (``fused``/``alone``): seed means and spreads, the difference of the
    means in points, and a paired test over the queries' seed-averaged nDCG@10."""
    import numpy as np

    from querit_st.evaluation import paired_p_value

    def side(runs: list[dict[str, Any]]) -> tuple[list[float], dict[str, float]]:
        scores = [r["targets"][target][key] for r in runs]
        per = [r["targets"][target]["per_query"][key] for r in runs]
        queries = set.intersection(*(set(p) for p in per))
        return scores, {q: float(np.mean([p[q] for p in per])) for q in queries}

    (a, pa), (b, pb) = side(off), side(fast)
    return {"fp32": float(np.mean(a)), "fast": float(np.mean(b)),
            "fp32_sd": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0,
            "fast_sd": float(np.std(b, ddof=1)) if len(b) > 1 else 0.0,
            "fp32_per_seed": a, "fast_per_seed": b,
            "delta_points": round(100 * (float(np.mean(b)) - float(np.mean(a))), 2),
            "p_paired": paired_p_value(pa, pb)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "examples" / "configs" / "demo.yaml"))
    p.add_argument("--targets", nargs="+", default=["xquad-r-de", "vaswani"])
    p.add_argument("--data-root", default=os.environ.get("QUERIT_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "train_quality")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per path and seed (the config's seed)")
    p.add_argument("--output", type=Path, default=RESULTS / "train_quality.json")
    p.add_argument("--speed-json", type=Path, default=RESULTS / "speed_train.json",
                   help="the speed_train.py results (of this CPU kind) that get the summary under train.quality")
    args = p.parse_args(argv)

    from querit_st.cli import parse_overrides
    from querit_st.pipeline import load_config
    from querit_st.utils import atomic_write_json
    from querit_st.utils.machine import machine_info
    from querit_st.utils.progress import configure_output

    configure_output()
    base = parse_overrides(args.overrides)
    runs: dict[str, Any] = {}
    for seed in args.seeds:
        for mode in MODES:
            name = mode if seed == 0 else f"{mode}-s{seed}"
            cfg = load_config(args.config, {**base, "seed": seed, "pretrain": {
                **base.get("pretrain", {}), "train": {**base.get("pretrain", {}).get("train", {}), "fast": mode}}})
            cfg.data_root = args.data_root
            runs[name] = train_and_score(cfg, args.work / name, args.targets, mode=mode, seed=seed)
    compare = {target: {k: compare_paths([r for r in runs.values() if r["mode"] == "off"],
                                         [r for r in runs.values() if r["mode"] == "auto"], target, k)
                        for k in ("fused", "alone")} for target in args.targets}
    seconds = {m: sum(r["train_seconds"] for r in runs.values() if r["mode"] == m) for m in MODES}
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": args.config,
        "seeds": args.seeds,
        "speedup_train_seconds": round(seconds["off"] / seconds["auto"], 2),
        "compare": compare,
        "within_half_point": all(abs(v["delta_points"]) <= 0.5 for c in compare.values() for v in c.values()),
        "runs": runs,
    }
    atomic_write_json(args.output, summary)
    speed = args.speed_json
    if speed.is_file():
        doc = json.loads(speed.read_text())
        keys = ("command", "date", "seeds", "speedup_train_seconds", "compare", "within_half_point")
        doc.setdefault("train", {})["quality"] = {k: summary[k] for k in keys}
        atomic_write_json(speed, doc)
    for target, c in compare.items():
        for k, v in c.items():
            print(f"{target:12s} {k:6s} fp32 {v['fp32']:.4f} (sd {v['fp32_sd']:.4f})  fast {v['fast']:.4f} "
                  f"(sd {v['fast_sd']:.4f})  d {v['delta_points']:+.2f} pts  p {v['p_paired']:.3f}  "
                  f"({len(args.seeds)} seed(s))")
    print(f"train seconds: fp32 {seconds['off']:.0f}, fast {seconds['auto']:.0f} "
          f"(x{summary['speedup_train_seconds']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
