"""``EmbeddingTeacher``: cosine similarity of an embedding model (reusing a ``DenseRetriever``'s corpus index)."""

from __future__ import annotations

from typing import Any

import numpy as np

from querit_st.teachers.base import Teacher
from querit_st.teachers.fingerprint import model_fingerprint


class EmbeddingTeacher(Teacher):
    """Cosine similarity of an embedding model as the teacher's score.

    Args:
        model_name_or_path: an offline backbone name (``"minilm-l6"``, ``"multilingual-e5-small"``), a local
            SentenceTransformer folder, a loaded ``SentenceTransformer``, or a :class:`DenseRetriever` (its model,
            prompts and, when the corpus is indexed, its corpus embeddings are reused).
        query_prompt / passage_prompt: ``None`` takes the retriever's (the family default: ``"query: "`` /
            ``"passage: "`` for e5 models, nothing otherwise).
        batch_size: encoding batch size.

    Every unique query and document text of a call is encoded once; the pair cache avoids re-encoding across calls.
    Documents that are in the wrapped retriever's index (and were embedded with the same passage prompt) use the
    index's embeddings, which also makes their scores independent of how calls are batched.
    """

    def __init__(
        self,
        model_name_or_path: Any = "minilm-l6",
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        *,
        batch_size: int = 64,
        max_seq_length: int | None = 256,
        cache_dir: Any = None,
        cache: bool = True,
    ) -> None:
        super().__init__(cache=cache)
        from querit_st.retriever import DenseRetriever

        if isinstance(model_name_or_path, DenseRetriever):
            self.retriever = model_name_or_path
        else:
            self.retriever = DenseRetriever(
                model_name_or_path, batch_size=batch_size, max_seq_length=max_seq_length, cache_dir=cache_dir
            )
        self.query_prompt = self.retriever.query_prompt if query_prompt is None else query_prompt
        self.passage_prompt = self.retriever.passage_prompt if passage_prompt is None else passage_prompt
        self.batch_size = batch_size
        self._index_ref: Any = None
        self._index_pos: dict[str, int] = {}

    def _encode(self, texts: list[str], prompt: str) -> np.ndarray:
        return self.retriever.encode([prompt + t for t in texts], self.batch_size)

    def _index_positions(self) -> dict[str, int]:
        r = self.retriever
        if r.embeddings is None or self.passage_prompt != r.passage_prompt:
            return {}
        if self._index_ref is not r.embeddings:
            self._index_ref = r.embeddings
            self._index_pos = {}
            for i, t in enumerate(r.doc_texts):
                self._index_pos.setdefault(t, i)
        return self._index_pos

    def encode_documents(self, documents: list[str]) -> np.ndarray:
        """L2-normalised embeddings of the documents (index rows where possible, encoded otherwise)."""
        pos = self._index_positions()
        missing = [d for d in dict.fromkeys(documents) if d not in pos]
        enc = dict(zip(missing, self._encode(missing, self.passage_prompt))) if missing else {}
        rows = [self.retriever.embeddings[pos[d]] if d in pos else enc[d] for d in documents]
        return np.asarray(rows, dtype=np.float32)

    def _score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        uq = list(dict.fromkeys(queries))
        ud = list(dict.fromkeys(documents))
        qe = dict(zip(uq, self._encode(uq, self.query_prompt)))
        de = dict(zip(ud, self.encode_documents(ud)))
        q = np.stack([qe[x] for x in queries]).astype(np.float64)
        d = np.stack([de[x] for x in documents]).astype(np.float64)
        qn = np.linalg.norm(q, axis=1)
        dn = np.linalg.norm(d, axis=1)
        return (q * d).sum(axis=1) / np.maximum(qn * dn, 1e-12)

    def fingerprint(self) -> dict[str, Any]:
        r = self.retriever
        return {"class": type(self).__name__, "model": model_fingerprint(r),
                "query_prompt": self.query_prompt, "passage_prompt": self.passage_prompt,
                "max_seq_length": r.model.max_seq_length}
