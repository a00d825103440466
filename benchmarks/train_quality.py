"""Equal quality of the fast training path: the same stage-1 run (same rows, seed and steps) trained plain fp32
(``fast: off``, sentence-transformers' way) and the fast way (``fast: auto``), then nDCG@10 of both on the test
qrels of the given targets, with a paired test over the queries, and both loss curves side by side.

    python benchmarks/train_quality.py --config examples/configs/demo.yaml --targets xquad-r-de vaswani

Writes ``--output`` (``benchmarks/results/train_quality.json``) and copies its summary into ``--speed-json`` under
``train.quality``. Resumable: each run trains into ``--work/<mode>`` and a finished one is reused.
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


def paired_p(a: dict[str, float], b: dict[str, float]) -> float:
    """Two-sided paired t-test p-value over the shared queries (scipy)."""
    from scipy.stats import ttest_rel

    keys = sorted(set(a) & set(b))
    if len(keys) < 2 or all(a[k] == b[k] for k in keys):
        return 1.0
    return float(ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "examples" / "configs" / "demo.yaml"))
    p.add_argument("--targets", nargs="+", default=["xquad-r-de", "vaswani"])
    p.add_argument("--data-root", default=os.environ.get("QUERIT_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "train_quality")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", type=Path, default=RESULTS / "train_quality.json")
    p.add_argument("--speed-json", type=Path, default=RESULTS / "speed_train.json",
                   help="the speed_train.py results (of this CPU kind) that get the summary under train.quality")
    args = p.parse_args(argv)

    from querit_st.cli import parse_overrides
    from querit_st.pipeline import evaluate_models, load_config, pretrain
    from querit_st.utils import atomic_write_json
    from querit_st.utils.machine import machine_info
    from querit_st.utils.progress import configure_output

    configure_output()
    base = parse_overrides(args.overrides)
    runs: dict[str, Any] = {}
    for mode in MODES:
        cfg = load_config(args.config, {**base, "pretrain": {**base.get("pretrain", {}),
                                                          "train": {**base.get("pretrain", {}).get("train", {}), "fast": mode}}})
        cfg.data_root = args.data_root
        t0 = time.perf_counter()
        model = pretrain(cfg, args.work / mode)
        log = json.loads((args.work / mode / "train_log.json").read_text())
        runs[mode] = {"model": str(model), "wall_s": round(time.perf_counter() - t0, 1),
                      "train_seconds": log["train_seconds"], "steps": log["steps"], "rows": log["rows"],
                      "fast_path": log.get("fast_path"),
                      "loss_curve": [[h["step"], h["loss"]] for h in log["log_history"] if "loss" in h],
                      "targets": {}}
        for target in args.targets:
            rep = evaluate_models(cfg, target, {"stage1": model}, include_teacher=False)
            runs[mode]["targets"][target] = {
                "fused": rep["stage1"]["nDCG@10"], "alone": rep["stage1 (no fusion)"]["nDCG@10"],
                "retriever": rep["retriever"]["nDCG@10"], "queries": rep["num_queries"],
                "per_query": {"fused": rep["per_query_nDCG@10"]["stage1"],
                              "alone": rep["per_query_nDCG@10"]["stage1 (no fusion)"]}}
            print(f"[{mode}] {target}: fused {runs[mode]['targets'][target]['fused']:.4f} "
                  f"alone {runs[mode]['targets'][target]['alone']:.4f}", flush=True)
    compare = {}
    for target in args.targets:
        off, fast = runs["off"]["targets"][target], runs["auto"]["targets"][target]
        compare[target] = {k: {"fp32": off[k], "fast": fast[k], "delta_points": round(100 * (fast[k] - off[k]), 2),
                               "p_paired": paired_p(off["per_query"][k], fast["per_query"][k])}
                           for k in ("fused", "alone")}
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": args.config,
        "speedup_train_seconds": round(runs["off"]["train_seconds"] / runs["auto"]["train_seconds"], 2),
        "compare": compare,
        "within_half_point": all(abs(v["delta_points"]) <= 0.5 for c in compare.values() for v in c.values()),
        "runs": runs,
    }
    atomic_write_json(args.output, summary)
    speed = args.speed_json
    if speed.is_file():
        doc = json.loads(speed.read_text())
        doc.setdefault("train", {})["quality"] = {k: summary[k] for k in ("command", "date", "speedup_train_seconds",
                                                                          "compare", "within_half_point")}
        atomic_write_json(speed, doc)
    for target, c in compare.items():
        for k, v in c.items():
            print(f"{target:12s} {k:6s} fp32 {v['fp32']:.4f}  fast {v['fast']:.4f}  d {v['delta_points']:+.2f} pts  "
                  f"p {v['p_paired']:.3f}")
    print(f"train seconds: fp32 {runs['off']['train_seconds']}, fast {runs['auto']['train_seconds']} "
          f"(x{summary['speedup_train_seconds']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
