"""BEIR folder loading: real folders load; broken ones give a clear error."""

from __future__ import annotations

import json
import shutil

import pytest

from querit_st._utils import QueritInputError
from querit_st.data import doc_text, load_beir, load_corpus


def test_load_shared_folders(shared_data):
    v = load_beir(shared_data / "vaswani")
    assert len(v.corpus) == 11429 and len(v.queries) == 93
    x = load_beir(shared_data / "xquad-r-de", split="train")
    assert len(x.qrels) > 0 and all(q in x.queries for q in x.qrels)
    assert doc_text({"title": "T", "text": "body"}) == "T body"


def _mini(tmp_path):
    f = tmp_path / "mini"
    (f / "qrels").mkdir(parents=True)
    (f / "corpus.jsonl").write_text('{"_id": "a", "title": "", "text": "x"}\n{"_id": "b", "title": "", "text": "y"}\n')
    (f / "queries.jsonl").write_text('{"_id": "q", "text": "x?"}\n')
    (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\n")
    return f


def test_errors_name_the_problem(tmp_path):
    f = _mini(tmp_path)
    assert len(load_beir(f).corpus) == 2
    with pytest.raises(QueritInputError, match="does not exist"):
        load_beir(tmp_path / "nope")
    with pytest.raises(QueritInputError, match="split 'dev'"):
        load_beir(f, split="dev")
    (f / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(QueritInputError, match="duplicate document id 'a'"):
        load_beir(f)
    (f / "corpus.jsonl").write_text("")
    with pytest.raises(QueritInputError, match="no document entries"):
        load_corpus(f)
    (f / "corpus.jsonl").write_text('{"_id": "a", "text": ""}\n')
    with pytest.raises(QueritInputError, match="empty text"):
        load_corpus(f)
    shutil.rmtree(f / "qrels")
    (f / "corpus.jsonl").write_text(json.dumps({"_id": "a", "text": "x"}) + "\n")
    with pytest.raises(QueritInputError, match="qrels"):
        load_beir(f)
    assert list(load_corpus(f)) == ["a"]  # corpus-only loading needs nothing else
