"""Scale out and survive faults in training: real 2-process DDP runs (torchrun, gloo on CPU) through the CLI --
stage 1, and stage 2 with every rank mining its own shards -- and a training run killed with SIGKILL right after a
checkpoint that resumes to the same step count and the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    return env


def _with_steps(cfg_path: Path, max_steps: int, save_steps: int) -> Path:
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["pretrain"]["train"].update(max_steps=max_steps, save_steps=save_steps, logging_steps=1)
    cfg_path.write_text(yaml.safe_dump(cfg))
    return cfg_path


def test_torchrun_two_processes_gloo(tiny_config, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "querit_st.cli", "pretrain", "--config", str(_with_steps(tiny_config, 4, 2)), "--output", str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = json.loads((out / "train_log.json").read_text())
    assert log["world_size"] == 2  # the Trainer saw both processes (DDP over gloo), not two independent runs
    assert log["steps"] == 4
    # each rank printed the model path; exactly one process wrote the model
    assert proc.stdout.count(str(out / "model")) == 2
    from sentence_transformers import CrossEncoder

    scores = CrossEncoder(str(out / "model")).predict([("what is a quark", "a quark is a particle"), ("a", "b")])
    assert scores.shape == (2,)


def _rows(ds) -> list[dict]:
    return [dict(r) for r in ds]


def test_torchrun_adapt_each_rank_mines_its_shards(tiny_config, tiny_cross_encoder_dir, tmp_path, monkeypatch):
    """Under DDP both ranks mine (shard k on rank k % 2), then train on the merged rows: equal to one process."""
    from querit_st import pipeline
    from querit_st.mining import load_mined_dataset

    cfg_dict = yaml.safe_load(tiny_config.read_text())
    # 300 queries = 2 shards of mining's default 256, so each of the 2 ranks has one
    cfg_dict["adapt"].update(num_queries=300, top_k=10, num_candidates=4)
    cfg_dict["adapt"]["train"].update(max_steps=2, save_steps=100)
    tiny_config.write_text(yaml.safe_dump(cfg_dict))
    cache = tmp_path / "cache"  # one embedding cache for both runs: the same corpus embeddings
    env = {**_env(), "QUERIT_ST_CACHE": str(cache)}
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "querit_st.cli", "adapt", "--config", str(tiny_config), "--target", "xquad-r-en",
           "--base", str(tiny_cross_encoder_dir), "--output", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = json.loads((out / "train_log.json").read_text())
    assert log["world_size"] == 2 and log["steps"] == 2
    mined = out / "mined"
    workers = {p.name: json.loads(p.read_text()) for p in mined.glob("manifest*.json")}
    assert sorted(workers) == ["manifest-worker000-of002.json", "manifest-worker001-of002.json"]
    assert workers["manifest-worker000-of002.json"]["complete"] == ["shard-00000.parquet"]
    assert workers["manifest-worker001-of002.json"]["complete"] == ["shard-00001.parquet"]
    assert all(m["finished"] and m["num_shards"] == 2 for m in workers.values())

    # the same config in one process (the real single-process adapt, fresh retrievers on the same cache)
    monkeypatch.setenv("QUERIT_ST_CACHE", str(cache))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("querit_st.pipeline.factories._RETRIEVERS", {})
    single = pipeline.adapt(pipeline.load_config(tiny_config), "xquad-r-en", tiny_cross_encoder_dir, tmp_path / "one")
    assert (single / "config.json").is_file()
    assert [p.name for p in (tmp_path / "one" / "mined").glob("manifest*.json")] == ["manifest.json"]
    ref = _rows(load_mined_dataset(tmp_path / "one" / "mined"))
    got = _rows(load_mined_dataset(mined))
    assert len(ref) > 256 and len({r["query_id"] for r in got}) == len(got) == log["num_queries"]
    assert [r["query_id"] for r in got] == [r["query_id"] for r in ref]  # no row lost or duplicated
    assert got == ref  # same rows, same order, same teacher scores


_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback, set_seed
    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.pipeline import load_config, pretrain_dataset, train_model

    cfg_path, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # a real, uncatchable kill right after the checkpoint is on disk

    cfg = load_config(cfg_path)
    dataset = pretrain_dataset(cfg)
    set_seed(cfg.seed)
    model = QueritCrossEncoder.from_embedding_model(cfg.backbone, max_length=cfg.max_length)
    train_model(model, dataset, cfg.pretrain.train, out, seed=cfg.seed,
                callbacks=[KillAfterSave()] if kill_at > 0 else None)
    """
)


def test_training_killed_resumes_with_same_steps_and_weights(tiny_config, tmp_path):
    cfg = _with_steps(tiny_config, 8, 2)
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)

    def run(out: Path, kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(worker), str(cfg), str(out), str(kill_at)], env=_env(),
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)

    full = run(tmp_path / "full", 0)
    assert full.returncode == 0, full.stderr[-4000:]
    killed = run(tmp_path / "resumed", 4)
    assert killed.returncode == -9, killed.stderr[-4000:]
    assert not (tmp_path / "resumed" / "model").exists()  # nothing final was written
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-4").is_dir()
    resumed = run(tmp_path / "resumed", 0)
    assert resumed.returncode == 0, resumed.stderr[-4000:]

    a = json.loads((tmp_path / "full" / "train_log.json").read_text())
    b = json.loads((tmp_path / "resumed" / "train_log.json").read_text())
    assert a["steps"] == b["steps"] == 8
    assert (a["resumed_from_step"], b["resumed_from_step"]) == (0, 4)  # what train_seconds covers
    steps_a = [h["step"] for h in a["log_history"] if "loss" in h]
    steps_b = [h["step"] for h in b["log_history"] if "loss" in h]
    assert steps_b == steps_a == list(range(1, 9))  # no step lost or run twice
    losses_a = [h["loss"] for h in a["log_history"] if "loss" in h]
    losses_b = [h["loss"] for h in b["log_history"] if "loss" in h]
    assert losses_b == pytest.approx(losses_a, rel=1e-4, abs=1e-6)
    wa = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    assert worst < 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"
