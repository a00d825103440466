"""The interpolation factors: ``t`` per parameter (gradients over layers, per-name overrides) and the sequential
SLERP schedule of an N-way merge from per-model weights, with the checks of both. Pure functions, no I/O.

Conventions (they follow mergekit, so a mergekit config translates one to one):

* **Gradient.** A list ``[t_0, ..., t_m]`` is spread piecewise-linearly over a position in ``[0, 1]``: parameters
  of numbered layer ``i`` (names containing ``layer.3.``, ``layers.3.``, ``h.3.``, ``block.3.`` or ``blocks.3.``)
  sit at ``i / (num_layers - 1)``, with ``num_layers`` = largest layer index + 1 (a single layer sits at 1, as in
  mergekit). Parameters outside the numbered layers follow mergekit's pre/post-weight rule: embedding tables (names
  containing ``embed``, or the ``wte``/``wpe``/``shared`` modules) come *before* the layers and use the gradient at
  position 0 (``t_0``); everything else (pooler, classifier head, final norm) comes *after* them and uses position
  1 (``t_m``).
* **Per-parameter overrides.** ``parameter_t={"classifier": 0.3, "embeddings": [0, 1]}``: the first key that is a
  substring of the parameter name wins (mergekit's ``filter``), its value is a scalar or a gradient.
* **N-way weights.** ``weights=[w_0, ..., w_{n-1}]`` are shares of the result (only their ratios count); the chain
  ``acc = slerp(t_k, acc, m_k)`` uses ``t_k = w_k / (w_0 + ... + w_k)`` (:func:`slerp_schedule`).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from querit_st.utils import QueritInputError

__all__ = [
    "TSetting",
    "check_t",
    "check_weights",
    "gradient_value",
    "layer_index",
    "layer_position",
    "num_layers",
    "slerp_schedule",
    "t_for_parameter",
]

TSetting = float | Sequence[float]

_LAYER_RE = re.compile(r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)(?:\.|$)")
_PRE_WEIGHT_RE = re.compile(r"embed|(?:^|\.)(?:wte|wpe|shared)(?:\.|$)")


def layer_index(name: str) -> int | None:
    """The transformer layer a parameter belongs to (``encoder.layer.3.`` / ``layers.3.`` / ``h.3.`` -> 3), else None."""
    m = _LAYER_RE.search(name)
    return int(m.group(1)) if m else None


def num_layers(keys: Iterable[str]) -> int:
    """Largest layer index among parameter names, plus one (0 without numbered layers)."""
    idx = [i for i in (layer_index(k) for k in keys) if i is not None]
    return max(idx) + 1 if idx else 0


def layer_position(name: str, num_layers: int) -> float:
    """Where a parameter sits on the ``[0, 1]`` gradient axis (mergekit's convention).

    Layer ``i`` of ``num_layers`` sits at ``i / (num_layers - 1)`` (at 1 when there is a single layer). Parameters
    outside the numbered layers are mergekit's pre-weights (embeddings: position 0) or post-weights (pooler,
    classifier head, final norm, LM head: position 1).
    """
    idx = layer_index(name)
    if idx is None:
        return 0.0 if _PRE_WEIGHT_RE.search(name) else 1.0
    if num_layers <= 1:
        return 1.0
    return min(idx / (num_layers - 1), 1.0)


def gradient_value(values: TSetting, position: float) -> float:
    """Evaluate a scalar or a gradient ``[v_0, ..., v_m]`` at ``position`` in ``[0, 1]`` (mergekit's rule).

    The list's points are evenly spaced over ``[0, 1]`` and values between them are linearly interpolated;
    at a point's position the value is that point's exactly.
    """
    if not isinstance(values, (list, tuple)):
        return float(values)
    vals = [float(v) for v in values]
    if len(vals) == 1:
        return vals[0]
    position = min(max(float(position), 0.0), 1.0)
    scaled = position * (len(vals) - 1)
    i0 = math.floor(scaled)
    i1 = min(len(vals) - 1, i0 + 1)
    frac = scaled - i0
    if frac == 0.0:
        return vals[i0]
    return (1.0 - frac) * vals[i0] + frac * vals[i1]


def t_for_parameter(
    name: str, t: TSetting, num_layers: int, parameter_t: Mapping[str, TSetting] | None = None
) -> float:
    """The interpolation factor for one parameter: the first ``parameter_t`` key that is a substring of ``name``
    wins, else ``t``; a list is evaluated as a gradient at :func:`layer_position`."""
    setting = t
    for pattern, value in (parameter_t or {}).items():
        if pattern in name:
            setting = value
            break
    return gradient_value(setting, layer_position(name, num_layers))


def check_t(t: Any, name: str = "t") -> float | list[float]:
    """``t`` as a float in ``[0, 1]`` or a non-empty list of them (a gradient); anything else is refused."""

    def scalar(v: Any, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise QueritInputError(f"{where} must be a number in [0, 1], got {v!r}")
        v = float(v)
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise QueritInputError(f"{where} must be in [0, 1], got {v!r}")
        return v

    if isinstance(t, (list, tuple)):
        if not t:
            raise QueritInputError(f"{name} is an empty list; give a number or a non-empty list of numbers")
        return [scalar(v, f"{name}[{i}]") for i, v in enumerate(t)]
    return scalar(t, name)


def check_weights(weights: Any, num_models: int | None = None) -> list[float]:
    """Per-model merge weights as floats: one per model, finite, positive (only their ratios count).

    Raises :class:`~querit_st.utils.QueritInputError` naming the problem: not a list of numbers, a length that
    differs from ``num_models``, a negative or non-finite weight, all weights zero, or one weight zero (a model
    with no share takes no part in the merge: leave it out of the list instead).
    """
    if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Iterable):
        raise QueritInputError(f"weights must be a list of numbers (one per model), got {weights!r}")
    ws: list[float] = []
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise QueritInputError(f"weights[{i}] must be a number, got {w!r}")
        ws.append(float(w))
    if num_models is not None and len(ws) != num_models:
        raise QueritInputError(
            f"got {len(ws)} weights for {num_models} models; give one weight per model, in the order of the models"
        )
    if len(ws) < 2:
        raise QueritInputError(f"need at least two weights (one per model), got {len(ws)}")
    for i, w in enumerate(ws):
        if not math.isfinite(w):
            raise QueritInputError(f"weights[{i}] must be a finite number, got {w!r}")
        if w < 0:
            raise QueritInputError(
                f"weights[{i}] is negative ({w!r}); weights are shares of the merge, give each >= 0"
            )
    if all(w == 0 for w in ws):
        raise QueritInputError(f"all weights are zero ({ws}); give each model a positive share")
    for i, w in enumerate(ws):
        if w == 0:
            raise QueritInputError(
                f"weights[{i}] is zero: that model would take no part in the merge; leave it out of the models instead"
            )
    return ws


def slerp_schedule(weights: Sequence[float]) -> list[float]:
    """The factors ``t_k = w_k / (w_0 + ... + w_k)``, ``k = 1..n-1``, of a sequential SLERP of ``n`` models.

    Merging ``acc = slerp(t_k, acc, m_k)`` in order with these factors gives model ``k`` the share ``w_k / sum(w)``
    of the result in the linear limit (the same schedule makes sequential *linear* interpolation an exact weighted
    mean): with equal weights, ``[1/2, 1/3, 1/4, ...]``. Weights are checked by :func:`check_weights`.
    """
    ws = check_weights(weights)
    out, total = [], ws[0]
    for w in ws[1:]:
        total += w
        out.append(w / total)
    return out
