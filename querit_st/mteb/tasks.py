"""mteb tasks for a reranker: the default list (the reranking tasks of ``MTEB(Multilingual, v2)``), task names ->
task objects, and :func:`beir_task`, a local BEIR folder as an mteb retrieval task (no download)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mteb
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

from querit_st.data import load_beir
from querit_st.utils import QueritInputError

__all__ = ["DEFAULT_TASKS", "RERANKING_TYPES", "RETRIEVAL_TYPES", "beir_task", "load_tasks"]

#: The reranking tasks of ``MTEB(Multilingual, v2)``.
DEFAULT_TASKS: tuple[str, ...] = (
    "AlloprofReranking",
    "RuBQReranking",
    "T2Reranking",
    "VoyageMMarcoReranking",
    "WebLINXCandidatesReranking",
    "WikipediaRerankingMultilingual",
)

RERANKING_TYPES = {"Reranking", "InstructionReranking"}
RETRIEVAL_TYPES = {"Retrieval", "InstructionRetrieval"}


def load_tasks(tasks: Sequence[Any] | None) -> list[Any]:
    """mteb task names or task objects -> task objects (default :data:`DEFAULT_TASKS`); an unknown name is an input
    error."""
    names = list(tasks) if tasks else list(DEFAULT_TASKS)
    out: list[Any] = []
    wanted = [t for t in names if isinstance(t, str)]
    found: dict[str, Any] = {}
    if wanted:
        try:
            found = {t.metadata.name: t for t in mteb.get_tasks(tasks=wanted)}
        except (KeyError, ValueError) as e:
            raise QueritInputError(f"unknown mteb task in {wanted}: {e}") from None
        missing = [t for t in wanted if t not in found]
        if missing:
            raise QueritInputError(f"unknown mteb task(s): {', '.join(missing)}")
    for t in names:
        out.append(found[t] if isinstance(t, str) else t)
    return out


def beir_task(
    folder: str | os.PathLike,
    split: str = "test",
    *,
    name: str | None = None,
    max_queries: int | None = None,
    languages: Sequence[str] = ("eng-Latn",),
    queries_from: str | os.PathLike | None = None,
    main_score: str = "ndcg_at_10",
) -> AbsTaskRetrieval:
    """An mteb retrieval task over a local BEIR folder (read with :func:`querit_st.data.load_beir`; no network).

    Args:
        folder: BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
        split: the qrels split, also the task's eval split.
        name: task name (default ``"Local<FolderName>Retrieval"``); results are filed as ``{name}.json``.
        max_queries: keep only the first ``n`` queries with qrels (quick runs).
        languages: the task's ``eval_langs``.
        queries_from: another BEIR folder to take the queries from (cross-lingual, same query ids).
    """
    folder = Path(folder)
    data = load_beir(folder, split)  # validates now: a bad folder fails before anything runs
    queries = dict(data.queries)
    if queries_from is not None:
        queries = load_beir(queries_from, split).queries
    queries = {q: t for q, t in queries.items() if q in data.qrels}
    if max_queries:
        queries = dict(list(queries.items())[:max_queries])
    if not queries:
        raise QueritInputError(f"{folder}: no queries with qrels for split {split!r}")
    words = [w.capitalize() for w in re.split(r"[^A-Za-z0-9]+", folder.name) if w]
    task_name = name or "Local" + "".join(words) + "Retrieval"
    revision = data.checksum[:16] + (f"-q{max_queries}" if max_queries else "")
    metadata = TaskMetadata(
        name=task_name,
        description=f"Local BEIR folder {folder.name} ({split} split"
        + (f", first {max_queries} queries" if max_queries else "") + "), read from disk by querit-st.",
        dataset={"path": str(folder.resolve()), "revision": revision},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=list(languages),
        main_score=main_score,
        reference=None,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation="",
    )
    corpus = data.corpus
    qrels = {q: data.qrels[q] for q in queries}

    class LocalBeirRetrieval(AbsTaskRetrieval):
        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            from datasets import Dataset

            from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

            self.dataset = {"default": {split: RetrievalSplitData(
                queries=Dataset.from_list([{"id": q, "text": t} for q, t in queries.items()]),
                corpus=Dataset.from_list([{"id": d, "title": v.get("title") or "", "text": v.get("text") or ""}
                                          for d, v in corpus.items()]),
                relevant_docs={q: dict(r) for q, r in qrels.items()},
                top_ranked=None,
            )}}
            self.data_loaded = True

    LocalBeirRetrieval.metadata = metadata
    LocalBeirRetrieval.__name__ = LocalBeirRetrieval.__qualname__ = re.sub(r"\W", "_", task_name)
    return LocalBeirRetrieval()
