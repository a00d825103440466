"""BEIR evaluation harness shared by ``benchmarks/beir_eval.py`` and ``querit-st evaluate``.

One call evaluates a first-stage retriever alone and reranked by one or more cross-encoders on one or more BEIR
folders (or BEIR dataset names, downloaded once when the network allows)::

    python benchmarks/beir_eval.py --data ../shared/data/vaswani ../shared/data/xquad-r-en \\
        --retriever minilm-l6 --reranker path/to/model minilm-l6 --top-k 100 --output results.json

Everything that is scored goes through :func:`querit_st.evaluation.evaluate_reranking` (the same retriever, the
same reranking and the same pytrec_eval metric code as the rest of the package), so the retriever-alone numbers
written here are the numbers every other part of the package reports for the same inputs.

The JSON written holds, per dataset and per system (``"retriever"`` and one entry per reranker), nDCG@10, MRR@10,
Recall@100 and Recall@top_k (plus MAP/P@k and per-query nDCG@10), the macro average over the datasets, the model
names (offline backbone names used as rerankers are labelled ``"(untrained)"``: a fresh scoring head), ``top_k``,
each dataset's checksum, the command line, the machine and the date. A markdown table is printed to stdout.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from querit_st._utils import QueritInputError, atomic_write_json, cache_root, one_line

logger = logging.getLogger(__name__)

#: metrics shown in the printed tables (``Recall@{top_k}`` is added per run).
HEADLINE_METRICS = ("nDCG@10", "MRR@10", "Recall@100")
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
_BEIR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9_-]+)?$")


# ------------------------------------------------------------------------------------------------ arguments


def add_arguments(parser: argparse.ArgumentParser, *, multi_data: bool = True) -> argparse.ArgumentParser:
    """The options shared by ``benchmarks/beir_eval.py`` and ``querit-st evaluate``."""
    parser.add_argument("--data", required=True, nargs="+" if multi_data else None, metavar="DIR",
                        help="BEIR folder(s) (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or BEIR dataset names "
                             "(e.g. scifact; downloaded once into the cache when the network allows)")
    parser.add_argument("--retriever", required=True, metavar="R",
                        help="first-stage embedding model: offline backbone name (minilm-l6, multilingual-e5-small), "
                             "SentenceTransformer folder or hub name")
    parser.add_argument("--reranker", nargs="*", default=[], metavar="M",
                        help="cross-encoder(s) reranking the top-k: a QueritCrossEncoder/CrossEncoder folder or hub "
                             "name; an offline backbone name (or an embedding-model folder) gives an UNTRAINED reranker "
                             "(backbone + fresh scoring head), labelled so in the output")
    parser.add_argument("--names", nargs="*", default=None, metavar="NAME",
                        help="display names for the rerankers (same order as --reranker)")
    parser.add_argument("--top-k", type=int, default=100, metavar="K", help="first-stage depth that is reranked")
    parser.add_argument("--output", required=True, metavar="FILE.json", help="results JSON (written atomically)")
    parser.add_argument("--split", default="test", help="qrels split (default: test)")
    parser.add_argument("--batch-size", type=int, default=64, help="reranker batch size (pairs per forward pass)")
    parser.add_argument("--fusion-weight", type=float, default=0.0,
                        help="fuse the retriever's score into the reranker's: z(rerank) + w * z(retriever)")
    parser.add_argument("--max-queries", type=int, default=None, metavar="N",
                        help="evaluate only the first N queries with qrels of each dataset (quick runs)")
    parser.add_argument("--queries-from", default=None, metavar="DIR",
                        help="cross-lingual runs: take the queries from this BEIR folder (same query ids), the corpus "
                             "and qrels from --data (e.g. XQuAD-R: queries of xquad-r-de, corpus of xquad-r-en)")
    parser.add_argument("--cache-dir", default=None,
                        help="embedding cache of the retriever (default: $QUERIT_ST_CACHE/embeddings)")
    parser.add_argument("--device", default=None, help="torch device for the retriever and rerankers")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the fresh head of untrained rerankers")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


@dataclass
class RerankerSpec:
    """How a reranker argument was interpreted."""

    spec: str
    label: str
    kind: str  # "trained" (a cross-encoder folder / hub name) or "untrained" (backbone + fresh head)
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ data


def _known_backbone(name: str) -> bool:
    from querit_st import backbones

    aliases = getattr(backbones, "_ALIASES", None) or {k: k for k in getattr(backbones, "OFFLINE_BACKBONES", {})}
    return name.strip().lower() in aliases


def resolve_data(spec: str, *, download_dir: str | os.PathLike | None = None, timeout: float = 10.0) -> Path:
    """A BEIR folder for ``spec``: an existing folder as is, or a BEIR dataset name downloaded (once) to the cache.

    Raises:
        QueritInputError: the folder does not exist, or the dataset name cannot be downloaded (offline...).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise QueritInputError(f"--data entry must be a folder or a BEIR dataset name, got {spec!r}")
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise QueritInputError(f"BEIR folder {spec!r} is a file, not a folder")
        return path
    name = spec.strip()
    if not _BEIR_NAME.match(name) or os.sep in name.split("/")[0] or name.startswith("."):
        raise QueritInputError(f"BEIR folder {spec!r} does not exist")
    root = Path(download_dir) if download_dir else cache_root() / "beir"
    top, _, sub = name.partition("/")
    target = root / top / sub if sub else root / top
    if (target / "corpus.jsonl").is_file():
        return target
    url = BEIR_URL.format(name=top)
    try:
        import requests

        head = requests.head(url, timeout=timeout, allow_redirects=True)
        if head.status_code != 200:
            raise QueritInputError(
                f"{spec!r} is neither an existing folder nor a downloadable BEIR dataset ({url} answered "
                f"HTTP {head.status_code})"
            )
        from beir import util

        root.mkdir(parents=True, exist_ok=True)
        try:
            util.download_and_unzip(url, str(root))
        finally:
            zip_file = root / f"{top}.zip"
            if zip_file.exists() and not (root / top).is_dir():  # a failed/partial download is never reused
                zip_file.unlink()
    except QueritInputError:
        raise
    except Exception as e:  # noqa: BLE001 - any network or unzip failure becomes one clear input error
        raise QueritInputError(
            f"{spec!r} is not an existing folder, and downloading the BEIR dataset {top!r} from {url} failed "
            f"({type(e).__name__}: {str(e)[:200]}); without network access pass a local BEIR folder instead"
        ) from None
    if not (target / "corpus.jsonl").is_file():
        raise QueritInputError(f"downloaded BEIR dataset {top!r} has no corpus.jsonl at {target}")
    return target


