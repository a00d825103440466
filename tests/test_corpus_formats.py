"""Corpora beyond BEIR folders (issue #22): JSONL, CSV/TSV, Parquet and saved Hugging Face datasets."""

from __future__ import annotations

import json

import pytest

from querit_st.data import load_corpus, load_corpus_file
from querit_st.utils import QueritInputError

EXPECTED = {"007": {"title": "", "text": "first doc"}, "2": {"title": "", "text": "second doc"}}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_default_and_named_fields(tmp_path):
    f = _jsonl(tmp_path / "c.jsonl", [{"id": "007", "text": "first doc"}, {"id": 2, "text": "second doc"}])
    assert load_corpus_file(f) == EXPECTED
    assert load_corpus(f) == EXPECTED  # load_corpus takes a file too
    g = _jsonl(tmp_path / "named.jsonl", [{"pid": "x", "heading": "H", "passage_text": "body", "text": "ignored"}])
    assert load_corpus_file(g, id_field="pid", text_field="passage_text", title_field="heading") == {
        "x": {"title": "H", "text": "body"}}
    assert load_corpus(g, id_field="pid", text_field="passage_text") == {"x": {"title": "", "text": "body"}}


def test_beir_corpus_jsonl_file_and_folder_agree(tmp_path):
    folder = tmp_path / "beir"
    folder.mkdir()
    rows = [{"_id": "a", "title": "T", "text": "x"}, {"_id": "b", "title": "", "text": "y"}]
    _jsonl(folder / "corpus.jsonl", rows)
    assert load_corpus(folder) == load_corpus_file(folder / "corpus.jsonl") == {
        "a": {"title": "T", "text": "x"}, "b": {"title": "", "text": "y"}}
    with pytest.raises(QueritInputError, match="apply to corpus files"):
        load_corpus(folder, id_field="_id")


def test_csv_and_tsv_keep_ids_and_text_as_written(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('doc_id,title,contents\n007,,first doc\n2,,second doc\n3,NA,"quoted, with comma"\n', encoding="utf-8")
    assert load_corpus_file(f) == {**EXPECTED, "3": {"title": "NA", "text": "quoted, with comma"}}
    t = tmp_path / "c.tsv"
    t.write_text("docid\tbody\n007\tfirst doc\n2\tsecond doc\n", encoding="utf-8")
    assert load_corpus(t) == EXPECTED


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    f = tmp_path / "c.parquet"
    pd.DataFrame({"_id": ["007", "2", "9"], "text": ["first doc", "second doc", None]}).to_parquet(f)
    assert load_corpus_file(f) == EXPECTED  # the null text is an empty document: skipped


def test_saved_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"_id": ["007", "2"], "title": ["", ""], "text": ["first doc", "second doc"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    assert load_corpus_file(tmp_path / "ds") == load_corpus(tmp_path / "ds") == EXPECTED
    datasets.DatasetDict({"corpus": datasets.Dataset.from_dict(rows),
                          "queries": datasets.Dataset.from_dict({"_id": ["q"], "text": ["?"]})}).save_to_disk(
        str(tmp_path / "dd"))
    assert load_corpus_file(tmp_path / "dd") == EXPECTED


def test_empty_rows_are_skipped_with_a_warning(tmp_path, caplog):
    f = _jsonl(tmp_path / "c.jsonl", [{"id": "007", "text": "first doc"}, {"id": "e", "text": "  "},
                                      {"id": "2", "text": "second doc"}])
    with caplog.at_level("WARNING", logger="querit_st.data"):
        assert load_corpus_file(f) == EXPECTED
    assert "skipped 1 of 3 documents" in caplog.text and "'e'" in caplog.text


@pytest.mark.parametrize("rows, message", [
    ([{"id": "a", "text": "x"}, {"text": "y"}], r"line 2 has no usable id in field 'id'"),
    ([{"id": "a", "text": "x"}, {"id": "", "text": "y"}], r"line 2 has no usable id"),
    ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}],
     r"duplicate document id 'a' at line 3 \(first at line 1\)"),
    ([{"id": "a", "text": "x"}, {"id": "b", "text": 5}], r"line 2 \(id 'b'\) has a 'text' that is not a string"),
    ([{"id": "a", "text": "x"}, {"id": [1], "text": "y"}], r"line 2 has no usable id"),
    ([{"id": "a", "text": ""}], r"every document \(1\) has an empty text"),
])
def test_bad_rows_name_the_row(tmp_path, rows, message):
    f = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(QueritInputError, match=message) as e:
        load_corpus_file(f)
    assert "bad.jsonl" in str(e.value)


