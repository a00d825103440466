"""The whole pipeline end to end with tiny models on a slice of shared data; label-free adaptation never
opens the target's queries or qrels; configs reject unknown keys; the CLI exits 2 on bad input."""

from __future__ import annotations

import builtins
import io
import json
import os
import argparse
from pathlib import Path

import pytest
import yaml

from querit_st.utils import QueritInputError
from querit_st.cli import main as cli_main
from querit_st.pipeline import adapt, load_config


def _slice(src: Path, dst: Path, n_queries: int = 12) -> Path:
    """A small BEIR folder: the test queries' relevant documents plus their articles' neighbours."""
    from querit_st.data import load_beir

    data = load_beir(src, split="test")
    qids = list(data.qrels)[:n_queries]
    rel = {d for q in qids for d in data.qrels[q]}
    keep = [d for d in data.corpus if d in rel or int(d.split("-")[0][1:]) % 7 == 0][:150]
    (dst / "qrels").mkdir(parents=True)
    with open(dst / "corpus.jsonl", "w") as f:
        for d in keep:
            f.write(json.dumps({"_id": d, **data.corpus[d]}) + "\n")
    with open(dst / "queries.jsonl", "w") as f:
        for q in qids:
            f.write(json.dumps({"_id": q, "text": data.queries[q]}) + "\n")
    with open(dst / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for d, s in data.qrels[q].items():
                if d in keep:
                    f.write(f"{q}\t{d}\t{s}\n")
    return dst


def test_pipeline_end_to_end(tiny_config, shared_data, tmp_path):
    a = _slice(shared_data / "xquad-r-de", tmp_path / "de")
    b = _slice(shared_data / "xquad-r-es", tmp_path / "es")
    out = tmp_path / "run"
    code = cli_main(["pipeline", "--config", str(tiny_config), "--target", str(a), str(b), "--output", str(out)])
    assert code == 0
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["results"]) == {"de", "es"}
    for rep in summary["results"].values():
        for system in ("retriever", "teacher_ensemble", "stage1", "merged", "merged (no fusion)"):
            assert 0.0 <= rep[system]["nDCG@10"] <= 1.0
    assert (out / "results.png").stat().st_size > 1000
    merged_cfg = json.loads((Path(summary["merged"]) / "config_sentence_transformers.json").read_text())
    assert merged_cfg["default_prompt_name"] == "querit"
    from sentence_transformers import CrossEncoder

    assert CrossEncoder(summary["merged"]).predict([("eine frage", "ein satz")]).shape == (1,)
    # stage 1 is cached: a second pipeline run reuses every stage
    before = os.path.getmtime(Path(summary["stage1"]) / "model.safetensors")
    assert cli_main(["pipeline", "--config", str(tiny_config), "--target", str(a), "--output", str(tmp_path / "run2")]) == 0
    assert os.path.getmtime(Path(summary["stage1"]) / "model.safetensors") == before


def test_adaptation_never_reads_queries_or_qrels(tiny_config, shared_data, tmp_path, monkeypatch):
    target = _slice(shared_data / "xquad-r-de", tmp_path / "target")
    base = tmp_path / "base"
    from querit_st.cross_encoder import QueritCrossEncoder

    cfg = load_config(tiny_config)
    QueritCrossEncoder.from_embedding_model(cfg.backbone, max_length=64).save_pretrained(str(base))
    opened: list[str] = []
    real_open, real_io_open = builtins.open, io.open

    def spy(file, *args, **kwargs):
        name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
        if name.startswith(str(target)) and ("queries" in name or "qrels" in name):
            raise AssertionError(f"adaptation opened {name}")
        opened.append(name)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    path = adapt(cfg, target, base, tmp_path / "adapted")
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_io_open)
    assert (path / "config.json").is_file()
    assert any(o.endswith("corpus.jsonl") for o in opened)
    # and a target with nothing but a corpus adapts too
    only = tmp_path / "only-corpus"
    only.mkdir()
    (only / "corpus.jsonl").write_bytes((target / "corpus.jsonl").read_bytes())
    assert (adapt(cfg, only, base, tmp_path / "adapted2") / "config.json").is_file()


