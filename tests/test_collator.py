"""TeacherMiningDataCollator: batch shapes, caching, positives, and a real CrossEncoderTrainer run whose loss drops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from querit_st.utils import QueritInputError
from querit_st.collator import TeacherMiningDataCollator, make_query_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def xquad_en(shared_data):
    from querit_st.data import load_beir

    return load_beir(shared_data / "xquad-r-en")


@pytest.fixture(scope="module")
def retriever(tiny_embedding_dir, tmp_path_factory, xquad_en):
    from querit_st.retriever import DenseRetriever

    r = DenseRetriever(str(tiny_embedding_dir), cache_dir=tmp_path_factory.mktemp("emb"))
    r.index(xquad_en.corpus)
    return r


@pytest.fixture(scope="module")
def train_queries(xquad_en):
    qids = list(xquad_en.qrels)[:8]
    return [xquad_en.queries[q] for q in qids], [next(iter(xquad_en.qrels[q])) for q in qids]


def _bm25():
    from querit_st.teachers import BM25Teacher

    return BM25Teacher(language="en")


def test_listwise_batch_shapes_and_retrieval_cache(retriever, train_queries):
    queries, sources = train_queries
    teacher = _bm25()
    col = TeacherMiningDataCollator(retriever=retriever, teacher=teacher, top_k=20, num_candidates=6)
    assert teacher.is_fitted  # prepared on the retriever's corpus
    feats = [{"query": q, "source_doc_id": s, "label": 0.0} for q, s in zip(queries[:4], sources[:4])]
    batch = col(feats)
    assert list(batch) == ["label", "query", "documents"]  # the trainer pops label; two inputs remain in order
    assert batch["query"] == queries[:4]
    assert [len(d) for d in batch["documents"]] == [6] * 4
    assert isinstance(batch["label"], list)
    assert all(t.dtype == torch.float32 and t.shape == (6,) for t in batch["label"])
    corpus_texts = dict(zip(retriever.doc_ids, retriever.doc_texts))
    for q, s, docs, lab in zip(queries, sources, batch["documents"], batch["label"]):
        assert corpus_texts[s] in docs  # the known positive is always a candidate
        np.testing.assert_allclose(lab.numpy(), teacher.score([q] * len(docs), docs), rtol=1e-6)
        assert lab.tolist() == sorted(lab.tolist(), reverse=True)
    assert col.num_searched_queries == 4
    misses = teacher.cache_misses
    again = col(feats)  # second epoch: no new search, no pair re-scored, a different (seeded) spread
    assert col.num_searched_queries == 4 and teacher.cache_misses == misses
    assert [d[0] for d in again["documents"]] == [d[0] for d in batch["documents"]]
    # a fresh collator with the same seed reproduces the batches
    col2 = TeacherMiningDataCollator(retriever=retriever, teacher=teacher, top_k=20, num_candidates=6)
    assert col2(feats)["documents"] == batch["documents"]


def test_pointwise_mode_text_positive_and_prompt(retriever, train_queries):
    queries, _ = train_queries
    col = TeacherMiningDataCollator(retriever=retriever, teacher=_bm25(), top_k=10, num_candidates=4,
                                    mode="pointwise", prompts="Query: ")
    positive = "A positive passage written for this test about Kublai Khan."
    batch = col([{"query": queries[0], "positive": positive}, {"query": queries[1]}])
    assert list(batch) == ["label", "prompt", "query", "document"]
    assert batch["prompt"] == "Query: "
    assert len(batch["query"]) == len(batch["document"]) == batch["label"].shape[0] == 8
    assert batch["label"].dtype == torch.float32 and batch["label"].dim() == 1
    assert positive in batch["document"][:4] and positive not in batch["document"][4:]


def test_bad_configuration(retriever, tiny_embedding_dir):
    from querit_st.retriever import DenseRetriever

    with pytest.raises(QueritInputError):
        TeacherMiningDataCollator(retriever=None, teacher=_bm25())
    with pytest.raises(QueritInputError):
        TeacherMiningDataCollator(retriever=retriever, teacher=None)
    with pytest.raises(QueritInputError, match="not indexed"):
        TeacherMiningDataCollator(retriever=DenseRetriever(str(tiny_embedding_dir), cache_dir=False), teacher=_bm25())
    with pytest.raises(QueritInputError):
        TeacherMiningDataCollator(retriever=retriever, teacher=_bm25(), mode="pairwise")
    col = TeacherMiningDataCollator(retriever=retriever, teacher=_bm25())
    with pytest.raises(QueritInputError, match="no 'query' column"):
        col([{"question": "x"}])
    with pytest.raises(QueritInputError):
        col([{"query": ""}])
    with pytest.raises(QueritInputError):
        make_query_dataset(["ok", None])


def test_cross_encoder_trainer_with_collator_loss_goes_down(
    retriever, train_queries, tiny_cross_encoder_dir, tmp_path
):
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    from querit_st.losses import SoftLabelKLLoss

    queries, sources = train_queries
    teacher = _bm25()
    col = TeacherMiningDataCollator(retriever=retriever, teacher=teacher, top_k=30, num_candidates=8)
    # only queries (+ known positives) and a dummy label column, as a user might pass for the trainer's sake
    dataset = make_query_dataset(queries, sources).add_column("label", [0.0] * len(queries))
    model = CrossEncoder(str(tiny_cross_encoder_dir), max_length=96)
    loss = SoftLabelKLLoss(model)

    fixed = TeacherMiningDataCollator(retriever=retriever, teacher=teacher, top_k=30, num_candidates=8)(
        [{"query": q, "source_doc_id": s} for q, s in zip(queries, sources)]
    )

    def fixed_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss([fixed["query"], fixed["documents"]], fixed["label"]))

    before = fixed_loss()
    misses_before = teacher.cache_misses
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=20, per_device_train_batch_size=4, report_to=[],
        save_strategy="no", use_cpu=True, remove_unused_columns=False, learning_rate=5e-3, warmup_steps=0,
        lr_scheduler_type="constant", logging_steps=1, disable_tqdm=True, seed=0,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, data_collator=col)
    assert trainer.data_collator is col
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 20 and all(np.isfinite(losses))
    after = fixed_loss()
    assert after < 0.6 * before, (before, after, losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    # 10 epochs over 8 queries: each searched once, the teacher scored each pool pair (top 30 + positive) once
    assert col.num_searched_queries == 8 and col.num_batches == 20
    assert teacher.cache_misses - misses_before <= 8 * 31

    # remove_unused_columns=True changes nothing: the trainer's dataloader keeps the columns the collator needs
    args2 = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "out2"), max_steps=1, per_device_train_batch_size=4, report_to=[],
        save_strategy="no", use_cpu=True, remove_unused_columns=True,
    )
    trainer2 = CrossEncoderTrainer(model=model, args=args2, train_dataset=make_query_dataset(queries), loss=loss,
                                   data_collator=col)
    batch = next(iter(trainer2.get_train_dataloader()))
    assert set(batch) == {"label", "query", "documents"} and len(batch["documents"]) == 4
