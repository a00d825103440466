"""``run_pipeline``: every stage in order, with everything checkable checked before the first expensive step."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from querit_st.pipeline.config import PipelineConfig, check_config
from querit_st.pipeline.evaluate import evaluate_models, merge_checkpoints
from querit_st.pipeline.report import bar_chart, group_table, results_table
from querit_st.pipeline.stage1 import pretrain, stage1_teachers
from querit_st.pipeline.stage2 import adapt, target_name
from querit_st.utils import QueritInputError, atomic_write_json
from querit_st.utils.machine import machine_info

logger = logging.getLogger(__name__)


def fields_for(folder: Path, fields: dict[str, str | None] | None) -> dict[str, str | None]:
    """The column names that apply to one target: a corpus file's (or saved dataset's), none for a BEIR folder."""
    return dict(fields or {}) if folder.is_file() or not (folder / "corpus.jsonl").is_file() else {}


def preflight(cfg: PipelineConfig, targets: list[str], fields: dict[str, str | None] | None = None) -> None:
    """The checks that need no model: the config's meaning, each target's corpus (read and checked: malformed
    lines, duplicate ids, whitespace-only texts are reported with the file and id now, not after training), the
    merge weights against the number of checkpoints, the stage-1 datasets."""
    from querit_st.data import load_corpus

    if not targets:
        raise QueritInputError("no targets given; expected at least one BEIR folder")
    check_config(cfg)
    for t in targets:
        folder = cfg.data_dir(t)
        if folder.is_dir() and not (folder / "corpus.jsonl").is_file() and not (folder / "dataset_info.json").is_file():
            raise QueritInputError(f"target {t!r} has no corpus.jsonl (expected a BEIR folder or a corpus file)")
        load_corpus(folder, **fields_for(folder, fields))
    with_dev = []
    for name in cfg.pretrain.datasets:
        folder = cfg.data_dir(name)
        if not (folder / "qrels" / f"{cfg.pretrain.split}.tsv").is_file():
            raise QueritInputError(f"stage-1 dataset {name!r} has no qrels/{cfg.pretrain.split}.tsv")
        if cfg.pretrain.dev_split and (folder / "qrels" / f"{cfg.pretrain.dev_split}.tsv").is_file():
            with_dev.append(name)
    if cfg.pretrain.dev_split and cfg.pretrain.datasets and not with_dev:  # a set without one only trains (XQuAD-R)
        raise QueritInputError(f"config pretrain.dev_split = {cfg.pretrain.dev_split!r}: none of the stage-1 datasets "
                               f"({', '.join(cfg.pretrain.datasets)}) has qrels/{cfg.pretrain.dev_split}.tsv")
    n = len(targets) * len(cfg.adapt.seeds) + (1 if cfg.merge.include_stage1 else 0)
    if n > 2 and cfg.merge.t != 0.5 and cfg.merge.weights is None:
        raise QueritInputError(f"config merge.t = {cfg.merge.t} places a SLERP between two checkpoints; this run merges "
                               f"{n}: give merge.weights (one share per checkpoint) instead")
    if cfg.merge.weights is not None and len(cfg.merge.weights) != n:
        raise QueritInputError(f"config merge.weights has {len(cfg.merge.weights)} entries; this run merges {n} "
                               f"checkpoints ({len(targets)} target(s) x {len(cfg.adapt.seeds)} seed(s)"
                               f"{' + stage 1' if cfg.merge.include_stage1 else ''})")


def run_pipeline(
    cfg: PipelineConfig,
    targets: list[str],
    output_dir: str | os.PathLike,
    *,
    resume: bool = True,
    evaluate: bool = True,
    fields: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """All stages: stage 1 (cached), stage 2 per target and seed, merge, and evaluation when targets have qrels.

    ``targets`` are BEIR folders (or names under the data root) or corpus files (``fields`` names their columns).
    Writes ``output_dir/results.json``, ``output_dir/results.png`` and returns the results.
    """
    from querit_st.training import is_main_process

    fields = {k: v for k, v in (fields or {}).items() if v}
    preflight(cfg, targets, fields)  # fail early, before hours of training
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    stage1 = pretrain(cfg, resume=resume)
    timings["pretrain"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if stage1_teachers(cfg, resume=resume):  # the larger stage-1 teachers, trained (or reused) once for every target
        timings["pretrain-teachers"] = time.perf_counter() - t1
    adapted: list[Path] = []
    names: dict[str, Path] = {}
    for t in targets:
        for seed in cfg.adapt.seeds:
            t1 = time.perf_counter()
            name = f"adapt-{target_name(t)}-s{seed}"
            path = adapt(cfg, t, stage1, out / name, seed=seed, resume=resume, fields=fields_for(cfg.data_dir(t), fields))
            timings[name] = time.perf_counter() - t1
            adapted.append(path)
            names[name] = path
    if not is_main_process():  # DDP: the other ranks trained with the main one; merge and evaluation are single-process
        return {"stage1": str(stage1), "adapted": {n: str(p) for n, p in names.items()}}
    t1 = time.perf_counter()
    to_merge = ([stage1] if cfg.merge.include_stage1 else []) + adapted
    merged = merge_checkpoints(to_merge, out / "merged", t=cfg.merge.t, weights=cfg.merge.weights)
    timings["merge"] = time.perf_counter() - t1
    logger.info("[merge] %d checkpoint(s) -> %s in %.0f s", len(to_merge), merged, timings["merge"])
    results: dict[str, Any] = {}
    if evaluate:
        for t in targets:
            if not (cfg.data_dir(t) / "qrels" / f"{cfg.evaluate.split}.tsv").is_file():
                continue  # a corpus without qrels (a user's own): nothing to evaluate
            t1 = time.perf_counter()
            own = {n: p for n, p in names.items() if n.startswith(f"adapt-{target_name(t)}-s")}
            models = {"stage1": stage1, **own, "merged": merged}
            results[target_name(t)] = evaluate_models(cfg, t, models)
            timings[f"evaluate-{target_name(t)}"] = time.perf_counter() - t1
    summary = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "config": cfg.to_dict(),
        "stage1": str(stage1),
        "adapted": {n: str(p) for n, p in names.items()},
        "merged": str(merged),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "results": results,
    }
    atomic_write_json(out / "results.json", summary)
    if results:
        summary["table"] = results_table(results)
        summary["group_table"] = group_table(results)
        chart = bar_chart(results, out / "results.png")
        summary["chart"] = str(chart) if chart else None
        atomic_write_json(out / "results.json", summary)
    return summary
