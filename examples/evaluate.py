"""Evaluate: the shared retriever alone vs a reranker on a BEIR folder (nDCG@10, MRR@10, Recall@k).

    python examples/evaluate.py --data ../shared/data/vaswani --reranker runs/demo/merged --retriever minilm-l6
"""

import argparse
import json

from querit_st import DenseRetriever, QueritCrossEncoder, evaluate_reranking, load_beir

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--reranker", required=True)
parser.add_argument("--retriever", default="minilm-l6")
parser.add_argument("--top-k", type=int, default=100)
parser.add_argument("--fusion-weight", type=float, default=1.0)
args = parser.parse_args()

report = evaluate_reranking(load_beir(args.data), DenseRetriever(args.retriever),
                            {"reranker": QueritCrossEncoder(args.reranker)}, top_k=args.top_k, fusion_weight=args.fusion_weight)
print(json.dumps({k: v for k, v in report.items() if k != "per_query_nDCG@10"}, indent=2))
