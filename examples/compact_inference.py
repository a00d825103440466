"""Score with a reranker in querit-st's "compact" inference mode and check it ranks like fp32.

    python examples/compact_inference.py path/to/cross-encoder-folder
    python examples/compact_inference.py            # the MiniLM-L6 backbone cross-encoder (untrained head)

"compact" is ONNX Runtime on a padding-free forward with int8 matmuls (the exact fp32 ``packed`` forward in
PyTorch when onnxruntime is not installed); see ``querit_st.inference`` and ``benchmarks/speed.py`` for the other
modes.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from sentence_transformers import CrossEncoder

from querit_st.inference import inference_mode_of, optimize_for_inference


def main() -> None:
    if len(sys.argv) > 1:
        load = lambda: CrossEncoder(sys.argv[1])  # noqa: E731
    else:
        from querit_st.cross_encoder import QueritCrossEncoder

        def load() -> CrossEncoder:
            torch.manual_seed(0)
            return QueritCrossEncoder.from_embedding_model("minilm-l6")

    query = "measurement of dielectric constant of liquids"
    docs = [
        "the dielectric constant of several polar liquids was measured at microwave frequencies",
        "a new method for the measurement of the permittivity of liquids using a coaxial line",
        "the theory of superconductivity in thin metal films",
        "design of a transistor amplifier for low noise applications",
        "temperature dependence of the dielectric loss in water and alcohols",
    ] * 20
    pairs = [(query, d) for d in docs]

    reference = load()  # fp32, as saved
    compact = optimize_for_inference(load(), "compact")  # in place; inplace=False optimises a copy
    print(f"mode applied: {inference_mode_of(compact)}")

    for name, model in (("fp32", reference), ("compact", compact)):
        model.predict(pairs[:8])  # warm-up
        t = time.perf_counter()
        scores = model.predict(pairs, batch_size=32)
        print(f"{name:8s} {len(pairs) / (time.perf_counter() - t):7.1f} pairs/s   top: {np.argsort(-scores[:5])}")

    print(compact.rank(query, docs[:5], return_documents=True)[:3])


if __name__ == "__main__":
    main()
