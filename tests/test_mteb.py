"""MTEB end to end, offline: a local BEIR folder as an mteb retrieval task, first stage by the package's retriever
written in mteb's prediction format, converted to reranking, scored by a tiny QueritCrossEncoder through
``mteb.evaluate``, results in the leaderboard layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mteb")


@pytest.fixture(scope="module")
def local_task(shared_data):
    from querit_st.mteb import beir_task

    return lambda **kw: beir_task(shared_data / "xquad-r-en", "test", max_queries=30, name="LocalXquadREnRetrieval", **kw)


@pytest.fixture(scope="module")
def tiny_reranker(tiny_cross_encoder_dir):
    from querit_st.cross_encoder import QueritCrossEncoder

    return QueritCrossEncoder(str(tiny_cross_encoder_dir), device="cpu")


def test_model_meta_fields(tiny_cross_encoder_dir, tiny_reranker):
    from mteb.models import ModelMeta

    from querit_st.mteb import QUERIT_CITATION, QueritMTEBWrapper, model_meta

    meta = model_meta(tiny_cross_encoder_dir, name="querit/tiny-test", languages=["eng-Latn", "deu-Latn"],
                      training_datasets={"MSMARCO"}, adapted_from="sentence-transformers/all-MiniLM-L6-v2")
    assert isinstance(meta, ModelMeta)
    assert meta.is_cross_encoder and meta.model_type == ["cross-encoder"]
    assert meta.n_parameters == sum(p.numel() for p in tiny_reranker.model.parameters())
    assert meta.embed_dim is None and meta.open_weights is True and meta.license == "apache-2.0"
    assert meta.framework == ["Sentence Transformers", "PyTorch"]
    assert meta.languages == ["eng-Latn", "deu-Latn"] and meta.training_datasets == {"MSMARCO"}
    assert meta.citation == QUERIT_CITATION and "2606.19037" in meta.citation
    assert meta.max_tokens and meta.release_date and len(meta.revision) == 40
    # mteb can load the model back from the meta (offline: the local folder travels in loader_kwargs)
    loaded = meta.load_model()
    assert isinstance(loaded, QueritMTEBWrapper)
    assert loaded.mteb_model_meta.name == "querit/tiny-test"
    # round trip through model_meta.json
    again = ModelMeta.model_validate_json_resolved(json.dumps(meta.to_dict(), default=str))
    assert again.name == meta.name and again.n_parameters == meta.n_parameters
    # a bad language code is an input error, not a pydantic traceback
    from querit_st.utils import QueritInputError

    with pytest.raises(QueritInputError):
        model_meta(tiny_reranker, name="querit/x", languages=["english"])


def test_mteb_offline_end_to_end(tmp_path, local_task, tiny_reranker, tiny_embedding_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from querit_st.mteb import model_meta, run_mteb
    from querit_st.retriever import DenseRetriever

    out = tmp_path / "results"
    meta = model_meta(tiny_reranker, name="querit/tiny-test", revision="abc123", languages=["eng-Latn"])
    retriever = DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path / "emb")
    summary = run_mteb(tiny_reranker, [local_task()], output=out, meta=meta, retriever=retriever, top_k=20,
                       batch_size=16)

    folder = out / "querit__tiny-test" / "abc123"
    result_file = folder / "LocalXquadREnRetrieval.json"
    assert result_file.is_file() and (folder / "model_meta.json").is_file()
    res = json.loads(result_file.read_text())
    assert res["task_name"] == "LocalXquadREnRetrieval"
    (score,) = res["scores"]["test"]
    assert score["main_score"] == score["ndcg_at_10"] and 0.0 <= score["main_score"] <= 1.0
    # the reranked run names its first stage
    assert score["previous_results_model_meta"]["model_name"].startswith("local/")
    saved_meta = json.loads((folder / "model_meta.json").read_text())
    assert saved_meta["name"] == "querit/tiny-test" and saved_meta["is_cross_encoder"] is True
    assert "model_path" not in saved_meta["loader_kwargs"]  # no local path in the submitted files
    # first-stage predictions in mteb's format, outside the model folders
    entry = summary["tasks"]["LocalXquadREnRetrieval"]
    pred = json.loads(Path(entry["first_stage_model"]["predictions"]).read_text())
    assert set(pred) >= {"mteb_model_meta", "default"} and len(pred["default"]["test"]) == 30
    assert 0.0 <= entry["first_stage"]["test"]["ndcg_at_10"] <= 1.0
    # the reranker only reorders the retriever's top-20: its recall@20 equals the first stage's
    fs = pred["default"]["test"]
    assert all(len(v) >= 20 for v in fs.values())
    assert sorted(p.name for p in out.iterdir()) == ["_querit", "querit__tiny-test"]
    # the model-registry snippet for the mteb PR is valid python giving the same meta, loaded by mteb's own wrapper
    from mteb.models.sentence_transformer_wrapper import CrossEncoderWrapper

    namespace: dict = {}
    exec(Path(summary["registry_snippet"]).read_text(), namespace)  # noqa: S102
    (registry,) = [v for v in namespace.values() if type(v).__name__ == "ModelMeta"]
    assert registry.name == "querit/tiny-test" and registry.loader is CrossEncoderWrapper
    assert registry.n_parameters == meta.n_parameters and registry.citation == meta.citation
    assert json.loads(Path(summary["summary_file"]).read_text())["tasks"]["LocalXquadREnRetrieval"]

    # second run resumes: nothing re-evaluated, same file
    before = result_file.stat().st_mtime_ns
    run_mteb(tiny_reranker, [local_task()], output=out, meta=meta, retriever=retriever, top_k=20, batch_size=16)
    assert result_file.stat().st_mtime_ns == before


def test_reranked_ndcg_matches_package_metrics(tmp_path, local_task, tiny_reranker, tiny_embedding_dir, shared_data):
    """mteb's nDCG@10 of the reranked first stage equals the package's own harness numbers for the same inputs."""
    from querit_st.data import load_beir
    from querit_st.evaluation import compute_metrics, rerank_results
    from querit_st.mteb import model_meta, run_mteb
    from querit_st.retriever import DenseRetriever

    retriever = DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path / "emb")
    meta = model_meta(tiny_reranker, name="querit/tiny-test", revision="r1", languages=["eng-Latn"])
    summary = run_mteb(tiny_reranker, [local_task()], output=tmp_path / "res", meta=meta, retriever=retriever,
                       top_k=10, batch_size=16)
    data = load_beir(shared_data / "xquad-r-en")
    queries = dict(list({q: t for q, t in data.queries.items() if q in data.qrels}.items())[:30])
    first = retriever.search(queries, top_k=10)
    reranked = rerank_results(tiny_reranker, queries, data.corpus, first, 10)
    ours = compute_metrics({q: data.qrels[q] for q in queries}, reranked)["nDCG@10"]
    theirs = summary["tasks"]["LocalXquadREnRetrieval"]["scores"]["test"]["ndcg_at_10"]
    assert theirs == pytest.approx(ours, abs=1e-4)


def test_default_tasks_are_mteb_multilingual_v2_reranking():
    import mteb

    from querit_st.mteb import DEFAULT_TASKS

    bench = mteb.get_benchmark("MTEB(Multilingual, v2)")
    assert set(DEFAULT_TASKS) == {t.metadata.name for t in bench.tasks if t.metadata.type == "Reranking"}


def _mteb_eval_main():
    """benchmarks/mteb_eval.py's ``main``, loaded in-process (the script wrapper itself, no extra interpreter)."""
    from conftest import load_benchmark

    return load_benchmark("mteb_eval").main


