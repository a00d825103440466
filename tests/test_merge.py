"""Tests for querit_st.merge: the SLERP math (property tests), t schedules, and whole-model merges of tiny
in-process cross-encoders (folders, loaded models, state dicts, LoRA adapters, the CLI). No network."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import querit_st.merge as merge_mod
from querit_st.utils import QueritInputError
from querit_st.cli.merge import merge_command
from querit_st.merge import (
    gradient_value,
    layer_index,
    layer_position,
    slerp,
    slerp_merge,
    slerp_merge_many,
    slerp_schedule,
    t_for_parameter,
)

PAIRS = [
    ("w1 w2 w3", "w3 w4 a b c"),
    ("a b", "w7 w8 w9 w10"),
    ("w11 c", "w11 w12 d e"),
    ("f g h", "w20 w21 w22 i"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op threads only add contention (100x slower backward passes on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- hypothesis data

_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_finite = st.floats(min_value=-1000, max_value=1000, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def vector_pairs(draw, min_size=1, max_size=16):
    n = draw(st.integers(min_value=min_size, max_value=max_size))
    a = draw(st.lists(_finite, min_size=n, max_size=n))
    b = draw(st.lists(_finite, min_size=n, max_size=n))
    return torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)


_t = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _mergekit_slerp(t, v0, v1, dot_threshold=0.9995, eps=1e-8):
    """mergekit's numpy slerp (reference implementation, transcribed)."""
    v0c, v1c = np.copy(v0), np.copy(v1)
    n0, n1 = np.linalg.norm(v0), np.linalg.norm(v1)
    v0 = v0 / n0 if n0 > eps else v0
    v1 = v1 / n1 if n1 > eps else v1
    dot = np.sum(v0 * v1)
    if np.abs(dot) > dot_threshold:
        return (1 - t) * v0c + t * v1c
    theta0 = np.arccos(dot)
    s0 = np.sin(theta0 - theta0 * t) / np.sin(theta0)
    s1 = np.sin(theta0 * t) / np.sin(theta0)
    return s0 * v0c + s1 * v1c


# ------------------------------------------------------------------------------------------ property tests


@settings(max_examples=500, deadline=None)
@given(vector_pairs(), st.sampled_from(_DTYPES), _t)
def test_slerp_endpoints_exact_and_dtype_preserved(pair, dtype, t):
    a, b = (x.to(dtype) for x in pair)
    at0, at1, mid = slerp(0.0, a, b), slerp(1.0, a, b), slerp(t, a, b)
    assert torch.equal(at0, a) and torch.equal(at1, b)
    for out in (at0, at1, mid):
        assert out.dtype == dtype and out.shape == a.shape
    assert torch.isfinite(mid.float()).all()


@settings(max_examples=500, deadline=None)
@given(vector_pairs(min_size=2), _t)
def test_slerp_unit_vectors_keep_unit_norm(pair, t):
    a, b = (x.double() for x in pair)
    assume(a.norm() > 1e-3 and b.norm() > 1e-3)
    a, b = (a / a.norm()).float(), (b / b.norm()).float()
    # Anti-parallel vectors have no unique great circle; mergekit (and we) fall back to lerp there, through ~0.
    assume(float(torch.dot(a.double(), b.double())) > -0.9995)
    norm = float(slerp(t, a, b).double().norm())
    lo, hi = min(a.norm(), b.norm()), max(a.norm(), b.norm())
    assert lo - 2e-4 <= norm <= hi + 2e-4


@settings(max_examples=500, deadline=None)
@given(vector_pairs(min_size=1), st.floats(min_value=0.05, max_value=20), st.booleans(), _t)
def test_slerp_colinear_falls_back_to_lerp(pair, scale, flip, t):
    a = pair[0]
    assume(a.norm() > 1e-3)
    b = a * (-scale if flip else scale)
    got = slerp(t, a, b)
    want = (1 - t) * a.double() + t * b.double()
    tol = 1e-5 * float(a.abs().max() + b.abs().max())
    assert torch.allclose(got.double(), want, atol=tol, rtol=1e-5)


@settings(max_examples=500, deadline=None)
@given(vector_pairs(), _t)
def test_slerp_symmetric_under_swap(pair, t):
    a, b = pair
    x, y = slerp(t, a, b), slerp(1.0 - t, b, a)
    tol = 1e-5 * float(a.abs().max() + b.abs().max() + 1e-6)
    assert torch.allclose(x, y, atol=tol, rtol=1e-5)


