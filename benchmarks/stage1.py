"""Stage 1 at scale: its cost (wall time on this machine, lists, steps, pairs/s) and its quality (nDCG@10 on the
stage-1 dev splits, which chose the checkpoint, and on the XQuAD-R test queries, never used for anything else),
against the shared retriever alone (paired tests over all the targets' queries), and against other rerankers given
with ``--compare NAME=MODEL`` (e.g. a smaller stage 1), evaluated in the same call.

    python benchmarks/stage1.py --config examples/configs/stage1_scale.yaml \
        [--set pretrain.max_queries_per_dataset=300] [--checkpoint <stage-1 folder>/checkpoints/checkpoint-N]

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
    p.add_argument("--compare", nargs="+", default=[], metavar="NAME=MODEL",
                   help="other rerankers (model folders) evaluated beside this stage 1, each with a paired test")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="evaluate this checkpoint of the config's stage-1 run (one still training, or stopped) "
                        "instead of running stage 1 to its end; its trainer_state.json gives the steps and dev scores")
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "stage1_scale.json")
    args = p.parse_args(argv)
    if args.checkpoint is not None and not (args.checkpoint / "trainer_state.json").is_file():
        p.error(f"--checkpoint {str(args.checkpoint)!r}: expected a trainer checkpoint folder "
                "(with trainer_state.json)")
    bad = [c for c in args.compare if "=" not in c or not Path(c.split("=", 1)[1]).is_dir()]
    if bad:  # before stage 1 runs: a typo must not cost its hours
        p.error(f"--compare {bad[0]!r}: expected NAME=MODEL_FOLDER with an existing model folder")
    compare = dict(c.split("=", 1) for c in args.compare)

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
    if args.checkpoint is None:
        model = pretrain(cfg)
        wall = time.perf_counter() - t0
        log = json.loads((stage1_dir(cfg) / "train_log.json").read_text())
        # the pairs of the steps this call trained (a resumed run trains only those after its checkpoint); its
        # train_seconds include the dev evaluations that ran in between
        steps = log["steps"] - log.get("resumed_from_step", 0)
        pairs = steps * cfg.pretrain.train.batch_size * cfg.pretrain.num_candidates
        cost = {"wall_s_this_call": round(wall, 1), "train_seconds": log["train_seconds"], "lists": log["rows"],
                "steps": log["steps"], "resumed_from_step": log.get("resumed_from_step", 0),
                "train_pairs_per_s_incl_dev_eval": round(pairs / log["train_seconds"], 1),
                "datasets": log.get("datasets"), "fast_path": log.get("fast_path"), "dev": log.get("dev"),
                "reused_cache": wall < 0.5 * log["train_seconds"]}
    else:
        model = args.checkpoint
        cost = checkpoint_progress(json.loads((args.checkpoint / "trainer_state.json").read_text()))
    report = run_beir_eval([str(Path(args.data_root) / t) for t in args.targets], cfg.retriever,
                           [str(model), *compare.values()], names=["stage1", *compare], top_k=args.top_k,
                           fusion_weight=cfg.evaluate.fusion_weight)
    test = summarise_targets(report, ["stage1", *compare], args.top_k)
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": args.config, "overrides": args.overrides, "model": str(model),
        "stage1": cost,
        "test": {"targets": args.targets, "top_k": args.top_k, "retriever": cfg.retriever, **test},
    }
    atomic_write_json(args.output, out)
    systems = list(test["mean"])
    print(f"{'target':12s} " + "  ".join(f"{x:>22s}" for x in systems))
    for t, v in {**test["per_target"], "mean": test["mean"]}.items():
        print(f"{t:12s} " + "  ".join(f"{v[x]:22.4f}" for x in systems))
    for name, c in test["paired"].items():
        print(f"{name}: {c['delta_points']:+.2f} points, paired p {c['p']:.2g} over {c['queries']} queries")
    print(f"written {args.output}")
    return 0


def checkpoint_progress(state: dict) -> dict:
    """What a trainer checkpoint says of its run: steps done of the planned steps, the dev scores so far, the loss
    curve (``trainer_state.json``)."""
    history = state.get("log_history", [])
    return {"checkpoint": True, "steps": state["global_step"], "max_steps": state.get("max_steps"),
            "dev": [{"step": h["step"], "ndcg@10": h["eval_dev_ndcg@10"]} for h in history if "eval_dev_ndcg@10" in h],
            "loss_curve": [[h["step"], h["loss"]] for h in history if "loss" in h]}


def summarise_targets(report: dict, rerankers: list[str], top_k: int) -> dict:
    """nDCG@10 per target and system (each reranker fused with the retriever and alone), the retriever's Recall@top_k
    (every reranker's ceiling), the means over the targets, and paired t-tests over all the targets' queries: each
    system against the retriever, and the first reranker (this stage 1) against each other one, fusion for fusion."""
    from querit_st.evaluation import paired_p_value

    systems = ["retriever"] + [f"{r}{v}" for r in rerankers for v in ("", " (no fusion)")]
    per = {d["name"]: {**{x: d["results"][x]["nDCG@10"] for x in systems},
                       f"retriever Recall@{top_k}": d["results"]["retriever"][f"Recall@{top_k}"]}
           for d in report["datasets"]}
    mean = {x: sum(v[x] for v in per.values()) / len(per) for x in next(iter(per.values()))}
    pooled = {x: {(d["name"], q): s for d in report["datasets"] for q, s in d["per_query_nDCG@10"][x].items()}
              for x in systems}
    pairs = [(x, "retriever") for x in systems[1:]]
    pairs += [(f"{rerankers[0]}{v}", f"{r}{v}") for r in rerankers[1:] for v in ("", " (no fusion)")]
    paired = {f"{a} vs {b}": {"delta_points": round(100 * (mean[a] - mean[b]), 2),
                              "p": paired_p_value(pooled[b], pooled[a]), "queries": len(pooled[a])}
              for a, b in pairs}
    return {"per_target": per, "mean": mean, "paired": paired}


if __name__ == "__main__":
    sys.exit(main())
