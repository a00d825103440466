"""QueritCrossEncoder: prompts, save -> plain CrossEncoder reload, rerank, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder

from querit_st import QUERIT_PROMPT, QueritCrossEncoder, format_querit_prompt
from querit_st.utils import QueritInputError
from querit_st.cross_encoder import fuse_scores, querit_prefix

PAIRS = [
    ("what is the magnetic field", "the magnetic field of a current in a circuit"),
    ("super bowl points", "the team scored points in the super bowl game season"),
    ("energy equation", "a linear equation for the energy of a wave"),
]


@pytest.fixture(scope="module")
def model(tiny_embedding_dir) -> QueritCrossEncoder:
    torch.manual_seed(0)
    return QueritCrossEncoder.from_embedding_model(str(tiny_embedding_dir), max_length=64)


def test_from_embedding_model_has_fresh_head_and_querit_prompt(model):
    assert model.num_labels == 1
    assert model.default_prompt_name == "querit"
    assert model.prompts["querit"] == QUERIT_PROMPT
    scores = model.predict(PAIRS)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert len(set(np.round(scores, 6))) > 1  # not constant


def test_prompt_is_applied_and_selectable(model):
    default = model.predict(PAIRS)
    plain = model.predict(PAIRS, prompt="")
    explicit = model.predict([(QUERIT_PROMPT + q, d) for q, d in PAIRS], prompt="")
    np.testing.assert_allclose(default, explicit, atol=1e-6)
    assert not np.allclose(default, plain)
    instr = model.predict(PAIRS, instruction="Find the passage that answers the question.")
    manual = model.predict([(querit_prefix("Find the passage that answers the question.") + q, d) for q, d in PAIRS], prompt="")
    np.testing.assert_allclose(instr, manual, atol=1e-6)
    assert format_querit_prompt("q", "d") == (
        "Judge whether the Content meets the requirements based on the Query. Query: q; Content: d"
    )


def test_save_reload_with_plain_cross_encoder_same_scores(model, tmp_path):
    model.record(stage_note="unit-test", stages={"stage": "pretrain", "loss": "hinge"})
    model.save_pretrained(str(tmp_path / "m"))
    plain = CrossEncoder(str(tmp_path / "m"))
    np.testing.assert_allclose(plain.predict(PAIRS), model.predict(PAIRS), atol=1e-6)
    np.testing.assert_allclose(plain.predict(PAIRS, prompt=""), model.predict(PAIRS, prompt=""), atol=1e-6)
    again = QueritCrossEncoder(str(tmp_path / "m"))
    assert again.training_record["stage_note"] == "unit-test"
    np.testing.assert_allclose(again.predict(PAIRS), model.predict(PAIRS), atol=1e-6)
    cfg = json.loads((tmp_path / "m" / "config_sentence_transformers.json").read_text())
    assert cfg["default_prompt_name"] == "querit" and cfg["querit"]["stages"][0]["loss"] == "hinge"
    card = (tmp_path / "m" / "README.md").read_text()
    assert "How this model was trained (querit-st)" in card and "hinge" in card


def test_rerank_sorted_batched_and_ids(model):
    docs = {"a": PAIRS[0][1], "b": PAIRS[1][1], "c": PAIRS[2][1]}
    out = model.rerank("magnetic field", docs, batch_size=2)
    assert [r["corpus_id"] for r in out] and {r["corpus_id"] for r in out} == set(docs)
    assert all(out[i]["score"] >= out[i + 1]["score"] for i in range(len(out) - 1))
    direct = model.predict([("magnetic field", docs[r["corpus_id"]]) for r in out], activation_fn=torch.nn.Identity())
    np.testing.assert_allclose([r["score"] for r in out], direct, atol=1e-5)
    top = model.rerank("magnetic field", list(docs.values()), top_k=2)
    assert len(top) == 2 and isinstance(top[0]["corpus_id"], int)
    fused = model.rerank("magnetic field", docs, first_stage_scores={"a": 0.9, "b": 0.1, "c": 0.5}, fusion_weight=1.0)
    assert len(fused) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.rerank("", ["doc"]),
        lambda m: m.rerank(None, ["doc"]),
        lambda m: m.rerank("q", []),
        lambda m: m.rerank("q", ["ok", None]),
        lambda m: m.rerank("q", ["ok", ""]),
        lambda m: m.rerank("q", ["ok", 3]),
        lambda m: m.predict([("q", None)]),
        lambda m: m.predict([("", "d")]),
        lambda m: m.predict([("q", 5)]),
        lambda m: m.predict(None),
        lambda m: m.rank("q", [""]),
    ],
)
def test_bad_input_is_a_clear_error(model, call):
    with pytest.raises(QueritInputError) as e:
        call(model)
    msg = str(e.value)
    assert any(w in msg for w in ("query", "document", "inputs", "empty", "None")), msg


def test_error_names_the_offending_document(model):
    with pytest.raises(QueritInputError, match=r"documents\[1\]"):
        model.rerank("q", ["fine", "   "])


def test_fuse_scores_zscores():
    out = fuse_scores(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), 1.0)
    np.testing.assert_allclose(out, [0, 0, 0], atol=1e-12)


def test_fuse_scores_is_the_shared_zscore_rule():
    from querit_st.utils import scores

    from querit_st import cross_encoder

    assert cross_encoder.fuse_scores is scores.fuse_scores and cross_encoder.zscore is scores.zscore


def _tiny_decoder_backbone(folder, *, eos: bool):
    """A tiny random Qwen3 (decoder) folder whose tokenizer has no padding token (and, unless ``eos``, no eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    words = sorted({w for q, d in PAIRS for w in (q + " " + d).split()} | set(QUERIT_PROMPT.replace(".", " ").split()))
    vocab = ["[UNK]", "<|endoftext|>", ".", ":", ";", *words]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                        **({"eos_token": "<|endoftext|>"} if eos else {}))
    assert tokenizer.pad_token is None
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, head_dim=8, max_position_embeddings=256,
                         pad_token_id=None)
    Qwen3Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("eos", [True, False], ids=["pad=eos", "pad=new-token"])
def test_from_embedding_model_on_a_decoder_backbone_without_pad_token(tmp_path, eos):
    """#22 item 7: a decoder student built from a config pads its batches and reloads as a plain CrossEncoder."""
    folder = _tiny_decoder_backbone(tmp_path / "qwen3", eos=eos)
    torch.manual_seed(1)
    model = QueritCrossEncoder.from_embedding_model(str(folder), max_length=64)
    assert model.tokenizer.pad_token is not None
    assert model.model.config.pad_token_id == model.tokenizer.pad_token_id
    scores = model.predict(PAIRS, batch_size=3)  # a batch of 3 pairs of different lengths
    assert scores.shape == (3,) and np.isfinite(scores).all()
    one_by_one = np.concatenate([model.predict([p]) for p in PAIRS])
    np.testing.assert_allclose(scores, one_by_one, atol=1e-5)  # padding does not change a pair's score
    model.save_pretrained(str(tmp_path / "student"))
    plain = CrossEncoder(str(tmp_path / "student"))
    np.testing.assert_allclose(plain.predict(PAIRS, batch_size=3), scores, atol=1e-6)
