"""``TeacherMiningDataCollator``: mine and label candidates *during* training, inside ``CrossEncoderTrainer``.

The train dataset holds only queries (column ``query``; optional known positives in ``positive`` (a text) and/or
``source_doc_id`` (a corpus id)). For each batch the collator

1. retrieves each query's ``top_k`` with the shared retriever (already indexed; results cached per query text, so
   later epochs do not search again) and turns the hits into its pool with :func:`~querit_st.retriever.candidate_pool`,
2. has the teacher score the whole pool (the teachers' own pair cache means a pair is scored once per run),
3. keeps ``num_candidates`` per query with the same 16-bin sampler as offline mining
   (:func:`~querit_st.mining.sample_across_bins`; the RNG is seeded from ``(seed, query, visit number)``, so every
   epoch sees a different but reproducible spread of candidates, always with the teacher's best),

and returns the batch format the soft losses consume, untokenised like sentence-transformers' own
``CrossEncoderDataCollator`` (the losses tokenise):

- ``mode="listwise"``: ``{"query": [q, ...], "documents": [[d, ...], ...], "label": [tensor([s, ...]), ...]}``
  for :class:`~querit_st.losses.SoftLabelKLLoss`, :class:`~querit_st.losses.ScoreGapHingeLoss` and listwise
  :class:`~querit_st.losses.SoftLabelMSELoss`;
- ``mode="pointwise"``: ``{"query": [...], "document": [...], "label": tensor([...])}`` (one row per pair) for
  pointwise :class:`~querit_st.losses.SoftLabelMSELoss`.

Only the query and the documents are emitted as inputs (the losses take exactly two input columns), so other dataset
columns (ids, positives, a dummy ``label``) never reach the loss. ``CrossEncoderTrainer`` builds its dataloaders
without dropping columns, so ``remove_unused_columns`` does not matter, and no label column is needed. Keep
``dataloader_num_workers=0``: the retriever and the teacher run in the training process.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sentence_transformers.cross_encoder.data_collator import CrossEncoderDataCollator

from querit_st.mining import sample_across_bins
from querit_st.utils.hashing import stable_seed
from querit_st.retriever import candidate_pool
from querit_st.teachers import as_score_fn
from querit_st.utils import QueritInputError, check_text

logger = logging.getLogger(__name__)

__all__ = ["TeacherMiningDataCollator", "make_query_dataset"]


@dataclass
class TeacherMiningDataCollator(CrossEncoderDataCollator):
    """Data collator for ``CrossEncoderTrainer`` that mines candidates and teacher labels on the fly.

    Args:
        retriever: the shared first stage, already indexed on the target corpus (a
            :class:`~querit_st.retriever.DenseRetriever`: ``search``, ``doc_ids``, ``doc_texts``).
        teacher: a teacher (``score(queries, documents)``) or a ``(queries, docs) -> scores`` callable; its
            ``prepare(corpus_texts)`` is called with the retriever's corpus (BM25 fits there).
        top_k: retrieval depth (the teacher scores all of it).
        num_candidates: documents per query in the batch.
        num_bins: teacher-score bins of the sampler.
        mode: ``"listwise"`` or ``"pointwise"``.
        query_column: the dataset column holding the query text.
        positive_columns: columns with known positives: ``source_doc_id`` holds a corpus id, any other a text.
            They join the candidate pool and are always kept (when there is room).
        seed: sampling seed.
        preprocess_fn: unused (the soft losses tokenise); accepted for compatibility with the base class.

    Example:
        ::

            retriever = DenseRetriever("multilingual-e5-small"); retriever.index(corpus)
            collator = TeacherMiningDataCollator(retriever=retriever, teacher=EmbeddingTeacher(retriever))
            trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=make_query_dataset(queries),
                                          loss=SoftLabelKLLoss(model), data_collator=collator)
    """

    preprocess_fn: Callable | None = None
    retriever: Any = None
    teacher: Any = None
    top_k: int = 100
    num_candidates: int = 16
    num_bins: int = 16
    mode: str = "listwise"
    query_column: str = "query"
    positive_columns: tuple[str, ...] = ("positive", "source_doc_id")
    seed: int = 0

    _pools: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)
    _visits: Counter = field(default_factory=Counter, init=False, repr=False)
    num_searched_queries: int = field(default=0, init=False, repr=False)
    num_batches: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retriever is None or not callable(getattr(self.retriever, "search", None)):
            raise QueritInputError("TeacherMiningDataCollator needs retriever= (an indexed DenseRetriever)")
        if not getattr(self.retriever, "doc_ids", None):
            raise QueritInputError("the retriever is not indexed: call retriever.index(corpus) before training")
        if self.teacher is None:
            raise QueritInputError("TeacherMiningDataCollator needs teacher= (a teacher or a scoring callable)")
        self._score = as_score_fn(self.teacher)
        if self.mode not in ("listwise", "pointwise"):
            raise QueritInputError(f"mode must be 'listwise' or 'pointwise', got {self.mode!r}")
        for name in ("top_k", "num_candidates", "num_bins"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise QueritInputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.positive_columns, str):
            self.positive_columns = (self.positive_columns,)
        self._doc_texts: list[str] = list(self.retriever.doc_texts)
        self._id_pos = {str(d): i for i, d in enumerate(self.retriever.doc_ids)}
        self._text_pos: dict[str, int] = {}
        for i, t in enumerate(self._doc_texts):
            self._text_pos.setdefault(t, i)
        if hasattr(self.teacher, "prepare"):
            self.teacher.prepare(self._doc_texts)

    # ------------------------------------------------------------------ retrieval
    def _pools_for(self, queries: Sequence[str]) -> list[list[int]]:
        todo = list(dict.fromkeys(q for q in queries if q not in self._pools))
        if todo:
            hits = self.retriever.search(todo, top_k=self.top_k)
            self.num_searched_queries += len(todo)
            for i, q in enumerate(todo):
                pool = candidate_pool(hits.get(str(i), {}), self.top_k, known=self._id_pos)
                self._pools[q] = [self._id_pos[d] for d in pool]
        return [self._pools[q] for q in queries]

    def _positives(self, row: Mapping[str, Any]) -> list[tuple[int | None, str]]:
        out: list[tuple[int | None, str]] = []
        for col in self.positive_columns:
            value = row.get(col)
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if v is None or (isinstance(v, str) and not v.strip()):
                    continue
                if col == "source_doc_id":
                    pos = self._id_pos.get(str(v))
                    if pos is None:
                        logger.warning("source_doc_id %r is not in the retriever's corpus; ignored", v)
                        continue
                    out.append((pos, self._doc_texts[pos]))
                else:
                    text = check_text(v, f"{col}")
                    out.append((self._text_pos.get(text), text))
        return out

    # ------------------------------------------------------------------ collate
    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            return {}
        batch: dict[str, Any] = {}
        if "dataset_name" in features[0]:
            batch["dataset_name"] = features[0]["dataset_name"]
        if self.query_column not in features[0]:
            raise QueritInputError(
                f"the train dataset has no {self.query_column!r} column (columns: {list(features[0])}); "
                "TeacherMiningDataCollator needs one query per row"
            )
        col = self.query_column
        queries = [check_text(f.get(col), f"batch row {i} {col!r}") for i, f in enumerate(features)]
        pools = self._pools_for(queries)

        cands: list[list[str]] = []
        required: list[list[int]] = []
        for row, pool in zip(features, pools):
            texts = [self._doc_texts[p] for p in pool]
            seen_pos = set(pool)
            seen_txt = set(texts)
            req: list[int] = []
            for pos, text in self._positives(row):
                if pos is not None and pos in seen_pos:
                    req.append(pool.index(pos))
                elif text in seen_txt:
                    req.append(texts.index(text))
                else:
                    req.append(len(texts))
                    texts.append(text)
                    seen_txt.add(text)
                    if pos is not None:
                        seen_pos.add(pos)
            cands.append(texts)
            required.append(list(dict.fromkeys(req)))
        flat_q = [q for q, texts in zip(queries, cands) for _ in texts]
        flat_d = [d for texts in cands for d in texts]
        scores = np.asarray(self._score(flat_q, flat_d), dtype=np.float64) if flat_q else np.zeros(0)
        if scores.shape[0] != len(flat_q):
            raise RuntimeError(f"teacher returned {scores.shape[0]} scores for {len(flat_q)} pairs")

        docs_out: list[list[str]] = []
        labels_out: list[list[float]] = []
        start = 0
        for q, texts, req in zip(queries, cands, required):
            s = scores[start : start + len(texts)]
            start += len(texts)
            if not texts:
                raise QueritInputError(f"query {q!r:.60}: the retriever returned no candidates")
            rng = np.random.default_rng(stable_seed("collate", self.seed, q, self._visits[q]))
            self._visits[q] += 1
            idx = sample_across_bins(s, self.num_candidates, self.num_bins, rng, required=req or None)
            idx = sorted((int(i) for i in idx), key=lambda i: (-s[i], i))
            docs_out.append([texts[i] for i in idx])
            labels_out.append([float(s[i]) for i in idx])
        self.num_batches += 1

        if self.mode == "listwise":
            batch["label"] = [torch.tensor(row, dtype=torch.float32) for row in labels_out]
        else:
            batch["label"] = torch.tensor([x for row in labels_out for x in row], dtype=torch.float32)
        prompt = self._resolve_scalar(self.prompts, batch)
        if prompt:
            batch["prompt"] = prompt
        task = self._resolve_scalar(self.router_mapping, batch)
        if task:
            batch["task"] = task
        if self.mode == "listwise":
            batch["query"] = queries
            batch["documents"] = docs_out
        else:
            batch["query"] = [q for q, docs in zip(queries, docs_out) for _ in docs]
            batch["document"] = [d for docs in docs_out for d in docs]
        return batch


def make_query_dataset(
    queries: Mapping[str, str] | Sequence[str] | Sequence[Mapping[str, Any]],
    source_doc_ids: Sequence[str | None] | None = None,
) -> Any:
    """A ``datasets.Dataset`` of queries for the collator: column ``query`` (and ``source_doc_id`` when known).

    Accepts ``{query_id: text}``, a list of texts, or generator output (dicts with ``query`` and ``doc_id``).
    """
    from datasets import Dataset

    if isinstance(queries, Mapping):
        texts = list(queries.values())
    else:
        texts, src = [], []
        for q in queries:
            if isinstance(q, Mapping):
                texts.append(q.get("query"))
                src.append(q.get("source_doc_id", q.get("doc_id")))
            else:
                texts.append(q)
        if source_doc_ids is None and any(s is not None for s in src):
            source_doc_ids = src
    for i, t in enumerate(texts):
        check_text(t, f"queries[{i}]")
    data: dict[str, list[Any]] = {"query": texts}
    if source_doc_ids is not None:
        if len(source_doc_ids) != len(texts):
            raise QueritInputError(f"{len(source_doc_ids)} source_doc_ids for {len(texts)} queries")
        data["source_doc_id"] = [None if s is None else str(s) for s in source_doc_ids]
    return Dataset.from_dict(data)
