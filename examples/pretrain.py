"""Stage 1: train a cross-encoder from an embedding model on labelled ranking data with teacher soft labels.

    python examples/pretrain.py --config examples/configs/demo.yaml --output runs/stage1
"""

import argparse

from querit_st.pipeline import load_config, pretrain

parser = argparse.ArgumentParser()
parser.add_argument("--config", default="examples/configs/demo.yaml")
parser.add_argument("--output", default="runs/stage1")
args = parser.parse_args()

cfg = load_config(args.config)
print("stage-1 model:", pretrain(cfg, args.output))  # resumes from runs/stage1/checkpoints if interrupted
