"""Training throughput: sentence-transformers' ``CrossEncoderTrainer`` fp32 (its defaults: the anchor) against
querit-st's fast training path, on identical rows, side by side in one run.

Rows: stage-1 lists from the shared data (each question of the stage-1 ``train`` splits with its gold passage and
``--candidates - 1`` other passages of the same corpus, seeded), the model: the demo's compact student (the first
``--layers`` layers of multilingual-e5-small with a fresh head, max length ``--max-length``), ``--batch-size``
lists per step. Configurations:

- ``st-listnet``: ``CrossEncoder`` + ``ListNetLoss`` + ``CrossEncoderTrainer`` with ST's defaults (the anchor),
  the word-embedding matrix frozen as in every other configuration (so only the training computation differs);
- ``st-defaults``: the same with nothing frozen (sentence-transformers' defaults to the letter: AdamW also updates
  the 96M-weight multilingual embedding matrix);
- ``st-hinge``: the same trainer with our ``ScoreGapHingeLoss`` and no fast path (what querit-st trained before);
- ``ours``: ``ScoreGapHingeLoss`` with :func:`querit_st.training.configure_fast_training` (``auto``: what this CPU
  gets), and ``ours-fp32`` (the fast path without bf16) to separate the two levers.

Configurations are interleaved round by round and each is timed over steps 2..N (step 1 warms up); the ratio is
the median of per-round ratios against the anchor. ``--lists`` takes several values to show how time grows with
the number of lists. Writes ``benchmarks/results/speed_train.json``::

    python benchmarks/speed_train.py --rounds 2 --steps 12 --lists 48,96
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "speed_train.json"
DATASETS = ("squad-en", "squad-es", "tydi-ko", "jsquad-ja", "drcd-zh", "arcd-ar", "tydi-ru", "squad-it")
CONFIGS = ("st-listnet", "st-defaults", "st-hinge", "ours", "ours-fp32")
ANCHOR = "st-listnet"


def _log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def build_rows(data_root: Path, num_lists: int, candidates: int, seed: int = 0) -> dict[str, list]:
    """``num_lists`` listwise rows spread evenly over the stage-1 sets: query, [gold, others...], labels."""
    from querit_st.data import doc_text, load_beir

    rng = random.Random(seed)
    per = -(-num_lists // len(DATASETS))
    rows: dict[str, list] = {"query": [], "documents": [], "labels": []}
    for name in DATASETS:
        data = load_beir(data_root / name, split="train")
        ids = list(data.corpus)
        qids = [q for q in data.qrels if q in data.queries]
        rng.shuffle(qids)
        for q in qids[:per]:
            gold = next(d for d, s in data.qrels[q].items() if s > 0)
            others = rng.sample([d for d in ids if d != gold], candidates - 1)
            rows["query"].append(data.queries[q])
            rows["documents"].append([doc_text(data.corpus[d]) for d in [gold, *others]])
            rows["labels"].append([2.0] + [rng.random() for _ in others])
    order = list(range(len(rows["query"])))
    rng.shuffle(order)
    return {k: [v[i] for i in order[:num_lists]] for k, v in rows.items()}


def build_student(folder: Path, layers: int, max_length: int) -> Path:
    """The demo's compact student (fresh head, seed 0), saved once."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import set_seed

    from querit_st.cross_encoder import QueritCrossEncoder

    set_seed(0)
    model = QueritCrossEncoder.from_embedding_model("multilingual-e5-small", max_length=max_length,
                                                    config_kwargs={"num_hidden_layers": layers})
    model.save_pretrained(str(folder))
    return folder


