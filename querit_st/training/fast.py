"""The fast CPU training path, chosen per CPU at run time.

What it changes (each measured by ``benchmarks/speed.py --sections train`` against sentence-transformers'
``CrossEncoderTrainer`` fp32 on the same rows):

- **bf16 compute with fp32 master weights** where the CPU computes bf16 natively (AVX-512 BF16 or AMX): each
  batch runs forward and backward entirely in bf16 on bf16 copies of the weights made inside the autograd graph
  (:func:`querit_st.losses.fast_scoring.bf16_compute`), so the gradients, the optimizer and the saved weights stay
  fp32. Under plain bf16 autocast (``bf16_compute="autocast"``) the residual stream stays fp32 and every matmul
  input is cast, which the profile showed costing more than the matmuls (``aten::copy_`` 26% of a step); the bf16
  weights path measured 1.28x the autocast one on the same rows. Elsewhere (AVX2 only: bf16 would be emulated,
  slower than fp32) it stays fp32 and says so.
- **length-grouped forward passes**: a batch's (query, document) pairs are sorted by token length and scored in
  chunks of similar length with a token budget, so almost no padding is computed and each matmul is large; the
  logits are put back in the original order, so the loss (and its gradient) is the same function of the model.
- **cheap dropout masks, plain attention, a [CLS]-only last layer** (:mod:`querit_st.training.fast_ops`): masks
  from numpy's SFC64 generator instead of ``bernoulli_`` (23% of a bf16 step), the eager attention product instead
  of SDPA (2-3x slower with dropout on CPU, bf16), and the last layer's query, attention output and feed-forward
  for the one row the score reads (the same logits and gradients, ~14% fewer matmul FLOPs);
- **fused AdamW** (``torch.optim.AdamW(fused=True)``, one kernel over all parameters on CPU).
- the word-embedding matrix stays frozen (``TrainSpec.freeze_embeddings``), so no dense update of 96M weights.

``fast: off`` in a config (or ``mode="off"``) trains exactly as sentence-transformers does; ``"fp32"`` keeps the
batching and the fused optimizer without bf16; ``"bf16"`` forces bf16 (emulated where not native).
Usable with a plain ``CrossEncoderTrainer``::

    fast = configure_fast_training(loss, args)   # sets the loss's scoring and args.optim; returns what it chose
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from querit_st.utils import QueritInputError
from querit_st.utils.machine import native_bf16

logger = logging.getLogger(__name__)

MODES = ("auto", "off", "fp32", "bf16")
#: tokens per forward pass of the length-grouped scorer (pairs x padded length): 16 pairs of 128 tokens. Measured
#: on the compact student (bf16, 2 cores): 2048 gave ~10% more pairs/s than 4096 (one 32-pair pass) or 1024
DEFAULT_TOKEN_BUDGET = 2048


@dataclass(frozen=True)
class FastPath:
    """What the fast path does on this machine (recorded in the training log and the model card)."""

    mode: str
    bf16: bool
    length_grouping: bool
    token_budget: int
    fused_optimizer: bool
    reason: str
    fast_ops: bool = True
    #: how bf16 runs when ``bf16``: ``"weights"`` (bf16 copies of the fp32 weights, no casts of activations) or
    #: ``"autocast"`` (torch.autocast: fp32 residual stream)
    bf16_compute: str = "weights"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def choose_fast_path(mode: str = "auto", *, token_budget: int = DEFAULT_TOKEN_BUDGET, cuda: bool | None = None) -> FastPath:
    """The fast path for ``mode`` on this machine (``"auto"``: bf16 only where native)."""
    if mode not in MODES:
        raise QueritInputError(f"fast training mode must be one of {', '.join(MODES)}, got {mode!r}")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if mode == "off":
        return FastPath("off", False, False, token_budget, False, "switched off: sentence-transformers' defaults",
                        fast_ops=False)
    if cuda:
        return FastPath(mode, mode == "bf16", True, token_budget, True,
                        "CUDA: length grouping and fused AdamW; use the trainer's bf16/fp16 flags for mixed precision")
    native = native_bf16()
    if mode == "bf16":
        bf16, why = True, "bf16 forced" + ("" if native else " (emulated on this CPU: slower than fp32)") + \
            ": bf16 compute on bf16 copies of fp32 master weights"
    elif mode == "fp32":
        bf16, why = False, "fp32 asked for"
    else:
        bf16 = native
        why = ("CPU has native bf16 (AVX-512 BF16 / AMX): bf16 compute on bf16 copies of fp32 master weights" if native
               else "CPU has no native bf16 (AVX2 only): fp32, since emulated bf16 would be slower")
    return FastPath(mode, bf16, True, token_budget, True,
                    why + "; length-grouped forward passes; fast dropout masks, eager attention, [CLS]-only last layer; "
                    "fused AdamW")


def configure_fast_training(loss: Any, args: Any | None = None, mode: str | FastPath = "auto") -> FastPath:
    """Switch a querit-st loss (and, given, the ``CrossEncoderTrainingArguments``) to the fast path.

    The loss scores its pairs length-grouped, in bf16 where chosen (``loss.fast_path``); ``args.optim``
    becomes ``"adamw_torch_fused"``. Returns the :class:`FastPath` applied (logged once)."""
    fast = mode if isinstance(mode, FastPath) else choose_fast_path(mode)
    if not hasattr(loss, "fast_path"):
        raise QueritInputError(f"{type(loss).__name__} has no fast scoring path; use a querit_st loss "
                               "(ScoreGapHingeLoss, SoftLabelKLLoss, SoftLabelMSELoss)")
    restore_model(loss)
    loss.fast_path = fast if fast.mode != "off" else None
    if fast.fast_ops and hasattr(loss.model, "transformers_model"):
        from querit_st.training.fast_ops import patch_for_training

        loss.fast_undo = patch_for_training(loss.model.transformers_model)
    if args is not None and fast.fused_optimizer:
        args.optim = "adamw_torch_fused"
    logger.info("fast training path: %s", fast.reason)
    return fast


def restore_model(loss: Any) -> None:
    """Undo the model patches of :func:`configure_fast_training` (dropout modules, attention choice); the saved
    model is the same either way, this only returns the live object to its original modules."""
    undo = getattr(loss, "fast_undo", None)
    if undo is not None:
        undo()
        loss.fast_undo = None
