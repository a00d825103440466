"""Synthetic queries from a target corpus: the label-free half of domain adaptation.

Each generated query remembers the document it came from (``doc_id``), which mining may keep as a known positive.
Two generators share one interface, ``generate(corpus, num_queries_per_doc=1, max_docs=None) -> [{"query_id",
"query", "doc_id"}, ...]``, and the same post-processing (:class:`QueryFilter`: deduplication on normalised text and
removal of trivial queries):

- :class:`TermQueryGenerator` (:mod:`~querit_st.querygen.terms`): model-free and offline. It mixes *salient-term*
  queries (terms sampled in proportion to their TF-IDF weight in the document, computed over the corpus, kept in the
  document's word order) and *span* queries (a contiguous 4-12 word window, favouring the opening span, which in
  abstracts and short passages often acts as a title). It works on the document's own tokens, so a query is always
  in the document's language; scripts written without spaces (Chinese, Japanese, Thai, Korean syllables) are
  handled as character sequences: salient terms are character bigrams, spans are character windows.
- :class:`Seq2SeqQueryGenerator` (:mod:`~querit_st.querygen.seq2seq`): a transformers model, either doc2query-T5
  style (``AutoModelForSeq2SeqLM``) or an instruction-tuned chat model (``AutoModelForCausalLM`` +
  ``apply_chat_template``, asked to write the query in the document's language), for when such a model is available
  locally.

The package's modules, in the order they build on each other: :mod:`~querit_st.querygen.tokens` (word / CJK units),
:mod:`~querit_st.querygen.base` (corpus reader, :class:`CorpusStats`, :class:`QueryFilter`, the shared
:class:`QueryGenerator` loop), the two generators, :mod:`~querit_st.querygen.factory` (:func:`make_query_generator`,
:func:`check_query_generator_spec`). ``stable_seed`` lives in :mod:`querit_st.utils.hashing` and is re-exported here.
"""

from querit_st.querygen.base import CorpusStats, QueryFilter, QueryGenerator, normalize_corpus
from querit_st.querygen.factory import check_query_generator_spec, make_query_generator
from querit_st.querygen.seq2seq import DEFAULT_CHAT_PROMPT, DEFAULT_SEQ2SEQ_PROMPT, Seq2SeqQueryGenerator
from querit_st.querygen.terms import TermQueryGenerator
from querit_st.querygen.tokens import normalize_query
from querit_st.utils.hashing import stable_seed

__all__ = [
    "QueryFilter",
    "CorpusStats",
    "QueryGenerator",
    "TermQueryGenerator",
    "Seq2SeqQueryGenerator",
    "DEFAULT_SEQ2SEQ_PROMPT",
    "DEFAULT_CHAT_PROMPT",
    "make_query_generator",
    "check_query_generator_spec",
    "normalize_query",
    "normalize_corpus",
    "stable_seed",
]
