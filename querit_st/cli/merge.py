"""``querit-st merge``: the command line of :mod:`querit_st.merge` (argument parsing only; the merge lives there)."""

from __future__ import annotations

import argparse
import sys

from querit_st.merge import slerp_merge, slerp_merge_many
from querit_st.merge.schedule import TSetting
from querit_st.utils import QueritInputError, one_line

__all__ = ["build_parser", "merge_command"]


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError as exc:
        raise QueritInputError(f"{what} must be comma-separated numbers, got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    """The ``querit-st merge`` argument parser."""
    p = argparse.ArgumentParser(
        prog="querit-st merge",
        description="SLERP-merge cross-encoder checkpoints (model folders or LoRA adapter folders) into a new model "
        "folder. Two models: --t (weight of the second) or --t-list (a gradient over layers). More: sequential "
        "SLERP with --weights (equal by default).",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders, first one is the reference")
    p.add_argument("--t", type=float, default=None, help="weight of the second model, 0..1 (default 0.5)")
    p.add_argument("--t-list", default=None, help="gradient over the layers, e.g. 0,0.5,1 (two models only)")
    p.add_argument("--weights", nargs="+", default=None, help="one weight per model, e.g. 1 1 2 or 1,1,2")
    p.add_argument(
        "--parameter-t",
        action="append",
        default=[],
        metavar="NAME=T",
        help="override t for parameters whose name contains NAME (T a number or a comma list); repeatable",
    )
    p.add_argument("--output", "-o", required=True, help="output model folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--base", default=None, help="base model folder for LoRA adapter inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _two_model_settings(args: argparse.Namespace) -> tuple[TSetting, dict[str, TSetting]]:
    if args.t is not None and args.t_list is not None:
        raise QueritInputError("give either --t or --t-list, not both")
    t: TSetting = 0.5 if args.t is None else args.t
    if args.t_list is not None:
        t = _floats(args.t_list, "--t-list")
    parameter_t: dict[str, TSetting] = {}
    for item in args.parameter_t:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise QueritInputError(f"--parameter-t expects NAME=T, got {item!r}")
        vals = _floats(value, f"--parameter-t {name}")
        parameter_t[name] = vals[0] if len(vals) == 1 else vals
    return t, parameter_t


def merge_command(argv: list[str] | None = None) -> int:
    """``querit-st merge A B [C ...] --t 0.5 [--t-list 0,0.5,1] [--weights ...] --output DIR [--overwrite]``.

    Returns 0 on success; prints the error and returns 2 on bad input (mismatched models, bad arguments).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if len(args.models) < 2:
            raise QueritInputError("need at least two models to merge")
        weights = None if args.weights is None else _floats(" ".join(args.weights), "--weights")
        common = {"overwrite": args.overwrite, "show_progress_bar": not args.no_progress, "base": args.base}
        if len(args.models) == 2 and weights is None:
            t, parameter_t = _two_model_settings(args)
            out = slerp_merge(
                args.models[0], args.models[1], t, args.output, parameter_t=parameter_t or None, **common
            )
        else:
            if args.t is not None or args.t_list is not None or args.parameter_t:
                raise QueritInputError(
                    "--t, --t-list and --parameter-t apply to two models without --weights; "
                    "with --weights (or more than two models) the t schedule follows from the weights"
                )
            out = slerp_merge_many(args.models, weights, args.output, **common)
    except (QueritInputError, FileExistsError) as exc:
        print(f"querit-st merge: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"merged {len(args.models)} models into {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(merge_command())
