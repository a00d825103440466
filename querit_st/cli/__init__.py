"""``querit-st`` command line: ``pretrain``, ``adapt``, ``merge``, ``evaluate``, ``pipeline``, ``mteb``.

Every long step prints one readable progress line (counts, rate, ETA) on a terminal and in a log file alike;
the libraries' load reports and progress bars stay quiet unless ``-v``.

Bad input (a missing folder, an unknown config key, mismatched checkpoints...) prints one clear line to stderr and
exits with code 2, writing nothing partial.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from querit_st.utils import QueritInputError, one_line
from querit_st.utils.progress import configure_output

USAGE = """querit-st <command> [options]

commands:
  pretrain  --config C [--output DIR]                  stage 1 on labelled ranking data (cached)
  adapt     --config C --target DIR|--corpus FILE [--base M] --output DIR   stage 2, label-free (reads only the corpus)
  merge     A B [C ...] --t T --output DIR                  stage 3, SLERP
  evaluate  --data DIR --reranker M --retriever R --top-k K --output FILE
  pipeline  --config C --target DIR [DIR ...] [--corpus FILE ...] --output DIR   all stages (+ results when DIR has qrels)

--corpus FILE: a JSONL / CSV / Parquet corpus or a saved Hugging Face dataset (--id-field/--text-field/--title-field
name its columns; defaults: _id|id|doc_id, text|contents|body|passage, title).
  mteb      --model M [--tasks T ...] [--beir DIR ...] --output DIR  MTEB evaluation, leaderboard layout

pretrain / adapt / pipeline take --set KEY=VALUE (repeatable) to override one config value, e.g.
  querit-st pipeline --config examples/configs/adapt600.yaml --set adapt.seeds=[0,1,2] --target vaswani --output OUT
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (see examples/configs/)")
    p.add_argument("--data-root", help="folder holding the shared BEIR datasets (default: $QUERIT_DATA or ../shared/data)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming from checkpoints / shards")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, dotted key, YAML value (repeatable): --set adapt.seeds=[0,1,2]")
    p.add_argument("-v", "--verbose", action="store_true", help="also show the libraries' load reports and bars")


def _corpus_options(p: argparse.ArgumentParser, many: bool) -> None:
    p.add_argument("--corpus", nargs="+" if many else None, default=[] if many else None, metavar="FILE",
                   help="corpus file(s): JSONL, CSV, Parquet or a saved Hugging Face dataset (instead of a BEIR folder)")
    p.add_argument("--id-field", default=None, help="--corpus column holding the document id")
    p.add_argument("--text-field", default=None, help="--corpus column holding the text")
    p.add_argument("--title-field", default=None, help="--corpus column holding the title (optional)")


def _fields(args: argparse.Namespace) -> dict[str, str | None]:
    return {"id_field": args.id_field, "text_field": args.text_field, "title_field": args.title_field}


def parse_overrides(items: list[str]) -> dict:
    """``["adapt.seeds=[0,1,2]", "seed=3"]`` -> ``{"adapt": {"seeds": [0, 1, 2]}, "seed": 3}`` (values read by
    ``yaml.safe_load``; merged into the config file by :func:`querit_st.pipeline.load_config`)."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise QueritInputError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. adapt.num_queries=600")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise QueritInputError(f"--set {item!r}: the value is not valid YAML: {e}") from None
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
            except ValueError:
                pass
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise QueritInputError(f"--set {item!r}: {part!r} was already set to a value, not a section")
        node[parts[-1]] = value
    return out


def _config(args: argparse.Namespace):  # noqa: ANN202
    from querit_st.pipeline import load_config

    cfg = load_config(args.config, parse_overrides(getattr(args, "overrides", [])))
    if getattr(args, "data_root", None):
        cfg.data_root = args.data_root
    if getattr(args, "lora", False):
        cfg.pretrain.train.lora = cfg.adapt.train.lora = True
    return cfg


def cmd_pretrain(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="querit-st pretrain")
    _common(p)
    p.add_argument("--output", help="output folder (default: the stage-1 cache)")
    args = p.parse_args(argv)
    from querit_st.pipeline import pretrain

    path = pretrain(_config(args), args.output, resume=not args.no_resume)
    print(path)
    return 0


def cmd_adapt(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="querit-st adapt")
    _common(p)
    p.add_argument("--target", help="target BEIR folder; only its corpus.jsonl is read")
    _corpus_options(p, many=False)
    p.add_argument("--base", help="model to adapt (default: the stage-1 model of the config)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    from querit_st.data import load_corpus
    from querit_st.pipeline import adapt, pretrain

    if bool(args.target) == bool(args.corpus):
        raise QueritInputError("adapt needs exactly one of --target DIR (a BEIR folder) or --corpus FILE")
    cfg = _config(args)
    target = args.target or args.corpus
    fields = _fields(args) if args.corpus else None
    if not args.base:  # stage 1 runs first: check the corpus before it (adapt checks base and corpus itself)
        load_corpus(cfg.data_dir(target), **(fields or {}))
    base = args.base or pretrain(cfg)
    print(adapt(cfg, target, base, args.output, seed=args.seed, resume=not args.no_resume, fields=fields))
    return 0


def cmd_pipeline(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="querit-st pipeline")
    _common(p)
    p.add_argument("--target", nargs="+", default=[], help="target BEIR folder(s)")
    _corpus_options(p, many=True)
    p.add_argument("--output", required=True)
    p.add_argument("--no-eval", action="store_true")
    args = p.parse_args(argv)
    from querit_st.pipeline import run_pipeline

    if not args.target and not args.corpus:
        raise QueritInputError("pipeline needs --target DIR [DIR ...] and/or --corpus FILE [FILE ...]")
    summary = run_pipeline(_config(args), [*args.target, *args.corpus], args.output, resume=not args.no_resume,
                           evaluate=not args.no_eval, fields=_fields(args))
    if summary.get("table"):
        print(summary["table"])
        print(f"\nresults: {Path(args.output) / 'results.json'}\nchart:   {summary.get('chart')}")
    else:
        print(json.dumps({k: summary[k] for k in ("stage1", "adapted", "merged")}, indent=2))
    return 0


def cmd_merge(argv: list[str]) -> int:
    from querit_st.cli.merge import merge_command

    return merge_command(argv)


def cmd_evaluate(argv: list[str]) -> int:
    from querit_st.cli.evaluate import evaluate_command

    return evaluate_command(argv)


def cmd_mteb(argv: list[str]) -> int:
    from querit_st.cli.mteb import main as mteb_main

    return mteb_main(argv)


COMMANDS = {"pretrain": cmd_pretrain, "adapt": cmd_adapt, "merge": cmd_merge, "evaluate": cmd_evaluate, "pipeline": cmd_pipeline, "mteb": cmd_mteb}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"querit-st: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    configure_output(verbose="-v" in rest or "--verbose" in rest)
    try:
        return COMMANDS[command](rest)
    except (QueritInputError, FileExistsError) as e:
        print(f"querit-st {command}: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
