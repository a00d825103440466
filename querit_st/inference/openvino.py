"""OpenVINO modes ``"openvino"`` and ``"openvino-int8"``: the packed forward exported to ONNX and read by OpenVINO,
for int8 quantised by NNCF (static int8 from calibration pairs, or int8 weights with run-time activation
quantisation), run by :class:`OpenVinoScorer`; :func:`load_openvino` attaches a saved IR to a ``CrossEncoder``.
Needs ``pip install querit-st[openvino]``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from querit_st.inference.attach import inference_mode_of, set_inference_mode, transformer_module
from querit_st.inference.onnx import DEFAULT_MAX_TOKENS, example_inputs, numpy_feed, score_in_slices, score_only
from querit_st.inference.packed import PackedBertScorer
from querit_st.inference.quantize import encoder_linear_names
from querit_st.utils import QueritInputError
from querit_st.utils.machine import cpu_features

__all__ = ["DEFAULT_OV_DQ_GROUP", "OpenVinoScorer", "calibration_batches", "convert_openvino", "load_openvino",
           "openvino_scorer"]

#: OpenVINO's dynamic activation quantisation group (values along the reduction axis that share one scale) for
#: ``"openvino-int8"`` without calibration data: 64 kept Spearman >= 0.995 against fp32 on the untrained MiniLM
#: head; larger groups are a few % faster and less exact (128: ~0.992, a whole row: ~0.976).
DEFAULT_OV_DQ_GROUP = 64


class OpenVinoScorer(nn.Module):
    """An OpenVINO compiled model behind the ``transformer.model`` interface (``model(**features) -> {"logits"}``).

    ``precision``: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``None``: the device default, which is bf16 on CPUs
    with AVX-512 BF16 / AMX and f32 elsewhere). ``dynamic_group``: ``DYNAMIC_QUANTIZATION_GROUP_SIZE`` (runtime int8
    activations for int8-compressed weights; ``None`` leaves OpenVINO's default). ``word_embeddings``: the torch
    module that looks up the graph's ``inputs_embeds`` input (graphs exported by this version; older IRs take ids).
    ``max_tokens``: padded tokens per inference call; a larger batch is scored in row slices (OpenVINO keeps the
    buffers of the largest call it has seen: smaller calls, less resident memory; ``None``: the whole batch).
    """

    def __init__(
        self,
        ov_model: Any,
        config: Any,
        *,
        threads: int | None = None,
        precision: str | None = None,
        dynamic_group: int | None = None,
        label: str = "openvino",
        word_embeddings: nn.Module | None = None,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
    ) -> None:
        super().__init__()
        self.word_embeddings = word_embeddings
        self.max_tokens = max_tokens
        import openvino as ov

        props: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        if precision:
            props["INFERENCE_PRECISION_HINT"] = precision
        if dynamic_group is not None:
            props["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = int(dynamic_group)
        self.ov_model = ov_model
        self.dynamic_group = dynamic_group
        self.compiled = ov.Core().compile_model(ov_model, "CPU", props)
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.config = config
        self.label = label
        try:
            self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # pragma: no cover - older OpenVINO
            self.precision = precision or "?"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        output = self.compiled.outputs[0]
        logits = score_in_slices(lambda f: self.request.infer(f)[output], self.input_names, input_ids, attention_mask,
                                 token_type_ids, self.word_embeddings, self.max_tokens)
        return {"logits": logits}

    def save(self, path: str | Path) -> Path:
        """Write the (possibly quantised) OpenVINO IR (``.xml`` + ``.bin``); reload with :meth:`load`: the export
        step for deployment (no re-export or re-calibration at start-up)."""
        import openvino as ov

        path = Path(path).with_suffix(".xml")
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(self.ov_model, str(path), compress_to_fp16=False)
        meta = {"label": self.label, "dynamic_group": self.dynamic_group}
        path.with_suffix(".json").write_text(json.dumps(meta))
        return path

    @classmethod
    def load(cls, path: str | Path, config: Any, *, threads: int | None = None, precision: str | None = None,
             word_embeddings: nn.Module | None = None) -> OpenVinoScorer:
        """An :class:`OpenVinoScorer` from an IR written by :meth:`save` (``config``: the Hugging Face config;
        ``word_embeddings``: the model's, for IRs that take ``inputs_embeds``)."""
        import openvino as ov

        path = Path(path).with_suffix(".xml")
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return cls(ov.Core().read_model(str(path)), config, threads=threads, precision=precision,
                   dynamic_group=meta.get("dynamic_group"), label=meta.get("label", "openvino"),
                   word_embeddings=word_embeddings)

    def __deepcopy__(self, memo: dict) -> OpenVinoScorer:  # compiled models cannot be copied; share them
        return self


def load_openvino(model: Any, path: str | Path, *, threads: int | None = None, precision: str | None = None) -> Any:
    """Put an OpenVINO IR saved by :meth:`OpenVinoScorer.save` into ``model`` (the ``CrossEncoder`` it was made
    from, loaded as usual): the deployment path that skips export and calibration at start-up."""
    transformer = transformer_module(model)
    if inference_mode_of(model) is not None:
        raise QueritInputError(f"model is already optimised (mode {inference_mode_of(model)!r})")
    hf = transformer.model
    words = hf.get_input_embeddings() if hasattr(hf, "get_input_embeddings") else None
    scorer = OpenVinoScorer.load(path, hf.config, threads=threads, precision=precision, word_embeddings=words)
    model.eval()
    transformer.model = scorer
    set_inference_mode(model, "openvino-int8" if "int8" in scorer.label else "openvino")
    return model


class _FeatureRecorder(nn.Module):
    """Stands in for ``transformer.model`` during a ``predict`` call and keeps the features it is given
    (sentence-transformers' own tokenisation, prompts and length-sorted batches: what the deployed model sees)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.batches: list[dict[str, Any]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        self.batches.append({"input_ids": input_ids.to(torch.int64).numpy().copy(),
                             "attention_mask": attention_mask.to(torch.int64).numpy().copy(),
                             "token_type_ids": token_type_ids.to(torch.int64).numpy().copy()})
        n = int(getattr(self.config, "num_labels", 1) or 1)
        return {"logits": torch.zeros(input_ids.shape[0], n)}


def calibration_batches(model: Any, transformer: Any, pairs: Any, batch_size: int = 32) -> list[dict[str, Any]]:
    """The feature batches ``model.predict`` builds for the (query, document) ``pairs``, recorded by a stand-in for
    ``transformer.model`` (restored afterwards): NNCF's calibration data."""
    pairs = [tuple(p) for p in pairs]
    if not pairs or any(len(p) != 2 or not all(isinstance(t, str) for t in p) for p in pairs):
        raise QueritInputError("calibration must be a non-empty list of (query, document) string pairs")
    real = transformer.model
    recorder = _FeatureRecorder(real.config)
    transformer.model = recorder
    try:
        model.predict(pairs, batch_size=batch_size, show_progress_bar=False, activation_fn=nn.Identity())
    finally:
        transformer.model = real
    return recorder.batches


def _graph_feed(names: list[str], batch: dict[str, Any], words: nn.Module) -> dict[str, Any]:
    """A recorded feature batch (:func:`calibration_batches`) as the graph's inputs ``names``."""
    ids = torch.from_numpy(batch["input_ids"])
    return numpy_feed(names, ids, torch.from_numpy(batch["attention_mask"]), torch.from_numpy(batch["token_type_ids"]),
                      words)


def _ov_matmuls(ov_model: Any, packed: PackedBertScorer, names: list[str]) -> list[str]:
    """Friendly names of the OpenVINO MatMuls whose constant weight is one of ``packed``'s linears ``names``."""
    import numpy as np

    modules = dict(packed.named_modules())
    wanted = {modules[n].weight.detach().t().contiguous().numpy().tobytes() for n in names}
    found = []
    for op in ov_model.get_ops():
        if op.get_type_name() != "MatMul":
            continue
        for i in range(op.get_input_size()):
            src = op.input_value(i).get_node()
            if src.get_type_name() == "Constant":
                data = np.asarray(src.get_data(), dtype=np.float32)
                if data.tobytes() in wanted or np.ascontiguousarray(data.T).tobytes() in wanted:
                    found.append(op.get_friendly_name())
                break
    return found


def _overflow_fix(features: dict[str, Any]) -> Any:
    """NNCF's ``overflow_fix`` for static int8 on this CPU: without VNNI the u8 x s8 dot product (``vpmaddubsw``)
    saturates its int16 sums, so every weight is quantised to 7 bits (``ENABLE``); with VNNI, NNCF's default
    (first layer only). Measured on the tiny test model (AVX2, no VNNI): Spearman vs fp32 0.9866 with the
    default, 0.9992 with ``ENABLE``. An IR quantised on a VNNI CPU keeps full-range weights: re-export it for AVX2."""
    from nncf.quantization.advanced_parameters import OverflowFix

    return OverflowFix.FIRST_LAYER if features["avx512_vnni"] or features["avx_vnni"] or features["amx"] else OverflowFix.ENABLE


def convert_openvino(packed: PackedBertScorer) -> Any:
    """The packed forward as an OpenVINO model, converted in memory from PyTorch (``openvino.convert_model``; no ONNX
    file in between: ~80 MB less peak memory on the compact student), from the word-embedding rows on
    (``inputs_embeds``, as the ONNX graphs), dynamic batch and length."""
    import openvino as ov

    embeds, mask, types = example_inputs(packed)
    hidden = int(embeds.shape[-1])
    packed.exporting = True
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return ov.convert_model(score_only(packed), example_input=(embeds, mask, types),
                                    input=[ov.PartialShape([-1, -1, hidden]), ov.PartialShape([-1, -1]),
                                           ov.PartialShape([-1, -1])])
    finally:
        packed.exporting = False


def openvino_scorer(
    packed: PackedBertScorer,
    int8: bool,
    threads: int | None,
    skip: tuple[str, ...] = (),
    calibration: list[dict[str, Any]] | None = None,
    dynamic_group: int | None = None,
    precision: str | None = None,
) -> OpenVinoScorer:
    """The packed forward converted to OpenVINO (:func:`convert_openvino`); for int8, NNCF: calibrated static int8 of the
    encoder matmuls (``calibration`` batches) or int8 weights with OpenVINO's runtime activation quantisation."""
    ov_model = convert_openvino(packed)
    words = packed.word_embeddings
    names = [i.get_any_name() for i in ov_model.inputs]
    if not int8:
        return OpenVinoScorer(ov_model, packed.config, threads=threads, precision=precision, label="openvino",
                              word_embeddings=words)
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    quantise = encoder_linear_names(packed, packed=True, skip=skip)
    others = [n for n, m in packed.named_modules() if isinstance(m, nn.Linear) and n not in quantise]
    keep_names = _ov_matmuls(ov_model, packed, others)  # pooler, head, [CLS]-only matmuls, keep_fp32 kinds
    if quantise and not _ov_matmuls(ov_model, packed, quantise):
        raise RuntimeError("found no encoder MatMul to quantise in the OpenVINO graph")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nncf_log = logging.getLogger("nncf")
        level = nncf_log.level
        nncf_log.setLevel(logging.ERROR)
        try:
            if calibration:
                # Gemm nodes (pooler, head) are not MatMuls: ignore them by type as well
                scope = nncf.IgnoredScope(names=keep_names, validate=False)
                ov_model = nncf.quantize(
                    ov_model, nncf.Dataset(calibration, lambda b: _graph_feed(names, b, words)),
                    model_type=nncf.ModelType.TRANSFORMER,
                    preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration), ignored_scope=scope,
                    advanced_parameters=AdvancedQuantizationParameters(overflow_fix=_overflow_fix(cpu_features())),
                )
                label, group = "openvino-int8-static", None
            else:
                scope = nncf.IgnoredScope(names=keep_names, validate=False)
                ov_model = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_SYM, ignored_scope=scope)
                label, group = "openvino-int8-dynamic", DEFAULT_OV_DQ_GROUP if dynamic_group is None else dynamic_group
        finally:
            nncf_log.setLevel(level)
    return OpenVinoScorer(ov_model, packed.config, threads=threads, precision=precision, dynamic_group=group,
                          label=label, word_embeddings=words)
