"""Soft-label mining: queries -> shared retriever's top-k -> teacher scores -> binned candidate lists.

- :mod:`~querit_st.mining.bins` - the bin sampler (:func:`sample_across_bins`, :func:`labelled_list`): pure math;
- :mod:`~querit_st.mining.mine` - :func:`mine_soft_labels` and its per-shard work;
- :mod:`~querit_st.mining.shards` - parquet shards, manifests, :func:`load_mined_dataset`;
- :mod:`~querit_st.mining.listwise` - mined rows -> training rows (:func:`to_listwise`, :func:`to_pointwise`).

:func:`mine_soft_labels` turns a target corpus (and optionally queries; by default synthetic ones generated from the
corpus) into a ``datasets.Dataset`` of listwise rows ``(query, [documents], [teacher scores])``, ready for the soft
losses through :func:`to_listwise` / :func:`to_pointwise`.

For every query the retriever's ``top_k`` hits form the pool; the teacher scores the whole pool (its view of the
larger candidate set) and :func:`sample_across_bins` keeps ``num_candidates`` of them spread over ``num_bins``
equal-width bins of the teacher-score range (16 by default, as in the Querit paper), always keeping the teacher's
best. The labels are therefore continuous and cover the whole score range, not only the top.

Determinism and restarts
------------------------
Queries are cut into global shards of ``shard_size`` queries (shard ``k`` = queries ``k*S .. (k+1)*S-1``); each
shard is retrieved and scored on its own and every query samples with its own RNG seeded from ``(seed, query_id)``.
So the rows of a shard do not depend on which process computes it or on what ran before. With ``output_dir`` each
shard is written atomically as ``shard-00000.parquet`` etc. and a ``manifest.json`` (atomic too) lists the complete
shards and a hash of the configuration. A run killed at any point and started again skips the complete shards and
produces exactly the rows of an uninterrupted run; a different configuration is refused (``resume=False`` clears the
folder's mining files and starts over). ``num_shards_total=N, shard_index=i`` lets N independent processes (or
machines sharing the folder) split the shards (``k % N == i``); each keeps its own ``manifest-worker*.json`` and
:func:`load_mined_dataset` concatenates the shards of all workers in order, equal to a single-process run.

Exact equality holds when a pair's teacher score does not depend on what else is in the batch (BM25, an
:class:`~querit_st.teachers.EmbeddingTeacher` whose documents come from the retriever's index). Neural teachers that
encode documents on the fly can differ in the last float bits between runs because padding changes with the batch.
"""

from querit_st.mining.bins import labelled_list, sample_across_bins, score_bins
from querit_st.mining.listwise import source_bonus_list, to_listwise, to_pointwise, zscore_list
from querit_st.mining.mine import mine_soft_labels, retriever_fingerprint
from querit_st.mining.shards import (
    FORMAT_VERSION,
    MINED_COLUMNS,
    clear_mining_files,
    load_mined_dataset,
    mined_features,
)

__all__ = [
    "MINED_COLUMNS",
    "FORMAT_VERSION",
    "mined_features",
    "score_bins",
    "sample_across_bins",
    "labelled_list",
    "mine_soft_labels",
    "load_mined_dataset",
    "clear_mining_files",
    "to_listwise",
    "zscore_list",
    "source_bonus_list",
    "to_pointwise",
    "retriever_fingerprint",
]
