"""The `make demo` job: the three-stage pipeline on the embedded offline backbones and the shared data.

Stage 1 (a demo-size run on XQuAD-R en/de train qrels, cached under ~/.cache/querit_st/stage1), stage 2 on CACM
(computer-science titles and abstracts, one of the English-domain group) and XQuAD-R German (the XQuAD-R group)
using only their corpora, SLERP merge, then nDCG@10 on the test qrels: retriever alone, the zero-training
baselines, stage 1, each adapted checkpoint and the merged model, per target and per target group. CACM is the
English target because its pairs are the cheapest to score (median document 15 tokens, against TIME's articles,
all cut at the 128-token limit, and vaswani's 11,429 abstracts to encode): any shared target can be given with
--targets. Every model's evaluation scores are kept in the cache (`evaluate.cache`), so stage 1 is scored once.

    python examples/demo.py --data ../shared/data [--config examples/configs/demo.yaml] [--output runs/demo]
"""

import argparse
import time
from pathlib import Path

from querit_st.pipeline import load_config, run_pipeline
from querit_st.utils.progress import configure_output

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="../shared/data", help="folder holding the shared BEIR datasets")
parser.add_argument("--config", default=str(Path(__file__).parent / "configs" / "demo.yaml"))
parser.add_argument("--targets", nargs="+", default=["cacm", "xquad-r-de"])
parser.add_argument("--output", default="runs/demo")
parser.add_argument("-v", "--verbose", action="store_true", help="also show the libraries' load reports and bars")
args = parser.parse_args()
configure_output(args.verbose)

start = time.perf_counter()
cfg = load_config(args.config)
cfg.data_root = args.data
summary = run_pipeline(cfg, args.targets, args.output)
print("\nnDCG@10 on the test qrels (rerankers fused with the retriever's score; 'no fusion' = reranker alone):\n")
print(summary.get("table", "(no qrels: nothing evaluated)"))
if summary.get("group_table"):
    print("\nper target group (the mean over the group's targets run here):\n")
    print(summary["group_table"])
print(f"\nresults: {Path(args.output) / 'results.json'}")
print(f"chart:   {summary.get('chart')}")
print(f"wall time: {time.perf_counter() - start:.0f} s (stage timings: {summary['timings_s']})")