def test_mteb_eval_script_offline(tmp_path, tiny_cross_encoder_dir, tiny_embedding_dir, shared_data, capsys,
                                  monkeypatch):
    """benchmarks/mteb_eval.py with a local BEIR folder as the task: runs offline, leaderboard layout."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("QUERIT_ST_CACHE", str(tmp_path / "cache"))
    main = _mteb_eval_main()
    out = tmp_path / "results"
    argv = ["--model", str(tiny_cross_encoder_dir), "--name", "querit/tiny-cli", "--beir", str(shared_data / "xquad-r-en"),
            "--max-queries", "10", "--retriever", str(tiny_embedding_dir), "--top-k", "10", "--languages", "eng-Latn",
            "--output", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json") if "_querit" not in p.parts)
    rev_dirs = list((out / "querit__tiny-cli").iterdir())
    assert len(rev_dirs) == 1
    assert f"querit__tiny-cli/{rev_dirs[0].name}/LocalXquadREnRetrieval.json" in files
    assert f"querit__tiny-cli/{rev_dirs[0].name}/model_meta.json" in files
    assert "| LocalXquadREnRetrieval | test | ndcg_at_10 |" in stdout
    summary = json.loads((out / "_querit" / "querit__tiny-cli_summary.json").read_text())
    assert summary["command"].startswith("benchmarks/mteb_eval.py --model")

    assert main(["--model", str(tmp_path / "missing"), "--output", str(tmp_path / "o2")]) == 2
    assert "error" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    assert main(["--model", str(tiny_cross_encoder_dir), "--tasks", "NoSuchTask", "--output", str(tmp_path / "o3")]) == 2
    assert not (tmp_path / "o3").exists()


def test_model_meta_reads_the_training_record(tmp_path, tiny_cross_encoder_dir):
    """adapted_from and training_datasets come from the model's own training record (the one saved in its folder)."""
    from querit_st.citation import QUERIT_CITATION
    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.mteb import model_meta

    model = QueritCrossEncoder(str(tiny_cross_encoder_dir), device="cpu")
    model.record(initialised_from="multilingual-e5-small")
    model.record(stages={"stage": "pretrain", "datasets": ["xquad-r-en", "xquad-r-de", "squad-en"]})
    model.record(stages={"stage": "adapt", "target": "vaswani", "reads": "corpus.jsonl only"})
    model.save_pretrained(str(tmp_path / "student"))
    meta = model_meta(tmp_path / "student", name="querit/student")
    assert meta.adapted_from == "intfloat/multilingual-e5-small"
    assert meta.training_datasets == {"XQuADRetrieval", "squad-en", "vaswani"}
    assert meta.citation is QUERIT_CITATION
    # what the caller says wins; no record: unknown
    assert model_meta(tmp_path / "student", name="querit/s", training_datasets=[]).training_datasets == set()
    assert model_meta(tiny_cross_encoder_dir, name="querit/plain").training_datasets is None


