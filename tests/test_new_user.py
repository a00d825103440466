"""What a new user hits (issue #22), each reproduced with tiny in-process models and the CLI: LoRA through the
pipeline, stale re-runs, config type checks, errors found early, progress lines, instructions, merge weights,
the chart's legend, corpus files and empty documents."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from conftest import varied_corpus
from querit_st.cli import main as cli_main
from querit_st.pipeline import adapt, load_config, pretrain
from querit_st.utils import QueritInputError


def _beir(folder: Path, docs: list[dict], queries: list[dict] | None = None, qrels: list[tuple] | None = None) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries or [{"_id": "q1", "text": "x"}]))
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels or [("q1", docs[0]["_id"], 1)]]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def _corpus(n: int = 40) -> list[dict]:
    return varied_corpus(n)


def _config(tiny_config: Path, tmp_path: Path, **changes) -> Path:
    values = yaml.safe_load(tiny_config.read_text())
    for dotted, value in changes.items():
        node = values
        *head, last = dotted.split("__")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = value
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# ------------------------------------------------------------------------------------------------ 1. LoRA
def test_lora_trains_saves_head_reloads_identically_and_runs_through_the_pipeline(tiny_config, tmp_path):
    pytest.importorskip("peft")
    from sentence_transformers import CrossEncoder

    target = _beir(tmp_path / "t", _corpus())
    out = tmp_path / "run"
    assert cli_main(["pipeline", "--config", str(tiny_config), "--lora", "--target", str(target),
                     "--output", str(out), "--no-eval"]) == 0
    model_dir = out / "adapt-t-s0" / "model"
    adapter = out / "adapt-t-s0" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["modules_to_save"], "the scoring head must be saved with the adapter"
    # the final model is folded (plain weights, no lora tensors) and reloads with identical scores
    from safetensors.torch import load_file

    assert not [k for k in load_file(str(model_dir / "model.safetensors")) if "lora_" in k]
    pairs = [("quantum laser", "quantum laser plasma"), ("photon", "thermal crystal")]
    a = CrossEncoder(str(model_dir)).predict(pairs)
    b = CrossEncoder(str(model_dir)).predict(pairs)
    assert (a == b).all()
    assert (out / "merged" / "config.json").is_file()


# ------------------------------------------------------------------------------------------------ 2. stale re-runs
def test_rerun_with_changed_stage2_settings_retrains(tiny_config, tiny_cross_encoder_dir, tmp_path, caplog):
    target = _beir(tmp_path / "t", _corpus())
    cfg = load_config(tiny_config)
    out = tmp_path / "a"
    first = adapt(cfg, target, tiny_cross_encoder_dir, out)
    log1 = json.loads((out / "train_log.json").read_text())
    # same settings: reused (no training)
    before = (first / "model.safetensors").stat().st_mtime_ns
    adapt(cfg, target, tiny_cross_encoder_dir, out)
    assert (first / "model.safetensors").stat().st_mtime_ns == before
    # changed settings: retrained, and the record shows the new settings
    changed = load_config(tiny_config, {"adapt": {"num_queries": 6, "train": {"loss": "kl"}}})
    with caplog.at_level(logging.WARNING):
        adapt(changed, target, tiny_cross_encoder_dir, out)
    assert "settings differ" in caplog.text and "adapt.num_queries" in caplog.text
    log2 = json.loads((out / "train_log.json").read_text())
    assert log1["loss"] == "hinge" and log2["loss"] == "kl"
    assert json.loads((out / "fingerprint.json").read_text())["settings"]["adapt"]["num_queries"] == 6


def test_pretrain_into_a_folder_made_with_other_settings_retrains(tiny_config, tmp_path):
    out = tmp_path / "s1"
    cfg = load_config(tiny_config)
    pretrain(cfg, out)
    other = load_config(tiny_config, {"pretrain": {"train": {"learning_rate": 5e-4}}})
    pretrain(other, out)
    assert json.loads((out / "train_log.json").read_text())["learning_rate"] == 5e-4


# ------------------------------------------------------------------------------------------------ 3. config types
@pytest.mark.parametrize("setting, expect", [
    ("pretrain.train.max_steps=abc", "pretrain.train.max_steps = 'abc': expected an integer"),
    ("adapt.num_queries=-3", "adapt.num_queries = -3: expected a value >= 1"),
    ("merge.t=1.5", "merge.t = 1.5: expected a value <= 1.0"),
    ("evaluate.top_k=2.5", "evaluate.top_k = 2.5: expected an integer"),
    ("adapt.train.bf16=maybe", "adapt.train.bf16 = 'maybe': expected true/false"),
    ("teachers=[{type: nope}]", "teachers[0].type = 'nope'"),
    ("language=klingon", "language = 'klingon'"),
])
def test_bad_config_values_exit_2_with_one_line_before_anything_is_written(tiny_config, tmp_path, capsys, setting,
                                                                             expect):
    out = tmp_path / "out"
    code = cli_main(["pipeline", "--config", str(tiny_config), "--set", setting, "--target", "x", "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expect in err and len(err.splitlines()) == 1
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ 4. early errors
def test_errors_that_can_be_found_before_training_are(tiny_config, tiny_cross_encoder_dir, tmp_path, capsys):
    target = _beir(tmp_path / "t", _corpus())
    # adapt --base with a missing model: a clear error before any mined shard is written
    out = tmp_path / "a"
    assert cli_main(["adapt", "--config", str(tiny_config), "--target", str(target), "--base",
                     str(tmp_path / "no-model"), "--output", str(out)]) == 2
    assert "no-model" in capsys.readouterr().err and not (out / "mined").exists()
    # a whitespace-only text is reported with the file and the document id before stage 1 runs
    bad = _beir(tmp_path / "bad", [*_corpus(5), {"_id": "d9", "title": 7, "text": "x"}])
    assert cli_main(["pipeline", "--config", str(tiny_config), "--target", str(bad), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "d9" in err and "corpus.jsonl" in err
    assert not (tmp_path / "stage1").exists()
    # merge weights that do not match the number of checkpoints: before stage 1
    cfg = load_config(tiny_config, {"merge": {"weights": [1.0, 2.0, 3.0]}})
    from querit_st.pipeline import run_pipeline

    with pytest.raises(QueritInputError, match="merge.weights has 3 entries"):
        run_pipeline(cfg, [str(target)], tmp_path / "o2")
    # merge.t with more than two checkpoints is not silently ignored
    cfg = load_config(tiny_config, {"merge": {"t": 0.3}, "adapt": {"seeds": [0, 1, 2]}})
    with pytest.raises(QueritInputError, match="give merge.weights"):
        run_pipeline(cfg, [str(target)], tmp_path / "o3")
    assert not (tmp_path / "stage1").exists()


# ------------------------------------------------------------------------------------------------ 5. progress
def test_training_prints_progress_lines_not_raw_dicts(tiny_config, tiny_cross_encoder_dir, tmp_path, caplog, capsys):
    target = _beir(tmp_path / "t", _corpus())
    with caplog.at_level(logging.INFO, logger="querit_st"):
        adapt(load_config(tiny_config), target, tiny_cross_encoder_dir, tmp_path / "a")
    lines = [r.getMessage() for r in caplog.records if r.name == "querit_st.progress"]
    train = [ln for ln in lines if ln.startswith("[adapt t s0]")]
    assert train and "ETA" in train[-1] and "loss" in train[-1] and "4/4 steps (100%)" in train[-1]
    assert "{'loss'" not in capsys.readouterr().out


def test_progress_line_format():
    from querit_st.utils.progress import format_eta, progress_line

    assert progress_line("mining", 10, 40, 2.0, "shards") == "[mining] 10/40 shards (25%) | 2.00 shards/s | ETA 0:15"
    assert format_eta(3725) == "1:02:05" and format_eta(float("nan")) == "?"


# ------------------------------------------------------------------------------------------------ 6. instructions
def test_evaluate_passes_a_task_instruction(tiny_cross_encoder_dir, tiny_embedding_dir, tmp_path):
    target = _beir(tmp_path / "t", _corpus(12), [{"_id": "q1", "text": "quantum laser"}, {"_id": "q2", "text": "photon"}],
                   [("q1", "d0", 1), ("q2", "d3", 1)])
    reports = {}
    for name, extra in (("plain", []), ("instr", ["--instruction", "Find physics abstracts about the topic."])):
        out = tmp_path / f"{name}.json"
        assert cli_main(["evaluate", "--data", str(target), "--retriever", str(tiny_embedding_dir), "--reranker",
                         str(tiny_cross_encoder_dir), "--top-k", "8", "--output", str(out), *extra]) == 0
        reports[name] = json.loads(out.read_text())
    assert reports["instr"]["instruction"].startswith("Find physics")
    per_q = [r["datasets"][0]["per_query_nDCG@10"] for r in (reports["plain"], reports["instr"])]
    label = [k for k in per_q[0] if k != "retriever"][0]
    assert reports["plain"]["instruction"] is None and per_q[0][label] is not None


def test_pipeline_config_takes_an_instruction(tiny_config):
    cfg = load_config(tiny_config, {"evaluate": {"instruction": "Judge relevance."}})
    assert cfg.evaluate.instruction == "Judge relevance."


# ------------------------------------------------------------------------------------------------ 11. chart
def test_chart_legend_does_not_cover_the_bars():
    pytest.importorskip("matplotlib")
    from querit_st.pipeline.report import chart_figure

    results = {t: {s: {"nDCG@10": 0.9} for s in ("retriever", "teacher_ensemble", "stage1", "adapt-x-s0", "merged")}
               for t in ("a", "b")}
    fig = chart_figure(results)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, never over a bar


# ------------------------------------------------------------------------------------------------ corpus files
def test_adapt_reads_a_user_corpus_file(tiny_config, tiny_cross_encoder_dir, tmp_path):
    path = tmp_path / "docs.csv"
    rows = ["doc,body"] + [f"{d['_id']},{d['text']}" for d in _corpus()]
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "a"
    assert cli_main(["adapt", "--config", str(tiny_config), "--corpus", str(path), "--id-field", "doc",
                     "--text-field", "body", "--base", str(tiny_cross_encoder_dir), "--output", str(out)]) == 0
    assert (out / "model" / "config.json").is_file()
    assert json.loads((out / "train_log.json").read_text())["target"] == "docs"


def test_adapt_corpus_file_bad_row_is_reported_by_row(tiny_config, tiny_cross_encoder_dir, tmp_path, capsys):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "x y"}) + "\n" + json.dumps({"text": "no id"}) + "\n")
    assert cli_main(["adapt", "--config", str(tiny_config), "--corpus", str(path), "--base",
                     str(tiny_cross_encoder_dir), "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err or "row 2" in err


def test_empty_documents_are_skipped_and_counted(tiny_embedding_dir, tiny_cross_encoder_dir, tmp_path, caplog):
    docs = _corpus(10) + [{"_id": "e1", "title": "", "text": ""}, {"_id": "e2", "title": " ", "text": " "}]
    target = _beir(tmp_path / "t", docs, [{"_id": "q1", "text": "quantum"}], [("q1", "d0", 1), ("q1", "e1", 1)])
    out = tmp_path / "r.json"
    with caplog.at_level(logging.WARNING):
        assert cli_main(["evaluate", "--data", str(target), "--retriever", str(tiny_embedding_dir), "--top-k", "5",
                         "--output", str(out)]) == 0
    assert "skipped 2 of 12 documents" in caplog.text
