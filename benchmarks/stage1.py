"""Stage 1 at scale: its cost (wall time on this machine, lists, steps, pairs/s) and its quality (nDCG@10 on the
stage-1 dev splits, which chose the checkpoint, and on the XQuAD-R test queries, never used for anything else),
against the shared retriever alone.

    python benchmarks/stage1.py --config examples/configs/stage1_scale.yaml [--set pretrain.max_queries_per_dataset=300]

Resumable (the stage-1 cache); writes ``benchmarks/results/stage1_scale.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

XQUAD_R = [f"xquad-r-{lang}" for lang in ("en", "de", "es", "ru", "zh", "ar", "hi")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "examples" / "configs" / "stage1_scale.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-root", default=os.environ.get("QUERIT_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--targets", nargs="+", default=XQUAD_R)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "stage1_scale.json")
    args = p.parse_args(argv)

    from querit_st.cli import parse_overrides
    from querit_st.harness import run_beir_eval
    from querit_st.pipeline import load_config, pretrain, stage1_dir
    from querit_st.utils import atomic_write_json
    from querit_st.utils.machine import machine_info
    from querit_st.utils.progress import configure_output

    configure_output()
    cfg = load_config(args.config, parse_overrides(args.overrides))
    cfg.data_root = args.data_root
    t0 = time.perf_counter()
    model = pretrain(cfg)
    wall = time.perf_counter() - t0
    log = json.loads((stage1_dir(cfg) / "train_log.json").read_text())
    pairs = log["rows"] * cfg.pretrain.num_candidates * max(1.0, float(cfg.pretrain.train.epochs))
    report = run_beir_eval([str(Path(args.data_root) / t) for t in args.targets], cfg.retriever, [str(model)],
                           names=["stage1"], top_k=args.top_k, fusion_weight=cfg.evaluate.fusion_weight)
    per = {d["name"]: {s: d["results"][s]["nDCG@10"] for s in ("retriever", "stage1", "stage1 (no fusion)")}
           for d in report["datasets"]}
    mean = {s: sum(v[s] for v in per.values()) / len(per) for s in ("retriever", "stage1", "stage1 (no fusion)")}
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": args.config, "overrides": args.overrides, "model": str(model),
        "stage1": {"wall_s_this_call": round(wall, 1), "train_seconds": log["train_seconds"], "lists": log["rows"],
                   "steps": log["steps"], "train_pairs_per_s": round(pairs / log["train_seconds"], 1),
                   "datasets": log.get("datasets"), "fast_path": log.get("fast_path"), "dev": log.get("dev"),
                   "reused_cache": wall < 0.5 * log["train_seconds"]},
        "xquad_r_test": {"top_k": args.top_k, "retriever": cfg.retriever, "per_target": per, "mean": mean,
                         "stage1_minus_retriever_points": {k: round(100 * (mean[k] - mean["retriever"]), 2)
                                                           for k in ("stage1", "stage1 (no fusion)")}},
    }
    atomic_write_json(args.output, out)
    for t, v in per.items():
        print(f"{t:12s} retriever {v['retriever']:.4f}  stage1 fused {v['stage1']:.4f}  alone {v['stage1 (no fusion)']:.4f}")
    print(f"{'mean':12s} retriever {mean['retriever']:.4f}  stage1 fused {mean['stage1']:.4f}  "
          f"alone {mean['stage1 (no fusion)']:.4f}")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
