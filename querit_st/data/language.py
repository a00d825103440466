"""A corpus's language from its texts alone (ISO 639-1 codes: ``"en"``, ``"de"``, ``"zh"``, ...).

A bounded, deterministic sample of texts (at most ``max_texts``, spread evenly over the corpus, each cut to
``max_chars``) is classified one by one and each text votes for its language with the classifier's confidence (so
the few short titles it is unsure about hardly count). The classifier is ``py3langid`` (a naive Bayes
byte n-gram model shipped inside the package; no download), restricted to the languages that have a two-letter
code. Two things are done around it:

- text written mostly in capitals (old test collections such as LISA or TIME) is lower-cased first, since the model
  was trained on ordinary case;
- Chinese, Japanese and Korean are told apart by their scripts, which is exact where n-grams are not: text that is
  mostly CJK is Korean when Hangul outnumbers Han characters, Japanese when it has kana, otherwise Chinese.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from querit_st.data.corpus import doc_text
from querit_st.utils import QueritInputError

MAX_TEXTS = 200
MAX_CHARS = 500
CJK_SHARE = 0.3  # a text is decided by script when at least this share of its letters is Han, kana or Hangul
KANA_SHARE = 0.05  # ... and is Japanese when at least this share of those CJK letters is kana


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    # only ISO 639-1 answers: dialects and languages without a two-letter code (arz, wuu, pcm, ...) fall to the
    # nearest two-letter language (ar, zh, en, ...); "zxx" (no linguistic content) goes too
    identifier.set_languages([lang for lang in identifier.labels if len(lang) == 2])
    return identifier


def _script(ch: str) -> str | None:
    """``"han"``, ``"kana"``, ``"hangul"`` or None for one character."""
    o = ord(ch)
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9D:
        return "kana"
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "hangul"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F:
        return "han"
    return None


def cjk_language(text: str) -> str | None:
    """``"zh"``, ``"ja"`` or ``"ko"`` when ``text`` is mostly written in CJK scripts, else None."""
    counts = Counter(_script(c) for c in text if c.isalpha())
    letters = sum(counts.values())
    cjk = counts["han"] + counts["kana"] + counts["hangul"]
    if not letters or cjk < CJK_SHARE * letters:
        return None
    if counts["hangul"] > counts["han"]:
        return "ko"
    if counts["kana"] >= KANA_SHARE * cjk:
        return "ja"
    return "zh"


def _normalise(text: str) -> str:
    cased = [c for c in text if c.isalpha() and (c.isupper() or c.islower())]
    if cased and sum(c.isupper() for c in cased) > 0.5 * len(cased):
        return text.lower()
    return text


def classify_text(text: str, max_chars: int = MAX_CHARS) -> tuple[str, float]:
    """``(language code, confidence)`` of one text (its first ``max_chars`` characters)."""
    text = text[:max_chars]
    cjk = cjk_language(text)
    if cjk is not None:
        return cjk, 1.0
    lang, conf = _identifier().classify(_normalise(text))
    return str(lang), float(conf)


def _as_texts(texts: Any) -> list[str]:
    if texts is None or isinstance(texts, (str, bytes)):
        raise QueritInputError(
            f"texts must be a list of strings or a corpus mapping, got {type(texts).__name__}"
        )
    values = list(texts.values()) if isinstance(texts, Mapping) else list(texts)
    out: list[str] = []
    for i, v in enumerate(values):
        if isinstance(v, Mapping):
            v = doc_text(v)
        if not isinstance(v, str):
            raise QueritInputError(f"texts[{i}] must be a string, got {type(v).__name__}")
        out.append(v)
    if not any(t.strip() for t in out):
        raise QueritInputError(
            "texts is empty (or every text is blank); detecting a language needs at least one non-empty text"
        )
    return out


def sample_texts(texts: Sequence[str], max_texts: int = MAX_TEXTS) -> list[str]:
    """At most ``max_texts`` non-blank texts spread evenly over ``texts`` (deterministic, first and last included)."""
    nonblank = [t for t in texts if t.strip()]
    n = len(nonblank)
    if n <= max_texts:
        return nonblank
    if max_texts == 1:
        return nonblank[:1]
    picks = sorted({round(i * (n - 1) / (max_texts - 1)) for i in range(max_texts)})
    return [nonblank[i] for i in picks]


def _votes(texts: Any, max_texts: int, max_chars: int) -> tuple[dict[str, float], Counter[str]]:
    """Per language: the summed confidence of the sampled texts classified as it, and their number."""
    if max_texts < 1 or max_chars < 1:
        raise QueritInputError(f"max_texts and max_chars must be >= 1, got {max_texts} and {max_chars}")
    weight: dict[str, float] = {}
    count: Counter[str] = Counter()
    for text in sample_texts(_as_texts(texts), max_texts):
        lang, conf = classify_text(text, max_chars)
        weight[lang] = weight.get(lang, 0.0) + conf
        count[lang] += 1
    return weight, count


def language_distribution(
    texts: Sequence[str] | Mapping[str, Any], *, max_texts: int = MAX_TEXTS, max_chars: int = MAX_CHARS
) -> dict[str, float]:
    """``{language code: share}``, largest first (shares sum to 1), for a mixed corpus.

    A share is the language's part of the confidence-weighted vote over the sampled texts: for texts long enough to
    be classified surely it is the fraction of texts in that language, while short, unsure texts (a title of three
    words) count for little.

    Args:
        texts: the texts (or a corpus ``{doc_id: {"title", "text"} | text}``).
        max_texts: how many texts are sampled, evenly spread.
        max_chars: how much of each text is read.
    """
    weight, count = _votes(texts, max_texts, max_chars)
    total = sum(weight.values())
    if total <= 0:  # every text featureless: fall back to counting
        weight, total = {lang: float(n) for lang, n in count.items()}, float(sum(count.values()))
    order = sorted(weight, key=lambda lang: (-weight[lang], -count[lang], lang))
    return {lang: weight[lang] / total for lang in order}


def detect_language(
    texts: Sequence[str] | Mapping[str, Any], *, max_texts: int = MAX_TEXTS, max_chars: int = MAX_CHARS
) -> str:
    """The ISO 639-1 code of the main language of ``texts`` (``"en"``, ``"de"``, ``"zh"``, ...).

    The language with the largest confidence-weighted vote over a sample of at most ``max_texts`` texts (see
    :func:`language_distribution`).

    Raises:
        QueritInputError: no texts, only blank texts, or a text that is not a string.

    Example::

        >>> detect_language(["Der Hund schläft im Garten.", "Die Katze trinkt Milch."])
        'de'
    """
    return next(iter(language_distribution(texts, max_texts=max_texts, max_chars=max_chars)))
