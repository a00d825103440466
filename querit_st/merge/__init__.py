"""SLERP merging of fine-tuned cross-encoder checkpoints (the last stage of the querit-st pipeline).

Merging rerankers fine-tuned from the same base (say one adapted to a new corpus, one kept general) by spherical
linear interpolation of their weights is a cheap way to trade them off without retraining.

Public API
----------
``slerp(t, v0, v1)``
    The math on two tensors, like mergekit's ``slerp``.
``slerp_merge(a, b, t=0.5, output_dir=None, ...)``
    Two checkpoints (model folders, LoRA adapter folders, loaded ``CrossEncoder`` models or state dicts). ``t`` is
    the weight of ``b`` (``t=0`` gives ``a`` exactly, ``t=1`` gives ``b`` exactly); a list of floats is a gradient
    across the transformer layers; ``parameter_t`` overrides it per parameter name.
``slerp_merge_many(models, weights=None, output_dir=None, *, t=None, ...)``
    ``n >= 2`` checkpoints by sequential SLERP with per-model ``weights`` (or ``t`` for two models).
``slerp_schedule``, ``t_for_parameter``, ``gradient_value``, ``layer_index``, ``layer_position``
    The ``t`` conventions (mergekit's; see :mod:`querit_st.merge.schedule`).
The command line (``querit-st merge``) is :func:`querit_st.cli.merge.merge_command`.

Why not ``CrossEncoder.merge``?
-------------------------------
sentence-transformers 6 has ``CrossEncoder.merge(models, method="slerp", parameters={"t": ...})`` through
mergekit's in-memory API. For two plain checkpoints and a scalar ``t`` both give the same tensors (a test checks
it). This module exists for what that one does not do:

* **Memory.** ``CrossEncoder.merge`` loads every model whole and holds all inputs plus the result. Here folder inputs
  are streamed tensor by tensor (big tensors in row blocks, two passes: dot products and norms, then
  ``c0 * v0 + c1 * v1``) straight into the output ``model.safetensors``, so the peak stays at a few blocks (tens of
  MB) whatever the model size (``benchmarks/merge_memory.py``).
* **N-way SLERP.** mergekit's ``slerp`` takes exactly two models; :func:`slerp_merge_many` chains SLERP over any
  number with per-model weights, still in two passes over the data.
* **LoRA folding.** Adapter folders are folded into their base while streaming (:mod:`querit_st.merge.lora`);
  ``CrossEncoder.merge`` refuses models with adapters.
* **Atomic output with provenance.** The output folder appears whole or not at all, with ``merge_config.json`` and
  a model card and training record covering every parent (:mod:`querit_st.merge.card`); ``CrossEncoder.merge``
  returns an in-memory model with a fresh card.

Output folder
-------------
``model.safetensors``, every non-weight file of the first model's folder (``config.json``, tokenizer files,
``modules.json``, ``config_sentence_transformers.json``, ...), ``merge_config.json`` (inputs and settings) and
``README.md`` with "Merge" and training sections. Plain ``sentence_transformers.CrossEncoder(output_dir)`` loads it.
Inputs are checked first (:mod:`querit_st.merge.checks`): the first mismatch raises
:class:`~querit_st.utils.QueritInputError` naming the tensor or file, and nothing is written.

dtypes: interpolation runs in float32 (float64 if an input is float64); each output tensor keeps the first model's
dtype. Non-float tensors (integer buffers such as ``position_ids``) are copied from the first model unchanged.

Parts: :mod:`~querit_st.merge.slerp` (math), :mod:`~querit_st.merge.schedule` (t and weights),
:mod:`~querit_st.merge.sources` and :mod:`~querit_st.merge.lora` (reading inputs), :mod:`~querit_st.merge.checks`,
:mod:`~querit_st.merge.writer` (output files), :mod:`~querit_st.merge.card` (model card, training record); this
module runs them (per tensor: two passes, streamed or in memory).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from querit_st.merge.card import merge_record, merged_training_record, write_card
from querit_st.merge.checks import check_all, check_configs
from querit_st.merge.schedule import (
    TSetting,
    check_t,
    check_weights,
    gradient_value,
    layer_index,
    layer_position,
    num_layers,
    slerp_schedule,
    t_for_parameter,
)
from querit_st.merge.slerp import (
    CHUNK_ELEMENTS,
    DOT_THRESHOLD,
    EPS,
    compute_dtype,
    flat_blocks,
    gram,
    sequential_coefficients,
    slerp,
)
from querit_st.merge.slerp import combine as _combine
from querit_st.merge.sources import Source, open_input
from querit_st.merge.writer import SafetensorsWriter, check_target, resolve_template, row_ranges, write_template
from querit_st.utils import QueritInputError, atomic_dir, atomic_write_json

__all__ = [
    "CHUNK_ELEMENTS",
    "DOT_THRESHOLD",
    "EPS",
    "gradient_value",
    "layer_index",
    "layer_position",
    "slerp",
    "slerp_merge",
    "slerp_merge_many",
    "slerp_schedule",
    "t_for_parameter",
]

ModelInput = str | os.PathLike | Mapping[str, torch.Tensor] | torch.nn.Module


# -------------------------------------------------------------------------------------------- one tensor
# The per-tensor passes read CHUNK_ELEMENTS and _combine from this module at call time, so setting
# ``querit_st.merge.CHUNK_ELEMENTS`` changes the row-block size of the next merge.


def _combine_sparse(
    tensors: Sequence[torch.Tensor | None], alpha: Sequence[float], out_dtype: torch.dtype, cd: torch.dtype
) -> torch.Tensor:
    pairs = [(x, a) for x, a in zip(tensors, alpha) if a != 0.0 and x is not None]
    if not pairs:  # all coefficients zero (cannot happen with t in [0, 1]); keep the shape
        first = next(x for x in tensors if x is not None)
        return torch.zeros_like(first, dtype=out_dtype)
    return _combine([x for x, _ in pairs], [a for _, a in pairs], out_dtype, cd)


def _merge_key_streaming(
    sources: Sequence[Source], key: str, ts: Sequence[float], writer: SafetensorsWriter, eps: float, thr: float
) -> str:
    """Merge one tensor and stream it to ``writer``; returns "copied" or "interpolated"."""
    shape, out_dtype = sources[0].info(key)
    ranges = row_ranges(shape, CHUNK_ELEMENTS)
    if not out_dtype.is_floating_point:
        writer.write(key, sources[0].read(key))
        return "copied"
    n = len(sources)
    cd = compute_dtype(*(s.info(key)[1] for s in sources))
    # Skip reading (and the Gram pass) when the schedule makes the result a single input exactly.
    alpha: list[float] | None = None
    if all(t in (0.0, 1.0) for t in ts):
        alpha = sequential_coefficients([[0.0] * n for _ in range(n)], ts)
    if ranges is None:
        tensors = [s.read(key) if alpha is None or alpha[i] else None for i, s in enumerate(sources)]
        if alpha is None:
            alpha = sequential_coefficients(gram(flat_blocks(tensors), n), ts, eps, thr)  # type: ignore[arg-type]
        writer.write(key, _combine_sparse(tensors, alpha, out_dtype, cd))
        return "interpolated"
    if alpha is None:
        blocks = ([s.read_rows(key, a, b) for s in sources] for a, b in ranges)
        alpha = sequential_coefficients(gram(blocks, n), ts, eps, thr)
    for a, b in ranges:
        block = [s.read_rows(key, a, b) if alpha[i] else None for i, s in enumerate(sources)]
        writer.write(key, _combine_sparse(block, alpha, out_dtype, cd))
        del block  # free this block before the next one is read
    return "interpolated"


def _merge_key_in_memory(
    sources: Sequence[Source], key: str, ts: Sequence[float], eps: float, thr: float
) -> torch.Tensor:
    _, out_dtype = sources[0].info(key)
    if not out_dtype.is_floating_point:
        return sources[0].read(key).clone()
    tensors = [s.read(key) for s in sources]
    device = tensors[0].device
    tensors = [x.to(device) for x in tensors]
    alpha = sequential_coefficients(gram(flat_blocks(tensors), len(tensors)), ts, eps, thr)
    out = _combine(tensors, alpha, out_dtype, compute_dtype(*(x.dtype for x in tensors)))
    aliased = any(out is x for x in tensors) or any(out.data_ptr() == x.data_ptr() for x in tensors)
    return out.clone() if aliased else out


# -------------------------------------------------------------------------------------------- the whole run


def _run(
    inputs: Sequence[Any],
    schedule_for: Callable[[str, int], list[float]],
    record: dict[str, Any],
    output_dir: str | os.PathLike | None,
    *,
    template: Any,
    base: str | os.PathLike | None,
    overwrite: bool,
    show_progress_bar: bool,
    eps: float,
    dot_threshold: float,
) -> dict[str, torch.Tensor] | Path:
    with contextlib.ExitStack() as stack:
        sources: list[Source] = []
        for i, x in enumerate(inputs):
            src = open_input(x, i, base)
            stack.callback(src.close)
            sources.append(src)
        check_all(sources)
        keys = sources[0].names()
        layers = num_layers(keys)
        schedules = {k: schedule_for(k, layers) for k in keys}
        counts = {"interpolated": 0, "copied": 0}
        record.update(models=[s.describe() for s in sources], num_layers=layers, eps=eps, dot_threshold=dot_threshold)
        desc = "SLERP merge" if len(sources) == 2 else f"SLERP merge ({len(sources)} models)"

        if output_dir is None:
            out: dict[str, torch.Tensor] = {}
            for k in tqdm(keys, desc=desc, unit="tensor", disable=not show_progress_bar):
                out[k] = _merge_key_in_memory(sources, k, schedules[k], eps, dot_threshold)
            return out

        target = Path(output_dir)
        tmpl, tmpl_config, tmpl_label = resolve_template(sources, template)
        if template is not None:
            check_configs(tmpl_config, sources[0].config, f"template ({tmpl_label})", sources[0].label)
        check_target(target, sources, overwrite)
        entries = [(k, *sources[0].info(k)) for k in keys]
        with atomic_dir(target, overwrite=overwrite) as tmp:
            write_template(tmp, tmpl)
            writer = SafetensorsWriter(tmp / "model.safetensors", entries, {"format": "pt"})
            try:
                for k, _ in tqdm(writer.order, desc=desc, unit="tensor", disable=not show_progress_bar):
                    counts[_merge_key_streaming(sources, k, schedules[k], writer, eps, dot_threshold)] += 1
                writer.close()
            except BaseException:
                writer.abort()
                raise
            record["tensors"] = counts
            record["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            atomic_write_json(tmp / "merge_config.json", record)
            write_card(tmp, record, merged_training_record(record, sources))
            stack.close()  # release the input files before the folder is renamed into place
        return target


# ---------------------------------------------------------------------------------------------- public API


def slerp_merge(
    a: ModelInput,
    b: ModelInput,
    t: TSetting = 0.5,
    output_dir: str | os.PathLike | None = None,
    *,
    parameter_t: Mapping[str, TSetting] | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    template: str | os.PathLike | torch.nn.Module | None = None,
    base: str | os.PathLike | None = None,
    eps: float = EPS,
    dot_threshold: float = DOT_THRESHOLD,
) -> dict[str, torch.Tensor] | Path:
    """SLERP-merge two checkpoints of the same architecture, tensor by tensor.

    Args:
        a, b: Model folders (as ``CrossEncoder.save_pretrained`` writes them; a peft LoRA adapter folder is folded
            into its base first), loaded models (a sentence-transformers ``CrossEncoder`` is read through its
            transformers model, so keys are those of its ``model.safetensors``), or state dicts.
        t: Weight of ``b``: 0 gives ``a`` exactly, 1 gives ``b`` exactly. A list ``[t_0, ..., t_m]`` is a gradient
            across the transformer layers (:mod:`querit_st.merge.schedule`: embeddings take ``t_0``, the head ``t_m``).
        output_dir: Without it, the merged state dict is returned. With it, a model folder is written atomically
            (weights, ``a``'s config/tokenizer/sentence-transformers files, ``merge_config.json``, ``README.md``
            with "Merge" and training sections, both parents' training records) and its ``Path`` returned.
        parameter_t: Overrides by parameter name, e.g. ``{"classifier": 0.3, "embeddings": [0, 1]}``; the first key
            that is a substring of the name wins; values are scalars or gradients.
        overwrite: Replace an existing ``output_dir``.
        show_progress_bar: A tqdm bar over the tensors.
        template: Folder or loaded model whose non-weight files the output gets (default: ``a``); required when
            ``a`` is a state dict and ``output_dir`` is given.
        base: Base model folder for LoRA adapter inputs (default: the adapter's ``base_model_name_or_path``).
        eps, dot_threshold: As in :func:`slerp`.

    Raises:
        QueritInputError: mismatched architectures, tokenizers, tensor names or shapes (naming the first offending
            file or tensor; nothing is written), bad ``t``, or an existing ``output_dir`` without ``overwrite``.

    Example::

        from querit_st.merge import slerp_merge

        slerp_merge("ce_general", "ce_adapted", t=0.5, output_dir="ce_merged")
    """
    t_checked = check_t(t)
    pt: dict[str, float | list[float]] = {}
    for k, v in (parameter_t or {}).items():
        if not isinstance(k, str) or not k:
            raise QueritInputError(f"parameter_t keys must be non-empty strings, got {k!r}")
        pt[k] = check_t(v, f"parameter_t[{k!r}]")
    record = merge_record("slerp")
    record.update(t=t_checked, parameter_t=pt or None)

    def schedule_for(key: str, layers: int) -> list[float]:
        return [t_for_parameter(key, t_checked, layers, pt)]

    return _run(
        [a, b],
        schedule_for,
        record,
        output_dir,
        template=template,
        base=base,
        overwrite=overwrite,
        show_progress_bar=show_progress_bar,
        eps=eps,
        dot_threshold=dot_threshold,
    )


def slerp_merge_many(
    models: Sequence[ModelInput],
    weights: Sequence[float] | None = None,
    output_dir: str | os.PathLike | None = None,
    *,
    t: TSetting | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    template: str | os.PathLike | torch.nn.Module | None = None,
    base: str | os.PathLike | None = None,
    eps: float = EPS,
    dot_threshold: float = DOT_THRESHOLD,
) -> dict[str, torch.Tensor] | Path:
    """SLERP-merge ``n >= 2`` checkpoints by sequential SLERP: ``acc = m_0``, then ``acc = slerp(t_k, acc, m_k)``.

    Args:
        models: As ``a``/``b`` of :func:`slerp_merge`; the first is the reference (its non-weight files and non-float
            tensors are kept).
        weights: One share per model, in the order of ``models``; only the ratios count (``[1, 1, 2]`` gives the last
            model half the result). Default: equal shares. Each must be finite and positive: a length mismatch, a
            negative or zero weight, or all weights zero raise :class:`~querit_st.utils.QueritInputError`.
        t: Two models only, instead of ``weights``: the weight of the second, a scalar or a layer gradient, exactly
            as in :func:`slerp_merge` (``t=0.25`` is ``weights=[3, 1]``, and ``t`` may also be 0, 1 or a list).
        output_dir, overwrite, show_progress_bar, template, base, eps, dot_threshold: As in :func:`slerp_merge`.

    ``t_k = w_k / (w_0 + ... + w_k)`` (:func:`slerp_schedule`; equal weights give ``1/2, 1/3, ...``) gives every
    checkpoint its intended share: for linear interpolation this chain is exactly the weighted mean, and for SLERP
    it is the same weighting along great circles. SLERP is not associative, so the result depends (slightly, when
    the checkpoints are close, as fine-tunes of one base are) on the order of ``models``: it approximates the
    weighted spherical mean (Karcher mean) rather than computing it. Put the model you consider the reference first.

    The chain is computed without materialising intermediate models: each step is a linear combination of the
    inputs whose coefficients follow from their pairwise dot products, so every tensor is read in one pass for the
    dot products and one for the output, as in :func:`slerp_merge` (same output).
    """
    models = list(models)
    if len(models) < 2:
        raise QueritInputError(f"slerp_merge_many needs at least two models, got {len(models)}")
    options: dict[str, Any] = {
        "template": template,
        "base": base,
        "overwrite": overwrite,
        "show_progress_bar": show_progress_bar,
        "eps": eps,
        "dot_threshold": dot_threshold,
    }
    if t is not None:
        if weights is not None:
            raise QueritInputError("give either t (two models) or weights (one per model), not both")
        if len(models) != 2:
            raise QueritInputError(
                f"t is the weight of the second of two models; for {len(models)} models give weights (one per model)"
            )
        return slerp_merge(models[0], models[1], t, output_dir, **options)
    w = [1.0] * len(models) if weights is None else check_weights(weights, len(models))
    schedule = slerp_schedule(w)
    record = merge_record("slerp" if len(models) == 2 else "sequential_slerp")
    record.update(weights=w, schedule=schedule)
    return _run(models, lambda key, layers: list(schedule), record, output_dir, **options)
