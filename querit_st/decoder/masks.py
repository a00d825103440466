"""The attention mask of Querit decoders: content attends causally to content, ``[CLS]`` to every non-pad token.

Batches are left-padded with ``[CLS]`` last, so a row's block types (0 pad, 1 content, 2 ``[CLS]``) follow from its
padding mask alone.
"""

from __future__ import annotations

import torch

__all__ = ["build_querit_attention_mask", "querit_block_types"]


def querit_block_types(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-token block type of a left-padded batch: 0 pad, 1 content, 2 ``[CLS]`` (always the last position)."""
    types = (attention_mask != 0).long()
    types[:, -1] = types[:, -1] * 2
    return types


def build_querit_attention_mask(block_types: torch.Tensor, pad_attends_self: bool = True) -> torch.Tensor:
    """The reference's custom mask, batched: ``[batch, 1, n, n]`` bool, True where query ``i`` may attend key ``j``.

    Content attends to content ``j <= i``; ``[CLS]`` attends to every non-pad ``j <= i``; pad to nothing (or, with
    ``pad_attends_self``, to itself only, which avoids fully masked rows and changes no real token's output).
    Same rule as ``QueritWrapper.compute_mask_content_cls``.
    """
    n = block_types.shape[-1]
    idx = torch.arange(n, device=block_types.device)
    causal = (idx.view(1, n) <= idx.view(n, 1)).unsqueeze(0)
    rows = block_types.unsqueeze(-1)
    cols = block_types.unsqueeze(-2)
    mask = (((rows == 1) & (cols == 1)) | ((rows == 2) & (cols != 0))) & causal
    if pad_attends_self:
        mask = mask | (torch.eye(n, dtype=torch.bool, device=block_types.device).unsqueeze(0) & (rows == 0))
    return mask.unsqueeze(1)

