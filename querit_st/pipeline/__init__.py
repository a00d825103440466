"""The three-stage recipe driven by one YAML config: pretrain -> label-free adapt -> SLERP merge -> evaluate.

Data flows one way::

    BEIR corpus --querygen--> synthetic queries --DenseRetriever--> candidates --teacher--> soft labels
    --losses + CrossEncoderTrainer--> adapted checkpoints --slerp--> merged model --harness--> results.json

- :mod:`~querit_st.pipeline.config`: the YAML schema, reading and checking (every value before anything runs)
- :mod:`~querit_st.pipeline.factories`: retriever, teachers and the corpus language, built from the config
- :mod:`~querit_st.pipeline.fingerprint`: the settings hash each stage folder carries (no stale reuse)
- :mod:`~querit_st.pipeline.stage1` / :mod:`~querit_st.pipeline.stage2`: pretraining and label-free adaptation
- :mod:`~querit_st.pipeline.evaluate`: merging and evaluation; :mod:`~querit_st.pipeline.report`: table and chart
- :mod:`~querit_st.pipeline.run`: :func:`run_pipeline`

Stage 2 reads **only** the target's ``corpus.jsonl`` (``querit_st.data.load_corpus``); its queries and qrels are
opened by the evaluation step alone, after training.
"""

from querit_st.pipeline.config import (
    AdaptSpec,
    EvalSpec,
    MergeSpec,
    PipelineConfig,
    PretrainSpec,
    TeacherSpec,
    TrainSpec,
    check_backbone_layers,
    check_config,
    load_config,
    merge_config_values,
    read_config_values,
)
from querit_st.pipeline.evaluate import evaluate_models, hybrid_specs, merge_checkpoints
from querit_st.pipeline.factories import build_loss, build_retriever, build_teacher, clear_retrievers, corpus_language
from querit_st.pipeline.report import bar_chart, group_table, machine_info, results_table
from querit_st.pipeline.run import preflight, run_pipeline
from querit_st.pipeline.stage1 import (labelled_lists, pretrain, pretrain_dataset, stage1_dir, stage1_key,
                                      stage1_teachers)
from querit_st.pipeline.stage2 import adapt

__all__ = [
    "AdaptSpec", "EvalSpec", "MergeSpec", "PipelineConfig", "PretrainSpec", "TeacherSpec", "TrainSpec", "adapt",
    "bar_chart", "build_loss", "build_retriever", "build_teacher", "check_backbone_layers", "check_config",
    "clear_retrievers", "corpus_language", "evaluate_models", "group_table", "hybrid_specs", "labelled_lists",
    "load_config", "machine_info", "merge_checkpoints", "merge_config_values", "preflight", "pretrain",
    "pretrain_dataset", "read_config_values", "results_table", "run_pipeline", "stage1_dir", "stage1_key",
    "stage1_teachers", "train_model",
]


def __getattr__(name: str) -> object:
    """``train_model`` lives in :mod:`querit_st.training` (loaded on first use: reading a config stays cheap)."""
    if name == "train_model":
        from querit_st.training import train_model

        return train_model
    raise AttributeError(f"module 'querit_st.pipeline' has no attribute {name!r}")
