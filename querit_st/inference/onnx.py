"""ONNX Runtime modes ``"onnx"`` and ``"onnx-int8"``: the packed forward exported to ONNX (:func:`export_onnx`,
also read by OpenVINO), optionally with ORT dynamic int8 of the encoder matmuls, run by :class:`OnnxScorer`."""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from querit_st.inference.choice import onnx_int8_weight_type
from querit_st.inference.packed import PackedBertScorer
from querit_st.inference.quantize import encoder_linear_names
from querit_st.utils import QueritInputError

__all__ = ["DEFAULT_MAX_TOKENS", "EMBEDS", "OnnxScorer", "example_inputs", "export_onnx", "numpy_feed", "onnx_scorer",
           "score_in_slices", "score_only", "sliced_feeds"]


#: The graph input that replaces ``input_ids`` in exported graphs: the tokens' word-embedding rows, looked up in
#: torch (:func:`numpy_feed`), so the vocabulary matrix (96M of multilingual-e5-small's 107M weights at 6 layers) is
#: not copied into the ONNX file, the runtime and its compiled model (peak memory).
EMBEDS = "inputs_embeds"


def numpy_feed(
    names: list[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    word_embeddings: nn.Module | None = None,
) -> dict[str, Any]:
    """The numpy inputs an exported graph asks for (``names``): int64 ids and masks (a missing mask is all ones,
    types all zeros) and, for :data:`EMBEDS`, the float32 rows of ``word_embeddings`` for ``input_ids``."""
    feed = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
        "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
    }
    out = {k: feed[k].detach().cpu().to(torch.int64).numpy() for k in names if k != EMBEDS}
    if EMBEDS in names:
        if word_embeddings is None:
            raise QueritInputError(f"this graph takes {EMBEDS}: give the model's word_embeddings")
        with torch.no_grad():
            out[EMBEDS] = word_embeddings(input_ids.cpu()).float().numpy()
    return out


#: Padded tokens per runtime call (:func:`sliced_feeds`): a batch of 32 pairs of 128 tokens goes in 8 calls. Runtimes
#: keep the buffers of the largest call they have seen, so this bounds resident memory (``benchmarks/speed.py`` peak
#: RSS, AVX2, 6-layer e5-small student: OpenVINO 1,224 MB with 1,024-token calls, 1,196 with 512; ONNX Runtime
#: 1,380 with whole batches, 1,157 with 512).
DEFAULT_MAX_TOKENS = 512


