"""The one-pass scan of a BEIR jsonl file (``corpus.jsonl`` / ``queries.jsonl``) before it is loaded.

It catches what ``beir``'s loader lets through - lines that are not JSON, a missing or repeated ``_id``, a ``title`` or
``text`` that is not a string, empty entries - and names the file, the line and the id. Whitespace-only text counts
as empty. Documents may be allowed to be empty (they are then reported, and the loader skips them); queries may not.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from querit_st.utils import QueritInputError

logger = logging.getLogger(__name__)


@dataclass
class JsonlScan:
    """What :func:`scan_jsonl` found: the number of entries and the ids whose title and text are both empty."""

    count: int
    empty_ids: list[str] = field(default_factory=list)


def is_blank(value: object) -> bool:
    """``True`` for None, ``""`` and whitespace-only strings (an entry with no text a model could read)."""
    return value is None or (isinstance(value, str) and not value.strip())


def scan_jsonl(
    path: str | os.PathLike, kind: str, *, require_text: bool = True, allow_empty: bool = False
) -> JsonlScan:
    """Scan a jsonl file once: every line parses, has an ``_id`` that does not repeat and string title/text.

    Args:
        path: the jsonl file.
        kind: what a line is, for messages (``"document"``, ``"query"``).
        require_text: check that title + text is not empty (whitespace counts as empty).
        allow_empty: with ``require_text``, report empty entries in :attr:`JsonlScan.empty_ids` instead of raising;
            a file whose entries are *all* empty still raises.

    Raises:
        QueritInputError: naming the file, the line and the id.
    """
    path = Path(path)
    seen: set[str] = set()
    empty: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise QueritInputError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
            _id = row.get("_id") if isinstance(row, dict) else None
            if _id is None or _id == "":
                raise QueritInputError(f"{path}: line {lineno} has no '_id'; expected {{'_id': ..., 'text': ...}}")
            _id = str(_id)
            if _id in seen:
                raise QueritInputError(f"{path}: duplicate {kind} id {_id!r} at line {lineno}")
            seen.add(_id)
            for key in ("title", "text"):
                value = row.get(key)
                if value is not None and not isinstance(value, str):
                    raise QueritInputError(
                        f"{path}: {kind} {_id!r} (line {lineno}) has a {key!r} that is not a string "
                        f"({type(value).__name__})"
                    )
            if require_text and is_blank(row.get("text")) and is_blank(row.get("title")):
                if not allow_empty:
                    raise QueritInputError(f"{path}: {kind} {_id!r} (line {lineno}) has an empty text")
                empty.append(_id)
    if not seen:
        raise QueritInputError(f"{path}: no {kind} entries; expected at least one line")
    if empty and len(empty) == len(seen):
        raise QueritInputError(
            f"{path}: every {kind} ({len(seen)}) has an empty text; expected at least one with text"
        )
    return JsonlScan(len(seen), empty)


def warn_skipped(source: str | os.PathLike, skipped: list[str], total: int) -> None:
    """One warning for the empty documents left out of a corpus (none: nothing is logged)."""
    if skipped:
        logger.warning(
            "%s: skipped %d of %d documents whose title and text are empty (e.g. %r); they cannot be ranked by text",
            source, len(skipped), total, skipped[0],
        )


def check_jsonl_ids(path: str | os.PathLike, kind: str, require_text: bool = True) -> int:
    """Scan a jsonl file strictly (no empty entries allowed) and return its number of entries."""
    return scan_jsonl(path, kind, require_text=require_text).count


_check_jsonl_ids = check_jsonl_ids  # old private name, imported by querit_st.harness; use check_jsonl_ids
