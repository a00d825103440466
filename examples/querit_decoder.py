"""Rerank a few documents with a released Querit decoder checkpoint (Querit/Querit-4B by default).

    python examples/querit_decoder.py                       # Querit/Querit-4B from the hub
    python examples/querit_decoder.py --model Querit/Querit  # the MoE (A0.4B active), native DeepSeek-V3 classes
    python examples/querit_decoder.py --model /path/to/folder --save /tmp/querit4b-st

Scores are ``p1 - p0`` of the 2-way head, in [-1, 1], exactly as mteb's ``QueritWrapper`` computes them. Offline
(``HF_HUB_OFFLINE=1`` and nothing cached) the script says so and exits without error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

try:
    from querit_st.decoder import load_querit_checkpoint
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from querit_st.decoder import load_querit_checkpoint

QUERY = "What is the boiling point of water at sea level?"
DOCUMENTS = [
    "At sea level, pure water boils at 100 degrees Celsius (212 degrees Fahrenheit).",
    "Mount Everest is the highest mountain above sea level, at 8,849 metres.",
    "The boiling point of a liquid drops as the surrounding atmospheric pressure decreases.",
    "Water covers about 71 percent of the Earth's surface.",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Querit/Querit-4B", help="hub id or local checkpoint folder")
    parser.add_argument("--max-length", type=int, default=1024, help="as mteb's QueritWrapper max_length")
    parser.add_argument("--instruction", default=None, help="task instruction (default: the paper's)")
    parser.add_argument("--save", default=None, help="also save as a sentence-transformers folder here")
    args = parser.parse_args()

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    try:
        model = load_querit_checkpoint(args.model, max_length=args.max_length, dtype=dtype)
    except OSError as exc:
        print(f"Could not load {args.model}: {exc}\n"
              "This example needs the checkpoint: go online (unset HF_HUB_OFFLINE) or pass --model <local folder>.")
        return 0

    print(f"Query: {QUERY}")
    for hit in model.rerank(QUERY, DOCUMENTS, instruction=args.instruction):
        print(f"  {hit['score']:+.4f}  {DOCUMENTS[hit['corpus_id']]}")

    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}; reload with QueritCrossEncoder({args.save!r}) (no trust_remote_code)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
