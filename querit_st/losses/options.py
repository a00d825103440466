"""``check_loss_kwargs``: check a loss's options by name before any model exists (e.g. a config's ``loss_kwargs``).

The checks themselves are each loss's :meth:`~querit_st.losses.base.SoftLabelLoss.check_options`, which reads the
option names and defaults from the constructor's signature.
"""

from __future__ import annotations

from typing import Any

from querit_st.losses.base import SoftLabelLoss
from querit_st.losses.ScoreGapHingeLoss import ScoreGapHingeLoss
from querit_st.losses.SoftLabelKLLoss import SoftLabelKLLoss
from querit_st.losses.SoftLabelMSELoss import SoftLabelMSELoss
from querit_st.utils import QueritInputError

__all__ = ["LOSS_CLASSES", "check_loss_kwargs"]

LOSS_CLASSES: dict[str, type[SoftLabelLoss]] = {
    cls.__name__: cls for cls in (SoftLabelMSELoss, SoftLabelKLLoss, ScoreGapHingeLoss)
}


def check_loss_kwargs(loss: str | type, kwargs: Any) -> dict[str, Any]:
    """Check a loss's keyword options without a model (e.g. a config's ``loss_kwargs``, before any training).

    Args:
        loss: a loss class of this package or its name (``"ScoreGapHingeLoss"``).
        kwargs: the options, everything but the model.

    Returns:
        ``kwargs`` as a dict.

    Raises:
        QueritInputError: not a mapping, an unknown option name, or a bad value (as the constructor would raise).
    """
    cls = LOSS_CLASSES.get(loss) if isinstance(loss, str) else loss
    if cls not in LOSS_CLASSES.values():
        raise QueritInputError(f"unknown loss {loss!r}; expected one of {sorted(LOSS_CLASSES)}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise QueritInputError(f"{cls.__name__} options must be a mapping, got {type(kwargs).__name__}")
    cls.check_options(kwargs)
    return dict(kwargs)
