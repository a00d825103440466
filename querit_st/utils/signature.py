"""Whether a callable takes a keyword argument: how optional features (``instruction=``, ``groups=``) are passed
only to the models and score functions that accept them."""

from __future__ import annotations

import inspect
from typing import Any, Callable


def accepts_keyword(fn: Callable[..., Any], name: str, *, var_keyword: bool = False) -> bool:
    """True when ``fn`` has a parameter ``name`` (or, with ``var_keyword``, a ``**kwargs`` that would take it);
    False for callables whose signature cannot be read (builtins, some C extensions)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or (var_keyword and any(p.kind is p.VAR_KEYWORD for p in params.values()))
