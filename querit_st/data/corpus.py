"""In-memory corpora: the text a model sees for a document and the one ``corpus -> (ids, texts)`` check.

Every stage that takes a corpus (retriever, mining, teachers) accepts the same three shapes - BEIR
``{doc_id: {"title", "text"}}``, ``{doc_id: text}`` or a list of texts - and turns it into ids and texts here, so the
checks (None, a single string, empty, duplicate ids, empty texts) live once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from querit_st.utils import QueritInputError, check_text

Corpus = dict[str, dict[str, str]]


def doc_text(doc: dict[str, str] | str) -> str:
    """The text a model sees for a corpus entry: BEIR's convention, ``title + " " + text``.

    (This reproduces the shared data's published retriever baselines, e.g. MiniLM 0.846 on xquad-r-en.)
    """
    if isinstance(doc, str):
        return doc
    return f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()


def corpus_items(corpus: Any) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of a corpus given as ``{doc_id: {"title", "text"}}``, ``{doc_id: text}`` or a list of texts.

    A list gets ids ``"0"``, ``"1"``, ...; a mapping entry that is a dict becomes :func:`doc_text` of it.

    Raises:
        QueritInputError: the corpus is None, a single string or empty, has duplicate ids, or a text is not a
            non-empty string (the error names ``corpus[id]``).
    """
    if corpus is None:
        raise QueritInputError(
            "corpus is None; expected {doc_id: {'title', 'text'}}, {doc_id: text} or a list of texts"
        )
    if isinstance(corpus, str):
        raise QueritInputError("corpus must be a mapping or a list of texts, got a single string")
    if isinstance(corpus, Mapping):
        ids = [str(k) for k in corpus]
        texts = [v if isinstance(v, str) else doc_text(v) if isinstance(v, Mapping) else v for v in corpus.values()]
    else:
        texts = list(corpus)
        ids = [str(i) for i in range(len(texts))]
    if not texts:
        raise QueritInputError("corpus is empty; expected at least one document")
    if len(set(ids)) != len(ids):
        raise QueritInputError("corpus has duplicate document ids")
    for i, t in zip(ids, texts):
        check_text(t, f"corpus[{i!r}]")
    return ids, texts
