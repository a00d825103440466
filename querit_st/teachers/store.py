"""``ScoreStore``: a teacher's pair scores on disk, so that a later run (or a run resumed after an interruption)
never scores a pair twice.

One SQLite file per scorer (the file name is a hash of what decides its scores: :meth:`Teacher.store_key`), one row
per pair (:func:`~querit_st.teachers.base.pair_key` -> score). Rows are committed in chunks as they are scored, so
an interrupted evaluation keeps what it finished; a reader never sees a partial row.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: keys per ``SELECT ... IN (...)`` (below SQLite's default limit on host parameters)
_LOOKUP_CHUNK = 900


class ScoreStore:
    """Persistent ``pair key -> score`` map in a SQLite file (created with its folder on first use).

    Args:
        path: the ``.sqlite`` file.

    Example::

        store = ScoreStore("~/.cache/querit_st/scores/ab12.sqlite")
        store.put({pair_key("q", "d"): 1.5})
        store.get([pair_key("q", "d")])  # {b"...": 1.5}
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (pair BLOB PRIMARY KEY, score REAL NOT NULL)")
        self._db.commit()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        """The stored scores of those ``keys`` that have one."""
        out: dict[bytes, float] = {}
        keys = list(keys)
        for i in range(0, len(keys), _LOOKUP_CHUNK):
            part = keys[i:i + _LOOKUP_CHUNK]
            rows = self._db.execute(
                f"SELECT pair, score FROM scores WHERE pair IN ({','.join('?' * len(part))})", part
            ).fetchall()
            out.update((bytes(k), float(v)) for k, v in rows)
        return out

    def put(self, items: Mapping[bytes, float] | Iterable[tuple[bytes, float]]) -> None:
        """Store scores (one transaction: all of them or none)."""
        rows = list(items.items() if isinstance(items, Mapping) else items)
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores (pair, score) VALUES (?, ?)",
                                 [(k, float(v)) for k, v in rows])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._db.close()
