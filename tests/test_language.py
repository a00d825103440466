"""The target's language from its texts alone (issue #20 item 4): real corpora of every shared language."""

from __future__ import annotations

import json
from itertools import islice

import pytest

from querit_st.data import detect_language, doc_text, language_distribution
from querit_st.utils import QueritInputError

# shared BEIR folder -> ISO 639-1 code of its language (lisa and time are written in capitals)
LANGUAGES = {
    "xquad-r-en": "en", "xquad-r-de": "de", "xquad-r-es": "es", "xquad-r-ru": "ru", "xquad-r-zh": "zh",
    "xquad-r-ar": "ar", "xquad-r-hi": "hi", "squad-it": "it", "tydi-ko": "ko", "tydi-sw": "sw", "jsquad-ja": "ja",
    "drcd-zh": "zh", "arcd-ar": "ar", "vaswani": "en", "cacm": "en", "lisa": "en", "time": "en",
}


def _texts(shared_data, name: str, limit: int = 200) -> list[str]:
    path = shared_data / name / "corpus.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open(path, encoding="utf-8") as f:
        return [doc_text(json.loads(line)) for line in islice(f, limit) if line.strip()]


@pytest.mark.parametrize("name, code", sorted(LANGUAGES.items()))
def test_shared_corpora(shared_data, name, code):
    texts = _texts(shared_data, name)
    assert detect_language(texts, max_texts=60) == code
    assert language_distribution(texts)[code] >= 0.8


def test_upper_case_text_is_still_english(shared_data):
    texts = [t.upper() for t in _texts(shared_data, "xquad-r-en", 50)]
    assert detect_language(texts) == "en"


def test_mixed_corpus(shared_data):
    de, en = _texts(shared_data, "xquad-r-de", 70), _texts(shared_data, "xquad-r-en", 30)
    mixed = [t for pair in zip(de, en) for t in pair] + de[30:]  # interleaved: every sample sees both
    assert detect_language(mixed) == "de"
    dist = language_distribution(mixed)
    assert list(dist)[:2] == ["de", "en"] and abs(sum(dist.values()) - 1) < 1e-9
    assert 0.6 <= dist["de"] <= 0.8 and 0.2 <= dist["en"] <= 0.4


def test_corpus_mapping_and_small_inputs():
    corpus = {"a": {"title": "Der Hund", "text": "schläft im Garten und die Katze trinkt Milch."}, "b": " "}
    assert detect_language(corpus) == "de"
    assert detect_language(["東京は日本の首都です。", "ひらがなとカタカナ"]) == "ja"
    assert detect_language(["한국어 문장입니다."]) == "ko"
    assert detect_language(["北京是中国的首都。"]) == "zh"


def test_sample_is_bounded_and_deterministic():
    from querit_st.data.language import sample_texts

    texts = [f"text {i}" for i in range(1000)]
    sample = sample_texts(texts, 200)
    assert len(sample) == 200 and sample[0] == "text 0" and sample[-1] == "text 999"
    assert sample == sample_texts(texts, 200)
    assert language_distribution(texts * 3, max_texts=7) == language_distribution(texts * 3, max_texts=7)


@pytest.mark.parametrize("bad, message", [
    ([], "texts is empty"), (["", "  "], "every text is blank"), ("just one string", "list of strings"),
    (None, "list of strings"), (["ok", 3], r"texts\[1\] must be a string"),
])
def test_bad_input(bad, message):
    with pytest.raises(QueritInputError, match=message):
        detect_language(bad)
