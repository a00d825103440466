"""The shared retriever alone on the shared data, for both offline backbones (nDCG@10, MRR@10, Recall@100), and
with ``--precisions fp32 bf16`` its encoding precision side by side: corpus + query encoding seconds (no embedding
cache) and the quality of each, with a paired t-test of per-query nDCG@10 against the first precision.

    python benchmarks/retrievers.py --output benchmarks/results/retrievers.json
    python benchmarks/retrievers.py --retrievers multilingual-e5-small --precisions fp32 bf16 \\
        --datasets xquad-r-de cacm time --output benchmarks/results/retriever_precision.json
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
p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "auto"])
p.add_argument("--output", default="benchmarks/results/retrievers.json")
args = p.parse_args()

table: dict[str, dict[str, dict[str, float]]] = {}
per_query: dict[tuple[str, str, str], dict[str, float]] = {}
for name in args.retrievers:
    for precision in args.precisions:
        row = name if len(args.precisions) == 1 else f"{name} {precision}"
        retriever = DenseRetriever(name, precision=precision, cache_dir=False if len(args.precisions) > 1 else None)
        for ds in args.datasets:
            t0 = time.perf_counter()
            rep = evaluate_reranking(load_beir(f"{args.data_root}/{ds}"), retriever, top_k=100)
            cell = {k: rep["retriever"][k] for k in ("nDCG@10", "MRR@10", "Recall@100")}
            if len(args.precisions) > 1:
                cell["encode_and_search_s"] = round(time.perf_counter() - t0, 1)
                per_query[(name, precision, ds)] = rep["per_query_nDCG@10"]["retriever"]
                if precision != args.precisions[0]:
                    from querit_st.evaluation import paired_p_value

                    cell["p_paired_vs_" + args.precisions[0]] = paired_p_value(
                        per_query[(name, args.precisions[0], ds)], per_query[(name, precision, ds)])
            table.setdefault(row, {})[ds] = cell
            print(row, ds, cell, flush=True)
print("| retriever | " + " | ".join(args.datasets) + " |\n" + "|---" * (len(args.datasets) + 1) + "|")
for name, row in table.items():
    print(f"| {name} | " + " | ".join(f"{row[d]['nDCG@10']:.4f}" for d in args.datasets) + " |")
atomic_write_json(args.output, {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "machine": machine_info(), "results": table})
