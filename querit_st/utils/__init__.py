"""Shared helpers with one home each: errors, files, hashes, text checks, score normalisation, machine info, tables.

Every stage may import from here; nothing here imports a stage.
"""

from querit_st.utils.errors import QueritInputError, one_line
from querit_st.utils.hashing import config_hash, sha256_file, sha256_texts
from querit_st.utils.io import atomic_dir, atomic_write_bytes, atomic_write_json, cache_root, load_torch_weights
from querit_st.utils.signature import accepts_keyword
from querit_st.utils.text import check_text

__all__ = [
    "QueritInputError", "one_line", "config_hash", "sha256_file", "sha256_texts", "atomic_dir", "atomic_write_bytes",
    "atomic_write_json", "cache_root", "load_torch_weights", "check_text", "accepts_keyword",
]
