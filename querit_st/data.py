"""BEIR folders in, validated python dicts out (the first stage of the one-way data flow).

A BEIR folder holds ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl`` (``{"_id", "text"}``) and
``qrels/<split>.tsv``. Loading goes through ``beir``'s ``GenericDataLoader``; this module adds the checks that
loader does not do (missing files, duplicate ids, empty texts) and a corpus-only loader for label-free
adaptation, which never opens the queries or qrels.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from querit_st._utils import QueritInputError, sha256_file

logger = logging.getLogger(__name__)

Corpus = dict[str, dict[str, str]]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]


@dataclass
class BeirData:
    """One BEIR split: corpus, queries (only those with qrels when qrels exist) and qrels."""

    name: str
    corpus: Corpus
    queries: Queries
    qrels: Qrels = field(default_factory=dict)
    split: str = "test"
    checksum: str = ""


def doc_text(doc: dict[str, str] | str) -> str:
    """The text a model sees for a corpus entry: BEIR's convention, ``title + " " + text``.

    (This reproduces the shared data's published retriever baselines, e.g. MiniLM 0.846 on xquad-r-en.)
    """
    if isinstance(doc, str):
        return doc
    return f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()


def _require(folder: Path, rel: str, what: str) -> None:
    if not (folder / rel).is_file():
        raise QueritInputError(
            f"BEIR folder {str(folder)!r} has no {what} ({rel}); expected a BEIR folder with corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv"
        )


def _check_jsonl_ids(path: Path, kind: str, require_text: bool = True) -> int:
    """Scan a jsonl file once: every line parses, has a string ``_id`` and no id repeats."""
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise QueritInputError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
            _id = row.get("_id") if isinstance(row, dict) else None
            if _id is None or _id == "":
                raise QueritInputError(f"{path}: line {lineno} has no '_id'; expected {{'_id': ..., 'text': ...}}")
            _id = str(_id)
            if _id in seen:
                raise QueritInputError(f"{path}: duplicate {kind} id {_id!r} at line {lineno}")
            seen.add(_id)
            if require_text and not (row.get("text") or row.get("title")):
                raise QueritInputError(f"{path}: {kind} {_id!r} (line {lineno}) has an empty text")
    if not seen:
        raise QueritInputError(f"{path}: no {kind} entries; expected at least one line")
    return len(seen)


def data_checksum(folder: str | os.PathLike, split: str | None = "test") -> str:
    """sha256 over the corpus, queries and the split's qrels (for results files)."""
    import hashlib

    folder = Path(folder)
    h = hashlib.sha256()
    for rel in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv" if split else None):
        if rel and (folder / rel).is_file():
            h.update(rel.encode())
            h.update(sha256_file(folder / rel).encode())
    return h.hexdigest()


def load_corpus(folder: str | os.PathLike) -> Corpus:
    """Load only ``corpus.jsonl`` (label-free adaptation reads nothing else)."""
    from beir.datasets.data_loader import GenericDataLoader

    folder = Path(folder)
    if not folder.is_dir():
        raise QueritInputError(f"corpus folder {str(folder)!r} does not exist or is not a folder")
    _require(folder, "corpus.jsonl", "corpus file")
    _check_jsonl_ids(folder / "corpus.jsonl", "document")
    loader = GenericDataLoader(corpus_file=str(folder / "corpus.jsonl"))
    corpus = loader.load_corpus()
    return {str(k): {"title": v.get("title") or "", "text": v.get("text") or ""} for k, v in corpus.items()}


def load_beir(folder: str | os.PathLike, split: str = "test") -> BeirData:
    """Load a BEIR folder split with ``beir``'s ``GenericDataLoader`` after checking it.

    Raises:
        QueritInputError: missing folder or files, unparsable lines, duplicate ids, empty texts, or qrels that
            point at unknown queries.
    """
    from beir.datasets.data_loader import GenericDataLoader

    folder = Path(folder)
    if not folder.is_dir():
        raise QueritInputError(f"BEIR folder {str(folder)!r} does not exist or is not a folder")
    _require(folder, "corpus.jsonl", "corpus file")
    _require(folder, "queries.jsonl", "queries file")
    _require(folder, f"qrels/{split}.tsv", f"qrels for split {split!r}")
    _check_jsonl_ids(folder / "corpus.jsonl", "document")
    _check_jsonl_ids(folder / "queries.jsonl", "query")
    corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split=split)
    corpus = {str(k): {"title": v.get("title") or "", "text": v.get("text") or ""} for k, v in corpus.items()}
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise QueritInputError(f"{folder}/qrels/{split}.tsv names {len(missing)} query ids absent from queries.jsonl, e.g. {missing[0]!r}")
    return BeirData(
        name=folder.name,
        corpus=corpus,
        queries={str(k): v for k, v in queries.items()},
        qrels={str(q): {str(d): int(s) for d, s in r.items()} for q, r in qrels.items()},
        split=split,
        checksum=data_checksum(folder, split),
    )


def default_data_root() -> Path:
    """``$QUERIT_DATA`` or ``../shared/data`` beside the repository (the shared BEIR folders)."""
    env = os.environ.get("QUERIT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"
