"""Query generator specs: :func:`make_query_generator` builds a generator from a name, a dict or an object, and
:func:`check_query_generator_spec` validates a spec (e.g. a config's) without loading a model."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from querit_st.querygen.seq2seq import Seq2SeqQueryGenerator
from querit_st.querygen.terms import TermQueryGenerator
from querit_st.utils import QueritInputError


def make_query_generator(spec: str | Mapping[str, Any] | None = "terms", **overrides: Any) -> Any:
    """A query generator from a spec.

    - ``None`` / ``"terms"``: :class:`TermQueryGenerator` with defaults.
    - any other string: a model folder or name for :class:`Seq2SeqQueryGenerator`.
    - a dict: ``{"type": "terms", ...kwargs}`` or ``{"type": "seq2seq", "model_name_or_path": ..., ...kwargs}``
      (``"model"`` is accepted for ``model_name_or_path``; a dict with a model and no type means seq2seq).
    - an object that already has ``generate`` is returned as is.

    Raises:
        QueritInputError: an unknown type or option name, or a bad option value.
    """
    if hasattr(spec, "generate") and not isinstance(spec, (str, Mapping)):
        return spec
    cls, kwargs = _resolve_spec(spec, overrides)
    return cls(**kwargs)


def check_query_generator_spec(spec: str | Mapping[str, Any] | None) -> None:
    """Validate a spec for :func:`make_query_generator` without loading a model (e.g. a config, before any work).

    Option names are checked for both kinds; a terms generator is built (cheap), so its values are checked too.
    """
    if hasattr(spec, "generate") and not isinstance(spec, (str, Mapping)):
        return
    cls, kwargs = _resolve_spec(spec, {})
    if cls is TermQueryGenerator:
        cls(**kwargs)


def _resolve_spec(spec: Any, overrides: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """The generator class and its keyword arguments for a spec (see :func:`make_query_generator`)."""
    if spec is None:
        spec = "terms"
    if isinstance(spec, str):
        if not spec.strip():
            raise QueritInputError("query generator spec is empty; use 'terms' or a model path")
        if spec.strip().lower() in ("terms", "term", "tfidf"):
            return TermQueryGenerator, _check_options(TermQueryGenerator, dict(overrides))
        return Seq2SeqQueryGenerator, _check_options(Seq2SeqQueryGenerator, {"model_name_or_path": spec, **overrides})
    if isinstance(spec, Mapping):
        kwargs = {**dict(spec), **overrides}
        kind = str(kwargs.pop("type", "") or "").lower()
        if "model" in kwargs:
            kwargs["model_name_or_path"] = kwargs.pop("model")
        if kind in ("", "seq2seq", "model", "causal", "chat") and "model_name_or_path" in kwargs:
            return Seq2SeqQueryGenerator, _check_options(Seq2SeqQueryGenerator, kwargs)
        if kind in ("", "terms", "term", "tfidf"):
            for name in ("num_terms", "span_length"):
                if name in kwargs:
                    value = kwargs[name]
                    if not isinstance(value, (list, tuple)) or len(value) != 2:
                        raise QueritInputError(f"query generator option {name} must be [min, max], got {value!r}")
                    kwargs[name] = tuple(value)
            return TermQueryGenerator, _check_options(TermQueryGenerator, kwargs)
        raise QueritInputError(f"unknown query generator type {kind!r}; expected 'terms' or 'seq2seq'")
    raise QueritInputError(f"query generator spec must be a string or dict, got {type(spec).__name__}")


def _check_options(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` if every name is a parameter of ``cls``, else an error listing the unknown ones."""
    params = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise QueritInputError(f"query generator {cls.__name__} has no option(s) {unknown}; expected some of {params}")
    return kwargs
