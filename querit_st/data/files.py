"""Corpora that are not BEIR folders: JSONL, CSV/TSV, Parquet files and saved Hugging Face datasets.

CSV/TSV and Parquet are read through the ``datasets`` library (``load_dataset("csv" | "parquet")`` with a throw-away
cache; CSV cells stay text, so an id ``007`` stays ``"007"``), a folder written by ``save_to_disk`` through
``load_from_disk``. JSON lines are read with :mod:`json` line by line: ``datasets`` (via pandas) may turn an id
``"007"`` into ``7`` when a column mixes types, and reading it here gives each error its line number. Everything comes
out in the same ``{doc_id: {"title", "text"}}`` shape as :func:`querit_st.data.load_corpus`. Column names are guessed
when not given (id: ``_id`` / ``id`` / ``doc_id`` / ``docid``; text: ``text`` / ``contents`` / ``body`` /
``passage``; title: ``title``, optional). Bad rows are errors naming the file and the row (CSV/Parquet: 1-based data
row, header not counted; JSONL: the line); rows whose title and text are both empty are skipped with one warning, as
for BEIR folders.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from querit_st.data.checks import is_blank, warn_skipped
from querit_st.data.corpus import Corpus
from querit_st.utils import QueritInputError

ID_FIELDS = ("_id", "id", "doc_id", "docid")
TEXT_FIELDS = ("text", "contents", "body", "passage")
TITLE_FIELDS = ("title",)

_FORMATS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".tsv": "csv",
            ".parquet": "parquet", ".pq": "parquet"}
_OPENERS: dict[str, Callable[..., IO[str]]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_KNOWN = ".jsonl, .json, .csv, .tsv, .parquet (text formats optionally .gz/.bz2/.xz) or a folder saved with " \
    "datasets.save_to_disk"


@dataclass
class _Table:
    """Columns of a corpus file: their names, a getter, each row's number and what a row is called in messages."""

    columns: list[str]
    column: Callable[[str], Sequence[Any]]
    positions: Sequence[int]
    unit: str = "row"


def _format_suffix(path: Path) -> tuple[str, str]:
    """``(format suffix, compression suffix or "")``: ``corpus.jsonl.gz`` -> ``(".jsonl", ".gz")``."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _OPENERS:
        return suffixes[-2], suffixes[-1]
    return (suffixes[-1] if suffixes else ""), ""


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``datasets`` ``save_to_disk`` (and not a BEIR folder)."""
    return (
        path.is_dir()
        and not (path / "corpus.jsonl").is_file()
        and any((path / m).is_file() for m in _SAVED_MARKERS)
    )


def is_corpus_file(path: str | os.PathLike) -> bool:
    """``True`` for a file or a saved Hugging Face dataset folder, i.e. what :func:`load_corpus_file` reads."""
    path = Path(path)
    return path.is_file() or is_saved_dataset(path)


def _dataset_table(ds: Any) -> _Table:
    # ds[c][:] is a plain list (ds[c] alone is a lazy Column, slow to index row by row)
    return _Table(list(ds.column_names), lambda c: ds[c][:], range(1, ds.num_rows + 1))


def _read_saved(path: Path) -> _Table:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any damaged folder becomes one clear input error
        raise QueritInputError(
            f"{path}: not a readable saved Hugging Face dataset ({type(e).__name__}: {str(e)[:300]})"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "corpus" in ds:
            ds = ds["corpus"]
        elif len(splits) == 1:
            ds = ds[splits[0]]
        else:
            raise QueritInputError(
                f"{path}: a saved DatasetDict with splits {splits}; expected one split or one named 'corpus'"
            )
    return _dataset_table(ds)


def _read_json(path: Path, compression: str) -> _Table:
    """JSON lines (or one JSON array of objects), each value exactly as written."""
    opener = _OPENERS.get(compression, open)
    with opener(path, "rt", encoding="utf-8-sig") as f:
        content = f.read()
    if content.lstrip().startswith("["):
        try:
            items = json.loads(content)
        except json.JSONDecodeError as e:
            raise QueritInputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        numbered, unit = list(enumerate(items, 1)), "row"
    else:
        numbered, unit = [], "line"
        for lineno, line in enumerate(content.split("\n"), 1):  # not splitlines: U+2028 may sit inside a string
            if line.strip():
                try:
                    numbered.append((lineno, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise QueritInputError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
    columns: dict[str, None] = {}
    for pos, row in numbered:
        if not isinstance(row, dict):
            raise QueritInputError(f"{path}: {unit} {pos} is not a JSON object (got {type(row).__name__})")
        columns.update(dict.fromkeys(row))
    rows = [r for _, r in numbered]
    return _Table(list(columns), lambda c: [r.get(c) for r in rows], [p for p, _ in numbered], unit)


def _csv_header(path: Path, delimiter: str, compression: str) -> list[str] | None:
    opener = _OPENERS.get(compression, open)
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f, delimiter=delimiter), None)


def _read_with_datasets(path: Path, builder: str, suffix: str, compression: str) -> _Table:
    import datasets

    kwargs: dict[str, Any] = {}
    if builder == "csv":
        delimiter = "\t" if suffix == ".tsv" else ","
        kwargs = {"delimiter": delimiter, "na_filter": False}
        header = _csv_header(path, delimiter, compression)
        if header:  # every column as text: ids keep leading zeros, "NA" stays "NA"
            kwargs["features"] = datasets.Features({c: datasets.Value("string") for c in header})
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="querit-corpus-") as cache:
            ds = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True, **kwargs
            )
    except Exception as e:  # noqa: BLE001 - a parse failure in any format becomes one clear input error
        raise QueritInputError(
            f"{path}: could not be read as {builder} ({type(e).__name__}: {str(e)[:300]})"
        ) from None
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    return _dataset_table(ds)


