"""The shared retriever alone on the shared data, for both offline backbones (nDCG@10, MRR@10, Recall@100).

    python benchmarks/retrievers.py --output benchmarks/results/retrievers.json
"""

from __future__ import annotations

import argparse
import sys
import time

from querit_st import DenseRetriever, evaluate_reranking, load_beir
from querit_st.utils import atomic_write_json
from querit_st.data import default_data_root
from querit_st.pipeline import machine_info

p = argparse.ArgumentParser()
p.add_argument("--data-root", default=str(default_data_root()))
p.add_argument("--datasets", nargs="+", default=["vaswani", "xquad-r-en", "xquad-r-de", "xquad-r-zh"])
p.add_argument("--retrievers", nargs="+", default=["minilm-l6", "multilingual-e5-small"])
p.add_argument("--output", default="benchmarks/results/retrievers.json")
args = p.parse_args()

table: dict[str, dict[str, dict[str, float]]] = {}
for name in args.retrievers:
    retriever = DenseRetriever(name)
    for ds in args.datasets:
        rep = evaluate_reranking(load_beir(f"{args.data_root}/{ds}"), retriever, top_k=100)
        table.setdefault(name, {})[ds] = {k: rep["retriever"][k] for k in ("nDCG@10", "MRR@10", "Recall@100")}
        print(name, ds, table[name][ds], flush=True)
print("| retriever | " + " | ".join(args.datasets) + " |\n" + "|---" * (len(args.datasets) + 1) + "|")
for name, row in table.items():
    print(f"| {name} | " + " | ".join(f"{row[d]['nDCG@10']:.4f}" for d in args.datasets) + " |")
atomic_write_json(args.output, {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "machine": machine_info(), "results": table})