@settings(max_examples=500, deadline=None)
@given(vector_pairs(min_size=2), _t)
def test_slerp_matches_mergekit_reference(pair, t):
    a, b = pair
    want = _mergekit_slerp(t, a.double().numpy(), b.double().numpy())
    got = slerp(t, a, b).double().numpy()
    tol = 1e-5 * float(a.abs().max() + b.abs().max() + 1e-6)
    np.testing.assert_allclose(got, want, atol=tol, rtol=1e-4)


def test_slerp_known_values_and_shapes():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(0.5, e1, e2), torch.tensor([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(slerp(1 / 3, e1, e2), torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))
    # whole (multi-dimensional) tensors are one vector; norms are interpolated on the originals
    m0, m1 = torch.randn(3, 4), torch.randn(3, 4)
    out = slerp(0.3, m0, m1)
    assert out.shape == (3, 4)
    want = _mergekit_slerp(0.3, m0.double().numpy(), m1.double().numpy())
    np.testing.assert_allclose(out.double().numpy(), want, atol=1e-5)
    with pytest.raises(QueritInputError):
        slerp(0.5, torch.zeros(2), torch.zeros(3))
    with pytest.raises(QueritInputError):
        slerp(0.5, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


# ------------------------------------------------------------------------------------------ t schedules


def test_gradient_and_layer_positions():
    assert layer_index("bert.encoder.layer.3.attention.self.query.weight") == 3
    assert layer_index("model.layers.12.mlp.up_proj.weight") == 12
    assert layer_index("bert.embeddings.word_embeddings.weight") is None
    assert layer_position("bert.encoder.layer.0.output.dense.weight", 3) == 0.0
    assert layer_position("bert.encoder.layer.1.output.dense.weight", 3) == 0.5
    assert layer_position("bert.encoder.layer.2.output.dense.weight", 3) == 1.0
    assert layer_position("bert.embeddings.LayerNorm.weight", 3) == 0.0  # pre-weight: start of the gradient
    assert layer_position("classifier.weight", 3) == 1.0  # post-weight: end of the gradient
    assert layer_position("bert.pooler.dense.weight", 3) == 1.0
    assert gradient_value(0.25, 0.7) == 0.25
    assert gradient_value([0.0, 1.0], 0.25) == 0.25
    assert gradient_value([0.0, 0.5, 1.0], 0.75) == pytest.approx(0.75)
    assert gradient_value([0.2, 0.9, 0.4], 0.5) == 0.9  # a list point is hit exactly
    pt = {"classifier": 0.3, "embeddings": [0.0, 1.0], "layer": 0.9}
    assert t_for_parameter("classifier.bias", 0.5, 2, pt) == 0.3
    assert t_for_parameter("bert.embeddings.word_embeddings.weight", 0.5, 2, pt) == 0.0
    assert t_for_parameter("bert.encoder.layer.1.output.dense.bias", 0.5, 2, pt) == 0.9
    # first match wins
    assert t_for_parameter("bert.encoder.layer.1.x", 0.5, 2, {"encoder": 0.1, "layer": 0.9}) == 0.1
    assert t_for_parameter("bert.pooler.dense.weight", [0.1, 0.2, 0.7], 4, None) == 0.7


def test_slerp_schedule():
    assert slerp_schedule([1, 1, 1]) == pytest.approx([1 / 2, 1 / 3])
    assert slerp_schedule([1, 1, 1, 1]) == pytest.approx([1 / 2, 1 / 3, 1 / 4])
    assert slerp_schedule([1, 2, 3]) == pytest.approx([2 / 3, 1 / 2])
    assert slerp_schedule([3, 1]) == pytest.approx([0.25])
    for bad in ([1], [1, 0], [1, -1], [1, float("nan")]):
        with pytest.raises(QueritInputError):
            slerp_schedule(bad)


# ---------------------------------------------------------------------------------------- tiny models


def _vocab() -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(100)], *"abcdefghijklmnop"]