def _read_file(path: Path) -> _Table:
    suffix, compression = _format_suffix(path)
    builder = _FORMATS.get(suffix)
    if builder is None or (builder == "parquet" and compression):
        raise QueritInputError(f"{path}: unknown corpus format {path.name!r}; expected {_KNOWN}")
    try:
        if builder == "json":
            return _read_json(path, compression)
        return _read_with_datasets(path, builder, suffix, compression)
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise QueritInputError(f"{path}: could not be read ({type(e).__name__}: {e})") from None


def _pick(path: Path, columns: Sequence[str], given: str | None, defaults: Sequence[str], what: str,
          required: bool = True) -> str | None:
    if given is not None:
        if given not in columns:
            raise QueritInputError(f"{path}: no {what} field {given!r}; its fields are {list(columns)}")
        return given
    for name in defaults:
        if name in columns:
            return name
    if required:
        raise QueritInputError(
            f"{path}: no {what} field (looked for {list(defaults)}); its fields are {list(columns)}; "
            f"name it with {what}_field=..."
        )
    return None


def _cell_text(where: str, field: str | None, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise QueritInputError(f"{where} has a {field!r} that is not a string ({type(value).__name__})")
    return value


def _rows_to_corpus(
    path: Path, table: _Table, id_field: str, text_field: str, title_field: str | None
) -> tuple[Corpus, list[str]]:
    """``(corpus, skipped_ids)`` from a table, checking each row (errors name ``path`` and the row)."""
    ids, texts = table.column(id_field), table.column(text_field)
    titles = table.column(title_field) if title_field else None
    corpus: Corpus = {}
    first: dict[str, int] = {}
    skipped: list[str] = []
    for i, (pos, raw_id) in enumerate(zip(table.positions, ids)):
        at = f"{path}: {table.unit} {pos}"
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or is_blank(str(raw_id)):
            raise QueritInputError(f"{at} has no usable id in field {id_field!r} (got {raw_id!r:.40})")
        doc_id = str(raw_id)
        if doc_id in first:
            raise QueritInputError(
                f"{path}: duplicate document id {doc_id!r} at {table.unit} {pos} "
                f"(first at {table.unit} {first[doc_id]})"
            )
        first[doc_id] = pos
        where = f"{at} (id {doc_id!r})"
        text = _cell_text(where, text_field, texts[i])
        title = _cell_text(where, title_field, titles[i]) if titles is not None else ""
        if is_blank(text) and is_blank(title):
            skipped.append(doc_id)
        else:
            corpus[doc_id] = {"title": title, "text": text}
    if not first:
        raise QueritInputError(f"{path}: no document rows; expected at least one")
    if not corpus:
        raise QueritInputError(f"{path}: every document ({len(first)}) has an empty text; expected at least one")
    return corpus, skipped


def load_corpus_file(
    path: str | os.PathLike,
    id_field: str | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
) -> Corpus:
    """Read a corpus file (JSONL, CSV/TSV, Parquet) or a saved Hugging Face dataset as ``{doc_id: {"title", "text"}}``.

    Args:
        path: the file, or a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (a
            DatasetDict must have one split or one named ``corpus``).
        id_field: the id column (default: the first of ``_id``, ``id``, ``doc_id``, ``docid``).
        text_field: the text column (default: the first of ``text``, ``contents``, ``body``, ``passage``).
        title_field: the title column (default: ``title`` if present; no title otherwise).

    Raises:
        QueritInputError: the file is missing or unreadable, the fields are not found (the message lists the
            fields it has), or a row has no id, a repeated id or a non-string text (the message names the row).
    """
    path = Path(path)
    if is_saved_dataset(path):
        table = _read_saved(path)
    elif path.is_file():
        table = _read_file(path)
    else:
        raise QueritInputError(f"corpus file {str(path)!r} does not exist (expected {_KNOWN})")
    id_col = _pick(path, table.columns, id_field, ID_FIELDS, "id")
    text_col = _pick(path, table.columns, text_field, TEXT_FIELDS, "text")
    title_col = _pick(path, table.columns, title_field, TITLE_FIELDS, "title", required=False)
    corpus, skipped = _rows_to_corpus(path, table, id_col, text_col, title_col)
    warn_skipped(path, skipped, len(corpus) + len(skipped))
    return corpus
