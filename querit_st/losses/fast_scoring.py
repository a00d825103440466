"""Length-grouped scoring of a batch's (query, document) pairs: the losses' fast path.

The pairs are tokenised once, sorted by token length and run through the model in chunks of similar length under
a token budget (chunk size x its longest pair), each chunk cut to its own longest pair, so almost no padding is
computed and each matmul is large. The logits are put back in the pairs' order, so the loss and its gradient are
the same function of the model as with sentence-transformers' fixed mini-batches (up to float rounding).
Optionally under bf16 autocast (``querit_st.training.fast`` turns it on where the CPU has native bf16).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from sentence_transformers.util import batch_to_device
from torch import Tensor


def length_chunks(lengths: list[int], token_budget: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges over ``lengths`` (sorted ascending) such that ``(end - start) * lengths[end - 1]``
    stays within ``token_budget`` (every chunk holds at least one pair)."""
    chunks, start = [], 0
    for i in range(1, len(lengths) + 1):
        if i == len(lengths) or (i + 1 - start) * lengths[i] > token_budget:
            chunks.append((start, i))
            start = i
    return chunks


def length_grouped_logits(
    model: Any,
    pairs: list[tuple[str, str]],
    *,
    token_budget: int = 4096,
    bf16: bool = False,
    prompt: str | None = None,
    task: str | None = None,
) -> Tensor:
    """1-D fp32 logits of ``pairs`` in their order, computed length-grouped (see the module docstring)."""
    kwargs: dict[str, Any] = {"prompt": prompt} if prompt is not None else {}
    if task is not None:
        kwargs["task"] = task
    tokens = model.preprocess(pairs, **kwargs)
    mask = tokens["attention_mask"]
    lengths = mask.sum(dim=1)
    right_padded = bool((mask[:, 0] == 1).all())
    order = torch.argsort(lengths, stable=True)
    sorted_lengths = lengths[order].tolist()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    outputs = []
    for start, end in length_chunks(sorted_lengths, token_budget):
        idx = order[start:end]
        width = sorted_lengths[end - 1]
        chunk = {}
        for k, v in tokens.items():
            if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == mask.shape[0]:
                v = v[idx]
                if v.dim() == 2 and v.shape[1] == mask.shape[1]:
                    v = v[:, :width] if right_padded else v[:, v.shape[1] - width:]
                chunk[k] = v
            else:
                chunk[k] = v
        chunk = batch_to_device(chunk, model.device)
        with autocast:
            outputs.append(model(chunk)["scores"].view(-1).float())
    logits_sorted = torch.cat(outputs, dim=0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return logits_sorted[inverse.to(logits_sorted.device)]