def _tiny_bert(folder: Path, vocab: list[str], seed: int = 0, layers: int = 2) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=1,
    )
    BertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _fine_tune(model, seed: int, steps: int = 4) -> None:
    """A few optimizer steps on random labels plus a seed-specific nudge, so the two checkpoints differ."""
    g = torch.Generator().manual_seed(seed)
    hf = model.transformers_model
    hf.train()
    opt = torch.optim.Adam(hf.parameters(), lr=5e-2)
    feats = model.tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, return_tensors="pt")
    labels = torch.rand(len(PAIRS), generator=g)
    for _ in range(steps):
        logits = hf(**feats).logits.view(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    hf.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from sentence_transformers import CrossEncoder

    root = tmp_path_factory.mktemp("merge_models")
    raw = _tiny_bert(root / "raw", _vocab())
    dirs = {}
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        ce = CrossEncoder(str(raw))
        _fine_tune(ce, seed)
        ce.save_pretrained(str(root / name))
        dirs[name] = root / name
    dirs["raw"] = raw
    dirs["root"] = root
    return dirs


def _scores(folder) -> np.ndarray:
    from sentence_transformers import CrossEncoder

    return np.asarray(CrossEncoder(str(folder)).predict(PAIRS, show_progress_bar=False))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_merge_folders_loads_and_scores(models, tmp_path):
    out = slerp_merge(models["a"], models["b"], 0.5, tmp_path / "merged", show_progress_bar=False)
    assert out == tmp_path / "merged" and out.is_dir()
    names = {p.name for p in out.iterdir()}
    for f in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "README.md",
        "merge_config.json",
    ):
        assert f in names, f
    sa, sb, sm = _scores(models["a"]), _scores(models["b"]), _scores(out)
    assert np.isfinite(sm).all()
    assert not np.allclose(sm, sa, atol=1e-6) and not np.allclose(sm, sb, atol=1e-6)
    readme = (out / "README.md").read_text()
    assert "## Merge" in readme and str(models["b"]) in readme
    record = json.loads((out / "merge_config.json").read_text())
    assert record["method"] == "slerp" and record["t"] == 0.5
    assert [m["path"] for m in record["models"]] == [str(models["a"].resolve()), str(models["b"].resolve())]
    assert record["tensors"]["interpolated"] == len(_weights(models["a"]))


def test_merge_endpoints_reproduce_inputs(models, tmp_path):
    out0 = slerp_merge(models["a"], models["b"], 0.0, tmp_path / "t0", show_progress_bar=False)
    out1 = slerp_merge(models["a"], models["b"], 1.0, tmp_path / "t1", show_progress_bar=False)
    np.testing.assert_array_equal(_scores(out0), _scores(models["a"]))
    np.testing.assert_array_equal(_scores(out1), _scores(models["b"]))
    wa, w0 = _weights(models["a"]), _weights(out0)
    assert all(torch.equal(wa[k], w0[k]) for k in wa)


def test_dict_mode_models_and_streaming_agree(models, tmp_path, monkeypatch):
    from sentence_transformers import CrossEncoder

    streamed = _weights(slerp_merge(models["a"], models["b"], 0.3, tmp_path / "s", show_progress_bar=False))
    as_dict = slerp_merge(models["a"], models["b"], 0.3, show_progress_bar=False)
    assert isinstance(as_dict, dict) and set(as_dict) == set(streamed)
    from_models = slerp_merge(
        CrossEncoder(str(models["a"])), CrossEncoder(str(models["b"])), 0.3, show_progress_bar=False
    )
    from_dicts = slerp_merge(_weights(models["a"]), _weights(models["b"]), 0.3, show_progress_bar=False)
    for k, v in streamed.items():
        torch.testing.assert_close(as_dict[k], v, rtol=0, atol=1e-7)
        torch.testing.assert_close(from_models[k], v, rtol=0, atol=1e-7)
        torch.testing.assert_close(from_dicts[k], v, rtol=0, atol=1e-7)
    # Big tensors are streamed in row blocks: tiny blocks must give the same result.
    monkeypatch.setattr(merge_mod, "CHUNK_ELEMENTS", 100)
    chunked = _weights(slerp_merge(models["a"], models["b"], 0.3, tmp_path / "c", show_progress_bar=False))
    for k, v in streamed.items():
        torch.testing.assert_close(chunked[k], v, rtol=1e-6, atol=1e-7)


def test_loaded_models_write_a_folder(models, tmp_path):
    from sentence_transformers import CrossEncoder

    a, b = CrossEncoder(str(models["a"])), CrossEncoder(str(models["b"]))
    out = slerp_merge(a, b, 0.0, tmp_path / "from_models", show_progress_bar=False)
    np.testing.assert_array_equal(_scores(out), _scores(models["a"]))
    assert "## Merge" in (out / "README.md").read_text()
    mixed = slerp_merge(models["a"], b, 0.5, show_progress_bar=False)  # folder + loaded model: same key names
    assert set(mixed) == set(_weights(models["a"]))


