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


def test_labelling_resumes_at_the_first_unfinished_dataset(tiny_config, tmp_path, monkeypatch):
    """Each dataset's lists are on disk once labelled: a run killed in the second dataset relabels only that one,
    and ends with the same rows as an uninterrupted run (each dataset samples from its own generator)."""
    import dataclasses

    import pytest

    from querit_st.pipeline import stage1

    values = yaml.safe_load(tiny_config.read_text())
    values["pretrain"].update({"datasets": ["tydi-sw", "arcd-ar"], "max_queries_per_dataset": 6})
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(values))
    cfg = load_config(path)
    whole = stage1.labelled_lists(cfg).to_dict()
    only_second = stage1.labelled_lists(dataclasses.replace(
        cfg, pretrain=dataclasses.replace(cfg.pretrain, datasets=["arcd-ar"]))).to_dict()
    assert set(only_second["query"]) <= set(whole["query"])

    real, calls = stage1.label_dataset, []

    def dies_in_arcd(cfg_, name, split):
        calls.append(name)
        if name == "arcd-ar":
            raise KeyboardInterrupt  # the run is interrupted while labelling its second dataset
        return real(cfg_, name, split)

    monkeypatch.setattr(stage1, "label_dataset", dies_in_arcd)
    with pytest.raises(KeyboardInterrupt):
        stage1.labelled_lists(cfg, folder=tmp_path / "s1")
    files = sorted(p.name for p in (tmp_path / "s1" / stage1.LABELLED_DIR).iterdir())
    assert files == ["tydi-sw-train.parquet"]  # the finished dataset is kept, nothing partial of the other

    monkeypatch.setattr(stage1, "label_dataset",
                        lambda cfg_, name, split: calls.append(name) or real(cfg_, name, split))
    resumed = stage1.labelled_lists(cfg, folder=tmp_path / "s1").to_dict()
    assert calls == ["tydi-sw", "arcd-ar", "arcd-ar"]  # tydi-sw was read back, not labelled again
    assert resumed == whole
    by_query = dict(zip(whole["query"], zip(whole["documents"], whole["scores"])))
    for q, d, s in zip(only_second["query"], only_second["documents"], only_second["scores"]):
        assert by_query[q] == (d, s)  # arcd-ar's lists do not depend on labelling tydi-sw before it


def test_larger_stage1_teacher_is_trained_once_and_scores_in_stage2(tiny_config, tmp_path):
    """``{type: stage1, layers: n}``: stage 1 retrained with n backbone layers (cached apart from the student's stage
    1, reused on the next call) scores as a stage-2 teacher; only stage1 teachers take ``layers``."""
    import pytest

    from querit_st.pipeline import adapt, build_teacher, stage1_teachers
    from querit_st.utils import QueritInputError

    values = yaml.safe_load(tiny_config.read_text())
    values["teachers"].append({"type": "stage1", "layers": 1, "weight": 2.0})
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(values))
    cfg = load_config(path)
    student = pretrain(cfg)
    larger = stage1_teachers(cfg)
    assert set(larger) == {1} and larger[1] != student
    assert json.loads((larger[1] / "config.json").read_text())["num_hidden_layers"] == 1
    assert json.loads((student / "config.json").read_text())["num_hidden_layers"] == 2
    stamp = (larger[1] / "model.safetensors").stat().st_mtime_ns
    assert stage1_teachers(cfg) == larger and (larger[1] / "model.safetensors").stat().st_mtime_ns == stamp

    texts = ["a physics abstract", "another text"]
    ensemble = build_teacher(cfg.teachers, texts, stage1=student, larger_stage1=larger)
    ce = [m for m in ensemble.teachers if type(m).__name__ == "CrossEncoderTeacher"]
    assert len(ce) == 1 and ce[0].model.model.config.num_hidden_layers == 1
    assert len(build_teacher(cfg.teachers, texts).teachers) == 2  # stage 1 and the baseline leave it out
    with pytest.raises(QueritInputError, match="1-layer stage-1 model"):
        build_teacher(cfg.teachers, texts, stage1=student)

    out = adapt(cfg, "xquad-r-en", student, tmp_path / "adapt")
    assert (out / "config.json").is_file()
    fp = json.loads((tmp_path / "adapt" / "fingerprint.json").read_text())
    kinds = [{"type": t["type"], "layers": t.get("layers")} for t in fp["settings"]["teachers"]]
    assert {"type": "stage1", "layers": 1} in kinds  # part of stage 2's key; left out of it where unset
    assert all("layers" not in t for t in fp["settings"]["teachers"] if t["type"] != "stage1")

    values["teachers"][0]["layers"] = 3  # an embedding teacher
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(QueritInputError, match=r"teachers\[0\].layers applies to stage1 teachers only"):
        load_config(path)


def test_teacher12_config_loads_with_a_12_layer_stage1_teacher():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "configs" / "teacher12.yaml")
    assert cfg.backbone_layers == 6  # the deliverable stays compact
    assert [t.layers for t in cfg.teachers if t.type == "stage1"] == [None, 12]


def test_pretrain_keeps_labelled_lists_and_resume_false_relabels(tiny_config, tmp_path, monkeypatch):
    from querit_st.pipeline import stage1

    cfg = load_config(tiny_config)
    real, calls = stage1.label_dataset, []
    monkeypatch.setattr(stage1, "label_dataset",
                        lambda cfg_, name, split: calls.append(name) or real(cfg_, name, split))
    pretrain(cfg, tmp_path / "s1")
    assert calls == ["xquad-r-en"] and (tmp_path / "s1" / "labelled" / "xquad-r-en-train.parquet").is_file()
    pretrain(cfg, tmp_path / "s1", resume=False)  # a fresh start labels again rather than reading the old lists
    assert calls == ["xquad-r-en", "xquad-r-en"]


def test_preflight_accepts_stage1_sets_without_a_dev_split(tiny_config, shared_data, tmp_path):
    """The at-scale mix: XQuAD-R (train/test only) trains beside sets with a dev split; the pipeline's preflight
    accepts it (as pretrain does) and refuses a dev split that no stage-1 set has, or a set without the train split."""
    import pytest

    from querit_st.pipeline.run import preflight
    from querit_st.utils import QueritInputError

    values = yaml.safe_load(tiny_config.read_text())
    values["pretrain"].update({"datasets": ["tydi-sw", "xquad-r-en"], "dev_split": "dev"})
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(values))
    target = [str(shared_data / "cacm")]
    preflight(load_config(path), target)
    with pytest.raises(QueritInputError, match="pretrain.dev_split = 'validation'.*tydi-sw, xquad-r-en"):
        preflight(load_config(path, {"pretrain": {"dev_split": "validation"}}), target)
    with pytest.raises(QueritInputError, match="'xquad-r-en' has no qrels/dev.tsv"):
        preflight(load_config(path, {"pretrain": {"split": "dev"}}), target)