def sliced_feeds(
    names: list[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    word_embeddings: nn.Module | None = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> list[dict[str, Any]]:
    """:func:`numpy_feed` for row slices of the batch of at most ``max_tokens`` padded tokens each (``None``: one)."""
    rows, length = input_ids.shape
    step = rows if not max_tokens else max(1, max_tokens // max(1, length))

    def part(t: torch.Tensor | None, i: int) -> torch.Tensor | None:
        return None if t is None else t[i: i + step]

    return [numpy_feed(names, input_ids[i: i + step], part(attention_mask, i), part(token_type_ids, i), word_embeddings)
            for i in range(0, rows, step)]


def score_in_slices(
    run: Callable[[dict[str, Any]], Any],
    names: list[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    word_embeddings: nn.Module | None,
    max_tokens: int | None,
) -> torch.Tensor:
    """The logits of a batch scored by a runtime in :func:`sliced_feeds` calls (``run``: feed -> numpy logits),
    concatenated in row order: what :class:`OnnxScorer` and the OpenVINO scorer both do."""
    feeds = sliced_feeds(names, input_ids, attention_mask, token_type_ids, word_embeddings, max_tokens)
    outs = [torch.from_numpy(np.array(run(f), copy=True)) for f in feeds]
    return outs[0] if len(outs) == 1 else torch.cat(outs)


class OnnxScorer(nn.Module):
    """An ONNX Runtime session behind the ``transformer.model`` interface (``model(**features) -> {"logits"}``);
    ``word_embeddings`` looks up the graph's :data:`EMBEDS` input; ``max_tokens``: padded tokens per call
    (:func:`sliced_feeds`)."""

    def __init__(self, model_bytes: bytes, config: Any, *, threads: int | None = None, label: str = "onnx",
                 word_embeddings: nn.Module | None = None, max_tokens: int | None = DEFAULT_MAX_TOKENS) -> None:
        super().__init__()
        self.word_embeddings = word_embeddings
        self.max_tokens = max_tokens
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = config
        self.label = label
        self.model_size_bytes = len(model_bytes)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        logits = score_in_slices(lambda f: self.session.run(None, f)[0], self.input_names, input_ids, attention_mask,
                                 token_type_ids, self.word_embeddings, self.max_tokens)
        return {"logits": logits}

    def __deepcopy__(self, memo: dict) -> OnnxScorer:  # sessions cannot be pickled; share them
        return self


class _ScoreOnly(nn.Module):
    def __init__(self, scorer: PackedBertScorer) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.scorer.score(None, attention_mask, token_type_ids, inputs_embeds=inputs_embeds)


def score_only(packed: PackedBertScorer) -> nn.Module:
    """The module exported (ONNX) or converted (OpenVINO): ``(inputs_embeds, attention_mask, token_type_ids) ->
    logits``, the packed forward from the word-embedding rows on."""
    return _ScoreOnly(packed).eval()


def example_inputs(packed: PackedBertScorer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two padded sequences to trace :func:`score_only` with: word-embedding rows, attention mask, token types."""
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3, 0], [2, 5, 3, 7, 3, 0, 0, 0]], dtype=torch.long)
    # real ids must be inside the vocabulary; 0..8 always are
    with torch.no_grad():
        embeds = packed.word_embeddings(ids)
    mask = (torch.arange(ids.shape[1]) < torch.tensor([[7], [5]])).long()
    return embeds, mask, torch.zeros_like(ids)


def export_onnx(packed: PackedBertScorer, path: Path) -> None:
    """Export the packed forward to ONNX (dynamic batch and length), from the word-embedding rows
    (:data:`EMBEDS`) on: the vocabulary matrix stays in torch."""
    wrapper = score_only(packed)
    embeds, mask, types = example_inputs(packed)
    axes = {EMBEDS: {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            "token_type_ids": {0: "batch", 1: "length"}, "logits": {0: "batch"}}
    packed.exporting = True
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (embeds, mask, types), str(path),
                input_names=[EMBEDS, "attention_mask", "token_type_ids"], output_names=["logits"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )
    finally:
        packed.exporting = False


def _onnx_int8(
    src: Path,
    dst: Path,
    packed: PackedBertScorer,
    *,
    weight_type: str = "uint8",
    per_channel: bool = True,
    skip: tuple[str, ...] = (),
    reduce_range: bool = False,
) -> None:
    """ORT dynamic int8 (per-channel U8U8) of the encoder matmuls; head and [CLS]-only matmuls stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from onnx import numpy_helper

    model = onnx.load(str(src))
    modules = dict(packed.named_modules())
    names = encoder_linear_names(packed, packed=True, skip=skip)
    wanted = {modules[n].weight.detach().t().contiguous().numpy().tobytes() for n in names}
    inits = {i.name: i for i in model.graph.initializer}
    include, exclude = [], []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        weights = [numpy_helper.to_array(inits[i]) for i in node.input if i in inits]
        if node.op_type == "MatMul" and weights and weights[0].astype("float32").tobytes() in wanted:
            include.append(node.name)
        else:
            exclude.append(node.name)
    if not include:
        raise RuntimeError("found no encoder MatMul to quantise in the exported graph")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = logging.getLogger()
        was = root.disabled
        root.disabled = True  # the quantiser logs a "consider pre-processing" warning per call
        try:
            quantize_dynamic(
                str(src), str(dst), weight_type=QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8,
                per_channel=per_channel, reduce_range=reduce_range,
                nodes_to_quantize=include, nodes_to_exclude=exclude,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.disabled = was


def onnx_scorer(packed: PackedBertScorer, int8: bool, threads: int | None, skip: tuple[str, ...] = ()) -> OnnxScorer:
    """``packed`` exported to ONNX and loaded into ONNX Runtime; with ``int8``, its encoder matmuls (less the
    ``skip`` kinds) dynamically quantised with this CPU's weight type (:func:`onnx_int8_weight_type`)."""
    with tempfile.TemporaryDirectory(prefix="querit_onnx_") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        export_onnx(packed, fp32)
        final = fp32
        if int8:
            final = Path(tmp) / "model_int8.onnx"
            _onnx_int8(fp32, final, packed, weight_type=onnx_int8_weight_type(), skip=skip)
        data = final.read_bytes()
    return OnnxScorer(data, packed.config, threads=threads, label="onnx-int8" if int8 else "onnx",
                      word_embeddings=packed.word_embeddings)
