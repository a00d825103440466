"""Shared fixtures: tiny random models built in-process (no downloads) and the shared BEIR data."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# Tiny models are dominated by threading overhead; one thread is both faster and steadier on 2 shared cores.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` loaded as a module (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DATA_ROOT = Path(os.environ.get("QUERIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _vocab() -> list[str]:
    words = """the a of and to in is was for on that with as by at from his her it an were are which this be or
    has had not but they their also its one after who first new two been more other into than when all most
    only some time would over such there many can may these through during between years city university
    world war team state national year people made game season used known later including high school
    computer data system energy field electric magnetic measurement theory equation frequency wave current
    power circuit method results linear design temperature super bowl football league points score""".split()
    chars = list(string.ascii_lowercase + string.digits + ".,;:?!'-()")
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen, out = set(), []
    for t in specials + words + chars + pieces:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def build_tiny_bert(folder: Path, *, num_labels: int | None = 1, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """A tiny random BERT (cross-encoder head when num_labels is set, plain encoder otherwise) + tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(_vocab()) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True, model_max_length=128)  # transformers 5: vocab=, not vocab_file=
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(_vocab()), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=160, num_labels=num_labels or 1)
    model = BertForSequenceClassification(cfg) if num_labels else BertModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory) -> Path:
    """Folder of a tiny random BERT cross-encoder (1 logit) loadable by ``CrossEncoder(path)``."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_ce"), num_labels=1)


@pytest.fixture(scope="session")
def tiny_embedding_dir(tmp_path_factory) -> Path:
    """Folder of a tiny random SentenceTransformer (BERT + mean pooling + normalise)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    raw = build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_raw"), num_labels=None)
    t = Transformer(str(raw), max_seq_length=64)
    st = SentenceTransformer(modules=[t, Pooling(t.get_embedding_dimension(), "mean"), Normalize()])
    out = tmp_path_factory.mktemp("tiny_st")
    st.save(str(out))
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.skip(f"shared data not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture()
def tiny_config(tiny_embedding_dir, shared_data, tmp_path) -> Path:
    """A pipeline config with tiny models, small slices of the shared data and 4 training steps per stage."""
    import yaml

    train = {"loss": "hinge", "max_steps": 4, "batch_size": 2, "learning_rate": 1e-3, "save_steps": 2, "logging_steps": 1}
    cfg = {
        "retriever": str(tiny_embedding_dir),
        "backbone": str(tiny_embedding_dir),
        "max_length": 64,
        "data_root": str(shared_data),
        "stage1_cache": str(tmp_path / "stage1"),
        "teachers": [{"type": "embedding", "model": str(tiny_embedding_dir)}, {"type": "bm25"}],
        "pretrain": {"datasets": ["xquad-r-en"], "top_k": 10, "num_candidates": 4, "max_queries_per_dataset": 8, "train": train},
        "adapt": {"num_queries": 10, "top_k": 10, "num_candidates": 4, "seeds": [0], "train": train},
        "merge": {"t": 0.5},
        "evaluate": {"top_k": 10, "fusion_weight": 1.0},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def varied_corpus(n: int = 40) -> list[dict]:
    """Physics-like abstracts: varied enough for the term query generator (seeded)."""
    import random

    rng = random.Random(0)
    words = ("quantum laser plasma electron magnetic crystal photon neutron thermal optical spectrum lattice "
             "scattering resonance diffusion velocity pressure density gradient field wave particle energy "
             "momentum radiation absorption emission frequency interference polarization conductivity").split()
    return [{"_id": f"d{i}", "title": "", "text": " ".join(rng.choice(words) for _ in range(14))} for i in range(n)]
