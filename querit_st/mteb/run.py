"""Running mteb on a reranker: :func:`run_mteb` (reranking tasks on their own candidates; retrieval tasks reranked
over the package's first stage), results in the leaderboard layout (:class:`LeaderboardResultCache`), a run summary
(:func:`write_summary`, :func:`summary_table`)."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mteb
import numpy as np
from mteb.cache import ResultCache
from mteb.models.model_meta import ModelMeta

from querit_st.cross_encoder import QueritCrossEncoder
from querit_st.mteb.first_stage import DenseRetrieverSearch
from querit_st.mteb.meta import model_meta, mteb_registry_snippet
from querit_st.mteb.tasks import RERANKING_TYPES, RETRIEVAL_TYPES, load_tasks
from querit_st.mteb.wrapper import QueritMTEBWrapper
from querit_st.utils import QueritInputError, atomic_write_json
from querit_st.utils.tables import markdown_table

logger = logging.getLogger(__name__)

__all__ = ["LeaderboardResultCache", "run_mteb", "summary_table", "task_scores", "write_summary"]


class LeaderboardResultCache(ResultCache):
    """A :class:`mteb.ResultCache` that writes ``{folder}/{org__model}/{revision}/{Task}.json`` + ``model_meta.json``.

    mteb's own cache puts the same tree under ``{cache}/results/``; here ``folder`` *is* that results folder, which is
    the layout of ``results/`` in the results repository.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__(cache_path=Path(folder))

    def get_task_result_path(self, task_name: str, model_name: Any, model_revision: str | None = None,
                             remote: bool = False, experiment_name: str | None = None) -> Path:
        path = super().get_task_result_path(task_name, model_name, model_revision, remote, experiment_name)
        if remote:
            return path
        return self.cache_path / path.relative_to(self.cache_path / "results")


def task_scores(result: Any) -> dict[str, Any]:
    """Main score (and nDCG@10) per split, averaged over the split's subsets."""
    out: dict[str, Any] = {}
    for split, entries in result.scores.items():
        main = [e["main_score"] for e in entries if "main_score" in e]
        ndcg = [e["ndcg_at_10"] for e in entries if "ndcg_at_10" in e]
        out[split] = {
            "main_score": float(np.mean(main)) if main else None,
            "ndcg_at_10": float(np.mean(ndcg)) if ndcg else None,
            "subsets": len(entries),
        }
    return out


def _evaluate(model: Any, task: Any, what: str, **kwargs: Any) -> dict[str, Any]:
    """``mteb.evaluate`` of one task (no CO2 tracking), a failure raised; its :func:`task_scores`."""
    result = mteb.evaluate(model, task, co2_tracker=False, **kwargs)
    if result.exceptions:
        raise RuntimeError(f"{what} failed on {task.metadata.name}: {result.exceptions[0].exception}")
    return task_scores(result.task_results[0])


