"""BEIR folder loading: real folders load; broken ones give a clear error."""

from __future__ import annotations

import json
import shutil

import pytest

from querit_st.utils import QueritInputError
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


def test_whitespace_only_document_counts_as_empty(tmp_path):
    """Issue #22 item 4: whitespace-only title + text is empty at the check, which names the file and the id."""
    f = _mini(tmp_path)
    (f / "corpus.jsonl").write_text('{"_id": "a", "title": " ", "text": " \\n\\t "}\n')
    with pytest.raises(QueritInputError, match=r"corpus\.jsonl.*empty text"):
        load_corpus(f)
    (f / "queries.jsonl").write_text('{"_id": "q", "text": "   "}\n')
    (f / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    with pytest.raises(QueritInputError, match=r"queries\.jsonl: query 'q' \(line 1\) has an empty text"):
        load_beir(f)


def test_empty_documents_are_skipped_with_a_warning(tmp_path, caplog):
    """Issue #22 item 12: a few empty documents (CACM has 2 in 1,400) are skipped, counted and recorded."""
    f = _mini(tmp_path)
    rows = [{"_id": "a", "title": "", "text": "x"}, {"_id": "e1", "title": "", "text": ""},
            {"_id": "b", "title": "T", "text": ""}, {"_id": "e2", "title": "  ", "text": " "}, {"_id": "e3"}]
    (f / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\nq\te1\t1\n")
    with caplog.at_level("WARNING", logger="querit_st.data"):
        data = load_beir(f)
    assert list(data.corpus) == ["a", "b"] and data.skipped_ids == ["e1", "e2", "e3"]
    assert data.qrels == {"q": {"a": 1, "e1": 1}}  # the qrels stay: evaluation ranks skipped documents last
    assert "skipped 3 of 5 documents" in caplog.text
    assert list(load_corpus(f)) == ["a", "b"]


def test_malformed_documents_still_refuse_the_corpus(tmp_path):
    f = _mini(tmp_path)
    for body, message in [
        ('{"_id": "a", "text": "x"}\n{"_id": "e", "text": ""}\n{"_id": "a", "text": "y"}\n',
         "duplicate document id 'a'"),
        ('{"_id": "a", "text": "x"}\n{"text": "no id"}\n', "line 2 has no '_id'"),
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', "line 2 is not valid JSON"),
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": 5}\n',
         "document 'b' \\(line 2\\) has a 'text' that is not a string"),
        ('{"_id": "a", "text": ""}\n{"_id": "b", "title": " "}\n', "every document \\(2\\) has an empty text"),
    ]:
        (f / "corpus.jsonl").write_text(body)
        with pytest.raises(QueritInputError, match=message):
            load_corpus(f)
        with pytest.raises(QueritInputError, match=message):
            load_beir(f)


def test_corpus_items_shapes_and_checks():
    from querit_st.data import corpus_items

    assert corpus_items({"d1": {"title": "T", "text": "b"}, "d2": "plain"}) == (["d1", "d2"], ["T b", "plain"])
    assert corpus_items(["x", "y"]) == (["0", "1"], ["x", "y"])
    for bad, message in [(None, "corpus is None"), ("abc", "single string"), ([], "corpus is empty"),
                         ({"a": {"text": " "}}, r"corpus\['a'\] is empty"),
                         (["x", 3], r"corpus\['1'\] must be a string")]:
        with pytest.raises(QueritInputError, match=message):
            corpus_items(bad)


def test_old_names_still_import():
    from querit_st.data import BeirData, data_checksum, default_data_root  # noqa: F401 - the old public names
    from querit_st.data import _check_jsonl_ids, check_jsonl_ids

    assert _check_jsonl_ids is check_jsonl_ids


def test_corpus_checksum_reads_only_the_corpus(tmp_path):
    from querit_st.data import corpus_checksum, data_checksum

    f = _mini(tmp_path)
    before = corpus_checksum(f)
    (f / "queries.jsonl").write_text('{"_id": "q", "text": "changed?"}\n')
    assert corpus_checksum(f) == before == corpus_checksum(f / "corpus.jsonl")  # the folder or its file: one corpus
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(f / "corpus.jsonl", only / "corpus.jsonl")
    assert corpus_checksum(only) == before == data_checksum(only, split=None)
    (f / "corpus.jsonl").write_text('{"_id": "a", "text": "other"}\n')
    assert corpus_checksum(f) != before
