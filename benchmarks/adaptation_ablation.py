"""One stage-2 ablation: adapt a given stage-1 model to one target with config overrides, then evaluate it (fused
with the retriever's score and alone; no teacher ensemble, no merge). Appends one JSON line to ``--output``.

    python benchmarks/adaptation_ablation.py --name q600 --target vaswani \
        --stage1 ~/.cache/querit_st/stage1/multilingual-e5-small-5df59d560106/model \
        --overrides '{"adapt": {"num_queries": 600}}' --output benchmarks/results/adaptation_ablation.jsonl

``--overrides`` is merged into ``--config`` (default ``examples/configs/demo.yaml``) by ``load_config`` (nested
mappings merge key by key, everything else replaces). The work folder ``--work-dir/NAME/TARGET`` is resumable (mined shards and
checkpoints are reused), so a run that reuses another's mined data (same queries and teachers, other training) can
start from a copy of its ``mined`` folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from querit_st.pipeline import adapt, evaluate_models, load_config, machine_info

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--target", required=True, help="a shared dataset name or a BEIR folder")
    p.add_argument("--stage1", required=True, help="the stage-1 model folder to adapt from")
    p.add_argument("--config", default=str(HERE.parent / "examples" / "configs" / "demo.yaml"))
    p.add_argument("--overrides", default="{}", help="JSON mapping merged into the config")
    p.add_argument("--work-dir", default="runs/ablation")
    p.add_argument("--output", default=str(HERE / "results" / "adaptation_ablation.jsonl"))
    args = p.parse_args(argv)

    overrides = json.loads(args.overrides)
    cfg = load_config(args.config, overrides)
    work = Path(args.work_dir) / args.name / Path(args.target).name
    t0 = time.perf_counter()
    model = adapt(cfg, args.target, args.stage1, work, seed=cfg.seed)
    t1 = time.perf_counter()
    report = evaluate_models(cfg, args.target, {"adapted": model}, include_teacher=False)
    row: dict[str, Any] = {"name": args.name, "target": Path(args.target).name, "overrides": overrides,
                           "seed": cfg.seed, "stage1": str(args.stage1)}
    row.update({k: v["nDCG@10"] for k, v in report.items() if isinstance(v, dict) and "nDCG@10" in v})
    row.update(adapt_s=round(t1 - t0), eval_s=round(time.perf_counter() - t1), machine=machine_info())
    print("RESULT", json.dumps(row), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    main()
