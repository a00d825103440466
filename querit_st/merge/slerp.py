"""The SLERP math (like mergekit's ``slerp``), as pure functions on tensors and numbers; no I/O.

SLERP of two tensors is a linear combination ``c0 * v0 + c1 * v1`` whose coefficients depend only on their dot
product and norms (:func:`slerp_coefficients`). A chain of SLERPs over ``n`` tensors is therefore a linear
combination of the inputs as well, with coefficients that follow from their Gram matrix
(:func:`sequential_coefficients`): that is what lets the merge read every tensor in two passes (dot products, then
the output) whatever the number of models, without materialising intermediate models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import torch

from querit_st.utils import QueritInputError

__all__ = [
    "CHUNK_ELEMENTS",
    "DOT_THRESHOLD",
    "EPS",
    "combine",
    "compute_dtype",
    "flat_blocks",
    "gram",
    "sequential_coefficients",
    "slerp",
    "slerp_coefficients",
]

EPS = 1e-8
DOT_THRESHOLD = 0.9995
#: Tensors with more elements than this are streamed in row blocks of about this many elements (4 MiB in fp32).
CHUNK_ELEMENTS = 1 << 20


def slerp_coefficients(
    t: float, dot: float, norm0: float, norm1: float, eps: float = EPS, dot_threshold: float = DOT_THRESHOLD
) -> tuple[float, float]:
    """The coefficients ``(c0, c1)`` with ``slerp(t, v0, v1) == c0 * v0 + c1 * v1``.

    Exactly mergekit's rule: the cosine of the angle is computed from the tensors normalised by their norms (a norm
    at or below ``eps`` is left alone), near-colinear pairs (``|cos| > dot_threshold``) fall back to linear
    interpolation, and the spherical weights are applied to the *original* (unnormalised) tensors.
    """
    if t == 0:
        return 1.0, 0.0
    if t == 1:
        return 0.0, 1.0
    # dot / (|v0| |v1|): the product keeps the result (and the branch taken) symmetric in (v0, v1).
    cos = dot / ((norm0 if norm0 > eps else 1.0) * (norm1 if norm1 > eps else 1.0))
    if not math.isfinite(cos) or abs(cos) > dot_threshold:
        return 1.0 - t, t
    theta = math.acos(max(-1.0, min(1.0, cos)))
    sin_theta = math.sin(theta)
    return math.sin((1.0 - t) * theta) / sin_theta, math.sin(t * theta) / sin_theta


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if an input is float64, else float32 (the precision the interpolation runs in)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def gram(blocks: Iterable[Sequence[torch.Tensor]], n: int) -> list[list[float]]:
    """Pairwise dot products of ``n`` tensors given as aligned blocks, accumulated in float64."""
    g = [[0.0] * n for _ in range(n)]
    for block in blocks:
        flat = [x.reshape(-1).to(torch.float64) for x in block]
        for i in range(n):
            for j in range(i, n):
                g[i][j] += float(torch.dot(flat[i], flat[j]))
        del flat, block  # free this block before the next one is read
    for i in range(n):
        for j in range(i):
            g[i][j] = g[j][i]
    return g


def sequential_coefficients(
    g: Sequence[Sequence[float]], ts: Sequence[float], eps: float = EPS, dot_threshold: float = DOT_THRESHOLD
) -> list[float]:
    """Coefficients ``alpha`` with ``acc_n == sum_i alpha_i * v_i`` for ``acc_1 = v_0, acc_{k+1} = slerp(t_k, acc_k, v_k)``.

    ``g`` is the Gram matrix of the inputs (:func:`gram`): the dot products and norms of every running result follow
    from it, so the whole chain needs one pass over the data for ``g`` and one to write the result.
    """
    n = len(g)
    alpha = [1.0] + [0.0] * (n - 1)
    for k in range(1, n):
        t = ts[k - 1]
        if t == 0:
            continue
        if t == 1:
            alpha = [0.0] * n
            alpha[k] = 1.0
            continue
        dot = sum(alpha[i] * g[i][k] for i in range(n) if alpha[i])
        sq = sum(alpha[i] * alpha[j] * g[i][j] for i in range(n) for j in range(n) if alpha[i] and alpha[j])
        c0, c1 = slerp_coefficients(t, dot, math.sqrt(max(sq, 0.0)), math.sqrt(max(g[k][k], 0.0)), eps, dot_threshold)
        alpha = [c0 * a for a in alpha]
        alpha[k] += c1
    return alpha


def combine(
    tensors: Sequence[torch.Tensor], alpha: Sequence[float], out_dtype: torch.dtype, dtype: torch.dtype
) -> torch.Tensor:
    """``sum_i alpha_i * tensors_i`` computed in ``dtype``, cast to ``out_dtype``; a lone unit term is copied exactly."""
    terms = [(x, a) for x, a in zip(tensors, alpha) if a != 0.0]
    if not terms:
        return torch.zeros_like(tensors[0], dtype=out_dtype)
    if len(terms) == 1 and terms[0][1] == 1.0:
        return terms[0][0].to(out_dtype)
    res = terms[0][0].to(dtype) * terms[0][1]
    for x, a in terms[1:]:
        res.add_(x.to(device=res.device, dtype=dtype), alpha=a)
    return res.to(out_dtype)


def flat_blocks(tensors: Sequence[torch.Tensor], size: int = CHUNK_ELEMENTS) -> Iterator[tuple[torch.Tensor, ...]]:
    """Aligned blocks of ``size`` elements of the flattened tensors (one block for an empty tensor)."""
    flat = [x.reshape(-1) for x in tensors]
    numel = flat[0].numel()
    for start in range(0, max(numel, 1), size):
        yield tuple(x[start : start + size] for x in flat)


def slerp(
    t: float, v0: torch.Tensor, v1: torch.Tensor, eps: float = EPS, dot_threshold: float = DOT_THRESHOLD
) -> torch.Tensor:
    """Spherical linear interpolation between two tensors (mergekit's ``slerp``).

    Each whole tensor is treated as one vector: both are normalised by their norm (when it is above ``eps``), the
    angle ``theta`` comes from the dot product of the normalised vectors, and the result is
    ``sin((1-t) theta)/sin(theta) * v0 + sin(t theta)/sin(theta) * v1`` on the *original* tensors (not
    renormalised: differing norms carry over into the result). When the tensors are nearly colinear
    (``|cos theta| > dot_threshold``, where SLERP is numerically unstable and equal to linear interpolation anyway)
    it falls back to ``(1-t) * v0 + t * v1``. Note that this includes nearly anti-parallel tensors, where the great
    circle is undefined.

    ``t=0`` returns (a copy of) ``v0`` and ``t=1`` returns ``v1`` exactly. The computation runs in float32
    (float64 if an input is float64) and the result has ``v0``'s dtype. ``t`` outside ``[0, 1]`` extrapolates.

    Example::

        >>> slerp(0.5, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
        tensor([0.7071, 0.7071])
    """
    t = float(t)
    if not math.isfinite(t):
        raise QueritInputError(f"t must be finite, got {t!r}")
    if not isinstance(v0, torch.Tensor) or not isinstance(v1, torch.Tensor):
        raise QueritInputError("slerp expects two tensors")
    if v0.shape != v1.shape:
        raise QueritInputError(f"slerp needs tensors of the same shape, got {tuple(v0.shape)} and {tuple(v1.shape)}")
    if not (v0.dtype.is_floating_point and v1.dtype.is_floating_point):
        raise QueritInputError(f"slerp needs floating-point tensors, got {v0.dtype} and {v1.dtype}")
    if t == 0:
        return v0.clone()
    if t == 1:
        return v1.to(dtype=v0.dtype, device=v0.device, copy=True)
    alpha = sequential_coefficients(gram(flat_blocks([v0, v1]), 2), [t], eps, dot_threshold)
    out = combine([v0, v1.to(v0.device)], alpha, v0.dtype, compute_dtype(v0.dtype, v1.dtype))
    return out.clone() if out is v0 or out is v1 else out