def test_sharded_and_bin_checkpoints(models, tmp_path):
    from safetensors.torch import save_file

    wb = _weights(models["b"])
    sharded = tmp_path / "sharded"
    shutil.copytree(models["b"], sharded)
    (sharded / "model.safetensors").unlink()
    keys = sorted(wb)
    weight_map = {}
    for i, part in enumerate((keys[::2], keys[1::2])):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: wb[k] for k in part}, str(sharded / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    as_bin = tmp_path / "as_bin"
    shutil.copytree(models["b"], as_bin)
    (as_bin / "model.safetensors").unlink()
    torch.save(wb, as_bin / "pytorch_model.bin")
    ref = slerp_merge(models["a"], models["b"], 0.4, show_progress_bar=False)
    for other in (sharded, as_bin):
        got = slerp_merge(models["a"], other, 0.4, show_progress_bar=False)
        assert all(torch.equal(got[k], ref[k]) for k in ref)
    out = slerp_merge(sharded, models["a"], 0.6, tmp_path / "out", show_progress_bar=False)
    assert not any(p.name.startswith("model-") or p.name.endswith(".index.json") for p in out.iterdir())
    swapped = _weights(out)  # slerp(0.6, b, a) == slerp(0.4, a, b) up to rounding
    for k in ref:
        torch.testing.assert_close(swapped[k], ref[k], rtol=1e-5, atol=1e-6)


def test_layer_gradient_and_parameter_overrides(models):
    wa, wb = _weights(models["a"]), _weights(models["b"])
    merged = slerp_merge(models["a"], models["b"], [0.0, 1.0], show_progress_bar=False)
    for k in wa:
        if ".layer.0." in k or "embeddings" in k:
            assert torch.equal(merged[k], wa[k]), k
        elif ".layer.1." in k or k.startswith(("classifier", "bert.pooler")):
            assert torch.equal(merged[k], wb[k]), k
    pt = {"classifier": 0.0, "embeddings": 1.0}
    merged = slerp_merge(models["a"], models["b"], 0.5, parameter_t=pt, show_progress_bar=False)
    assert torch.equal(merged["classifier.weight"], wa["classifier.weight"])
    assert torch.equal(merged["bert.embeddings.word_embeddings.weight"], wb["bert.embeddings.word_embeddings.weight"])
    q = "bert.encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(merged[q], slerp(0.5, wa[q], wb[q]))


def test_dtype_kept_and_non_float_copied():
    a = {
        "w": torch.randn(4, 3, dtype=torch.float16),
        "ids": torch.arange(5),
        "b": torch.randn(3, dtype=torch.bfloat16),
    }
    b = {
        "w": torch.randn(4, 3, dtype=torch.float16),
        "ids": torch.arange(5) * 7,
        "b": torch.randn(3, dtype=torch.bfloat16),
    }
    before = {k: v.clone() for k, v in a.items()}
    out = slerp_merge(a, b, 0.4, show_progress_bar=False)
    assert out["w"].dtype == torch.float16 and out["b"].dtype == torch.bfloat16
    assert torch.equal(out["ids"], a["ids"])
    torch.testing.assert_close(out["w"], slerp(0.4, a["w"], b["w"]))
    for k in out:  # results never alias the inputs
        out[k].add_(1)
    assert all(torch.equal(a[k], before[k]) for k in a)
    out0 = slerp_merge(a, b, 0.0, show_progress_bar=False)
    assert all(torch.equal(out0[k], a[k]) for k in a)
    out0["w"].add_(1)
    assert torch.equal(a["w"], before["w"])


def test_state_dicts_need_a_template_for_output_dir(models, tmp_path):
    wa, wb = _weights(models["a"]), _weights(models["b"])
    with pytest.raises(QueritInputError, match="template"):
        slerp_merge(wa, wb, 0.5, tmp_path / "x", show_progress_bar=False)
    assert not (tmp_path / "x").exists()
    out = slerp_merge(wa, wb, 0.5, tmp_path / "y", template=models["a"], show_progress_bar=False)
    assert np.isfinite(_scores(out)).all()


def _copy_with(src: Path, dst: Path, change) -> Path:
    from safetensors.torch import save_file

    shutil.copytree(src, dst)
    w = _weights(src)
    change(w)
    save_file(w, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_mismatched_tensor_shape_is_named_and_nothing_written(models, tmp_path):
    key = "bert.encoder.layer.1.attention.self.value.bias"
    bad = _copy_with(models["b"], tmp_path / "bad", lambda w: w.__setitem__(key, torch.zeros(5)))
    with pytest.raises(QueritInputError, match=key.replace(".", r"\.")):
        slerp_merge(models["a"], bad, 0.5, tmp_path / "out", show_progress_bar=False)
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())

    missing = "classifier.bias"
    bad2 = _copy_with(models["b"], tmp_path / "bad2", lambda w: w.pop(missing))
    with pytest.raises(QueritInputError, match=r"classifier\.bias"):
        slerp_merge(models["a"], bad2, 0.5, tmp_path / "out", show_progress_bar=False)
    assert not (tmp_path / "out").exists()


def test_mismatched_architecture_and_tokenizer(models, tmp_path):
    from sentence_transformers import CrossEncoder

    three = _tiny_bert(tmp_path / "three_raw", _vocab(), layers=3)
    CrossEncoder(str(three)).save_pretrained(str(tmp_path / "three"))
    with pytest.raises(QueritInputError, match="num_hidden_layers"):
        slerp_merge(models["a"], tmp_path / "three", 0.5, tmp_path / "out", show_progress_bar=False)
    assert not (tmp_path / "out").exists()

    other_vocab = _vocab()
    other_vocab[10], other_vocab[11] = other_vocab[11], other_vocab[10]
    swapped = _tiny_bert(tmp_path / "swapped_raw", other_vocab)
    CrossEncoder(str(swapped)).save_pretrained(str(tmp_path / "swapped"))
    with pytest.raises(QueritInputError, match="tokenizer"):
        slerp_merge(models["a"], tmp_path / "swapped", 0.5, tmp_path / "out", show_progress_bar=False)
    assert not (tmp_path / "out").exists()


def test_interrupted_merge_leaves_nothing(models, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = merge_mod._combine

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(merge_mod, "_combine", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        slerp_merge(models["a"], models["b"], 0.5, tmp_path / "out", show_progress_bar=False)
    assert calls["n"] == 10
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(QueritInputError, match="exists"):
        slerp_merge(models["a"], models["b"], 0.5, out, show_progress_bar=False)
    assert (out / "stale.txt").exists()
    slerp_merge(models["a"], models["b"], 0.5, out, overwrite=True, show_progress_bar=False)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").exists()
    with pytest.raises(QueritInputError, match="one of the inputs"):
        slerp_merge(models["a"], models["b"], 0.5, models["a"], overwrite=True, show_progress_bar=False)


def test_bad_t_values(models):
    for bad in (-0.1, 1.5, float("nan"), [], [0.2, 2.0], "0.5", True):
        with pytest.raises(QueritInputError):
            slerp_merge(models["a"], models["b"], bad, show_progress_bar=False)
    with pytest.raises(QueritInputError):
        slerp_merge(models["a"], models["b"], 0.5, parameter_t={"classifier": 3.0}, show_progress_bar=False)


# -------------------------------------------------------------------------------------------------- LoRA


def test_lora_adapter_folder_is_folded_in(models, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    base = BertForSequenceClassification.from_pretrained(str(models["a"]))
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    pm = get_peft_model(base, cfg)
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.normal_(0, 0.2)
    adapter = tmp_path / "adapter"
    pm.save_pretrained(str(adapter))
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(models["a"])
    reference = {k: v.detach().clone() for k, v in pm.merge_and_unload().state_dict().items()}

    merged = slerp_merge(models["a"], adapter, 1.0, show_progress_bar=False)
    assert set(merged) <= set(reference)
    changed = 0
    wa = _weights(models["a"])
    for k, v in merged.items():
        torch.testing.assert_close(v, reference[k], rtol=1e-6, atol=1e-6)
        changed += not torch.equal(v, wa[k])
    assert changed == 2 * 2 + 2  # query/value weights of 2 layers, classifier weight and bias

    # As a folder: loads as a plain CrossEncoder and scores like the merged peft model.
    out = slerp_merge(adapter, models["a"], 0.0, tmp_path / "out", show_progress_bar=False)
    scores = _scores(out)
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(models["a"]))
    ce.transformers_model.load_state_dict(reference, strict=False)
    np.testing.assert_allclose(scores, ce.predict(PAIRS, show_progress_bar=False), atol=1e-5)
    record = json.loads((out / "merge_config.json").read_text())
    assert record["models"][0]["kind"] == "lora_adapter"


def test_sentence_transformers_adapter_with_explicit_base(models, tmp_path):
    from peft import LoraConfig
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(models["a"]))
    ce.add_adapter(LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]))
    torch.manual_seed(6)
    with torch.no_grad():
        for name, p in ce.transformers_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    want = ce.predict(PAIRS, show_progress_bar=False)
    adapter = tmp_path / "st_adapter"
    ce.save_pretrained(str(adapter))
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "/nonexistent/base/model"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(QueritInputError, match="base"):
        slerp_merge(adapter, models["b"], 0.0, tmp_path / "out", show_progress_bar=False)
    assert not (tmp_path / "out").exists()
    out = slerp_merge(adapter, models["b"], 0.0, tmp_path / "out", base=models["a"], show_progress_bar=False)
    np.testing.assert_allclose(_scores(out), want, atol=1e-5)


