"""Stage 2: adapt a model to a new corpus without labels (only corpus.jsonl is read).

    python examples/adapt.py --target ../shared/data/vaswani --base runs/stage1/model --output runs/adapt-vaswani
"""

import argparse

from querit_st.pipeline import adapt, load_config

parser = argparse.ArgumentParser()
parser.add_argument("--config", default="examples/configs/demo.yaml")
parser.add_argument("--target", required=True)
parser.add_argument("--base", required=True, help="the stage-1 model folder")
parser.add_argument("--output", required=True)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

cfg = load_config(args.config)
print("adapted model:", adapt(cfg, args.target, args.base, args.output, seed=args.seed))
