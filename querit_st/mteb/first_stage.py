"""The first stage of retrieval tasks: the package's :class:`~querit_st.retriever.DenseRetriever` as an mteb search
model, whose run writes mteb's first-stage prediction file (``{Task}_predictions.json``) for the reranker."""

from __future__ import annotations

import os
from typing import Any

from querit_st.mteb.meta import retriever_meta

__all__ = ["DenseRetrieverSearch"]


def _texts_of(dataset: Any, prompt_type: Any) -> list[str]:
    """The texts mteb itself would give a model (document: title + text; query: text + instruction)."""
    try:
        from mteb._create_dataloaders import _retrieval_texts

        return list(_retrieval_texts(dataset, prompt_type))
    except ImportError:  # pragma: no cover - other mteb versions
        from querit_st.data import doc_text

        if prompt_type.value == "document":
            return [doc_text({"title": r.get("title") or "", "text": r.get("text") or ""}) for r in dataset]
        return [r["text"] for r in dataset]


class DenseRetrieverSearch:
    """mteb ``SearchProtocol`` around the package's :class:`~querit_st.retriever.DenseRetriever`.

    ``mteb.evaluate(DenseRetrieverSearch(...), task, prediction_folder=DIR)`` scores the retriever and writes mteb's
    first-stage prediction file ``DIR/{Task}_predictions.json``. ``max_hits`` caps the hits kept per query (mteb asks
    for its largest k, 1000, by default).
    """

    def __init__(self, retriever: Any, *, spec: str | None = None, max_hits: int | None = None,
                 cache_dir: str | os.PathLike | None = None, device: str | None = None) -> None:
        from querit_st.retriever import DenseRetriever

        if not isinstance(retriever, DenseRetriever):
            spec = spec or str(retriever)
            retriever = DenseRetriever(retriever, cache_dir=cache_dir, device=device)
        self.retriever = retriever
        self.max_hits = max_hits
        self.mteb_model_meta = retriever_meta(retriever, spec)

    def index(self, corpus: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
              encode_kwargs: Any = None, num_proc: int | None = None, **kwargs: Any) -> None:
        from mteb.types import PromptType

        texts = _texts_of(corpus, PromptType.document)
        ids = [str(i) for i in corpus["id"]]
        # some mteb corpora hold empty documents; the retriever refuses empty texts, so they get a placeholder
        self.retriever.index({i: _nonempty(t) for i, t in zip(ids, texts)})

    def search(self, queries: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               top_k: int = 100, encode_kwargs: Any = None, top_ranked: Any = None, num_proc: int | None = None,
               **kwargs: Any) -> dict[str, dict[str, float]]:
        from mteb.types import PromptType

        texts = _texts_of(queries, PromptType.query)
        ids = [str(i) for i in queries["id"]]
        k = min(top_k, self.max_hits) if self.max_hits else top_k
        return self.retriever.search({i: _nonempty(t) for i, t in zip(ids, texts)}, top_k=k)


def _nonempty(text: Any) -> str:
    return text if isinstance(text, str) and text.strip() else "[empty]"