def test_dora_adapter_is_refused(models, tmp_path):
    adapter = tmp_path / "dora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "use_dora": True, "base_model_name_or_path": str(models["a"])})
    )
    with pytest.raises(QueritInputError, match="use_dora"):
        slerp_merge(adapter, models["a"], 0.5, show_progress_bar=False)


# ------------------------------------------------------------------------------------------ many models


def test_slerp_merge_many_three_state_dicts(models, tmp_path):
    sds = [_weights(models[n]) for n in ("a", "b", "c")]
    assert slerp_schedule([1.0, 1.0, 1.0]) == pytest.approx([1 / 2, 1 / 3])
    out = slerp_merge_many(sds, show_progress_bar=False)
    for k in sds[0]:
        want = slerp(1 / 3, slerp(1 / 2, sds[0][k], sds[1][k]), sds[2][k])
        torch.testing.assert_close(out[k], want, rtol=1e-5, atol=1e-6)
    # Weights change the schedule: [2, 1, 1] -> t = 1/3, 1/4.
    out = slerp_merge_many(sds, [2, 1, 1], show_progress_bar=False)
    k = "bert.encoder.layer.0.output.dense.weight"
    torch.testing.assert_close(
        out[k], slerp(1 / 4, slerp(1 / 3, sds[0][k], sds[1][k]), sds[2][k]), rtol=1e-5, atol=1e-6
    )
    # Two models: same as slerp_merge with t = w1 / (w0 + w1).
    two = slerp_merge_many(sds[:2], [3, 1], show_progress_bar=False)
    ref = slerp_merge(sds[0], sds[1], 0.25, show_progress_bar=False)
    torch.testing.assert_close(two[k], ref[k], rtol=1e-6, atol=1e-7)
    with pytest.raises(QueritInputError):
        slerp_merge_many(sds, [1, 1], show_progress_bar=False)
    with pytest.raises(QueritInputError):
        slerp_merge_many(sds[:1], show_progress_bar=False)
    # Folders, written out.
    folder = slerp_merge_many(
        [models["a"], models["b"], models["c"]], output_dir=tmp_path / "m3", show_progress_bar=False
    )
    assert np.isfinite(_scores(folder)).all()
    record = json.loads((folder / "merge_config.json").read_text())
    assert record["method"] == "sequential_slerp" and record["schedule"] == pytest.approx([1 / 2, 1 / 3])