def load_queries_only(folder: str | os.PathLike) -> tuple[dict[str, str], str]:
    """``{qid: text}`` of a BEIR folder's queries.jsonl (validated) and the file's checksum, for ``--queries-from``."""
    from querit_st._utils import sha256_file
    from querit_st.data import _check_jsonl_ids

    folder = Path(folder)
    if not folder.is_dir():
        raise QueritInputError(f"--queries-from folder {str(folder)!r} does not exist or is not a folder")
    path = folder / "queries.jsonl"
    if not path.is_file():
        raise QueritInputError(f"--queries-from folder {str(folder)!r} has no queries.jsonl")
    _check_jsonl_ids(path, "query")
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row.get("text") or ""
    return queries, sha256_file(path)


# ------------------------------------------------------------------------------------------------ models


def _is_embedding_folder(path: Path) -> bool:
    """A SentenceTransformer *embedding* folder (not a cross-encoder one)."""
    cfg = path / "config_sentence_transformers.json"
    if cfg.is_file():
        try:
            model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            model_type = None
        if model_type:
            return model_type == "SentenceTransformer"
    modules = path / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return any("Pooling" in str(e.get("type", "")) for e in entries)
    return False


def classify_reranker(spec: str) -> RerankerSpec:
    """Decide how ``spec`` is loaded (without loading it)."""
    if not isinstance(spec, str) or not spec.strip():
        raise QueritInputError(f"--reranker entry must be a model folder or name, got {spec!r}")
    if _known_backbone(spec):
        return RerankerSpec(spec, f"{spec} (untrained)", "untrained", source=spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise QueritInputError(f"reranker {spec!r} is a file; expected a model folder")
        label = path.name or spec
        if _is_embedding_folder(path):
            return RerankerSpec(spec, f"{label} (untrained)", "untrained", source=str(path))
        return RerankerSpec(spec, label, "trained", source=str(path))
    if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1:
        raise QueritInputError(f"reranker folder {spec!r} does not exist")
    return RerankerSpec(spec, spec, "trained", source=spec)


def load_reranker(spec: RerankerSpec, *, device: str | None = None, seed: int | None = 0) -> Any:
    """Load a reranker as a :class:`~querit_st.cross_encoder.QueritCrossEncoder`.

    An untrained reranker's fresh scoring head is drawn after ``torch.manual_seed(seed)`` (reproducible numbers).
    """
    from querit_st.cross_encoder import QueritCrossEncoder

    try:
        if spec.kind == "untrained":
            if seed is not None:
                import torch

                torch.manual_seed(seed)
            model = QueritCrossEncoder.from_embedding_model(spec.source, device=device)
        else:
            model = QueritCrossEncoder(spec.source, device=device)
    except QueritInputError:
        raise
    except OSError as e:  # not a folder and not reachable on the hub (offline...)
        raise QueritInputError(f"could not load reranker {spec.spec!r}: {str(e).splitlines()[0][:300]}") from None
    spec.info = {
        "spec": spec.spec,
        "label": spec.label,
        "kind": spec.kind,
        "untrained": spec.kind == "untrained",
        "head_seed": seed if spec.kind == "untrained" else None,
        "class": type(model).__name__,
        "source": spec.source,
        "default_prompt": (model.prompts or {}).get(model.default_prompt_name) if model.default_prompt_name else None,
        "max_length": getattr(model, "max_length", None),
        "n_parameters": int(sum(p.numel() for p in model.model.parameters())),
    }
    record = getattr(model, "training_record", None)
    if record:
        spec.info["training_record"] = record
    return model


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        if label in seen or label == "retriever":
            seen[label] = seen.get(label, 1) + 1
            out.append(f"{label} #{seen[label]}")
        else:
            seen[label] = 1
            out.append(label)
    return out


# ------------------------------------------------------------------------------------------------ run


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for dist in ("sentence-transformers", "transformers", "beir", "querit-st"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:  # noqa: BLE001
            pass
    if "querit-st" not in info:
        from querit_st import __version__

        info["querit-st"] = __version__
    return info


def _headline(metrics: dict[str, float], top_k: int) -> list[str]:
    names = list(HEADLINE_METRICS)
    if f"Recall@{top_k}" not in names:
        names.append(f"Recall@{top_k}")
    return [n for n in names if n in metrics]


def run_beir_eval(
    data: Sequence[str],
    retriever: str,
    rerankers: Sequence[str] = (),
    *,
    names: Sequence[str] | None = None,
    top_k: int = 100,
    split: str = "test",
    batch_size: int = 64,
    fusion_weight: float = 0.0,
    max_queries: int | None = None,
    queries_from: str | None = None,
    cache_dir: str | None = None,
    device: str | None = None,
    seed: int | None = 0,
    output: str | os.PathLike | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``retriever`` alone and reranked by each of ``rerankers`` on each BEIR folder of ``data``.

    All inputs (folders, files, names) are checked before any model is loaded, and the output is written only when
    everything succeeded, so a bad input raises :class:`QueritInputError` and writes nothing.

    Returns:
        The report (also written to ``output`` as JSON when given).
    """
    from querit_st.data import load_beir
    from querit_st.evaluation import evaluate_reranking
    from querit_st.retriever import DenseRetriever

    if not data:
        raise QueritInputError("--data needs at least one BEIR folder")
    if not isinstance(top_k, int) or top_k <= 0:
        raise QueritInputError(f"--top-k must be a positive integer, got {top_k!r}")
    if batch_size <= 0:
        raise QueritInputError(f"--batch-size must be positive, got {batch_size}")
    if max_queries is not None and max_queries <= 0:
        raise QueritInputError(f"--max-queries must be positive, got {max_queries}")
    if names and len(names) != len(rerankers):
        raise QueritInputError(f"--names gives {len(names)} names for {len(rerankers)} rerankers")
    if output is not None:
        out_parent = Path(output).expanduser().resolve().parent
        if out_parent.exists() and not out_parent.is_dir():
            raise QueritInputError(f"--output parent {str(out_parent)!r} is not a folder")

    # 1. every input is validated before any model is loaded (the cheap checks first)
    specs = [classify_reranker(r) for r in rerankers]
    labels = _unique_labels(list(names) if names else [s.label for s in specs])
    for s, label in zip(specs, labels):
        s.label = label
    folders = [resolve_data(d) for d in data]
    datasets = [load_beir(f, split) for f in folders]
    qf_queries, qf_checksum = (None, None)
    if queries_from:
        qf_queries, qf_checksum = load_queries_only(resolve_data(queries_from))
        for d in datasets:
            shared = [q for q in qf_queries if q in d.qrels]
            if not shared:
                raise QueritInputError(
                    f"--queries-from {queries_from!r} shares no query id with the qrels of {d.name!r}; cross-lingual "
                    "runs need parallel query ids (like XQuAD-R's languages)"
                )

    # 2. models
    ret = DenseRetriever(retriever, cache_dir=cache_dir, device=device)
    models = {s.label: load_reranker(s, device=device, seed=seed) for s in specs}

    # 3. evaluation: one code path (querit_st.evaluation) for every number
    report: dict[str, Any] = {
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "retriever": {"spec": retriever, "name": ret.name, "query_prompt": ret.query_prompt,
                      "passage_prompt": ret.passage_prompt, "max_seq_length": ret.model.max_seq_length},
        "rerankers": [s.info for s in specs],
        "systems": ["retriever", *labels],
        "top_k": top_k,
        "split": split,
        "batch_size": batch_size,
        "fusion_weight": fusion_weight,
        "max_queries": max_queries,
        "queries_from": str(queries_from) if queries_from else None,
        "queries_from_checksum": qf_checksum,
        "datasets": [],
    }
    for folder, ds in zip(folders, datasets):
        logger.info("evaluating %s (%d docs)", ds.name, len(ds.corpus))
        res = evaluate_reranking(
            ds, ret, models, top_k=top_k, batch_size=batch_size, fusion_weight=fusion_weight,
            queries=qf_queries, max_queries=max_queries,
        )
        entry = {
            "name": ds.name if not queries_from else f"{Path(queries_from).name}->{ds.name}",
            "path": str(folder),
            "checksum": ds.checksum,
            "num_queries": res["num_queries"],
            "num_docs": len(ds.corpus),
            "results": {sys_name: res[sys_name] for sys_name in report["systems"]},
            "timing_s": res["timing_s"],
            "per_query_nDCG@10": res["per_query_nDCG@10"],
        }
        report["datasets"].append(entry)
        print(f"[{entry['name']}] " + "  ".join(
            f"{s}: nDCG@10={entry['results'][s]['nDCG@10']:.4f}" for s in report["systems"]), file=sys.stderr)
    report["average"] = average_metrics(report["datasets"], report["systems"])
    report["table_markdown"] = markdown_table(report)
    if output is not None:
        atomic_write_json(Path(output).expanduser(), report)
    return report


def average_metrics(datasets: list[dict[str, Any]], systems: Sequence[str]) -> dict[str, dict[str, float]]:
    """Macro average over datasets of every numeric metric, per system."""
    avg: dict[str, dict[str, float]] = {}
    for s in systems:
        keys = set.intersection(*(set(d["results"][s]) for d in datasets)) if datasets else set()
        avg[s] = {
            k: sum(float(d["results"][s][k]) for d in datasets) / len(datasets)
            for k in sorted(keys)
            if all(isinstance(d["results"][s][k], (int, float)) for d in datasets) and not k.startswith("stderr")
        }
    return avg


def markdown_table(report: dict[str, Any]) -> str:
    """Two markdown tables: nDCG@10 per system x dataset (+ average, like the paper's BEIR table), then details."""
    systems = report["systems"]
    datasets = report["datasets"]
    top_k = report["top_k"]
    multi = len(datasets) > 1

    def label(s: str) -> str:
        return f"{report['retriever']['spec']} (retriever)" if s == "retriever" else f"+ rerank: {s}"

    head = ["model", *[d["name"] for d in datasets]] + (["Avg"] if multi else [])
    depth = f"rerank top-{top_k}" if len(systems) > 1 else f"retriever alone, top-{top_k}"
    lines = [f"nDCG@10 ({depth}; {report['split']} split"
             + (f", first {report['max_queries']} queries" if report.get("max_queries") else "") + ")", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in systems:
        row = [label(s)] + [f"{d['results'][s]['nDCG@10']:.4f}" for d in datasets]
        if multi:
            row.append(f"{report['average'][s]['nDCG@10']:.4f}")
        lines.append("| " + " | ".join(row) + " |")
    metrics = _headline(datasets[0]["results"]["retriever"], top_k)
    head2 = ["dataset", "queries", "model", *metrics]
    lines += ["", "| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    rows = [(d["name"], str(d["num_queries"]), d["results"]) for d in datasets]
    if multi:
        rows.append(("**Average**", "", report["average"]))
    for name, nq, results in rows:
        for s in systems:
            lines.append("| " + " | ".join([name, nq, label(s), *[f"{results[s].get(m, float('nan')):.4f}" for m in metrics]]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ entry points


def _run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    data = args.data if isinstance(args.data, list) else [args.data]
    return run_beir_eval(
        data, args.retriever, args.reranker or [], names=args.names, top_k=args.top_k, split=args.split,
        batch_size=args.batch_size, fusion_weight=args.fusion_weight, max_queries=args.max_queries,
        queries_from=args.queries_from, cache_dir=args.cache_dir, device=args.device, seed=args.seed,
        output=args.output,
        command=command,
    )


def main(argv: Sequence[str] | None = None, prog: str = "beir_eval.py") -> int:
    """``benchmarks/beir_eval.py``: 0 on success, 2 (with one error line on stderr) on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_arguments(argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0]))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed the usage / help
        return int(e.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        report = _run(args, shlex.join([prog, *argv]))
    except QueritInputError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    print(report["table_markdown"])
    print(f"\nresults: {args.output}")
    return 0


def evaluate_command(argv: list[str] | None = None) -> int:
    """``querit-st evaluate --data DIR --reranker M --retriever R --top-k K --output FILE`` (same options as
    ``benchmarks/beir_eval.py``). Returns 0, or prints the error and returns 2 on bad input."""
    return main(argv, prog="querit-st evaluate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