def test_querit_st_mteb_subcommand(tmp_path, tiny_cross_encoder_dir, tiny_embedding_dir, shared_data, capsys,
                                   monkeypatch):
    """#22 item 9: MTEB is a subcommand of the installed CLI (querit_st.cli.mteb), not only a loose script."""
    import argparse

    from querit_st.cli import main
    from querit_st.cli import mteb as mteb_cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("QUERIT_ST_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    argv = ["--model", str(tiny_cross_encoder_dir), "--name", "querit/tiny-sub", "--beir", str(shared_data / "xquad-r-en"),
            "--max-queries", "5", "--retriever", str(tiny_embedding_dir), "--top-k", "5", "--output", str(out)]
    assert main(["mteb", *argv]) == 0
    assert "| LocalXquadREnRetrieval | test | ndcg_at_10 |" in capsys.readouterr().out
    summary = json.loads((out / "_querit" / "querit__tiny-sub_summary.json").read_text())
    assert summary["command"].startswith("querit-st mteb --model")
    assert main(["mteb", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "o2")]) == 2
    assert "querit-st mteb: error" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    # the parser plugs into an argparse subcommand table
    parser = argparse.ArgumentParser(prog="querit-st")
    mteb_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mteb", *argv])
    assert args.func is mteb_cli.run and args.top_k == 5 and args.training_datasets is None
