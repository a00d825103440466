"""The data stage: BEIR folders and other corpus files in, validated python dicts out (the ONE corpus reader).

- :mod:`querit_st.data.corpus` - ``doc_text`` and ``corpus_items`` (the one ``corpus -> (ids, texts)`` check).
- :mod:`querit_st.data.checks` - the one-pass jsonl scan (ids, JSON, empty documents).
- :mod:`querit_st.data.beir` - BEIR folders: ``load_beir``, ``load_corpus``, ``BeirData``, ``data_checksum``,
  ``corpus_checksum``.
- :mod:`querit_st.data.files` - JSONL / CSV / Parquet / saved Hugging Face datasets: ``load_corpus_file``.
- :mod:`querit_st.data.language` - the corpus's language from its texts: ``detect_language``.
"""

from querit_st.data.beir import (
    BeirData, Qrels, Queries, corpus_checksum, data_checksum, default_data_root, load_beir, load_corpus,
)
from querit_st.data.checks import _check_jsonl_ids, check_jsonl_ids
from querit_st.data.corpus import Corpus, corpus_items, doc_text
from querit_st.data.files import load_corpus_file
from querit_st.data.language import detect_language, language_distribution

__all__ = [
    "BeirData", "Corpus", "Queries", "Qrels", "check_jsonl_ids", "corpus_checksum", "corpus_items", "data_checksum",
    "default_data_root", "detect_language", "doc_text", "language_distribution", "load_beir", "load_corpus",
    "load_corpus_file",
]