def run_mteb(
    model: Any,
    tasks: Sequence[Any] | None = None,
    *,
    output: str | os.PathLike = "mteb_results/results",
    meta: ModelMeta | None = None,
    retriever: Any = "multilingual-e5-small",
    top_k: int = 100,
    batch_size: int = 32,
    predictions_dir: str | os.PathLike | None = None,
    retriever_cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | None = None,
    instruction: str | None = None,
    show_progress_bar: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Evaluate a reranker on mteb tasks and write the results in the leaderboard layout.

    Args:
        model: a model folder / hub id, a loaded ``QueritCrossEncoder`` or a :class:`QueritMTEBWrapper`.
        tasks: mteb task names or task objects (e.g. from :func:`beir_task`); default :data:`DEFAULT_TASKS`.
        output: results folder; files land in ``{output}/{org__model}/{revision}/{Task}.json`` + ``model_meta.json``.
        meta: the model's :class:`mteb.ModelMeta` (default: :func:`model_meta` of ``model``).
        retriever: first stage for *retrieval* tasks (reranking tasks bring their own candidates): a
            ``DenseRetriever``, or a name/folder for one.
        top_k: candidates per query that the cross-encoder reranks in retrieval tasks.
        predictions_dir: where first-stage predictions are written / reused
            (default ``{output}/_querit/first_stage/<retriever>``; kept out of the ``org__model`` folders).
        overwrite: re-run tasks (and first stages) whose results already exist (default: resume, skip them).

    Returns:
        ``{"model": ..., "revision": ..., "results_dir": ..., "tasks": {name: {...}}}``.
    """
    if not isinstance(top_k, int) or top_k <= 0:
        raise QueritInputError(f"top_k must be a positive integer, got {top_k!r}")
    task_objs = load_tasks(tasks)
    for t in task_objs:
        if t.metadata.type not in RERANKING_TYPES | RETRIEVAL_TYPES:
            raise QueritInputError(f"task {t.metadata.name} is a {t.metadata.type} task; a reranker runs on retrieval "
                                   "and reranking tasks only")

    if isinstance(model, QueritMTEBWrapper):
        wrapper = model
    else:
        if isinstance(model, (str, os.PathLike)):
            meta = meta or model_meta(model, instruction=instruction)
            src = meta.loader_kwargs.get("model_path") or str(model)
            try:
                model = QueritCrossEncoder(str(src), device=device)
            except OSError as e:
                raise QueritInputError(f"could not load reranker {src!r}: {str(e).splitlines()[0][:300]}") from None
        wrapper = QueritMTEBWrapper(model, instruction=instruction)
    meta = meta or (wrapper.mteb_model_meta if isinstance(model, QueritMTEBWrapper) else model_meta(wrapper.model))
    # the files written for submission name no local path
    saved_meta = meta.model_copy(update={"loader_kwargs": {k: v for k, v in meta.loader_kwargs.items()
                                                           if k != "model_path"}})
    wrapper.mteb_model_meta = saved_meta

    output = Path(output).expanduser()
    output_existed = output.exists()
    cache = LeaderboardResultCache(output)
    encode_kwargs = {"batch_size": batch_size, "show_progress_bar": show_progress_bar}
    strategy = "always" if overwrite else "only-missing"
    summary: dict[str, Any] = {
        "model": saved_meta.name,
        "revision": saved_meta.revision,
        "results_dir": str(output / saved_meta.model_name_as_path() / str(saved_meta.revision)),
        "top_k": top_k,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "tasks": {},
    }
    first_stage: DenseRetrieverSearch | None = None
    try:
        for task in task_objs:
            tname = task.metadata.name
            entry: dict[str, Any] = {"type": task.metadata.type, "main_score_name": task.metadata.main_score}
            if task.metadata.type in RETRIEVAL_TYPES:
                if first_stage is None:
                    first_stage = retriever if isinstance(retriever, DenseRetrieverSearch) else DenseRetrieverSearch(
                        retriever, max_hits=max(top_k, 100), cache_dir=retriever_cache_dir, device=device)
                fs_meta = first_stage.mteb_model_meta
                pred_dir = (Path(predictions_dir) if predictions_dir
                            else output / "_querit" / "first_stage" / fs_meta.model_name_as_path())
                pred_file = pred_dir / f"{tname}_predictions.json"
                if not task.data_loaded:
                    task.load_data()
                if overwrite or not pred_file.is_file():
                    pred_file.unlink(missing_ok=True)  # mteb merges into an existing file
                    entry["first_stage"] = _evaluate(first_stage, task, "first stage", cache=None,
                                                     prediction_folder=pred_dir, encode_kwargs=dict(encode_kwargs),
                                                     show_progress_bar=show_progress_bar)
                entry["first_stage_model"] = {"name": fs_meta.name, "revision": fs_meta.revision,
                                              "predictions": str(pred_file)}
                task = task.convert_to_reranking(pred_file, top_k=top_k)
                entry["reranked_top_k"] = top_k
            entry["scores"] = _evaluate(wrapper, task, "mteb", cache=cache, overwrite_strategy=strategy,
                                        encode_kwargs=dict(encode_kwargs), show_progress_bar=show_progress_bar)
            entry["file"] = str(cache.get_task_result_path(tname, saved_meta))
            summary["tasks"][tname] = entry
            logger.info("%s: %s", tname, entry["scores"])
    except BaseException:
        # a run that failed before writing any result leaves no (empty) output folder behind
        if not output_existed and output.is_dir() and not any(p.is_file() for p in output.rglob("*")):
            shutil.rmtree(output, ignore_errors=True)
        raise
    side = output / "_querit"
    side.mkdir(parents=True, exist_ok=True)
    stem = saved_meta.model_name_as_path()
    summary["summary_file"] = str(side / f"{stem}_summary.json")
    summary["registry_snippet"] = str(side / f"{stem}_model_meta.py")
    (side / f"{stem}_model_meta.py").write_text(mteb_registry_snippet(meta), encoding="utf-8")
    write_summary(summary, side / f"{stem}_summary.json")
    return summary


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike) -> None:
    """The run summary as JSON (written atomically)."""
    atomic_write_json(path, dict(summary))


def summary_table(summary: Mapping[str, Any]) -> str:
    """A markdown table of main score (and first-stage nDCG@10 for retrieval tasks) per task and split."""
    rows = []
    for tname, e in summary["tasks"].items():
        for split, s in e["scores"].items():
            first = (e.get("first_stage") or {}).get(split, {}).get("ndcg_at_10")
            rows.append([tname, split, e["main_score_name"], s["main_score"], s.get("ndcg_at_10"), first])
    title = f"MTEB results for {summary['model']} (revision {str(summary['revision'])[:12]})"
    header = ["task", "split", "main score", "value", "nDCG@10", "first stage nDCG@10"]
    return f"{title}\n\n{markdown_table(header, rows)}"
