"""Bad input at the public entry points and the CLI: a clear error that names the input, nothing partial written,
and on the command line exit code 2 with one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from querit_st.utils import QueritInputError
from querit_st.cli import main as cli_main

DOCS = {"d1": "the magnetic field of a current", "d2": "super bowl football league points",
        "d3": "energy of a wave in a circuit"}


def _beir(folder: Path, *, corpus: list[dict] | None = None, queries: bool = True, qrels: bool = True) -> Path:
    """A tiny BEIR folder written here (no shared data needed)."""
    (folder / "qrels").mkdir(parents=True)
    rows = corpus if corpus is not None else [{"_id": d, "title": "", "text": t} for d, t in DOCS.items()]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if queries:
        (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "magnetic current"}\n'
                                              '{"_id": "q2", "text": "football points"}\n')
    if qrels:
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return folder


def _config(path: Path, tiny_embedding_dir: Path, **sections) -> Path:
    cfg = {"retriever": str(tiny_embedding_dir), "backbone": str(tiny_embedding_dir), "max_length": 32,
           "stage1_cache": str(path.parent / "stage1"), "teachers": [{"type": "bm25"}]}
    for key, value in sections.items():
        cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def mismatched_model(tmp_path_factory) -> Path:
    """A tiny cross-encoder with another hidden size than conftest's (so its tensors cannot be merged with it)."""
    from conftest import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny_ce_16"), num_labels=1, hidden=16)


# (name, argv builder, text the error line must contain). Builders get (tmp_path, fixtures) and return argv; the
# output path is always tmp_path / "out" (a file for evaluate, a folder otherwise) and must not be written.
def _evaluate(data: Path, f: dict, *extra: str) -> list[str]:
    return ["evaluate", "--data", str(data), "--retriever", str(f["emb"]), "--top-k", "3", *extra,
            "--output", str(f["out"])]


