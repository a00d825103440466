"""Stage fingerprints: every stage output folder carries the hash of the settings that made it, so a re-run with
changed settings retrains instead of silently reusing a stale model."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from querit_st.utils import atomic_write_json, config_hash

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
#: what a stage folder holds besides the fingerprint; all of it goes when the settings changed
STAGE_OUTPUTS = ("model", "checkpoints", "mined", "labelled", "adapter", "train_log.json")


@dataclass(frozen=True)
class Fingerprint:
    stage: str
    settings: dict[str, Any]

    @property
    def hash(self) -> str:
        return config_hash({"stage": self.stage, "settings": self.settings}, length=16)

    def write(self, folder: str | Path) -> None:
        atomic_write_json(Path(folder) / FINGERPRINT_FILE, {"stage": self.stage, "hash": self.hash,
                                                           "settings": self.settings})


def stage_fingerprint(stage: str, settings: dict[str, Any]) -> Fingerprint:
    return Fingerprint(stage, json.loads(json.dumps(settings, sort_keys=True, default=str)))


def read_fingerprint(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two settings mappings (for the retrain message)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def clear_stage(folder: Path) -> None:
    for name in (*STAGE_OUTPUTS, FINGERPRINT_FILE):
        p = folder / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def use_or_clear(folder: str | Path, fingerprint: Fingerprint, *, resume: bool = True, trust_unmarked: bool = False) -> bool:
    """True when ``folder/model`` exists and was made with these settings (reuse it). Otherwise False, and a
    folder made with other settings is cleared (model, checkpoints, mined lists) so the stage runs afresh.

    ``trust_unmarked``: a finished model with no fingerprint file is reused (cache folders whose name is already the
    settings' hash, made before fingerprints existed); elsewhere it is retrained."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    old = read_fingerprint(folder)
    if old is not None and old.get("hash") == fingerprint.hash:
        return resume and (folder / "model").is_dir()
    if old is None and not any((folder / n).exists() for n in STAGE_OUTPUTS):
        return False
    if old is None and trust_unmarked and resume and (folder / "model").is_dir():
        return True
    if old is None:
        why = "it has no settings fingerprint (made by an older version or another tool)"
    else:
        keys = changed_keys(old.get("settings", {}), fingerprint.settings)
        why = f"its settings differ ({', '.join(keys[:8]) or 'stage'})"
    logger.warning("%s: %s; retraining %s from scratch", folder, why, fingerprint.stage)
    clear_stage(folder)
    return False