def test_bad_csv_row(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("id,text\na,x\n,y\n", encoding="utf-8")
    with pytest.raises(QueritInputError, match=r"bad\.csv: row 2 has no usable id"):
        load_corpus_file(f)


def test_fields_not_found_name_the_file_and_its_fields(tmp_path):
    f = _jsonl(tmp_path / "c.jsonl", [{"key": "a", "words": "x"}])
    with pytest.raises(QueritInputError, match=r"c\.jsonl: no id field .*its fields are \['key', 'words'\]"):
        load_corpus_file(f)
    with pytest.raises(QueritInputError, match=r"no text field .*its fields are \['key', 'words'\]"):
        load_corpus_file(f, id_field="key")
    with pytest.raises(QueritInputError, match=r"no title field 'head'"):
        load_corpus_file(f, id_field="key", text_field="words", title_field="head")


def test_missing_unknown_and_unreadable_files(tmp_path):
    with pytest.raises(QueritInputError, match="does not exist"):
        load_corpus_file(tmp_path / "nope.jsonl")
    with pytest.raises(QueritInputError, match="does not exist"):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "c.txt").write_text("hello\n")
    with pytest.raises(QueritInputError, match=r"unknown corpus format 'c\.txt'"):
        load_corpus(tmp_path / "c.txt")
    (tmp_path / "broken.jsonl").write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": \n')
    with pytest.raises(QueritInputError, match=r"broken\.jsonl: line 2 is not valid JSON"):
        load_corpus_file(tmp_path / "broken.jsonl")
    (tmp_path / "list.jsonl").write_text('{"id": "a", "text": "x"}\n["b", "y"]\n')
    with pytest.raises(QueritInputError, match=r"line 2 is not a JSON object"):
        load_corpus_file(tmp_path / "list.jsonl")


def test_json_array_and_compressed_jsonl(tmp_path):
    import gzip

    rows = [{"_id": "007", "text": "first doc"}, {"_id": "2", "text": "second doc"}]
    (tmp_path / "c.json").write_text(json.dumps(rows, indent=1))
    assert load_corpus_file(tmp_path / "c.json") == EXPECTED
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    assert load_corpus(tmp_path / "c.jsonl.gz") == EXPECTED


def test_bad_parquet_row(tmp_path):
    pd = pytest.importorskip("pandas")
    f = tmp_path / "bad.parquet"
    pd.DataFrame({"_id": ["a", "b"], "text": ["x", "y"], "title": ["t", None]}).to_parquet(f)
    assert load_corpus_file(f) == {"a": {"title": "t", "text": "x"}, "b": {"title": "", "text": "y"}}
    pd.DataFrame({"_id": ["a", "a"], "text": ["x", "y"]}).to_parquet(f)
    with pytest.raises(QueritInputError, match=r"bad\.parquet: duplicate document id 'a' at row 2 \(first at row 1\)"):
        load_corpus_file(f)


def test_jsonl_text_with_unicode_line_separators(tmp_path):
    f = tmp_path / "u.jsonl"
    f.write_text(json.dumps({"_id": "a", "text": "one\u2028two\u0085three"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_corpus_file(f) == {"a": {"title": "", "text": "one\u2028two\u0085three"}}
