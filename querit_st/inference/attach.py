"""Where a fast scorer plugs into a sentence-transformers ``CrossEncoder``: its ``Transformer`` module (whose
``.model`` is swapped) and the marker that records the mode applied (:func:`inference_mode_of`)."""

from __future__ import annotations

from typing import Any

from querit_st.utils import QueritInputError

__all__ = ["inference_mode_of", "set_inference_mode", "transformer_module"]

_MODE_ATTRIBUTE = "_querit_inference_mode"


def transformer_module(model: Any) -> Any:
    """The sentence-transformers ``Transformer`` module that holds the Hugging Face model (torch backend,
    sequence classification); anything else raises :class:`~querit_st.utils.QueritInputError`."""
    from sentence_transformers.base.modules import Transformer

    try:
        first = model[0]
    except Exception as exc:
        raise QueritInputError(f"expected a sentence-transformers CrossEncoder, got {type(model).__name__}") from exc
    if not isinstance(first, Transformer):
        raise QueritInputError(f"the CrossEncoder's first module is {type(first).__name__}, not a Transformer")
    if getattr(first, "backend", "torch") != "torch":
        raise QueritInputError(f"optimize_for_inference needs the torch backend, got backend={first.backend!r}")
    if getattr(first, "transformer_task", "sequence-classification") != "sequence-classification":
        raise QueritInputError(
            f"optimize_for_inference needs a sequence-classification CrossEncoder, got {first.transformer_task!r}"
        )
    return first


def inference_mode_of(model: Any) -> str | None:
    """The mode a model was optimised with (``None`` when it was not)."""
    return getattr(model, _MODE_ATTRIBUTE, None)


def set_inference_mode(model: Any, mode: str) -> None:
    """Record on ``model`` the mode it now scores with (read back by :func:`inference_mode_of`)."""
    setattr(model, _MODE_ATTRIBUTE, mode)
