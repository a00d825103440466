"""BEIR folders in, validated python dicts out (the first stage of the one-way data flow).

A BEIR folder holds ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl`` (``{"_id", "text"}``) and
``qrels/<split>.tsv``. Loading goes through ``beir``'s ``GenericDataLoader``; this module adds the checks that
loader does not do (missing files, duplicate ids, malformed lines, empty texts) and a corpus-only loader for
label-free adaptation, which never opens the queries or qrels. ``load_corpus`` also reads a plain corpus file
(JSONL, CSV, Parquet, a saved Hugging Face dataset) through :func:`querit_st.data.files.load_corpus_file`.

Documents whose title and text are both empty (real collections have a few) are skipped with one warning and, for
:func:`load_beir`, listed in :attr:`BeirData.skipped_ids`; every other problem is an error.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from querit_st.data.checks import check_jsonl_ids, scan_jsonl, warn_skipped
from querit_st.data.corpus import Corpus
from querit_st.utils import QueritInputError, sha256_file


Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]


@dataclass
class BeirData:
    """One BEIR split: corpus, queries (only those with qrels when qrels exist) and qrels.

    ``skipped_ids`` are the documents left out of ``corpus`` because their title and text are empty (a reranker
    that sees no text can never rank them; evaluation ranks them last).
    """

    name: str
    corpus: Corpus
    queries: Queries
    qrels: Qrels = field(default_factory=dict)
    split: str = "test"
    checksum: str = ""
    skipped_ids: list[str] = field(default_factory=list)


def _require(folder: Path, rel: str, what: str) -> None:
    if not (folder / rel).is_file():
        raise QueritInputError(
            f"BEIR folder {str(folder)!r} has no {what} ({rel}); expected a BEIR folder with corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv"
        )


def _clean(corpus: dict, skipped: list[str]) -> Corpus:
    drop = set(skipped)
    return {
        str(k): {"title": v.get("title") or "", "text": v.get("text") or ""}
        for k, v in corpus.items()
        if str(k) not in drop
    }


def data_checksum(folder: str | os.PathLike, split: str | None = "test") -> str:
    """sha256 over the corpus, queries and the split's qrels (for results files)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for rel in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv" if split else None):
        if rel and (folder / rel).is_file():
            h.update(rel.encode())
            h.update(sha256_file(folder / rel).encode())
    return h.hexdigest()


def corpus_checksum(folder_or_file: str | os.PathLike) -> str:
    """sha256 over the corpus alone (a BEIR folder's ``corpus.jsonl``, a corpus file, or a saved dataset's files).

    Never opens queries or qrels (label-free adaptation keys its caches on this). For a BEIR folder it equals
    ``data_checksum(folder, split=None)`` of a folder that holds only ``corpus.jsonl``.
    """
    path = Path(folder_or_file)
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.name.encode())
        h.update(sha256_file(path).encode())
    elif (path / "corpus.jsonl").is_file():
        h.update(b"corpus.jsonl")
        h.update(sha256_file(path / "corpus.jsonl").encode())
    elif path.is_dir():  # a saved Hugging Face dataset: every file in it
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode())
            h.update(sha256_file(f).encode())
    else:
        raise QueritInputError(f"corpus {str(path)!r} does not exist")
    return h.hexdigest()


def load_corpus(
    folder_or_file: str | os.PathLike,
    *,
    id_field: str | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
) -> Corpus:
    """Load only a corpus (label-free adaptation reads nothing else): ``{doc_id: {"title", "text"}}``.

    Args:
        folder_or_file: a BEIR folder (its ``corpus.jsonl`` is read), or a corpus file / saved Hugging Face dataset
            read by :func:`~querit_st.data.files.load_corpus_file`.
        id_field, text_field, title_field: column names for a corpus file (default: guessed); not for BEIR folders.
    """
    from querit_st.data.files import is_corpus_file, load_corpus_file

    path = Path(folder_or_file)
    if is_corpus_file(path):
        return load_corpus_file(path, id_field=id_field, text_field=text_field, title_field=title_field)
    if not path.is_dir():
        raise QueritInputError(
            f"corpus {str(path)!r} does not exist or is not a folder or a corpus file (.jsonl, .json, .csv, .tsv, "
            ".parquet, or a folder saved with datasets.save_to_disk)"
        )
    if id_field or text_field or title_field:
        raise QueritInputError(
            f"id_field / text_field / title_field apply to corpus files; {str(path)!r} is a BEIR folder"
        )
    from beir.datasets.data_loader import GenericDataLoader

    _require(path, "corpus.jsonl", "corpus file")
    scan = scan_jsonl(path / "corpus.jsonl", "document", allow_empty=True)
    corpus = GenericDataLoader(corpus_file=str(path / "corpus.jsonl")).load_corpus()
    warn_skipped(path / "corpus.jsonl", scan.empty_ids, scan.count)
    return _clean(corpus, scan.empty_ids)


def load_beir(folder: str | os.PathLike, split: str = "test") -> BeirData:
    """Load a BEIR folder split with ``beir``'s ``GenericDataLoader`` after checking it.

    Documents with an empty title and text are skipped (one warning) and listed in ``skipped_ids``.

    Raises:
        QueritInputError: missing folder or files, unparsable lines, duplicate or missing ids, non-string texts,
            empty queries, a corpus with no non-empty document, or qrels that point at unknown queries.
    """
    from beir.datasets.data_loader import GenericDataLoader

    folder = Path(folder)
    if not folder.is_dir():
        raise QueritInputError(f"BEIR folder {str(folder)!r} does not exist or is not a folder")
    _require(folder, "corpus.jsonl", "corpus file")
    _require(folder, "queries.jsonl", "queries file")
    _require(folder, f"qrels/{split}.tsv", f"qrels for split {split!r}")
    scan = scan_jsonl(folder / "corpus.jsonl", "document", allow_empty=True)
    check_jsonl_ids(folder / "queries.jsonl", "query")
    corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split=split)
    warn_skipped(folder / "corpus.jsonl", scan.empty_ids, scan.count)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise QueritInputError(
            f"{folder}/qrels/{split}.tsv names {len(missing)} query ids absent from queries.jsonl, e.g. {missing[0]!r}"
        )
    return BeirData(
        name=folder.name,
        corpus=_clean(corpus, scan.empty_ids),
        queries={str(k): v for k, v in queries.items()},
        qrels={str(q): {str(d): int(s) for d, s in r.items()} for q, r in qrels.items()},
        split=split,
        checksum=data_checksum(folder, split),
        skipped_ids=list(scan.empty_ids),
    )


def default_data_root() -> Path:
    """``$QUERIT_DATA`` or ``../shared/data`` beside the repository (the shared BEIR folders)."""
    env = os.environ.get("QUERIT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"
