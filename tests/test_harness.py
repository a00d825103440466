"""The BEIR harness (benchmarks/beir_eval.py, ``querit-st evaluate``) on small slices of the shared data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METRICS = ("nDCG@10", "MRR@10", "Recall@100")


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emb_cache")


def _run_main(argv: list[str]) -> int:
    from querit_st.cli.evaluate import main

    return main([str(a) for a in argv])


def test_beir_eval_script_writes_report(tmp_path, shared_data, tiny_cross_encoder_dir, tiny_embedding_dir, emb_cache):
    from querit_st.data import data_checksum

    out = tmp_path / "report.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "beir_eval.py"), "--data", str(shared_data / "xquad-r-en"),
           "--retriever", str(tiny_embedding_dir), "--reranker", str(tiny_cross_encoder_dir), str(tiny_embedding_dir),
           "--top-k", "30", "--max-queries", "20", "--batch-size", "32", "--cache-dir", str(emb_cache),
           "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    assert report["command"].startswith("benchmarks/beir_eval.py --data")
    assert report["date"] and report["machine"]["cpu_count"] >= 1
    assert report["machine"]["torch"] and report["machine"]["platform"]
    assert report["top_k"] == 30 and report["max_queries"] == 20 and report["split"] == "test"
    assert report["retriever"]["spec"] == str(tiny_embedding_dir)
    trained, untrained = report["rerankers"]
    assert trained["kind"] == "trained" and not trained["untrained"]
    assert untrained["untrained"] and untrained["label"].endswith("(untrained)") and untrained["head_seed"] == 0
    assert report["systems"] == ["retriever", trained["label"], untrained["label"]]
    (ds,) = report["datasets"]
    assert ds["name"] == "xquad-r-en" and ds["num_queries"] == 20
    assert ds["checksum"] == data_checksum(shared_data / "xquad-r-en", "test")
    for system in report["systems"]:
        for m in (*METRICS, "Recall@30"):
            assert 0.0 <= ds["results"][system][m] <= 1.0
    # reranking the top-k reorders it: Recall@k is the retriever's
    assert ds["results"][trained["label"]]["Recall@30"] == ds["results"]["retriever"]["Recall@30"]
    assert "| model | xquad-r-en |" in done.stdout and "nDCG@10" in done.stdout


def test_two_datasets_give_average(tmp_path, shared_data, tiny_cross_encoder_dir, tiny_embedding_dir, emb_cache, capsys):
    out = tmp_path / "two.json"
    rc = _run_main(["--data", shared_data / "xquad-r-en", shared_data / "xquad-r-de", "--retriever", tiny_embedding_dir,
                    "--reranker", tiny_cross_encoder_dir, "--names", "tiny", "--top-k", "20", "--max-queries", "10",
                    "--cache-dir", emb_cache, "--output", out])
    assert rc == 0
    report = json.loads(out.read_text())
    assert [d["name"] for d in report["datasets"]] == ["xquad-r-en", "xquad-r-de"]
    assert report["systems"] == ["retriever", "tiny"]
    for system in report["systems"]:
        for m in METRICS:
            mean = sum(d["results"][system][m] for d in report["datasets"]) / 2
            assert report["average"][system][m] == pytest.approx(mean)
    table = capsys.readouterr().out
    assert "| model | xquad-r-en | xquad-r-de | Avg |" in table and "**Average**" in table


def test_cross_lingual_queries_from(tmp_path, shared_data, tiny_embedding_dir, emb_cache):
    from querit_st.data import load_beir
    from querit_st.evaluation import evaluate_reranking
    from querit_st.retriever import DenseRetriever

    out = tmp_path / "xl.json"
    rc = _run_main(["--data", shared_data / "xquad-r-en", "--queries-from", shared_data / "xquad-r-de",
                    "--retriever", tiny_embedding_dir, "--top-k", "20", "--max-queries", "15",
                    "--cache-dir", emb_cache, "--output", out])
    assert rc == 0
    report = json.loads(out.read_text())
    (ds,) = report["datasets"]
    assert ds["name"] == "xquad-r-de->xquad-r-en" and ds["num_queries"] == 15
    assert report["queries_from"].endswith("xquad-r-de") and report["queries_from_checksum"]
    de = load_beir(shared_data / "xquad-r-de")
    expected = evaluate_reranking(load_beir(shared_data / "xquad-r-en"),
                                  DenseRetriever(str(tiny_embedding_dir), cache_dir=emb_cache), {}, top_k=20,
                                  queries=de.queries, max_queries=15)
    assert ds["results"]["retriever"] == expected["retriever"]


def test_retriever_alone_matches_evaluate_reranking(tmp_path, shared_data, tiny_embedding_dir, emb_cache):
    """Same inputs, same numbers: the harness scores through querit_st.evaluation."""
    from querit_st.data import load_beir
    from querit_st.evaluation import evaluate_reranking
    from querit_st.retriever import DenseRetriever

    out = tmp_path / "r.json"
    assert _run_main(["--data", shared_data / "xquad-r-en", "--retriever", tiny_embedding_dir, "--top-k", "100",
                      "--max-queries", "20", "--cache-dir", emb_cache, "--output", out]) == 0
    got = json.loads(out.read_text())["datasets"][0]["results"]["retriever"]
    ret = DenseRetriever(str(tiny_embedding_dir), cache_dir=emb_cache)
    want = evaluate_reranking(load_beir(shared_data / "xquad-r-en"), ret, {}, top_k=100, max_queries=20)["retriever"]
    assert got == want


def test_missing_file_exits_2_and_writes_nothing(tmp_path, shared_data, tiny_embedding_dir, capsys):
    from querit_st.cli.evaluate import evaluate_command

    broken = tmp_path / "broken"
    shutil.copytree(shared_data / "xquad-r-en", broken)
    (broken / "queries.jsonl").unlink()
    out = tmp_path / "never.json"
    # a good folder next to the broken one: still nothing runs and nothing is written
    rc = evaluate_command(["--data", str(shared_data / "xquad-r-en"), str(broken), "--retriever", str(tiny_embedding_dir),
                           "--top-k", "10", "--output", str(out)])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "error" in err and "queries" in err
    rc = evaluate_command(["--data", str(tmp_path / "does-not-exist"), "--retriever", str(tiny_embedding_dir),
                           "--output", str(out)])
    assert rc == 2 and not out.exists()
    rc = evaluate_command(["--data", str(shared_data / "xquad-r-en"), "--retriever", str(tiny_embedding_dir),
                           "--reranker", str(tmp_path / "no-such-model"), "--output", str(out)])
    assert rc == 2 and not out.exists()
    assert evaluate_command(["--data", str(shared_data / "xquad-r-en"), "--retriever", "x", "--top-k", "0",
                             "--output", str(out)]) == 2
    assert evaluate_command(["--retriever", "x"]) == 2  # argparse: --data missing


def test_reranker_classification():
    from querit_st.harness import classify_reranker

    spec = classify_reranker("minilm-l6")
    assert spec.kind == "untrained" and spec.label == "minilm-l6 (untrained)"
    assert classify_reranker("multilingual-e5-small").kind == "untrained"
    hub = classify_reranker("cross-encoder/ms-marco-MiniLM-L6-v2")
    assert hub.kind == "trained" and hub.label == "cross-encoder/ms-marco-MiniLM-L6-v2"


def test_beir_name_offline_is_a_clear_error(tmp_path, monkeypatch):
    import requests

    from querit_st.utils import QueritInputError
    from querit_st.harness import resolve_data

    def offline(*a, **k):
        raise requests.ConnectionError("network unreachable")

    monkeypatch.setattr(requests, "head", offline)
    with pytest.raises(QueritInputError, match="local BEIR folder"):
        resolve_data("scifact", download_dir=tmp_path)
    assert not any(tmp_path.iterdir())
    # an already downloaded dataset is found without the network
    (tmp_path / "scifact").mkdir()
    (tmp_path / "scifact" / "corpus.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    assert resolve_data("scifact", download_dir=tmp_path) == tmp_path / "scifact"


def test_paired_p_value_over_shared_queries():
    from scipy.stats import ttest_rel

    from querit_st.evaluation import paired_p_value

    a = {"q1": 0.2, "q2": 0.5, "q3": 0.9, "only-a": 1.0}
    b = {"q1": 0.3, "q2": 0.7, "q3": 0.95, "only-b": 0.0}
    assert paired_p_value(a, b) == pytest.approx(ttest_rel([0.2, 0.5, 0.9], [0.3, 0.7, 0.95]).pvalue)
    assert paired_p_value(a, dict(a)) == 1.0  # identical scores: no difference to test
    assert paired_p_value({"q1": 0.1}, {"q1": 0.9}) == 1.0  # one shared query is no test


def test_fused_run_reports_rerankers_alone(shared_data, tiny_cross_encoder_dir, tiny_embedding_dir,
                                           emb_cache):
    from querit_st.harness import run_beir_eval

    kw = dict(names=["tiny"], top_k=10, max_queries=8, cache_dir=str(emb_cache))
    fused = run_beir_eval([str(shared_data / "xquad-r-en")], str(tiny_embedding_dir), [str(tiny_cross_encoder_dir)],
                          fusion_weight=1.0, **kw)["datasets"][0]
    alone = run_beir_eval([str(shared_data / "xquad-r-en")], str(tiny_embedding_dir), [str(tiny_cross_encoder_dir)],
                          **kw)["datasets"][0]
    assert set(fused["results"]) == {"retriever", "tiny", "tiny (no fusion)"}
    assert fused["results"]["tiny (no fusion)"] == alone["results"]["tiny"]  # the same scores, unfused
    assert set(alone["results"]) == {"retriever", "tiny"}
