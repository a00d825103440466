"""Text helpers shared by every entry point: input checks, and the word / CJK tokenisation of BM25 and querygen."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from querit_st.utils.errors import QueritInputError


def check_text(value: Any, name: str) -> str:
    """Return ``value`` if it is a non-empty string, else raise an error that names the input."""
    if value is None:
        raise QueritInputError(f"{name} is None; expected a non-empty string")
    if not isinstance(value, str):
        raise QueritInputError(f"{name} must be a string, got {type(value).__name__}: {value!r:.80}")
    if not value.strip():
        raise QueritInputError(f"{name} is empty; expected a non-empty string")
    return value


# ---------------------------------------------------------------------- word and CJK tokenisation (teachers, querygen)
#: Characters of scripts written without spaces between words: kana, CJK ideographs (with extension blocks and
#: compatibility ideographs), Hangul syllables, Thai.
CJK_RE = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u0e00-\u0e7f\U00020000-\U0002ffff]"
)
WORD_RE = re.compile(r"\w+")


def is_cjk_char(ch: str) -> bool:
    """Characters of scripts written without spaces between words (Han, kana, Hangul syllables, Thai)."""
    return bool(CJK_RE.match(ch))


def split_cjk_bigrams(token: str) -> list[str]:
    """Split a ``\\w+`` token into runs: CJK runs become overlapping character bigrams, other runs stay whole."""
    if not CJK_RE.search(token):
        return [token]
    out: list[str] = []
    run, run_cjk = "", None
    for ch in token + " ":
        c = ch != " " and is_cjk_char(ch)
        if ch == " " or (run and c != run_cjk):
            if run:
                if run_cjk:
                    out.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
                else:
                    out.append(run)
            run = ""
        if ch != " ":
            run += ch
            run_cjk = c
    return out


def lexical_tokens(text: str) -> list[str]:
    """NFKC, lower-cased ``\\w+`` words with CJK runs cut into character bigrams (:func:`split_cjk_bigrams`)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [t for w in WORD_RE.findall(text) for t in split_cjk_bigrams(w)]
