"""Stage 1 on several labelled sets in other languages, the dev splits choosing the checkpoint (issue #20)."""

from __future__ import annotations

import json

import yaml

from querit_st.pipeline import load_config, pretrain


def test_stage1_on_multilingual_sets_with_dev_checkpoint_choice(tiny_config, tmp_path):
    values = yaml.safe_load(tiny_config.read_text())
    values["pretrain"].update({"datasets": ["tydi-sw", "arcd-ar"], "dev_split": "dev", "max_queries_per_dataset": 8})
    values["pretrain"]["train"].update({"max_steps": 4, "save_steps": 2})
    path = tmp_path / "scale.yaml"
    path.write_text(yaml.safe_dump(values))
    cfg = load_config(path)
    model = pretrain(cfg, tmp_path / "s1")
    log = json.loads((tmp_path / "s1" / "train_log.json").read_text())
    assert log["rows"] == 16 and log["datasets"] == ["tydi-sw", "arcd-ar"]
    dev = log["dev"]
    assert dev["metric"] == "dev_ndcg@10" and len(dev["history"]) == 2  # evaluated at each checkpoint
    assert 0.0 <= dev["best"] <= 1.0 and dev["best"] == max(h["eval_dev_ndcg@10"] for h in dev["history"])
    assert (model / "config.json").is_file()


def test_stage1_scale_config_names_every_stage1_set(shared_data):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "configs" / "stage1_scale.yaml")
    stage1_sets = sorted(p.name for p in shared_data.iterdir()
                         if (p / "qrels" / "dev.tsv").is_file() and not (p / "qrels" / "test.tsv").is_file())
    assert stage1_sets and set(stage1_sets) <= set(cfg.pretrain.datasets)
    assert cfg.pretrain.dev_split == "dev" and cfg.retriever == "multilingual-e5-small"