CASES = [
    ("evaluate: missing folder", lambda t, f: _evaluate(t / "nope", f), "nope"),
    ("evaluate: no qrels", lambda t, f: _evaluate(_beir(t / "d", qrels=False), f), "d' has no qrels for split 'test'"),
    ("evaluate: no queries", lambda t, f: _evaluate(_beir(t / "d", queries=False), f), "queries"),
    ("evaluate: empty corpus", lambda t, f: _evaluate(_beir(t / "d", corpus=[]), f), "corpus.jsonl"),
    ("evaluate: duplicate ids", lambda t, f: _evaluate(_beir(t / "d", corpus=[
        {"_id": "d1", "text": "a b"}, {"_id": "d1", "text": "c d"}]), f), "duplicate document id 'd1'"),
    ("evaluate: non-string document text", lambda t, f: _evaluate(_beir(t / "d", corpus=[
        {"_id": "d1", "text": "a b"}, {"_id": "d2", "text": 5}]), f), "'d2'"),
    ("evaluate: bad reranker path", lambda t, f: _evaluate(_beir(t / "d"), f, "--reranker", str(t / "no-model")),
     "no-model"),
    ("merge: mismatched checkpoints", lambda t, f: ["merge", str(f["ce"]), str(f["ce16"]), "--output", str(f["out"]),
                                                    "--no-progress"], "differs at 'hidden_size' (32 vs 16)"),
    ("merge: not a model", lambda t, f: ["merge", str(f["ce"]), str(_folder(t / "empty")), "--output", str(f["out"]),
                                         "--no-progress"], "empty"),
    ("pretrain: unknown config key", lambda t, f: [
        "pretrain", "--config", str(_config(t / "c.yaml", f["emb"], pretrain={"top_kk": 3})), "--output",
        str(f["out"])], "top_kk"),
    ("adapt: unknown config key", lambda t, f: [
        "adapt", "--config", str(_config(t / "c.yaml", f["emb"], adapt={"train": {"epochz": 1}})), "--target",
        str(_beir(t / "d")), "--base", str(f["ce"]), "--output", str(f["out"])], "epochz"),
    ("adapt: unknown top-level key", lambda t, f: [
        "adapt", "--config", str(_config(t / "c.yaml", f["emb"], retreiver="x")), "--target", str(_beir(t / "d")),
        "--base", str(f["ce"]), "--output", str(f["out"])], "retreiver"),
    ("adapt: unknown loss option", lambda t, f: [
        "adapt", "--config", str(_config(t / "c.yaml", f["emb"], adapt={"train": {"loss_kwargs": {"margin": 1}}})),
        "--target", str(_beir(t / "d")), "--base", str(f["ce"]), "--output", str(f["out"])],
     "adapt.train.loss_kwargs: ScoreGapHingeLoss has no option(s) ['margin']"),
    ("adapt: bad loss option value", lambda t, f: [
        "adapt", "--config", str(_config(t / "c.yaml", f["emb"], pretrain={"train": {"loss": "kl", "loss_kwargs": {
            "teacher_temperature": "hot"}}})), "--target", str(_beir(t / "d")), "--base", str(f["ce"]),
        "--output", str(f["out"])], "teacher_temperature"),
    ("adapt: unknown query generator option", lambda t, f: [
        "adapt", "--config", str(_config(t / "c.yaml", f["emb"], adapt={"query_generator": {
            "type": "terms", "num_termz": [2, 3]}})), "--target", str(_beir(t / "d")), "--base", str(f["ce"]),
        "--output", str(f["out"])], "num_termz"),
    ("adapt: target without corpus", lambda t, f: [
        "adapt", "--config", str(_config(t / "c.yaml", f["emb"])), "--target", str(_folder(t / "no-corpus")),
        "--base", str(f["ce"]), "--output", str(f["out"])], "corpus.jsonl"),
    ("adapt: empty corpus", lambda t, f: [
        "adapt", "--config", str(_config(t / "c.yaml", f["emb"])), "--target", str(_beir(t / "d", corpus=[])),
        "--base", str(f["ce"]), "--output", str(f["out"])], "no document entries"),
    ("pipeline: YAML that is not data", lambda t, f: [
        "pipeline", "--config", str(_yaml(t / "c.yaml", "retriever: !!python/object/apply:os.system ['echo x']\n")),
        "--target", str(_beir(t / "d")), "--output", str(f["out"])], "not valid YAML"),
    ("pipeline: --set without a value", lambda t, f: [
        "pipeline", "--config", str(_config(t / "c.yaml", f["emb"])), "--set", "adapt.seeds",
        "--target", str(_beir(t / "d")), "--output", str(f["out"])], "expected KEY=VALUE"),
    ("pipeline: --set of an unknown key", lambda t, f: [
        "pipeline", "--config", str(_config(t / "c.yaml", f["emb"])), "--set", "adapt.num_querys=5",
        "--target", str(_beir(t / "d")), "--output", str(f["out"])], "num_querys"),
]


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input_exits_2_with_one_line(name, argv, expected, tmp_path, tiny_embedding_dir,
                                             tiny_cross_encoder_dir, mismatched_model, capsys):
    out = tmp_path / "out"
    fixtures = {"emb": tiny_embedding_dir, "ce": tiny_cross_encoder_dir, "ce16": mismatched_model, "out": out}
    args = argv(tmp_path, fixtures)
    capsys.readouterr()
    assert cli_main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"querit-st {args[0]}: error: ") and expected in lines[0], lines[0]
    # nothing partial: no output file or folder at all
    assert not out.exists(), sorted(out.rglob("*")) if out.is_dir() else out
    assert not (tmp_path / "stage1").exists()  # and stage 1 never started


# ------------------------------------------------------------------------------------------------- python API
@pytest.fixture(scope="module")
def tiny_ce(tiny_cross_encoder_dir):
    from querit_st import QueritCrossEncoder

    return QueritCrossEncoder(str(tiny_cross_encoder_dir), max_length=32)


