"""Languages: the one table of ISO 639-1 codes and the language names BM25's Snowball stemmers (PyStemmer) use.

>>> language_name("de"), language_name("German"), language_code("russian"), language_code("zh")
('german', 'german', 'ru', 'zh')
"""

from __future__ import annotations

#: ISO 639-1 code -> language name as PyStemmer spells its algorithms (a name also for languages it has no
#: stemmer for, e.g. Chinese). ``zh-cn`` / ``cn`` are accepted spellings of Chinese.
LANGUAGES: dict[str, str] = {
    "en": "english", "de": "german", "es": "spanish", "ru": "russian", "fr": "french", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "ar": "arabic", "hi": "hindi", "el": "greek", "tr": "turkish",
    "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish", "hu": "hungarian", "ro": "romanian",
    "id": "indonesian", "ga": "irish", "lt": "lithuanian", "ne": "nepali", "fa": "persian", "pl": "polish",
    "sr": "serbian", "ta": "tamil", "ca": "catalan", "cs": "czech", "eu": "basque", "hy": "armenian",
    "et": "estonian", "zh": "chinese", "ja": "japanese", "ko": "korean", "th": "thai", "vi": "vietnamese",
    "sw": "swahili", "zh-cn": "chinese", "cn": "chinese",
}

#: language name -> its ISO 639-1 code (the two-letter code, not the ``zh-cn`` / ``cn`` spellings).
LANGUAGE_CODES: dict[str, str] = {}
for _code, _name in LANGUAGES.items():
    if len(_code) == 2 and _code != "cn":
        LANGUAGE_CODES.setdefault(_name, _code)
del _code, _name

#: Languages written without spaces between words (their text is handled as character sequences).
NO_SPACE_LANGUAGE_CODES: frozenset[str] = frozenset({"zh", "ja", "ko", "th"})


def language_name(code_or_name: str) -> str:
    """The language name for an ISO code (``"de"`` -> ``"german"``); any other input lower-cased and stripped."""
    key = code_or_name.strip().lower()
    return LANGUAGES.get(key, key)


def language_code(name_or_code: str) -> str:
    """The ISO 639-1 code for a language name or code (``"German"`` / ``"de"`` -> ``"de"``, ``"zh-cn"`` -> ``"zh"``;
    a region tag such as ``"zh-tw"`` / ``"pt_BR"`` gives its language's code); other input lower-cased and stripped."""
    key = name_or_code.strip().lower()
    code = LANGUAGE_CODES.get(LANGUAGES.get(key, key))
    if code is not None:
        return code
    primary, sep, _ = key.replace("_", "-").partition("-")
    return primary if sep and primary in LANGUAGES else key


def writes_without_spaces(language: str) -> bool:
    """Whether a language (code or name) is written without spaces between words (Chinese, Japanese, Korean, Thai)."""
    return language_code(language) in NO_SPACE_LANGUAGE_CODES