def test_config_rejects_unknown_keys_and_cli_exit_codes(tmp_path, tiny_config, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("retriever: minilm-l6\nadapt: {num_querys: 5}\n")
    with pytest.raises(QueritInputError, match=r"config.adapt.*num_querys"):
        load_config(bad)
    bad.write_text("pretrain: {train: {loss: focal}}\n")
    with pytest.raises(QueritInputError, match="unknown loss 'focal'"):
        load_config(bad)
    bad.write_text("evaluate: {inference: turbo}\n")
    with pytest.raises(QueritInputError, match="evaluate.inference 'turbo'"):
        load_config(bad)
    bad.write_text("retriever: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(QueritInputError, match="not valid YAML"):
        load_config(bad)
    assert cli_main(["pipeline", "--config", str(tmp_path / "missing.yaml"), "--target", "x", "--output", str(tmp_path / "o")]) == 2
    assert cli_main(["pipeline", "--config", str(tiny_config), "--target", str(tmp_path / "nope"), "--output", str(tmp_path / "o2")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "results.json").exists()
    assert cli_main(["frobnicate"]) == 2
    with pytest.raises(SystemExit) as e:
        cli_main(["adapt"])  # argparse: missing --target
    assert e.value.code == 2


def test_config_base_extends_another_file(tmp_path):
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / "root.yaml").write_text(
        "max_length: 96\nadapt: {num_queries: 50, top_k: 12, train: {epochs: 2, learning_rate: 3.0e-5}}\n")
    (tmp_path / "mid.yaml").write_text("base: parent/root.yaml\nseed: 3\n")
    (tmp_path / "child.yaml").write_text(f"base: {tmp_path / 'mid.yaml'}\nadapt: {{num_queries: 80, train: {{learning_rate: 1.0e-4}}}}\n")
    cfg = load_config(tmp_path / "child.yaml")
    # the child's values win; nested mappings merge key by key through two levels of base (relative, then absolute)
    assert (cfg.max_length, cfg.seed, cfg.adapt.num_queries, cfg.adapt.top_k) == (96, 3, 80, 12)
    assert (cfg.adapt.train.epochs, cfg.adapt.train.learning_rate) == (2, 1e-4)
    assert load_config(tmp_path / "child.yaml", {"adapt": {"top_k": 7}}).adapt.top_k == 7  # overrides apply last
    # the shipped variant is demo.yaml plus its changes
    configs = Path(__file__).resolve().parents[1] / "examples" / "configs"
    demo = load_config(configs / "demo.yaml", {"adapt": {"num_queries": 600, "top_k": 30,
                                                         "train": {"learning_rate": 1e-4}}})
    assert load_config(configs / "adapt600.yaml") == demo
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(QueritInputError, match="extends itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(QueritInputError, match=r"c.yaml.*its base .*gone.yaml.* does not exist"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: [demo.yaml]\n")
    with pytest.raises(QueritInputError, match="'base' must be the path of another config file"):
        load_config(tmp_path / "d.yaml")


def test_evaluation_inference_mode_gives_the_same_metrics(tiny_config, tiny_cross_encoder_dir, shared_data, tmp_path):
    from querit_st.pipeline import evaluate_models

    target = _slice(shared_data / "xquad-r-en", tmp_path / "en")
    cfg = load_config(tiny_config)
    fp32 = evaluate_models(cfg, target, {"m": tiny_cross_encoder_dir}, include_teacher=False)
    cfg.evaluate.inference = "packed"
    packed = evaluate_models(cfg, target, {"m": tiny_cross_encoder_dir}, include_teacher=False)
    assert packed["m"]["nDCG@10"] == pytest.approx(fp32["m"]["nDCG@10"], abs=1e-9)
    assert packed["per_query_nDCG@10"]["m"] == pytest.approx(fp32["per_query_nDCG@10"]["m"], abs=1e-9)
    cfg.evaluate.inference = "turbo"
    with pytest.raises(QueritInputError, match="turbo"):
        evaluate_models(cfg, target, {"m": tiny_cross_encoder_dir}, include_teacher=False)


def test_evaluation_scores_are_kept_on_disk_and_read_back(tiny_config, tiny_cross_encoder_dir, shared_data, tmp_path,
                                                         monkeypatch):
    """``evaluate.cache``: a second evaluation of the same weights scores nothing and reports the same numbers."""
    from querit_st.pipeline import evaluate_models
    from querit_st.pipeline.evaluate import reranker_scorer

    monkeypatch.setenv("QUERIT_ST_CACHE", str(tmp_path / "cache"))
    target = _slice(shared_data / "xquad-r-en", tmp_path / "en")
    cfg = load_config(tiny_config)
    first = evaluate_models(cfg, target, {"m": tiny_cross_encoder_dir}, include_teacher=False)
    scorer = reranker_scorer(cfg, tiny_cross_encoder_dir)
    assert scorer.store is not None and len(scorer.store) == 12 * 10  # 12 queries x top-10
    scorer.score(["electric field"], ["the electric field of a wave"])
    assert scorer.cache_misses == 1
    again = evaluate_models(cfg, target, {"m": tiny_cross_encoder_dir}, include_teacher=False)
    assert again["m"] == first["m"] and again["per_query_nDCG@10"]["m"] == first["per_query_nDCG@10"]["m"]
    cfg.evaluate.cache = False
    assert reranker_scorer(cfg, tiny_cross_encoder_dir).store is None


def test_stage1_teacher_language_filter_and_compact_backbone(tiny_config, shared_data, tmp_path):
    """The stage-2 levers: the stage-1 model joins the teachers in stage 2 only (never the baseline ensemble),
    English-only members drop out for other languages, the source document gets its bonus, and ``backbone_layers``
    keeps the first n layers."""
    from querit_st.pipeline import build_teacher, pretrain
    from querit_st.teachers import CrossEncoderTeacher, EnsembleTeacher

    values = yaml.safe_load(Path(tiny_config).read_text())
    emb = values["teachers"][0]["model"]
    values["teachers"] = [{"type": "embedding", "model": emb, "languages": ["english"]}, {"type": "bm25"},
                          {"type": "stage1", "weight": 2.0, "inference": "onnx"}]
    values["backbone_layers"] = 1
    values["adapt"]["source_bonus"] = 0.5
    path = tmp_path / "levers.yaml"
    path.write_text(yaml.safe_dump(values))
    cfg = load_config(path)
    texts = ["ein satz über physik", "noch ein satz"]
    base = build_teacher(cfg.teachers, texts, "german")  # no stage-1 model: the off-the-shelf teachers only
    assert type(base).__name__ == "BM25Teacher"  # the English-only member is left out for German
    en = build_teacher(cfg.teachers, texts, "english")
    assert isinstance(en, EnsembleTeacher) and len(en.teachers) == 2

    stage1 = pretrain(cfg)
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(str(stage1)).num_hidden_layers == 1
    with_s1 = build_teacher(cfg.teachers, texts, "german", stage1=stage1)
    assert isinstance(with_s1, EnsembleTeacher) and with_s1.weights == [1.0, 2.0]
    assert isinstance(with_s1.teachers[1], CrossEncoderTeacher) and with_s1.teachers[1].inference == "onnx"

    target = _slice(shared_data / "xquad-r-de", tmp_path / "de")
    model = adapt(cfg, target, stage1, tmp_path / "adapted")
    from querit_st.mining import load_mined_dataset

    mined = load_mined_dataset(tmp_path / "adapted" / "mined")
    assert mined.num_rows > 0
    log = json.loads((tmp_path / "adapted" / "train_log.json").read_text())
    assert log["stage"] == "adapt" and (model / "config.json").is_file()

    values["backbone_layers"] = 0
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(QueritInputError, match="backbone_layers"):
        load_config(path)
    values["backbone_layers"] = None
    values["teachers"] = [{"type": "embedding", "model": emb, "languages": ["english"]}]
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(QueritInputError, match="language 'german'"):
        build_teacher(load_config(path).teachers, texts, "german")


def test_stage1_cache_key_ignores_stage2_only_teachers(tiny_config):
    """A ``stage1`` teacher acts only in stage 2: its weight must not invalidate the cached stage-1 model, while
    anything stage 1 reads (its teachers, its training) must."""
    from querit_st.pipeline import stage1_dir

    base = yaml.safe_load(Path(tiny_config).read_text())
    with_stage1 = {**base, "teachers": base["teachers"] + [{"type": "stage1", "weight": 1.0}]}
    heavier = {**base, "teachers": base["teachers"] + [{"type": "stage1", "weight": 3.0}]}
    key = stage1_dir(load_config(None, base))
    assert stage1_dir(load_config(None, with_stage1)) == key
    assert stage1_dir(load_config(None, heavier)) == key
    onnx_stage1 = {**base, "teachers": base["teachers"] + [{"type": "stage1", "inference": "onnx"}]}
    assert stage1_dir(load_config(None, onnx_stage1)) == key
    explicit_default = {**base, "teachers": [{**t, "inference": "fp32"} for t in base["teachers"]]}
    assert stage1_dir(load_config(None, explicit_default)) == key  # the new field's default keeps old cache keys
    explicit_layers = {**base, "teachers": [{**t, "layers": None} for t in base["teachers"]]}
    assert stage1_dir(load_config(None, explicit_layers)) == key  # so does `layers`' (None: the student's stage 1)
    other_teacher = {**base, "teachers": [{**base["teachers"][0], "weight": 2.0}, base["teachers"][1]]}
    assert stage1_dir(load_config(None, other_teacher)) != key
    other_train = {**base, "pretrain": {**base["pretrain"], "num_candidates": 6}}
    assert stage1_dir(load_config(None, other_train)) != key


def test_stage1_cache_folder_of_the_scale_config_is_stable():
    """The stage-1 cache folder of the at-scale run is pinned: a new config field must not move it (adding
    ``TeacherSpec.layers`` once did, and the next run started its hours of training from step 0 in a new folder
    instead of resuming from its checkpoints). Change this name only when stage 1's settings really change."""
    from querit_st.cli import parse_overrides
    from querit_st.pipeline import stage1_dir

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "configs" / "stage1_scale.yaml",
                      parse_overrides(["pretrain.max_queries_per_dataset=500", "pretrain.train.save_steps=400"]))
    assert stage1_dir(cfg).name == "multilingual-e5-small-da968cafe7da"


def test_teacher_inference_mode_is_checked(tiny_config):
    base = yaml.safe_load(Path(tiny_config).read_text())
    bad_mode = {**base, "teachers": base["teachers"] + [{"type": "stage1", "inference": "turbo"}]}
    with pytest.raises(QueritInputError, match=r"teachers\[\d\]\.inference 'turbo'"):
        load_config(None, bad_mode)
    not_a_cross_encoder = {**base, "teachers": [{**base["teachers"][0], "inference": "onnx"}]}
    with pytest.raises(QueritInputError, match="cross-encoder and stage1 teachers only"):
        load_config(None, not_a_cross_encoder)
    cfg = load_config(None, {**base, "teachers": base["teachers"] + [{"type": "stage1", "inference": "onnx"}]})
    assert cfg.teachers[-1].inference == "onnx"


def test_config_overrides_merge_nested_and_replace_lists(tiny_config):
    from querit_st.pipeline import merge_config_values

    base = {"seed": 0, "adapt": {"num_queries": 200, "train": {"loss": "hinge", "learning_rate": 3e-5}},
            "teachers": [{"type": "bm25"}, {"type": "stage1"}]}
    out = merge_config_values(base, {"adapt": {"num_queries": 600, "train": {"learning_rate": 1e-4}},
                                     "teachers": [{"type": "bm25"}]})
    assert out["adapt"] == {"num_queries": 600, "train": {"loss": "hinge", "learning_rate": 1e-4}}
    assert out["teachers"] == [{"type": "bm25"}] and out["seed"] == 0
    assert base["adapt"]["num_queries"] == 200 and base["adapt"]["train"]["learning_rate"] == 3e-5  # not mutated
    # load_config applies them to the file: one nested key changes, its siblings stay
    file_values = yaml.safe_load(Path(tiny_config).read_text())
    cfg = load_config(tiny_config, {"adapt": {"num_queries": 7, "train": {"learning_rate": 5e-4}}})
    assert cfg.adapt.num_queries == 7 and cfg.adapt.train.learning_rate == 5e-4
    assert cfg.adapt.top_k == file_values["adapt"]["top_k"]
    assert cfg.adapt.train.max_steps == file_values["adapt"]["train"]["max_steps"]


def test_cli_set_overrides_nested_values(tmp_path):
    """``--set KEY=VALUE`` (dotted key, YAML value) changes one value and keeps the rest of its section."""
    from querit_st.cli import _config, parse_overrides
    from querit_st.pipeline import load_config

    assert parse_overrides(["adapt.seeds=[0,1,2]", "seed=3", "adapt.query_generator.type=terms"]) == {
        "adapt": {"seeds": [0, 1, 2], "query_generator": {"type": "terms"}}, "seed": 3}
    config = Path(__file__).resolve().parents[1] / "examples" / "configs" / "demo.yaml"
    base = load_config(config)
    args = argparse.Namespace(config=str(config), data_root=None, lora=False,
                              overrides=["adapt.seeds=[0, 1, 2]", "adapt.train.learning_rate=1e-4"])
    cfg = _config(args)
    assert cfg.adapt.seeds == [0, 1, 2] and cfg.adapt.train.learning_rate == 1e-4
    assert cfg.adapt.num_queries == base.adapt.num_queries and cfg.adapt.train.loss == base.adapt.train.loss
    with pytest.raises(QueritInputError, match="already set"):
        parse_overrides(["seed=1", "seed.x=2"])


def test_group_table_averages_each_groups_targets():
    """The demo's group table: a group's row is the mean over its targets that were run (named in the row), a
    target's adapted checkpoints (one per seed) count as one ``adapted`` score, non-metric entries are ignored."""
    from querit_st.pipeline import group_table

    def rep(retriever, adapted, merged):
        t = {"retriever": {"nDCG@10": retriever}, "merged": {"nDCG@10": merged},
             "per_query_nDCG@10": {"retriever": {"q1": 1.0}}, "language": "english"}
        for seed, a in enumerate(adapted):
            t[f"adapt-x-s{seed}"] = {"nDCG@10": a}
        return t

    results = {"vaswani": rep(0.40, [0.44, 0.46], 0.47), "xquad-r-de": rep(0.80, [0.84], 0.85),
               "xquad-r-zh": rep(0.70, [0.76], 0.75), "mycorpus": rep(0.10, [0.20], 0.30)}
    lines = group_table(results).splitlines()
    assert lines[0] == "| group | retriever | merged | adapted |"
    assert lines[2] == "| english (1/4: vaswani) | 0.4000 | 0.4700 | 0.4500 |"
    assert lines[3] == "| xquad-r (2/7: de, zh) | 0.7500 | 0.8000 | 0.8000 |"
    assert lines[4].startswith("| all targets | 0.5000 |")  # every target run, the user's own corpus included
    only = group_table({"xquad-r-de": rep(0.80, [0.84], 0.85)}).splitlines()
    assert len(only) == 3 and only[2].startswith("| xquad-r (1/7: de) |")  # no 'all targets' row for one target


def test_identical_baselines_are_scored_once():
    """The demo's teacher ensemble is the zero-training hybrid (retriever + BM25, + MiniLM on English): the
    evaluation scores such an ensemble once and reports it under both names; other weights or members differ."""
    from querit_st.pipeline import TeacherSpec, hybrid_specs
    from querit_st.pipeline.factories import ensemble_members

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "configs" / "demo.yaml")
    for language in ("english", "german"):
        assert ensemble_members(cfg.teachers, language) == ensemble_members(hybrid_specs(cfg, language), language)
    english = ensemble_members(cfg.teachers, "english")
    assert len(english) == 3 and len(ensemble_members(cfg.teachers, "german")) == 2  # MiniLM is English-only
    heavier = [TeacherSpec("bm25", weight=2.0) if t.type == "bm25" else t for t in cfg.teachers]
    assert ensemble_members(heavier, "english") != english
    assert ensemble_members([*cfg.teachers, TeacherSpec("cross-encoder", "some/model")], "english") != english
