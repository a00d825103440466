"""Length-grouped scoring of a batch's (query, document) pairs: the losses' fast path.

The pairs are tokenised once, sorted by token length and run through the model in chunks of similar length under
a token budget (chunk size x its longest pair), each chunk cut to its own longest pair, so almost no padding is
computed and each matmul is large. The logits are put back in the pairs' order, so the loss and its gradient are
the same function of the model as with sentence-transformers' fixed mini-batches (up to float rounding).
Optionally in bf16 (``querit_st.training.fast`` turns it on where the CPU has native bf16): ``bf16="weights"``
runs the whole forward and backward in bf16 on bf16 copies of the fp32 parameters (the copies are made once per
batch inside the autograd graph, so gradients land in fp32 ``.grad`` and the optimizer updates fp32 master weights);
the word-embedding matrix stays fp32 and only its looked-up rows are cast. No activation is cast back and forth,
which under autocast (``bf16="autocast"``: fp32 residual stream, bf16 matmuls) cost more time than the matmuls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


@contextlib.contextmanager
def bf16_compute(model: Any) -> Iterator[dict[str, Tensor]]:
    """bf16 copies of ``model``'s floating parameters (the word-embedding matrix excepted) for
    ``torch.func.functional_call``, with the looked-up embedding rows cast to bf16 while the context is open."""
    hf = getattr(model, "transformers_model", None) or getattr(model, "model", None) or model
    embedding = hf.get_input_embeddings() if hasattr(hf, "get_input_embeddings") else None
    skip = {id(p) for p in embedding.parameters()} if embedding is not None else set()
    params = {n: p.to(torch.bfloat16) for n, p in model.named_parameters()
              if p.is_floating_point() and id(p) not in skip}
    hook = embedding.register_forward_hook(lambda m, i, out: out.to(torch.bfloat16)) if embedding is not None else None
    try:
        yield params
    finally:
        if hook is not None:
            hook.remove()


def length_grouped_logits(
    model: Any,
    pairs: list[tuple[str, str]],
    *,
    token_budget: int = 4096,
    bf16: bool | str = False,
    prompt: str | None = None,
    task: str | None = None,
) -> Tensor:
    """1-D fp32 logits of ``pairs`` in their order, computed length-grouped (see the module docstring).

    ``bf16``: False (fp32), ``"weights"`` (bf16 compute on bf16 copies of the fp32 weights) or ``"autocast"`` /
    True (bf16 autocast)."""
    kwargs: dict[str, Any] = {"prompt": prompt} if prompt is not None else {}
    if task is not None:
        kwargs["task"] = task
    tokens = model.preprocess(pairs, **kwargs)
    mask = tokens["attention_mask"]
    lengths = mask.sum(dim=1)
    right_padded = bool((mask[:, 0] == 1).all())
    order = torch.argsort(lengths, stable=True)
    sorted_lengths = lengths[order].tolist()
    if bf16 == "weights":
        context: Any = bf16_compute(model)
    elif bf16:
        context = torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        context = contextlib.nullcontext()
    outputs = []
    with context as params:
        params = params if bf16 == "weights" else None
        for start, end in length_chunks(sorted_lengths, token_budget):
            outputs.append(_chunk_logits(model, tokens, order[start:end], sorted_lengths[end - 1], right_padded, params))
    logits_sorted = torch.cat(outputs, dim=0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return logits_sorted[inverse.to(logits_sorted.device)]


def _chunk_logits(model: Any, tokens: dict[str, Any], idx: Tensor, width: int, right_padded: bool,
                  params: dict[str, Tensor] | None) -> Tensor:
    """fp32 logits of the pairs ``idx`` of ``tokens``, cut to ``width`` tokens (with ``params``: through
    ``functional_call`` on those parameters)."""
    mask = tokens["attention_mask"]
    chunk = {}
    for k, v in tokens.items():
        if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == mask.shape[0]:
            v = v[idx]
            if v.dim() == 2 and v.shape[1] == mask.shape[1]:
                v = v[:, :width] if right_padded else v[:, v.shape[1] - width:]
        chunk[k] = v
    chunk = batch_to_device(chunk, model.device)
    out = model(chunk) if params is None else torch.func.functional_call(model, params, (chunk,), strict=False)
    return out["scores"].view(-1).float()

