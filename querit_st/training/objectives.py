"""The config's loss names and the loss object each one builds."""

from __future__ import annotations

from typing import Any

#: config name -> loss class in :mod:`querit_st.losses`
LOSSES: dict[str, str] = {"hinge": "ScoreGapHingeLoss", "kl": "SoftLabelKLLoss", "mse": "SoftLabelMSELoss"}


def build_loss(model: Any, spec: Any) -> Any:
    """The loss ``spec.loss`` names (a :class:`querit_st.pipeline.config.TrainSpec`), with ``spec.loss_kwargs``."""
    from querit_st import losses

    return getattr(losses, LOSSES[spec.loss])(model, **spec.loss_kwargs)
