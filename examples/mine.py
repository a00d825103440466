"""Mine soft labels for a new corpus without relevance labels.

Synthetic queries from the corpus -> the shared retriever's top-k -> a teacher scores them -> 16-bin candidate
lists with continuous labels, written as resumable parquet shards. Kill it at any time and start it again with the
same arguments: it continues where it stopped.

    HF_HUB_OFFLINE=1 .venv/bin/python examples/mine.py --corpus ../shared/data/vaswani --teacher ensemble \\
        --num-queries 500 --output-dir runs/mined-vaswani

Run it on several processes / machines sharing the folder with ``--num-shards-total N --shard-index i``; then
``querit_st.mining.load_mined_dataset(folder)`` gives the merged dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_teacher(name: str, retriever, language: str):
    from querit_st.teachers import BM25Teacher, CrossEncoderTeacher, EmbeddingTeacher, EnsembleTeacher

    if name == "bm25":
        return BM25Teacher(language=language)
    if name == "minilm-l6":
        return EmbeddingTeacher(retriever if retriever.name == "minilm-l6" else "minilm-l6")
    if name in ("e5", "multilingual-e5-small"):
        return EmbeddingTeacher(retriever if retriever.name == "multilingual-e5-small" else "multilingual-e5-small")
    if name == "ensemble":
        return EnsembleTeacher([build_teacher("minilm-l6", retriever, language),
                                build_teacher("e5", retriever, language),
                                BM25Teacher(language=language)], normalization="zscore")
    return CrossEncoderTeacher(name)  # a cross-encoder folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="a BEIR folder (only corpus.jsonl is read)")
    p.add_argument("--retriever", default="multilingual-e5-small")
    p.add_argument("--teacher", default="ensemble", help="bm25 | minilm-l6 | e5 | ensemble | <cross-encoder folder>")
    p.add_argument("--language", default="en", help="BM25 stemmer language (en, de, es, ru, zh, ...)")
    p.add_argument("--query-generator", default="terms", help="'terms' or a seq2seq / chat model folder")
    p.add_argument("--num-queries", type=int, default=500)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--num-candidates", type=int, default=16)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restart", action="store_true", help="discard an existing run in --output-dir")
    p.add_argument("--num-shards-total", type=int, default=1)
    p.add_argument("--shard-index", type=int, default=0)
    args = p.parse_args()

    from querit_st.data import load_corpus
    from querit_st.mining import mine_soft_labels, to_listwise
    from querit_st.querygen import make_query_generator
    from querit_st.retriever import DenseRetriever

    corpus = load_corpus(args.corpus)
    retriever = DenseRetriever(args.retriever)
    teacher = build_teacher(args.teacher, retriever, args.language)
    generator = make_query_generator(args.query_generator if args.query_generator != "terms"
                                     else {"type": "terms", "seed": args.seed})
    dataset = mine_soft_labels(
        corpus, retriever, teacher, query_generator=generator, num_queries=args.num_queries, top_k=args.top_k,
        num_candidates=args.num_candidates, output_dir=args.output_dir, shard_size=args.shard_size, seed=args.seed,
        resume=not args.restart, num_shards_total=args.num_shards_total, shard_index=args.shard_index,
    )
    print(dataset)
    row = dataset[0]
    print(f"query: {row['query']!r} (from document {row['source_doc_id']})")
    for doc_id, score, doc in list(zip(row["doc_ids"], row["scores"], row["documents"]))[:5]:
        print(f"  {score:8.3f}  {doc_id:>10}  {doc[:80]}")
    print("listwise training set:", to_listwise(dataset))


if __name__ == "__main__":
    main()