LOSS_CASES = [  # (loss, inputs, labels, text the error must contain)
    ("ScoreGapHingeLoss", [[None], [["a b", "c d"]]], [[1.0, 0.0]], "query of row 0 is None"),
    ("ScoreGapHingeLoss", [[""], [["a b", "c d"]]], [[1.0, 0.0]], "query of row 0 is empty"),
    ("SoftLabelKLLoss", [[7], [["a b", "c d"]]], [[1.0, 0.0]], "query of row 0 must be a string"),
    ("SoftLabelKLLoss", [["q"], [["a b", " "]]], [[1.0, 0.0]], "row 0, document 1 is empty"),
    ("SoftLabelKLLoss", [["q"], [["a b", "c d"]]], [[float("nan"), 0.0]], "NaN"),
    ("ScoreGapHingeLoss", [["q"], [["a b", "c d"]]], [[float("-inf"), 0.0]], "infinite"),
    ("ScoreGapHingeLoss", [["q", "r"], [["a b", "c d"], ["e f", "g h"]]], [[1.0, 0.0], [1.0]],
     "row 1 has 2 documents"),
    ("SoftLabelKLLoss", [["q"], [["a b", "c d"]]], [["high", "low"]], "the label of row 0"),
    ("SoftLabelKLLoss", [["q"], [["a b", "c d"]]], [None], "the label of row 0 is None"),
    ("SoftLabelMSELoss", [["q"], [""]], [1.0], "document of row 0 is empty"),
    ("SoftLabelMSELoss", [["q"], ["a b"]], ["x"], "the label of row 0"),
    ("SoftLabelMSELoss", [["q", "r"], ["a b", "c d"]], [1.0], "expects 2 labels"),
]


@pytest.mark.parametrize("loss_name, inputs, labels, expected", LOSS_CASES)
def test_losses_name_the_bad_input(tiny_ce, loss_name, inputs, labels, expected):
    from querit_st import losses

    loss = getattr(losses, loss_name)(tiny_ce)
    with pytest.raises(QueritInputError, match=expected.replace("(", r"\(")):
        loss(inputs, labels)


def test_loss_options_are_checked_without_a_model(tiny_ce):
    from querit_st.losses import ScoreGapHingeLoss, SoftLabelKLLoss, check_loss_kwargs

    assert check_loss_kwargs("ScoreGapHingeLoss", {"alpha": 0.5}) == {"alpha": 0.5}
    assert check_loss_kwargs(SoftLabelKLLoss, None) == {}
    for loss, kwargs, expected in [
        ("ScoreGapHingeLoss", {"margin": 1.0}, r"no option\(s\) \['margin'\]"),
        ("ScoreGapHingeLoss", {"alpha": "x"}, "alpha must be a finite number"),
        ("ScoreGapHingeLoss", {"top_fraction": 2.0}, "top_fraction"),
        ("SoftLabelKLLoss", {"teacher_temperature": 0}, "temperatures must be > 0, got teacher_temperature=0"),
        ("SoftLabelMSELoss", {"normalization": "l2"}, "unknown normalization 'l2'"),
        ("SoftLabelMSELoss", {"activation_fn": "sigmoid"}, "activation_fn"),
        ("FocalLoss", {}, "unknown loss"),
        ("SoftLabelKLLoss", [1], "must be a mapping"),
    ]:
        with pytest.raises(QueritInputError, match=expected):
            check_loss_kwargs(loss, kwargs)
    # the constructors raise the same errors (QueritInputError is a ValueError, as before)
    with pytest.raises(QueritInputError, match="alpha must be >= 0"):
        ScoreGapHingeLoss(tiny_ce, alpha=-1)
    with pytest.raises(ValueError, match="student_temperature"):
        SoftLabelKLLoss(tiny_ce, student_temperature=float("nan"))


def test_query_generator_specs_and_evaluation_inputs():
    from querit_st.evaluation import evaluate_reranking
    from querit_st.querygen import TermQueryGenerator, check_query_generator_spec, make_query_generator

    assert isinstance(make_query_generator({"type": "terms", "num_terms": [2, 3]}), TermQueryGenerator)
    check_query_generator_spec({"type": "seq2seq", "model": "some/model", "max_new_tokens": 8})  # loads nothing
    for spec, expected in [({"type": "terms", "num_termz": 3}, "num_termz"),
                           ({"model": "some/model", "beams": 4}, "beams"),
                           ({"type": "terms", "num_terms": 3}, r"\[min, max\]"),
                           ({"type": "terms", "strategy": "random"}, "strategy"),
                           ({"type": "gpt"}, "unknown query generator type"), ("", "empty"), (3, "string or dict")]:
        with pytest.raises(QueritInputError, match=expected):
            check_query_generator_spec(spec)
        with pytest.raises(QueritInputError, match=expected):
            make_query_generator(spec)
    with pytest.raises(QueritInputError, match="BeirData"):
        evaluate_reranking(None, None)
