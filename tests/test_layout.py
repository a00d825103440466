"""The package's layout (docs/architecture.md): every public name and saved-model class path imports, no import
cycle, no module imports a later stage or another module's private name, no file is too long to read."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "querit_st"

#: the data flow, low -> high: a module may import its own layer or a lower one (docs/architecture.md)
LAYERS = [
    {"utils", "citation", "prompts"},
    {"backbones"},
    {"decoder", "cross_encoder", "inference"},
    {"data"},
    {"querygen"},
    {"retriever"},
    {"teachers"},
    {"mining"},
    {"collator", "losses"},
    {"training"},
    {"merge"},
    {"evaluation"},
    {"harness", "mteb"},
    {"pipeline"},
    {"cli"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}

#: names outside checks call (../shared/API.md) and that saved models name (modules.json)
PUBLIC = {
    "querit_st": ["QueritCrossEncoder", "DenseRetriever", "SoftLabelMSELoss", "SoftLabelKLLoss", "ScoreGapHingeLoss",
                  "TeacherMiningDataCollator", "mine_soft_labels", "slerp_merge", "slerp", "load_beir", "BeirData",
                  "evaluate_reranking", "CrossEncoderTeacher", "EmbeddingTeacher", "BM25Teacher", "EnsembleTeacher",
                  "TermQueryGenerator", "Seq2SeqQueryGenerator", "QUERIT_PROMPT", "format_querit_prompt"],
    "querit_st.backbones": ["resolve"],
    "querit_st.data": ["detect_language", "load_corpus", "load_beir", "doc_text", "corpus_items", "load_corpus_file"],
    "querit_st.decoder": ["QueritDecoderScorer", "is_querit_checkpoint"],
    "querit_st.cross_encoder": ["QueritCrossEncoder", "QUERIT_PROMPT", "QUERIT_INSTRUCTION", "format_querit_prompt",
                                "zscore", "fuse_scores"],
    "querit_st.merge": ["slerp", "slerp_merge", "slerp_merge_many"],
    "querit_st.inference": ["MODES", "optimize_for_inference", "inference_mode_of", "cpu_features"],
    "querit_st.losses": ["SoftLabelMSELoss", "SoftLabelKLLoss", "ScoreGapHingeLoss", "check_loss_kwargs",
                         "normalize_teacher_scores"],
    "querit_st.teachers": ["BM25Teacher", "CrossEncoderTeacher", "EmbeddingTeacher", "EnsembleTeacher",
                           "normalize_group_scores", "normalize_rows_by_group", "as_score_fn", "teacher_fingerprint"],
    "querit_st.mining": ["mine_soft_labels", "sample_across_bins", "to_listwise", "load_mined_dataset",
                         "labelled_list", "zscore_list"],
    "querit_st.pipeline": ["load_config", "run_pipeline", "pretrain", "adapt", "evaluate_models", "stage1_dir",
                           "pretrain_dataset", "train_model", "build_teacher", "build_retriever", "merge_config_values",
                           "machine_info"],
    "querit_st.training": ["train_model", "configure_fast_training", "choose_fast_path", "FastPath", "fold_lora"],
    "querit_st.harness": ["run_beir_eval", "classify_reranker", "resolve_data"],
    "querit_st.mteb": ["QueritMTEBWrapper", "model_meta", "run_mteb"],
    "querit_st.cli": ["main"],
    "querit_st.cli.evaluate": ["main", "evaluate_command"],
    "querit_st.cli.merge": ["merge_command"],
    "querit_st.cli.mteb": ["main"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_import(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [n for n in PUBLIC[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


def test_saved_model_class_paths_resolve() -> None:
    """The ``type`` strings saved models carry in ``modules.json`` resolve to the classes."""
    from sentence_transformers.util import import_from_string

    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.decoder import QueritDecoderScorer

    assert import_from_string("querit_st.decoder.QueritDecoderScorer") is QueritDecoderScorer
    assert import_from_string("querit_st.cross_encoder.QueritCrossEncoder") is QueritCrossEncoder


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every querit_st import in the file, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("querit_st"):
                continue
            names = [a.name for a in node.names]
            # "from querit_st import losses" imports the module querit_st.losses
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules] or [base]
            out += [(t, names, node.lineno) for t in targets]
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("querit_st")]
    return out


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_later_stage_or_private_imports() -> None:
    modules = _modules()
    problems = []
    for name, path in modules.items():
        own = _stage(name)
        for target, names, line in _imports(path, name, modules):
            other = _stage(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if own is not None and other is not None and other != own:
                if LAYER_OF.get(other, -1) > LAYER_OF.get(own, -1):
                    problems.append(f"{where}: {own} (layer {LAYER_OF.get(own)}) imports the later stage {target}")
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                if private:
                    problems.append(f"{where}: imports private {private} from {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    """Module-level imports form no cycle (the graph of files, package __init__ files included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
        graph[name] = {t for t, _, line in _imports(path, name, modules) if line in top and t in modules and t != name}
    # a submodule importing its own package's __init__ would be a cycle through the re-exports
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, stack: list[str]) -> bool:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycle.extend(stack[stack.index(m):] + [n, m] if m in stack else [n, m])
                return True
            if state.get(m) is None and visit(m, [*stack, m]):
                return True
        state[n] = 2
        return False

    for n in sorted(graph):
        if state.get(n) is None and visit(n, [n]):
            break
    assert not cycle, " -> ".join(cycle)


def test_files_are_small_enough_to_read() -> None:
    too_long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not too_long, too_long