def train_once(config: str, model_dir: Path, rows: dict[str, list], batch_size: int, steps: int) -> dict[str, Any]:
    """Train ``steps`` steps of ``config`` on ``rows``; returns per-step times and the losses."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import ListNetLoss
    from transformers import TrainerCallback, set_seed

    from querit_st.losses import ScoreGapHingeLoss
    from querit_st.training import configure_fast_training, freeze_word_embeddings

    set_seed(0)
    model = CrossEncoder(str(model_dir))
    if config != "st-defaults":
        freeze_word_embeddings(model)  # the same trainable parameters everywhere (the demo's setting)
    if config in ("st-listnet", "st-defaults"):
        loss = ListNetLoss(model)
    else:
        loss = ScoreGapHingeLoss(model)
    need = batch_size * steps
    ds = Dataset.from_dict({k: (v * (need // len(v) + 1))[:need] for k, v in rows.items()})
    times: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a: Any, s: Any, c: Any, **kw: Any) -> None:
            self.t = time.perf_counter()

        def on_step_end(self, a: Any, s: Any, c: Any, **kw: Any) -> None:
            times.append(time.perf_counter() - self.t)

        def on_log(self, a: Any, s: Any, c: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory() as tmp:
        args = CrossEncoderTrainingArguments(output_dir=tmp, per_device_train_batch_size=batch_size, max_steps=steps,
                                             report_to=[], logging_steps=1, save_strategy="no", use_cpu=True,
                                             seed=0, disable_tqdm=True, learning_rate=1e-4)
        fast = None
        if config.startswith("ours"):
            fast = configure_fast_training(loss, args, "fp32" if config == "ours-fp32" else "auto").to_dict()
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=loss, callbacks=[Clock()])
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
        if fast is not None:
            from querit_st.training import restore_model

            restore_model(loss)
    timed = times[1:] or times
    pairs_per_step = batch_size * len(rows["documents"][0])
    return {"pairs_per_s": pairs_per_step / statistics.median(timed), "median_step_s": statistics.median(timed),
            "train_call_s": total, "steps": steps, "losses": losses, "fast_path": fast,
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("QUERIT_DATA", ROOT.parent / "shared" / "data")))
    p.add_argument("--lists", default="64", help="comma-separated numbers of lists (the scaling points)")
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4, help="lists per step (the demo's 4)")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown or ANCHOR not in configs:
        p.error(f"--configs: unknown {unknown} (known: {', '.join(CONFIGS)}; {ANCHOR} is required)")
    lists = [int(x) for x in args.lists.split(",")]
    if any(n < args.batch_size * 2 for n in lists):
        p.error(f"--lists: each value must be at least 2 x --batch-size ({2 * args.batch_size})")
    from querit_st.training.fast import choose_fast_path
    from querit_st.utils import cache_root
    from querit_st.utils.machine import machine_info

    model_dir = build_student(cache_root() / "bench" / f"e5-small-{args.layers}l-ce-seed0", args.layers, args.max_length)
    res: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "setup": {"model": f"multilingual-e5-small, first {args.layers} layers, fresh head", "max_length": args.max_length,
                  "lists_per_step": args.batch_size, "candidates_per_list": args.candidates,
                  "rows": f"stage-1 train lists from {', '.join(DATASETS)} (gold + random passages of the same corpus)",
                  "fast_path_auto": choose_fast_path("auto").to_dict()},
        "runs": {},
    }
    for n in lists:
        rows = build_rows(args.data_root, n, args.candidates)
        steps = n // args.batch_size
        per_round: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[: r % len(configs)]
            for c in order:
                got = train_once(c, model_dir, rows, args.batch_size, steps)
                per_round[c].append(got)
                _log(f"[lists={n} round {r + 1}] {c}: {got['pairs_per_s']:.1f} pairs/s ({got['train_call_s']:.0f} s)")
        anchor = per_round[ANCHOR]
        summary = {}
        for c in configs:
            ratios = [g["pairs_per_s"] / a["pairs_per_s"] for g, a in zip(per_round[c], anchor)]
            summary[c] = {"pairs_per_s": statistics.median(g["pairs_per_s"] for g in per_round[c]),
                          "ratio_vs_st_fp32": statistics.median(ratios),
                          "train_call_s": statistics.median(g["train_call_s"] for g in per_round[c]),
                          "per_round": per_round[c]}
        res["runs"][str(n)] = {"lists": n, "steps": steps, "configs": summary}
    last = res["runs"][str(lists[-1])]["configs"]
    res["train"] = {"anchor": ANCHOR, "anchor_pairs_per_s": last[ANCHOR]["pairs_per_s"],
                    "ours_pairs_per_s": last["ours"]["pairs_per_s"] if "ours" in last else None,
                    "ratio_vs_st_fp32": last["ours"]["ratio_vs_st_fp32"] if "ours" in last else None,
                    "ratio_vs_st_defaults": (statistics.median(
                        g["pairs_per_s"] / a["pairs_per_s"] for g, a in
                        zip(last["ours"]["per_round"], last["st-defaults"]["per_round"]))
                        if "ours" in last and "st-defaults" in last else None),
                    "growth": {n: {c: v["train_call_s"] for c, v in res["runs"][n]["configs"].items()} for n in res["runs"]}}
    if args.output.is_file():
        old = json.loads(args.output.read_text())
        if "quality" in old.get("train", {}):
            res["train"]["quality"] = old["train"]["quality"]  # written by benchmarks/train_quality.py
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"{'lists':>6} {'config':<10} {'pairs/s':>9} {'x anchor':>9} {'train s':>8}")
    for n, run in res["runs"].items():
        for c, v in run["configs"].items():
            print(f"{n:>6} {c:<10} {v['pairs_per_s']:>9.1f} {v['ratio_vs_st_fp32']:>9.2f} {v['train_call_s']:>8.0f}")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