# ------------------------------------------------------------------------------------------------- CLI


def test_merge_command(models, tmp_path, capsys):
    bad = _copy_with(models["b"], tmp_path / "bad", lambda w: w.pop("classifier.bias"))
    out = tmp_path / "cli_out"
    assert merge_command([str(models["a"]), str(bad), "--output", str(out), "--no-progress"]) == 2
    assert "classifier.bias" in capsys.readouterr().err
    assert not out.exists()

    assert merge_command([str(models["a"]), str(models["b"]), "--t", "0.25", "--output", str(out)]) == 0
    assert json.loads((out / "merge_config.json").read_text())["t"] == 0.25
    assert merge_command([str(models["a"]), str(models["b"]), "--output", str(out)]) == 2  # exists
    assert (
        merge_command(
            [
                str(models["a"]),
                str(models["b"]),
                "--t-list",
                "0,0.5,1",
                "--parameter-t",
                "classifier=0.2",
                "--output",
                str(out),
                "--overwrite",
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads((out / "merge_config.json").read_text())
    assert record["t"] == [0.0, 0.5, 1.0] and record["parameter_t"] == {"classifier": 0.2}

    out3 = tmp_path / "cli3"
    args = [str(models["a"]), str(models["b"]), str(models["c"]), "--weights", "1,2,1", "--output", str(out3)]
    assert merge_command(args + ["--t", "0.3"]) == 2
    assert merge_command(args + ["--no-progress"]) == 0
    assert json.loads((out3 / "merge_config.json").read_text())["schedule"] == pytest.approx([2 / 3, 1 / 4])
    assert merge_command([str(models["a"]), "--output", str(tmp_path / "one")]) == 2
    assert merge_command(["--output", str(tmp_path / "none")]) == 2  # argparse usage error


# ------------------------------------------------------------------- sentence-transformers' own merge


def test_same_tensors_as_sentence_transformers_merge(models):
    """Where the methods agree (two plain checkpoints, scalar t), ``CrossEncoder.merge(method="slerp")`` (mergekit,
    every model loaded whole) and our streaming merge give the same tensors."""
    from sentence_transformers import CrossEncoder

    if not hasattr(CrossEncoder, "merge"):
        pytest.skip("this sentence-transformers has no CrossEncoder.merge")
    pytest.importorskip("mergekit.merge_methods", reason="CrossEncoder.merge needs mergekit (pip install mergekit)")
    for t in (0.0, 0.3, 0.5, 1.0):
        theirs = CrossEncoder.merge(
            [str(models["a"]), str(models["b"])], method="slerp", parameters={"t": t}
        ).transformers_model.state_dict()
        ours = slerp_merge(models["a"], models["b"], t, show_progress_bar=False)
        assert set(ours) == set(theirs)
        for k, v in ours.items():
            assert v.dtype == theirs[k].dtype, k
            torch.testing.assert_close(v, theirs[k], rtol=1e-5, atol=1e-6, msg=f"{k} at t={t}")


# --------------------------------------------------------------------------------- N-way merge weights


def test_slerp_merge_many_weights_are_checked(models, tmp_path):
    sds = [_weights(models[n]) for n in ("a", "b", "c")]
    out = tmp_path / "never"
    for bad, match in (
        ([1, 1], "2 weights for 3 models"),
        ([1, 1, 1, 1], "4 weights for 3 models"),
        ([1, -0.5, 1], "negative"),
        ([0, 0, 0], "all weights are zero"),
        ([1, 0, 1], r"weights\[1\] is zero"),
        ([1, float("inf"), 1], "finite"),
        ([1, "2", 1], "must be a number"),
        ([1, True, 1], "must be a number"),
        ("1,1,1", "list of numbers"),
    ):
        with pytest.raises(QueritInputError, match=match):
            slerp_merge_many(sds, bad, out, template=models["a"], show_progress_bar=False)
        assert not out.exists()
    with pytest.raises(QueritInputError, match="for 3 models give weights"):
        slerp_merge_many(sds, t=0.5, show_progress_bar=False)
    with pytest.raises(QueritInputError, match="not both"):
        slerp_merge_many(sds[:2], [1, 1], t=0.5, show_progress_bar=False)
    with pytest.raises(QueritInputError):
        slerp_merge_many(sds[:2], t=1.5, show_progress_bar=False)


def test_slerp_merge_many_weights_and_t(models, tmp_path):
    sds = [_weights(models[n]) for n in ("a", "b", "c")]
    k = "bert.encoder.layer.1.attention.output.dense.weight"
    # Only the ratios count; numpy numbers are numbers.
    ref = slerp_merge_many(sds, [1, 1, 2], show_progress_bar=False)
    scaled = slerp_merge_many(sds, np.array([0.5, 0.5, 1.0]), show_progress_bar=False)
    torch.testing.assert_close(scaled[k], ref[k], rtol=0, atol=0)
    torch.testing.assert_close(ref[k], slerp(1 / 2, slerp(1 / 2, sds[0][k], sds[1][k]), sds[2][k]))
    # Two models: t (scalar, endpoint or gradient) is slerp_merge's t.
    for t in (0.25, 0.0, 1.0, [0.0, 1.0]):
        got = slerp_merge_many(sds[:2], t=t, show_progress_bar=False)
        want = slerp_merge(sds[0], sds[1], t, show_progress_bar=False)
        assert all(torch.equal(got[name], want[name]) for name in want), t
    folder = slerp_merge_many(
        [models["a"], models["b"], models["c"]], [3, 1, 1], tmp_path / "w", show_progress_bar=False
    )
    record = json.loads((folder / "merge_config.json").read_text())
    assert record["weights"] == [3.0, 1.0, 1.0] and record["schedule"] == pytest.approx([1 / 4, 1 / 5])
    two = slerp_merge_many([models["a"], models["b"]], output_dir=tmp_path / "t", t=0.2, show_progress_bar=False)
    record = json.loads((two / "merge_config.json").read_text())
    assert record["method"] == "slerp" and record["t"] == 0.2


# ---------------------------------------------------------------------- merged card and training record


def _with_record(src: Path, dst: Path, target: str, lr: float) -> dict:
    from querit_st.cross_encoder import QueritCrossEncoder

    model = QueritCrossEncoder(str(src))
    model.record(pipeline="querit-st", backbone="tiny-bert")
    model.record(stages={"stage": "pretrain", "datasets": ["msmarco"], "learning_rate": 1e-4})
    model.record(stages={"stage": "adapt", "target": target, "learning_rate": lr, "loss": "listwise_kl"})
    model.save_pretrained(str(dst))
    return dict(model.training_record)


def _training_heading() -> str:
    from querit_st.cross_encoder import training_record_markdown

    return training_record_markdown({"stage": "x"}).splitlines()[0]


def test_card_strips_the_training_section_the_model_writes():
    from querit_st.merge.card import TRAINING_HEADING, strip_sections

    assert TRAINING_HEADING == _training_heading()
    text = (
        "# M\n\n## Usage\n\n```python\n## not a heading\n```\n\n"
        + TRAINING_HEADING
        + "\n\n### Stage 1\n\n## Merge\nold\n"
    )
    assert (
        strip_sections(text, [TRAINING_HEADING, "## Merge"]) == "# M\n\n## Usage\n\n```python\n## not a heading\n```\n"
    )


def test_merged_card_and_record_list_every_parent(models, tmp_path):
    from querit_st.cross_encoder import QueritCrossEncoder

    TRAINING_HEADING = _training_heading()
    rec_a = _with_record(models["a"], tmp_path / "pa", "vaswani", 2e-5)
    rec_b = _with_record(models["b"], tmp_path / "pb", "cacm", 3e-5)
    assert TRAINING_HEADING in (tmp_path / "pa" / "README.md").read_text()
    out = slerp_merge(tmp_path / "pa", tmp_path / "pb", 0.4, tmp_path / "m", show_progress_bar=False)

    st_config = json.loads((out / "config_sentence_transformers.json").read_text())
    merged = st_config["querit"]
    assert "merged_from" in merged, "the merged record must hold every parent's record, not the first parent's"
    assert merged["method"] == "slerp" and merged["t"] == 0.4
    assert [p["label"] for p in merged["merged_from"]] == ["A", "B"]
    assert [p["path"] for p in merged["merged_from"]] == [str((tmp_path / n).resolve()) for n in ("pa", "pb")]
    assert [p["record"] for p in merged["merged_from"]] == [rec_a, rec_b]
    assert QueritCrossEncoder(str(out)).training_record == merged  # the record travels with the model

    card = (out / "README.md").read_text()
    assert card.count(TRAINING_HEADING) == 1 and card.count("\n## Merge\n") == 1
    assert card.index("## Merge") < card.index(TRAINING_HEADING)
    section = card[card.index(TRAINING_HEADING) :]
    for text in ("Parent A", "Parent B", '"vaswani"', '"cacm"', "2e-05", "3e-05", "Stage 2: adapt"):
        assert text in section, text
    assert section.index("Parent A") < section.index('"vaswani"') < section.index("Parent B") < section.index('"cacm"')

    # N-way, one parent without a record, and a merge of a merge (its parents shown nested).
    out3 = slerp_merge_many([out, models["c"], tmp_path / "pb"], [2, 1, 1], tmp_path / "m3", show_progress_bar=False)
    merged3 = json.loads((out3 / "config_sentence_transformers.json").read_text())["querit"]
    assert merged3["method"] == "sequential_slerp" and merged3["weights"] == [2.0, 1.0, 1.0]
    assert merged3["merged_from"][0]["record"] == merged and merged3["merged_from"][1]["record"] is None
    card3 = (out3 / "README.md").read_text()
    assert card3.count(TRAINING_HEADING) == 1 and card3.count("\n## Merge\n") == 1
    section3 = card3[card3.index(TRAINING_HEADING) :]
    for text in ("Parent A.A", "Parent A.B", "Parent B", "No querit-st training record", "Parent C", '"cacm"'):
        assert text in section3, text
    assert section3.count('"vaswani"') == 1 and section3.count('"cacm"') == 2
