"""Query-generation tokenisation: word units with source offsets, CJK characters as units, terms and joining.

A document is cut into :class:`Unit` s: ``\\w+`` words (inner apostrophes / hyphens kept), and in character mode
(scripts written without spaces) single CJK characters. Terms are non-CJK words and bigrams of adjacent CJK
characters; :func:`join_units` rebuilds text, with no space between two CJK characters adjacent in the source.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from querit_st.utils.lang import writes_without_spaces
from querit_st.utils.text import is_cjk_char

TOKEN_RE = re.compile(r"\w+(?:['’\-]\w+)*")


def normalize_query(text: str) -> str:
    """Text used for deduplication and triviality checks: NFKC, case-folded, word characters only, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(TOKEN_RE.findall(text))


@dataclass
class Unit:
    """One word (or, in character mode, one CJK character) of a document."""

    text: str  # surface form
    key: str  # lower-cased form for statistics
    cjk: bool
    start: int = 0  # character offsets in the (NFKC-normalised) text
    end: int = 0


def split_units(text: str, char_mode: bool) -> list[Unit]:
    """Word units of a document; in character mode runs of CJK characters are split into single characters."""
    text = unicodedata.normalize("NFKC", text)
    out: list[Unit] = []
    for m in TOKEN_RE.finditer(text):
        tok, base = m.group(0), m.start()
        if not char_mode or not any(is_cjk_char(c) for c in tok):
            out.append(Unit(tok, tok.casefold(), False, base, m.end()))
            continue
        run, run_start = "", 0
        for j, c in enumerate(tok):
            if is_cjk_char(c):
                if run:
                    out.append(Unit(run, run.casefold(), False, base + run_start, base + j))
                    run = ""
                out.append(Unit(c, c, True, base + j, base + j + 1))
            else:
                if not run:
                    run_start = j
                run += c
        if run:
            out.append(Unit(run, run.casefold(), False, base + run_start, base + len(tok)))
    return out


def adjacent_cjk(a: Unit, b: Unit) -> bool:
    """Two CJK characters with nothing between them in the source."""
    return a.cjk and b.cjk and a.end == b.start


def join_units(units: Sequence[Unit]) -> str:
    """Join units with spaces, except between two CJK characters adjacent in the source text."""
    parts: list[str] = []
    prev: Unit | None = None
    for u in units:
        if prev is not None and not adjacent_cjk(prev, u):
            parts.append(" ")
        parts.append(u.text)
        prev = u
    return "".join(parts)


def is_char_mode(text: str, language: str | None) -> bool:
    """Whether to cut ``text`` into characters: its language is written without spaces (Chinese, Japanese, Korean,
    Thai) or, with no language given, more than 30 % of its letters are CJK characters."""
    if language is not None:
        return writes_without_spaces(language)
    letters = [c for c in text if c.isalnum()]
    if not letters:
        return False
    return sum(is_cjk_char(c) for c in letters) / len(letters) > 0.3


def unit_terms(units: Sequence[Unit]) -> list[tuple[str, int, int]]:
    """``(term key, start unit, end unit)``: non-CJK words, and bigrams of consecutive CJK characters."""
    out = []
    for i, u in enumerate(units):
        if not u.cjk:
            out.append((u.key, i, i + 1))
        elif i + 1 < len(units) and adjacent_cjk(u, units[i + 1]):
            out.append((u.key + units[i + 1].key, i, i + 2))
        elif i == 0 or not adjacent_cjk(units[i - 1], u):  # an isolated CJK character
            out.append((u.key, i, i + 1))
    return out
