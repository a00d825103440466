"""Querit decoder checkpoints (Querit-4B / Querit A0.4B layout) through ``querit_st.decoder``.

Tiny random Qwen3 / DeepSeek-V3 backbones with a 2-way head, saved in the released layout (``model.*`` backbone
weights + ``head.*`` in ``model.safetensors``, a tokenizer with ``[CLS]``), are scored by ``QueritCrossEncoder`` and
by a copy of the reference: mteb's ``QueritWrapper`` (``mteb/models/model_implementations/querit_models.py``,
mteb 2.26.24: ``process_inputs``, ``compute_mask_content_cls``, ``format_instruction``, ``predict``) with the model
forward of the ``QueritModel`` it loads (last hidden state at the last position -> ``head`` -> softmax ->
``p1 - p0``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from querit_st.cross_encoder import QueritCrossEncoder
from querit_st.decoder import (
    QueritCheckpointError,
    QueritDecoderScorer,
    is_querit_checkpoint,
    load_querit_checkpoint,
    render_querit_text,
)

TEMPLATE_WORDS = "Judge whether the Content meets the requirements based on Query".split()
WORDS = [f"w{i}" for i in range(200)]
MAX_ABS_DIFF: dict[str, float] = {}


# ---------------------------------------------------------------------------------------------------------------------
# tiny checkpoints in the released layout
# ---------------------------------------------------------------------------------------------------------------------


def _tokenizer(with_cls: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["[UNK]", "<|endoftext|>", *TEMPLATE_WORDS, ".", ":", ";", "Find", "relevant", "passages", *WORDS]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>")
    if with_cls:
        tokenizer.add_special_tokens({"additional_special_tokens": ["[CLS]"]})
    return tokenizer


def _qwen3_config():
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, head_dim=8, max_position_embeddings=512,
    )


def _deepseek_config():
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        vocab_size=300, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2,
        first_k_dense_replace=1, n_group=1, topk_group=1, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=4,
        v_head_dim=8, qk_nope_head_dim=4, max_position_embeddings=512,
    )


def build_released_checkpoint(
    folder: Path, *, kind: str = "qwen3", with_head: bool = True, with_cls: bool = True, seed: int = 0
) -> Path:
    """A Querit checkpoint as released: custom ``QueritModel`` (``model.*`` + ``head.*``), remote-code config."""
    from transformers import AutoModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = _qwen3_config() if kind == "qwen3" else _deepseek_config()
    backbone = AutoModel.from_config(config)
    with torch.no_grad():  # random weights that actually separate pairs
        for p in backbone.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.2)
    state = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    if with_head:
        state["head.weight"] = torch.randn(2, config.hidden_size) * 0.08
        state["head.bias"] = torch.randn(2) * 0.1
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg["architectures"] = ["QueritModel"]
    cfg["auto_map"] = {"AutoModel": "modeling_querit.QueritModel"}
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    _tokenizer(with_cls).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models: one thread is far faster than several spinning on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def qwen3_ckpt(tmp_path_factory) -> Path:
    return build_released_checkpoint(tmp_path_factory.mktemp("querit_qwen3"))


# ---------------------------------------------------------------------------------------------------------------------
# the reference, copied from mteb's QueritWrapper (+ the QueritModel forward it calls)
# ---------------------------------------------------------------------------------------------------------------------


class ReferenceQuerit:
    def __init__(self, folder: Path, max_length: int = 4096) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the head keys are "unexpected" for the bare backbone
        self.model = AutoModel.from_pretrained(folder, trust_remote_code=False, attn_implementation="sdpa").eval()
        state = load_file(str(folder / "model.safetensors"))
        self.head = nn.Linear(state["head.weight"].shape[1], 2)
        self.head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if "[CLS]" not in self.tokenizer.get_vocab():
            raise ValueError("Tokenizer missing required special token '[CLS]'")
        self.cls_token_id = self.tokenizer.convert_tokens_to_ids("[CLS]")
        self.pad_token_id = self.tokenizer.pad_token_id or 0
        self.max_length = min(max_length, self.tokenizer.model_max_length) - 1

    def process_inputs(self, pairs: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            pairs, add_special_tokens=False, truncation=True, max_length=self.max_length, padding=False
        )
        input_ids_list, attn_mask_list = [], []
        for ids in enc["input_ids"]:
            ids = ids + [self.cls_token_id]
            block_types = [1] * (len(ids) - 1) + [2]
            if len(ids) < self.max_length:
                pad_len = self.max_length - len(ids)
                ids = [self.pad_token_id] * pad_len + ids
                block_types = [0] * pad_len + block_types
            else:
                ids = ids[-self.max_length :]
                block_types = block_types[-self.max_length :]
            attn_mask_list.append(self.compute_mask_content_cls(block_types))
            input_ids_list.append(ids)
        return {"input_ids": torch.tensor(input_ids_list), "attention_mask": torch.stack(attn_mask_list, dim=0)}

    @staticmethod
    def format_instruction(instruction: str | None, query: str, doc: str) -> str:
        if instruction is None:
            return (
                f"Judge whether the Content meets the requirements based on the Query. Query: {query}; Content: {doc}"
            )
        return f"{instruction} Query: {query}; Content: {doc}"

    @staticmethod
    def compute_mask_content_cls(block_types: list[int]) -> torch.Tensor:
        pos = torch.tensor(block_types, dtype=torch.long)
        n = pos.shape[0]
        row_types, col_types = pos.view(n, 1), pos.view(1, n)
        causal_mask = torch.arange(n).view(1, n) <= torch.arange(n).view(n, 1)
        mask_content = (row_types == 1) & (col_types == 1) & causal_mask
        mask_cls = (row_types == 2) & (col_types != 0) & causal_mask
        return (mask_content | mask_cls).unsqueeze(0)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask)
        logits = self.head(outputs.last_hidden_state[:, -1, :])
        probs = torch.softmax(logits, dim=-1)
        return (probs * torch.tensor([-1.0, 1.0])).sum(dim=-1, keepdim=True)

    def predict(self, pairs: list[tuple[str, str]], instruction: str | None = None, batch_size: int = 4) -> np.ndarray:
        scores: list[float] = []
        for start in range(0, len(pairs), batch_size):
            texts = [self.format_instruction(instruction, q, d) for q, d in pairs[start : start + batch_size]]
            scores.extend(self.forward(**self.process_inputs(texts)).squeeze(-1).float().tolist())
        return np.asarray(scores)


def _pairs(n: int = 9, seed: int = 0, long_every: int = 3) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        q = " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))
        d = " ".join(rng.choices(WORDS, k=rng.randint(40, 70) if i % long_every == 0 else rng.randint(1, 12)))
        pairs.append((q, d))
    return pairs


def _record(name: str, diff: float) -> None:
    MAX_ABS_DIFF[name] = max(MAX_ABS_DIFF.get(name, 0.0), diff)
    print(f"[querit decoder] max |score - reference| {name}: {diff:.3g}")


# ---------------------------------------------------------------------------------------------------------------------
# equivalence
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_length", [256, 40])  # 40: the long pairs are truncated (and lose their first token)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_scores_match_reference(qwen3_ckpt, max_length, batch_size):
    model = load_querit_checkpoint(qwen3_ckpt, max_length=max_length, device="cpu")
    reference = ReferenceQuerit(qwen3_ckpt, max_length=max_length)
    pairs = _pairs()
    ours = model.predict(pairs, batch_size=batch_size)
    ref = reference.predict(pairs, batch_size=batch_size)
    diff = float(np.abs(ours - ref).max())
    _record(f"qwen3 max_length={max_length} batch={batch_size}", diff)
    assert diff < 1e-5
    assert np.all(np.abs(ours) < 0.999) and np.std(ours) > 0.02  # p1 - p0, spread out (not saturated, not constant)
    if max_length == 40:
        assert any(len(reference.tokenizer(render_querit_text(q, d)).input_ids) > 39 for q, d in pairs)


def test_instruction_and_prompt_match_reference(qwen3_ckpt):
    model = load_querit_checkpoint(qwen3_ckpt, max_length=256, device="cpu")
    reference = ReferenceQuerit(qwen3_ckpt, max_length=256)
    pairs = _pairs(6, seed=1)
    ref = reference.predict(pairs, instruction="Find relevant passages")
    via_instruction = model.predict(pairs, instruction="Find relevant passages", batch_size=3)  # QueritCrossEncoder
    via_prompt = model.predict(pairs, prompt="Find relevant passages Query: ", batch_size=3)
    via_module = model[0](model[0].preprocess(pairs, instruction="Find relevant passages"))["scores"].view(-1)
    for name, scores in [("instruction", via_instruction), ("prompt", via_prompt), ("module", via_module.detach())]:
        diff = float(np.abs(np.asarray(scores) - ref).max())
        _record(f"qwen3 {name}", diff)
        assert diff < 1e-5
    assert float(np.abs(model.predict(pairs) - ref).max()) > 1e-4  # the instruction matters


@pytest.mark.parametrize("attn, mask_mode", [("eager", "auto"), ("sdpa", "padding"), ("eager", "padding")])
def test_attention_paths_match_reference(qwen3_ckpt, attn, mask_mode):
    model = load_querit_checkpoint(
        qwen3_ckpt, max_length=40, device="cpu", model_kwargs={"attn_implementation": attn}, mask_mode=mask_mode
    )
    reference = ReferenceQuerit(qwen3_ckpt, max_length=40)
    pairs = _pairs(7, seed=2)
    diff = float(np.abs(model.predict(pairs, batch_size=7) - reference.predict(pairs, batch_size=7)).max())
    _record(f"qwen3 attn={attn} mask={mask_mode}", diff)
    assert diff < 1e-5


def test_deepseek_v3_moe_native(tmp_path):
    folder = build_released_checkpoint(tmp_path / "querit_moe", kind="deepseek_v3", seed=1)
    model = load_querit_checkpoint(folder, max_length=48, device="cpu")  # no trust_remote_code
    assert type(model[0].backbone).__name__ == "DeepseekV3Model"
    reference = ReferenceQuerit(folder, max_length=48)
    pairs = _pairs(6, seed=3)
    diff = float(np.abs(model.predict(pairs, batch_size=3) - reference.predict(pairs, batch_size=3)).max())
    _record("deepseek_v3 moe", diff)
    assert diff < 1e-5


def test_truncation_keeping_the_prefix(qwen3_ckpt):
    model = load_querit_checkpoint(qwen3_ckpt, max_length=30, device="cpu", mteb_truncation=False)
    scorer = model[0]
    long_pair = _pairs(1, seed=4, long_every=1)[0]
    ids = scorer.preprocess([long_pair])["input_ids"][0].tolist()
    full = scorer.tokenizer(render_querit_text(*long_pair), add_special_tokens=False).input_ids
    assert len(ids) == scorer.max_seq_length == 29
    assert ids == full[:28] + [scorer.cls_token_id]
    scorer.mteb_truncation = True  # the reference: the first token goes
    assert scorer.preprocess([long_pair])["input_ids"][0].tolist() == full[1:29] + [scorer.cls_token_id]


# ---------------------------------------------------------------------------------------------------------------------
# training, saving, errors
# ---------------------------------------------------------------------------------------------------------------------


def _loss(model):
    try:
        from querit_st.losses import SoftLabelKLLoss
    except ImportError:  # pragma: no cover - losses.py not there yet
        return None
    return SoftLabelKLLoss(model)


def test_one_training_step_changes_head_and_backbone(qwen3_ckpt):
    model = load_querit_checkpoint(qwen3_ckpt, max_length=64, device="cpu")
    model.train()
    scorer = model[0]
    head_before = scorer.head.weight.detach().clone()
    layer = scorer.backbone.layers[0].mlp.down_proj.weight
    layer_before = layer.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    queries = ["w1 w2", "w3"]
    docs = [["w1 w2 w9", "w50 w51", "w7"], ["w3 w4", "w100 w101 w102"]]
    labels = [torch.tensor([3.0, -1.0, 0.5]), torch.tensor([2.0, -2.0])]
    loss_fn = _loss(model)
    if loss_fn is not None:
        loss = loss_fn([queries, docs], labels)
    else:  # manual MSE on scores
        pairs = [(q, d) for q, ds in zip(queries, docs, strict=False) for d in ds]
        features = model.preprocess(pairs)
        loss = ((model(features)["scores"].view(-1) - torch.cat(labels).tanh()) ** 2).mean()
    assert loss.requires_grad and torch.isfinite(loss)
    loss.backward()
    assert scorer.head.weight.grad is not None and layer.grad is not None
    optimizer.step()
    assert not torch.equal(scorer.head.weight.detach(), head_before)
    assert not torch.equal(layer.detach(), layer_before)


def test_cross_encoder_trainer_step(qwen3_ckpt, tmp_path):
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    try:
        from querit_st.losses import SoftLabelMSELoss as Loss
    except ImportError:  # pragma: no cover - losses.py not there yet
        from sentence_transformers.cross_encoder.losses import MSELoss as Loss
    model = load_querit_checkpoint(qwen3_ckpt, max_length=64, device="cpu")
    head_before = model[0].head.weight.detach().clone()
    data = Dataset.from_dict(
        {"query": ["w1", "w2", "w3", "w4"], "doc": ["w1 w5", "w9", "w3 w3 w8", "w7"], "score": [0.9, -0.5, 0.8, -0.9]}
    )
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    loss = Loss(model, activation_fn=nn.Identity())
    CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
    assert not torch.equal(model[0].head.weight.detach(), head_before)
    model.save(str(tmp_path / "trained"))  # the model card's token statistics go through preprocess
    assert (tmp_path / "trained" / "README.md").is_file()


def test_save_and_reload(qwen3_ckpt, tmp_path):
    model = load_querit_checkpoint(qwen3_ckpt, max_length=40, device="cpu", instruction="Find relevant passages")
    pairs = _pairs(5, seed=5)
    before = model.predict(pairs)
    model.save(str(tmp_path / "saved"))
    saved = tmp_path / "saved"
    assert is_querit_checkpoint(qwen3_ckpt) and not is_querit_checkpoint(saved)
    assert "auto_map" not in json.loads((saved / "config.json").read_text())  # native classes, no remote code
    assert (saved / "querit_head.safetensors").is_file() and (saved / "modules.json").is_file()
    assert json.loads((saved / "modules.json").read_text())[0]["type"] == "querit_st.decoder.QueritDecoderScorer"
    reloaded = QueritCrossEncoder(str(saved), device="cpu")  # no trust_remote_code
    assert isinstance(reloaded[0], QueritDecoderScorer)
    assert isinstance(reloaded.activation_fn, nn.Identity)
    assert reloaded[0].max_seq_length == 39 and reloaded[0].instruction == "Find relevant passages"
    assert np.abs(reloaded.predict(pairs) - before).max() < 1e-6
    # what mteb's QueritWrapper would give with the same instruction
    ref = ReferenceQuerit(qwen3_ckpt, max_length=40).predict(pairs, instruction="Find relevant passages")
    assert np.abs(before - ref).max() < 1e-5
    # CrossEncoder(path, max_length=...) reaches the module
    assert QueritCrossEncoder(str(saved), device="cpu", max_length=20)[0].max_seq_length == 20


def test_fresh_scorer_from_backbone(tmp_path):
    from transformers import AutoModel

    folder = tmp_path / "plain_qwen3"
    AutoModel.from_config(_qwen3_config()).save_pretrained(folder)
    _tokenizer(with_cls=False).save_pretrained(folder)
    with pytest.raises(QueritCheckpointError, match=r"no '\[CLS\]' token"):
        QueritDecoderScorer.from_backbone(folder, add_cls_token=False)
    scorer = QueritDecoderScorer.from_backbone(folder, max_seq_length=32)
    model = QueritCrossEncoder(modules=[scorer], device="cpu")
    assert isinstance(model.activation_fn, nn.Identity)  # not the sigmoid CrossEncoder defaults to
    scores = model.predict(_pairs(3))
    assert scores.shape == (3,) and np.all(np.abs(scores) <= 1)


def test_missing_head_is_a_clear_error(tmp_path):
    folder = build_released_checkpoint(tmp_path / "no_head", with_head=False)
    with pytest.raises(QueritCheckpointError, match="No 2-way Querit scoring head"):
        load_querit_checkpoint(folder, device="cpu")
    assert not is_querit_checkpoint(folder)
    # a separate head file is found
    torch.manual_seed(3)
    save_file({"weight": torch.randn(2, 32), "bias": torch.zeros(2)}, str(folder / "head.safetensors"))
    assert load_querit_checkpoint(folder, device="cpu").predict(_pairs(2)).shape == (2,)
    # a saved module folder without its head file
    saved = tmp_path / "saved"
    load_querit_checkpoint(folder, device="cpu").save(str(saved))
    (saved / "querit_head.safetensors").unlink()
    with pytest.raises(QueritCheckpointError, match="querit_head.safetensors is missing"):
        QueritCrossEncoder(str(saved), device="cpu")


def test_one_label_head_is_rejected(tmp_path):
    folder = build_released_checkpoint(tmp_path / "one_label", with_head=False)
    state = load_file(str(folder / "model.safetensors"))
    state["score.weight"] = torch.randn(1, 32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(QueritCheckpointError, match="2-way"):
        load_querit_checkpoint(folder, device="cpu")


def test_tokenizer_without_cls_is_a_clear_error(tmp_path):
    folder = build_released_checkpoint(tmp_path / "no_cls", with_cls=False)
    with pytest.raises(QueritCheckpointError, match=r"no '\[CLS\]' token"):
        load_querit_checkpoint(folder, device="cpu")


def test_unknown_architecture_needs_trust_remote_code(tmp_path):
    folder = build_released_checkpoint(tmp_path / "custom_type", kind="deepseek_v3")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "querit_moe"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(QueritCheckpointError, match="trust_remote_code=True"):
        load_querit_checkpoint(folder, device="cpu")
    model = load_querit_checkpoint(folder, device="cpu", model_type="deepseek_v3")
    assert type(model[0].backbone).__name__ == "DeepseekV3Model"


def test_mteb_model_meta_and_wrapper(qwen3_ckpt):
    pytest.importorskip("mteb")
    from datasets import Dataset
    from torch.utils.data import DataLoader

    from querit_st.decoder import QueritDecoderMTEBWrapper, querit_decoder_model_meta

    meta = querit_decoder_model_meta("Querit/Querit-4B")
    assert meta.loader is QueritDecoderMTEBWrapper and meta.name == "Querit/Querit-4B"
    assert meta.loader_kwargs["fp_options"] == "bfloat16" and meta.adapted_from == "Qwen/Qwen3-Embedding-4B"
    local = querit_decoder_model_meta(str(qwen3_ckpt), loader_kwargs={"fp_options": "float32", "max_length": 40})
    wrapper = local.load_model(device="cpu")
    pairs = _pairs(5, seed=6)
    instructions = ["Find relevant passages", "Judge the passage.", "Find relevant passages", "Judge the passage.", ""]
    q = Dataset.from_dict({"text": [p[0] for p in pairs], "instruction": instructions})
    d = Dataset.from_dict({"text": [p[1] for p in pairs]})
    scores = wrapper.predict(DataLoader(q, batch_size=2), DataLoader(d, batch_size=2), task_metadata=None,
                             hf_split="test", hf_subset="default")
    reference = ReferenceQuerit(qwen3_ckpt, max_length=40)
    ref = np.asarray([reference.predict([p], instruction=i)[0] for p, i in zip(pairs, instructions, strict=False)])
    diff = float(np.abs(scores - ref).max())
    _record("mteb wrapper", diff)
    assert diff < 1e-5


def test_decoder_does_not_import_cross_encoder_and_is_registered_explicitly():
    """No cycle: querit_st.decoder sits below querit_st.cross_encoder, which lists the decoder module classes itself
    (nothing patches QueritCrossEncoder at import time)."""
    import subprocess
    import sys

    code = (
        "import sys, querit_st.decoder as d; "
        "assert 'querit_st.cross_encoder' not in sys.modules, 'decoder imported cross_encoder'; "
        "import querit_st.cross_encoder as ce; "
        "assert ce.QueritCrossEncoder.__dict__['_module_classes']['querit_st.decoder.QueritDecoderScorer'] "
        "is d.QueritDecoderScorer"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    # old import paths keep working
    from querit_st.cross_encoder import QUERIT_INSTRUCTION, load_querit_checkpoint as home
    from querit_st.decoder import load_querit_checkpoint as alias
    from querit_st.prompts import QUERIT_INSTRUCTION as instruction

    assert alias is home and QUERIT_INSTRUCTION is instruction
    assert render_querit_text("q", "d") == f"{instruction} Query: q; Content: d"


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_fast_training_path_on_a_decoder_student(qwen3_ckpt, mode):
    from querit_st.losses import ScoreGapHingeLoss
    from querit_st.training import configure_fast_training, restore_model

    model = load_querit_checkpoint(qwen3_ckpt, max_length=64, device="cpu")
    loss = ScoreGapHingeLoss(model)
    configure_fast_training(loss, None, mode)
    pairs = _pairs(6, seed=3)
    queries = [pairs[0][0], pairs[3][0]]
    docs = [[d for _, d in pairs[:3]], [d for _, d in pairs[3:]]]
    labels = [torch.tensor([1.0, 0.2, -0.5]), torch.tensor([0.3, 0.9, 0.0])]
    value = loss([queries, docs], labels)
    value.backward()
    restore_model(loss)
    assert torch.isfinite(value)
    head = model[0].head.weight
    assert head.dtype == torch.float32 and head.grad is not None and head.grad.abs().sum() > 0


def test_fast_fp32_path_equals_plain_training_on_a_decoder_student(qwen3_ckpt):
    """The fast path's attention handles grouped-query attention (K/V heads shared by query heads) as the model's
    own attention does: the same loss with dropout off."""
    from querit_st.losses import ScoreGapHingeLoss
    from querit_st.training import configure_fast_training, restore_model

    model = load_querit_checkpoint(qwen3_ckpt, max_length=64, device="cpu")
    model.eval()
    pairs = _pairs(6, seed=4)
    inputs = [[pairs[0][0], pairs[3][0]], [[d for _, d in pairs[:3]], [d for _, d in pairs[3:]]]]
    labels = [torch.tensor([1.0, 0.2, -0.5]), torch.tensor([0.3, 0.9, 0.0])]
    values = []
    for mode in ("off", "fp32"):
        loss = ScoreGapHingeLoss(model)
        configure_fast_training(loss, None, mode)
        with torch.no_grad():
            values.append(float(loss(inputs, labels)))
        restore_model(loss)
    assert abs(values[0] - values[1]) < 1e-5, values
