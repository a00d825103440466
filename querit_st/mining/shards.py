"""Mined shards on disk: the row schema, atomic parquet shards, manifests, and reading a mining folder back.

A mining folder holds ``shard-00000.parquet``, ... (each written atomically) and one ``manifest*.json`` per worker
listing its complete shards and the run's configuration hash; :func:`load_mined_dataset` concatenates every
worker's shards in shard order.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from querit_st.utils import QueritInputError, atomic_write_bytes

__all__ = [
    "MINED_COLUMNS",
    "FORMAT_VERSION",
    "mined_features",
    "shard_name",
    "write_shard",
    "rows_to_dataset",
    "read_shards",
    "mining_files",
    "clear_mining_files",
    "read_manifests",
    "load_mined_dataset",
]

MINED_COLUMNS = ("query_id", "query", "documents", "doc_ids", "scores", "source_doc_id")
FORMAT_VERSION = 1
_SHARD_FMT = "shard-{:05d}.parquet"


def mined_features() -> Any:
    """The ``datasets.Features`` of a mined row (the columns of :data:`MINED_COLUMNS`)."""
    from datasets import Features, List, Value

    return Features({
        "query_id": Value("string"),
        "query": Value("string"),
        "documents": List(Value("string")),
        "doc_ids": List(Value("string")),
        "scores": List(Value("float64")),
        "source_doc_id": Value("string"),
    })


def shard_name(k: int) -> str:
    """File name of global shard ``k``."""
    return _SHARD_FMT.format(k)


def write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write mined rows as one parquet shard, atomically (a kill leaves the old file or none, never a torn one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=mined_features().arrow_schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def rows_to_dataset(rows: list[dict[str, Any]]) -> Any:
    """Mined rows as an in-memory ``datasets.Dataset`` with the mined schema."""
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(pa.Table.from_pylist(rows, schema=mined_features().arrow_schema)))


def read_shards(paths: list[Path]) -> Any:
    """The shards' rows concatenated in the given order, as one ``datasets.Dataset``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.table import InMemoryTable

    schema = mined_features().arrow_schema
    tables = []
    for p in paths:
        try:
            tables.append(pq.read_table(p).cast(schema))
        except Exception as e:  # a shard is written atomically, so this means outside interference
            raise QueritInputError(f"mined shard {str(p)!r} is unreadable ({e}); rerun with resume=False") from e
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return Dataset(InMemoryTable(table))


def mining_files(folder: Path) -> list[Path]:
    """A folder's mining files: shards, manifests and the temp files of killed atomic writes."""
    pats = ("shard-*.parquet", "manifest*.json", ".shard-*.tmp", ".manifest*.tmp")
    return sorted({p for pat in pats for p in folder.glob(pat)})


def clear_mining_files(output_dir: str | os.PathLike) -> int:
    """Delete a folder's mining files (shards, manifests, temp files of killed writes); other files stay.

    What ``resume=False`` does first. With several workers sharing a folder, call it once (one process) before they
    start, not per worker: a worker clearing the folder would delete the others' shards. Returns the count deleted.
    """
    folder = Path(output_dir)
    files = mining_files(folder) if folder.is_dir() else []
    for p in files:
        p.unlink(missing_ok=True)
    return len(files)


def read_manifests(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``manifest*.json`` of a folder, parsed, in name order."""
    out = []
    for p in sorted(folder.glob("manifest*.json")):
        try:
            out.append((p, json.loads(p.read_text(encoding="utf-8"))))
        except (OSError, json.JSONDecodeError) as e:
            raise QueritInputError(f"mining manifest {str(p)!r} is unreadable ({e}); rerun with resume=False") from e
    return out


def load_mined_dataset(output_dir: str | os.PathLike) -> Any:
    """All shards of a mining folder (every worker's) concatenated in shard order.

    Raises:
        QueritInputError: no manifest, manifests of different configurations, or shards still missing.
    """
    folder = Path(output_dir)
    manifests = read_manifests(folder) if folder.is_dir() else []
    if not manifests:
        raise QueritInputError(f"{str(folder)!r} holds no mining manifest (manifest*.json)")
    hashes = {m["config_hash"] for _, m in manifests}
    if len(hashes) != 1:
        raise QueritInputError(f"{str(folder)!r} mixes mining runs of different configurations: {sorted(hashes)}")
    num_shards = manifests[0][1]["num_shards"]
    complete = {name for _, m in manifests for name in m.get("complete", [])}
    names = [shard_name(k) for k in range(num_shards)]
    missing = [n for n in names if n not in complete or not (folder / n).is_file()]
    if missing:
        raise QueritInputError(
            f"{str(folder)!r}: {len(missing)} of {num_shards} shards are not complete yet (e.g. {missing[0]}); "
            "run the missing workers (or mine_soft_labels with the same arguments) to finish them"
        )
    return read_shards([folder / n for n in names])
