#!/usr/bin/env python
"""Evaluate a querit-st reranker with MTEB: the ``querit-st mteb`` command (:mod:`querit_st.cli.mteb`), kept under
its old script name. Every option is the command's; see ``querit-st mteb --help`` and docs/mteb_submission.md.

    python benchmarks/mteb_eval.py --model path/to/model --beir ../shared/data/vaswani --max-queries 50

Exit code 0 on success, 2 on bad input (nothing written).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import querit_st  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from querit_st.cli import mteb as mteb_cli

PROG = "benchmarks/mteb_eval.py"


def build_parser():  # noqa: ANN201 - argparse.ArgumentParser
    return mteb_cli.build_parser(PROG)


def main(argv: list[str] | None = None) -> int:
    return mteb_cli.main(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
