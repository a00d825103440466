"""MTEB (2.x) evaluation of querit-st rerankers, with results in the leaderboard layout.

* :func:`model_meta` describes a trained model as an :class:`mteb.ModelMeta` (``model_type=["cross-encoder"]``,
  parameter count, languages, licence, citation of the Querit-Reranker paper...) whose ``loader`` loads it back as
  a :class:`QueritMTEBWrapper` (mteb's ``CrossEncoderWrapper`` around a :class:`~querit_st.QueritCrossEncoder`).
* :func:`run_mteb` evaluates it on mteb tasks. Reranking tasks (the default list: the six reranking tasks of
  ``MTEB(Multilingual, v2)``) are scored on their own candidate lists. Retrieval tasks run in two stages, the way
  mteb evaluates cross-encoders: the package's :class:`~querit_st.retriever.DenseRetriever` is run through mteb
  with a ``prediction_folder`` (mteb's first-stage prediction format, ``{Task}_predictions.json``), the task is
  converted with ``AbsTaskRetrieval.convert_to_reranking(predictions, top_k=...)``, and the cross-encoder then
  reranks those top-k candidates.
* Results go to ``{output}/{org__model}/{revision}/{Task}.json`` plus ``model_meta.json`` (mteb's ``ResultCache``
  layout without its ``results/`` prefix), i.e. exactly the layout of the ``results/`` folder of
  https://github.com/embeddings-benchmark/results, ready to be copied there for a pull request
  (``docs/mteb_submission.md``). Naming the output folder ``results`` makes its parent a folder that
  ``mteb submit-results --output-folder <parent>`` reads directly.
* :func:`beir_task` turns a local BEIR folder into an mteb retrieval task (no download), which is how the
  offline test runs the whole path end to end.

Network: mteb's own hub tasks need the Hugging Face hub to download their datasets; nothing else here does (no
model-card or revision look-ups: the model meta is built locally and the model is passed to ``mteb.evaluate`` as an
already loaded wrapper, the results cache never fetches the remote repository, CO2 tracking is off).

Besides the results, ``{output}/_querit/`` holds the first-stage predictions, a run summary and
``{org__model}_model_meta.py``: the model's ``ModelMeta`` as python code for the model-registry pull request to
``embeddings-benchmark/mteb`` (:func:`mteb_registry_snippet`).

Modules: :mod:`~querit_st.mteb.wrapper` (the model wrapper, also for released Querit decoder checkpoints),
:mod:`~querit_st.mteb.meta` (``ModelMeta`` building), :mod:`~querit_st.mteb.tasks` (task lists, local BEIR tasks),
:mod:`~querit_st.mteb.first_stage` (the retriever as an mteb search model), :mod:`~querit_st.mteb.run` (running,
results layout, summary). The command line is ``querit-st mteb`` (:mod:`querit_st.cli.mteb`).
"""

from __future__ import annotations

from querit_st.mteb.first_stage import DenseRetrieverSearch
from querit_st.mteb.meta import (
    BACKBONE_HUB_IDS,
    MTEB_DATASET_NAMES,
    QUERIT_CITATION,
    model_meta,
    mteb_registry_snippet,
    querit_decoder_model_meta,
    record_adapted_from,
    record_training_datasets,
    retriever_meta,
)
from querit_st.mteb.run import LeaderboardResultCache, run_mteb, summary_table, task_scores, write_summary
from querit_st.mteb.tasks import DEFAULT_TASKS, beir_task, load_tasks
from querit_st.mteb.wrapper import QueritDecoderMTEBWrapper, QueritMTEBWrapper, load_querit_mteb_model

__all__ = [
    "BACKBONE_HUB_IDS",
    "DEFAULT_TASKS",
    "MTEB_DATASET_NAMES",
    "QUERIT_CITATION",
    "DenseRetrieverSearch",
    "LeaderboardResultCache",
    "QueritDecoderMTEBWrapper",
    "QueritMTEBWrapper",
    "beir_task",
    "load_querit_mteb_model",
    "load_tasks",
    "model_meta",
    "mteb_registry_snippet",
    "querit_decoder_model_meta",
    "record_adapted_from",
    "record_training_datasets",
    "retriever_meta",
    "run_mteb",
    "summary_table",
    "task_scores",
    "write_summary",
]
