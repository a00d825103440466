"""Train a compact cross-encoder on a new corpus, mining and labelling candidates *during* training.

The train dataset holds only synthetic queries (each remembers its source document); ``TeacherMiningDataCollator``
retrieves every query's top-k with the shared retriever, lets the teacher score them and hands the listwise soft
labels to ``SoftLabelKLLoss`` inside a plain ``CrossEncoderTrainer``.

    HF_HUB_OFFLINE=1 .venv/bin/python examples/train_with_collator.py --corpus ../shared/data/xquad-r-en \\
        --max-steps 100 --output-dir runs/ce-collator
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="a BEIR folder (only corpus.jsonl is read for training)")
    p.add_argument("--backbone", default="minilm-l6", help="embedding model the cross-encoder starts from")
    p.add_argument("--retriever", default="minilm-l6")
    p.add_argument("--teacher", default="embedding", help="embedding (the retriever's model) | bm25")
    p.add_argument("--language", default="en")
    p.add_argument("--num-queries", type=int, default=2000)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--num-candidates", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8, help="queries per step")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--evaluate", action="store_true", help="nDCG@10 on the folder's test qrels before / after")
    args = p.parse_args()

    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from querit_st.collator import TeacherMiningDataCollator, make_query_dataset
    from querit_st.cross_encoder import QueritCrossEncoder
    from querit_st.data import load_corpus
    from querit_st.losses import SoftLabelKLLoss
    from querit_st.querygen import TermQueryGenerator
    from querit_st.retriever import DenseRetriever
    from querit_st.teachers import BM25Teacher, EmbeddingTeacher

    corpus = load_corpus(args.corpus)
    retriever = DenseRetriever(args.retriever)
    retriever.index(corpus)
    teacher = EmbeddingTeacher(retriever) if args.teacher == "embedding" else BM25Teacher(language=args.language)
    queries = TermQueryGenerator(seed=0).generate(corpus, max_docs=args.num_queries)
    train_dataset = make_query_dataset(queries)  # columns: query, source_doc_id
    print(train_dataset)

    model = QueritCrossEncoder.from_embedding_model(args.backbone)
    collator = TeacherMiningDataCollator(retriever=retriever, teacher=teacher, top_k=args.top_k,
                                         num_candidates=args.num_candidates)
    training_args = CrossEncoderTrainingArguments(
        output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, warmup_steps=0.1, logging_steps=10, save_strategy="no", report_to=[],
        remove_unused_columns=False, dataloader_num_workers=0,
    )
    trainer = CrossEncoderTrainer(model=model, args=training_args, train_dataset=train_dataset,
                                  loss=SoftLabelKLLoss(model), data_collator=collator)
    report = None
    if args.evaluate:
        from querit_st.data import load_beir
        from querit_st.evaluation import evaluate_reranking

        data = load_beir(args.corpus)
        report = evaluate_reranking(data, retriever, {"before": model}, top_k=args.top_k)
    trainer.train()
    model.save_pretrained(args.output_dir)
    print(f"saved to {args.output_dir}; searched {collator.num_searched_queries} queries, "
          f"teacher scored {teacher.cache_misses} pairs ({teacher.cache_hits} cache hits)")
    if args.evaluate:
        after = evaluate_reranking(data, retriever, {"after": model}, top_k=args.top_k)
        print(f"nDCG@10 retriever {after['retriever']['nDCG@10']:.3f}, before {report['before']['nDCG@10']:.3f}, "
              f"after {after['after']['nDCG@10']:.3f}")


if __name__ == "__main__":
    main()
