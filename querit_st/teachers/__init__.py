"""Teachers: models that give every (query, document) pair a continuous relevance score (the soft label).

Every teacher has one interface, ``score(queries, documents) -> np.ndarray`` over *pairs* (two lists of the same
length; ``teacher(queries, documents)`` is the same call), so a teacher can label mined candidates
(:func:`querit_st.mining.mine_soft_labels`), label candidates during training
(:class:`querit_st.collator.TeacherMiningDataCollator`) or act as a reranker in the evaluation harness
(``evaluate_reranking(data, retriever, {"bm25": teacher.score})``).

- :mod:`~querit_st.teachers.base`: :class:`Teacher` (validation, pair cache), :func:`check_pairs_lists`,
  :func:`pair_key`, :func:`as_score_fn`.
- :mod:`~querit_st.teachers.cross_encoder`: :class:`CrossEncoderTeacher`, a sentence-transformers ``CrossEncoder``
  (logits, or sigmoid of them).
- :mod:`~querit_st.teachers.embedding`: :class:`EmbeddingTeacher`, cosine similarity of an embedding model, with the
  model family's query / passage prompts (the Querit paper's teacher is an embedding model). It reuses a
  :class:`DenseRetriever`'s corpus embeddings when the prompts agree, so labelling the retriever's own candidates
  costs only the query encodings.
- :mod:`~querit_st.teachers.bm25`: :class:`BM25Teacher`, lexical BM25 (Lucene variant, ``bm25s``) with a
  per-language PyStemmer stemmer.
- :mod:`~querit_st.teachers.ensemble`: :class:`EnsembleTeacher`, a weighted sum of member teachers' scores normalised
  within each query's candidate group ("the teacher ensemble").
- :mod:`~querit_st.teachers.fingerprint`: :func:`teacher_fingerprint`, :func:`model_fingerprint`,
  :func:`model_weights_hash` (what mining's config hash is made of).

Caching: the single-model teachers remember every pair they scored (an in-memory dict keyed by a hash of the pair),
so no pair is ever scored twice in a run; :attr:`Teacher.cache_hits` / :attr:`Teacher.cache_misses` count lookups.
The ensemble's output depends on the whole candidate group, so it is not cached itself; its members are.
:meth:`Teacher.persist` keeps a teacher's scores on disk too (:mod:`~querit_st.teachers.store`: a SQLite file per
scorer, named by a hash of :meth:`Teacher.store_key`, committed chunk by chunk), so later runs read them back and an
interrupted run resumes; the pipeline's evaluation scores its models this way.

``normalize_group_scores`` / ``normalize_rows_by_group`` (:mod:`querit_st.utils.scores`) and ``is_cjk_char``
(:mod:`querit_st.utils.text`) are re-exported here under their old import path.
"""

from querit_st.teachers.base import Teacher, as_score_fn, check_pairs_lists, pair_key
from querit_st.teachers.bm25 import BM25Teacher
from querit_st.teachers.cross_encoder import CrossEncoderTeacher
from querit_st.teachers.embedding import EmbeddingTeacher
from querit_st.teachers.ensemble import EnsembleTeacher
from querit_st.teachers.fingerprint import model_fingerprint, model_weights_hash, teacher_fingerprint
from querit_st.teachers.store import ScoreStore
from querit_st.utils.scores import normalize_group_scores, normalize_rows_by_group
from querit_st.utils.text import is_cjk_char

__all__ = [
    "Teacher",
    "CrossEncoderTeacher",
    "EmbeddingTeacher",
    "BM25Teacher",
    "EnsembleTeacher",
    "ScoreStore",
    "normalize_group_scores",
    "normalize_rows_by_group",
    "pair_key",
    "check_pairs_lists",
    "teacher_fingerprint",
    "model_fingerprint",
    "model_weights_hash",
    "as_score_fn",
    "is_cjk_char",
]
