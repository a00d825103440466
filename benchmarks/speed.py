"""Speed benchmark: our inference modes against sentence-transformers on the same model and inputs.

One run measures everything side by side and prints ratios (timings on a shared CPU are noisy, so configurations
are interleaved round by round and every ratio is the median of per-round ratios against the anchor):

1. **Reranking**: pairs/s, peak RSS and nDCG@10 for sentence-transformers ``CrossEncoder`` fp32 (the anchor), its
   bf16 autocast, its ONNX / OpenVINO backends where they load (and ``proxy-st-onnx[-int8]``: what that backend
   runs, built without optimum: the HF graph in ONNX Runtime, int8 by the "avx2" recipe of
   ``export_dynamic_quantized_onnx_model``), and each mode of :func:`querit_st.inference.optimize_for_inference`
   (``ours-onnx-int8-all``: ``onnx-int8`` with ``keep_fp32=()``; the other ``ours-onnx-int8-*`` keep the named
   linears in fp32). Every configuration runs in its own worker process (so its
   peak RSS is its own); the parent interleaves them: round r runs every worker once, in a shuffled order.
   Inputs: the first queries of vaswani with their top-k from ``DenseRetriever("minilm-l6")``.
2. **The machine's limit**: fp32 / bf16 / int8 matmul throughput and the fraction of it reranking reaches
   (FLOPs per pair = 2 * non-embedding params * tokens + attention).
3. **Training**: pairs/s of sentence-transformers' ``CrossEncoderTrainer`` fp32 (the anchor) against querit-st's
   fast training path on identical stage-1 lists, and how time grows with the number of lists
   (``benchmarks/speed_train.py``).
4. **How cost grows**: reranking time as candidates per query double, mining time as the corpus doubles.

Writes ``benchmarks/results/speed.json`` (command, machine, date, all numbers) and prints the tables.

Usage::

    python benchmarks/speed.py --quick            # a few minutes: 10 queries x 20 candidates, 3 rounds
    python benchmarks/speed.py                    # 20 queries x 100 candidates, 5 rounds, all sections
    python benchmarks/speed.py --sections rerank  # only section 1

sentence-transformers' ONNX / OpenVINO backends need ``optimum-onnx`` / ``optimum-intel``, which pin
``transformers<5`` and so do not install beside transformers 5 here. ``--optimum-path DIR`` adds a folder
where they were installed with ``pip install --no-deps --target DIR optimum==2.1.0 optimum-onnx==0.1.0`` to the
workers' path; the configurations are reported as unavailable (with the reason) when they do not load.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from querit_st.utils.machine import cpu_flags  # noqa: E402  (after the path is set)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "vaswani"
RESULTS = ROOT / "benchmarks" / "results" / "speed.json"

#: Reranking configurations: name -> (kind, option). "st" ones are sentence-transformers as a user would run it.
CONFIGS: dict[str, tuple[str, str]] = {
    "st-fp32": ("st", "fp32"),
    "st-bf16-autocast": ("st", "bf16-autocast"),
    "st-onnx": ("st", "onnx"),
    "st-onnx-int8": ("st", "onnx-int8"),
    "st-openvino": ("st", "openvino"),
    "proxy-st-onnx": ("proxy", "fp32"),
    "proxy-st-onnx-int8": ("proxy", "int8"),
    "proxy-st-openvino": ("proxy", "openvino"),
    "ours-bf16": ("ours", "bf16"),
    "ours-int8": ("ours", "int8"),
    "ours-packed": ("ours", "packed"),
    "ours-packed-int8": ("ours", "packed-int8"),
    "ours-onnx": ("ours", "onnx"),
    "ours-onnx-int8": ("ours", "onnx-int8"),
    "ours-onnx-int8-all": ("ours", "onnx-int8:keep="),  # every encoder matmul in int8
    "ours-onnx-int8-attn-out": ("ours", "onnx-int8:keep=ffn_out+attn_out"),
    "ours-onnx-int8-qkv-only": ("ours", "onnx-int8:keep=ffn_out+attn_out+ffn_in"),  # only Q/K/V in int8
    "ours-onnx-int8-ffn-in-attn": ("ours", "onnx-int8:keep=ffn_out+qkv"),  # ffn_in and attn_out in int8
    "ours-openvino": ("ours", "openvino"),
    "ours-openvino-int8": ("ours", "openvino-int8"),
    "ours-compact": ("ours", "compact:calibrated"),
}
#: sentence-transformers' own backends: run by ``--st-python`` when given (a Python where they install)
ST_BACKENDS = ("st-onnx", "st-onnx-int8", "st-openvino")
ANCHOR = "st-fp32"


def _log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # pragma: no cover
        return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------------ machine


def machine_info() -> dict[str, Any]:
    import torch

    from querit_st.utils.machine import INTERESTING_FLAGS, cpu_features, cpu_model

    info = {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }
    info["cpu_flags"] = sorted(f for f in cpu_flags() if f.startswith(INTERESTING_FLAGS))
    for dist in ("transformers", "sentence-transformers", "onnxruntime", "onnx", "openvino", "nncf"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:
            info[dist] = None
    return info


# ------------------------------------------------------------------------------------------------ inputs


def build_model(folder: Path, seed: int = 0) -> Path:
    """The MiniLM-L6 backbone cross-encoder (``QueritCrossEncoder.from_embedding_model("minilm-l6")``), saved once."""
    if (folder / "config.json").is_file():
        return folder
    import torch

    from querit_st.cross_encoder import QueritCrossEncoder

    torch.manual_seed(seed)
    model = QueritCrossEncoder.from_embedding_model("minilm-l6")
    model.save(str(folder))
    return folder


def find_trained_reranker() -> Path | None:
    """A trained reranker saved under runs/ or benchmarks/ (a CrossEncoder folder), newest first."""
    found = []
    for base in (ROOT / "runs", ROOT / "benchmarks"):
        if not base.is_dir():
            continue
        for cfg in base.rglob("config_sentence_transformers.json"):
            try:
                if json.loads(cfg.read_text()).get("model_type") == "CrossEncoder":
                    found.append(cfg.parent)
            except (OSError, ValueError):
                continue
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def build_inputs(data_dir: Path, num_queries: int, top_k: int, out: Path) -> dict[str, Any]:
    """Queries with their first-stage top-k (the shared retriever), as (qid, did, query, doc) rows + qrels."""
    from querit_st.data import doc_text, load_beir
    from querit_st.retriever import DenseRetriever

    data = load_beir(str(data_dir))
    queries = {q: t for q, t in list(data.queries.items()) if q in data.qrels}
    queries = dict(list(queries.items())[:num_queries])
    t0 = time.perf_counter()
    retriever = DenseRetriever("minilm-l6")
    retriever.index(data.corpus)
    first = retriever.search(queries, top_k=top_k)
    rows = []
    for qid, hits in first.items():
        for did, _ in sorted(hits.items(), key=lambda kv: -kv[1])[:top_k]:
            rows.append([qid, did, queries[qid], doc_text(data.corpus[did])])
    payload = {
        "dataset": data.name,
        "rows": rows,
        "qrels": {q: data.qrels[q] for q in queries},
        "first_stage": {q: dict(h) for q, h in first.items()},
        "retrieval_s": time.perf_counter() - t0,
    }
    out.write_text(json.dumps(payload))
    return payload


def build_calibration(data_dir: Path, exclude: set[str], n: int, out: Path, seed: int = 0) -> dict[str, Any]:
    """Calibration pairs for the static int8 mode: queries of the same collection that are *not* reranked here,
    each with a random document of the corpus (what a deployment has: its own traffic, not the test queries)."""
    from querit_st.data import doc_text, load_beir

    data = load_beir(str(data_dir))
    rng = random.Random(seed)
    queries = [t for q, t in sorted(data.queries.items()) if q not in exclude]
    docs = [doc_text(d) for _, d in sorted(data.corpus.items())]
    payload = {"dataset": data.name, "how": f"{n} pairs: queries not in the benchmark x random corpus documents (seed {seed})",
               "pairs": [[rng.choice(queries), rng.choice(docs)] for _ in range(n)]}
    out.write_text(json.dumps(payload))
    return payload


# ------------------------------------------------------------------------------------------------ worker


def _load_config(name: str, model_dir: str, optimum_path: str | None, calibration: str | None = None) -> tuple[Any, Any]:
    """(model, context manager factory) for one configuration, in this (worker) process."""
    import contextlib

    import torch
    from sentence_transformers import CrossEncoder

    kind, option = CONFIGS[name]
    ctx = contextlib.nullcontext
    if kind == "st":
        if option in ("fp32", "bf16-autocast"):
            model = CrossEncoder(model_dir)
            if option == "bf16-autocast":
                ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        elif option in ("onnx", "onnx-int8", "openvino"):
            if optimum_path:
                sys.path.insert(0, optimum_path)
            backend = "openvino" if option == "openvino" else "onnx"
            import shutil
            import tempfile

            # a private copy: the backends export into the model folder
            tmp = Path(tempfile.mkdtemp(prefix=f"st_{backend}_"))
            shutil.copytree(model_dir, tmp / "m")
            _tokenizer_for_transformers4(tmp / "m")
            if option == "onnx-int8":
                from sentence_transformers import export_dynamic_quantized_onnx_model

                exported = CrossEncoder(str(tmp / "m"), backend="onnx")
                exported.save(str(tmp / "m"))
                qconfig = "avx512_vnni" if "avx512_vnni" in cpu_flags() else "avx2"
                export_dynamic_quantized_onnx_model(exported, qconfig, str(tmp / "m"))
                # the file is named after the weight dtype: model_qint8_avx512_vnni.onnx, model_quint8_avx2.onnx
                found = sorted((tmp / "m" / "onnx").glob(f"model_*_{qconfig}.onnx"))
                if not found:
                    raise FileNotFoundError(f"no onnx/model_*_{qconfig}.onnx after export_dynamic_quantized_onnx_model")
                model = CrossEncoder(str(tmp / "m"), backend="onnx",
                                     model_kwargs={"file_name": f"onnx/{found[0].name}"})
            else:
                model = CrossEncoder(str(tmp / "m"), backend=backend)
        else:  # pragma: no cover
            raise ValueError(option)
    elif kind == "proxy":
        model = CrossEncoder(model_dir)
        if option == "openvino":
            model[0].model = _proxy_openvino(model[0].model)
        else:
            model[0].model = _proxy_onnx(model[0].model, option == "int8")
    else:
        from querit_st.inference import inference_mode_of, optimize_for_inference

        mode, _, variant = option.partition(":")
        extra: dict[str, Any] = {}
        if variant.startswith("keep="):  # the linear kinds left in fp32, "+"-separated ("keep=" for none)
            extra["keep_fp32"] = tuple(k for k in variant[len("keep="):].split("+") if k)
        if variant == "calibrated":
            if not calibration:
                raise ValueError("no calibration pairs given")
            extra["calibration"] = [tuple(p) for p in json.loads(Path(calibration).read_text())["pairs"]]
        model = optimize_for_inference(CrossEncoder(model_dir), mode, **extra)
        scorer = model[0].model
        _log(f"[{name}] mode applied: {inference_mode_of(model)} ({getattr(scorer, 'label', type(scorer).__name__)})")
    return model, ctx


def _tokenizer_for_transformers4(folder: Path) -> None:
    """transformers 5 saves a tokenizer.json-backed tokenizer as ``"tokenizer_class": "TokenizersBackend"``, a class
    transformers 4 (where optimum installs) does not know; its generic equivalent there is ``PreTrainedTokenizerFast``
    (same tokenizer.json, same special tokens). Rewrites the private copy's config under transformers < 5 only."""
    import transformers

    cfg = folder / "tokenizer_config.json"
    if int(transformers.__version__.split(".")[0]) >= 5 or not cfg.is_file():
        return
    data = json.loads(cfg.read_text())
    if data.get("tokenizer_class") == "TokenizersBackend":
        data["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg.write_text(json.dumps(data, indent=2))


def _proxy_onnx(hf: Any, int8: bool) -> Any:
    """What sentence-transformers' ONNX backend runs, built without optimum: the Hugging Face graph exported to
    ONNX, an ONNX Runtime session with default optimisations, and for int8 ``export_dynamic_quantized_onnx_model``'s
    recipe for this CPU ("avx512_vnni": signed int8 weights, or "avx2": unsigned; dynamic, per-channel, every
    MatMul including the head)."""
    import tempfile
    import warnings

    from querit_st.inference import OnnxScorer

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = _export_hf_onnx(hf, Path(tmp) / "model.onnx")
        if int8:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = Path(tmp) / "model_int8.onnx"
            wtype = QuantType.QInt8 if "avx512_vnni" in cpu_flags() else QuantType.QUInt8
            quantize_dynamic(str(path), str(q), weight_type=wtype, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            path = q
        return OnnxScorer(path.read_bytes(), hf.config, label="proxy")


def _export_hf_onnx(hf: Any, path: Path) -> Path:
    import copy

    import torch

    ex = copy.deepcopy(hf).eval()
    ex.config._attn_implementation = "eager"
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3, 0], [2, 5, 3, 7, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    axes = {k: {0: "b", 1: "s"} for k in ("input_ids", "attention_mask", "token_type_ids")} | {"logits": {0: "b"}}
    with torch.no_grad():
        torch.onnx.export(ex, (ids, mask, torch.zeros_like(ids)), str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
                          dynamic_axes=axes)
    return path


def _proxy_openvino(hf: Any) -> Any:
    """What sentence-transformers' OpenVINO backend runs, built without optimum-intel: the Hugging Face graph in
    OpenVINO with the device's default precision (bf16 on CPUs with native bf16), latency hint."""
    import tempfile
    import warnings

    import openvino as ov

    from querit_st.inference import OpenVinoScorer

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = _export_hf_onnx(hf, Path(tmp) / "model.onnx")
        return OpenVinoScorer(ov.Core().read_model(str(path)), hf.config, label="proxy-openvino")


def worker_main(args: argparse.Namespace) -> None:
    """Serve one configuration: load, then answer 'run' requests from the parent on stdin (JSON lines)."""
    import numpy as np
    import torch

    rows = json.loads(Path(args.inputs).read_text())["rows"]
    pairs = [(r[2], r[3]) for r in rows]
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    try:
        model, ctx = _load_config(args.worker, args.model_dir, args.optimum_path, args.calibration)
    except Exception as exc:  # report and exit: the configuration is unavailable here
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
        return
    load_s = time.perf_counter() - t0
    applied = getattr(model, "_querit_inference_mode", None)  # ours: the concrete mode ("compact" depends on the CPU)
    if applied:
        scorer = model[0].model
        applied = f"{applied} ({getattr(scorer, 'label', type(scorer).__name__)})"
    hello = {"ok": True, "load_s": load_s, "rss_loaded_mb": _rss_mb(), "rss_before_mb": rss0, "mode_applied": applied}
    print(json.dumps(hello), flush=True)
    kw = {"batch_size": args.batch_size, "show_progress_bar": False, "activation_fn": torch.nn.Identity()}
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            break
        sub = pairs if req.get("n") is None else pairs[: req["n"]]
        with ctx():
            t = time.perf_counter()
            scores = model.predict(sub, **kw)
            dt = time.perf_counter() - t
        reply = {"seconds": dt, "n": len(sub), "peak_rss_mb": _peak_rss_mb()}
        if req.get("scores"):
            reply["scores"] = np.asarray(scores, dtype=float).tolist()
        print(json.dumps(reply), flush=True)


class Worker:
    def __init__(self, name: str, args: argparse.Namespace, inputs: Path, model_dir: Path) -> None:
        python = args.st_python if (args.st_python and name in ST_BACKENDS) else sys.executable
        cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--inputs", str(inputs),
               "--model-dir", str(model_dir), "--batch-size", str(args.batch_size)]
        if args.optimum_path:
            cmd += ["--optimum-path", args.optimum_path]
        if getattr(args, "calibration", None):
            cmd += ["--calibration", str(args.calibration)]
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     stderr=None if args.verbose else subprocess.DEVNULL)
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        # libraries loaded by a worker may print to stdout (nncf does): skip lines that are not protocol replies
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return {"ok": False, "error": "worker exited"}
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(reply, dict):
                return reply

    def run(self, n: int | None = None, scores: bool = False) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"cmd": "run", "n": n, "scores": scores}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------------------------ section 1


def _ndcg(payload: dict[str, Any], scores: list[float]) -> float:
    from querit_st.evaluation import compute_metrics

    results: dict[str, dict[str, float]] = {}
    for (qid, did, _, _), s in zip(payload["rows"], scores):
        results.setdefault(qid, {})[did] = float(s)
    return compute_metrics(payload["qrels"], results, (10,))["nDCG@10"]


def _flops_per_pair(model_dir: Path, rows: list[list[str]]) -> dict[str, float]:
    """2 * non-embedding params * tokens + attention (4 * L^2 * H per layer), averaged over the pairs."""
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(model_dir))
    hf = ce[0].model
    cfg = hf.config
    params = sum(p.numel() for n, p in hf.named_parameters() if "embeddings" not in n)
    prompt = ce.prompts.get(ce.default_prompt_name or "", "") if ce.default_prompt_name else ""
    tok = ce[0].tokenizer
    enc = tok([prompt + r[2] for r in rows], [r[3] for r in rows], truncation=True, max_length=ce.max_seq_length)
    lengths = [len(x) for x in enc["input_ids"]]
    per_pair = [2 * params * n + cfg.num_hidden_layers * 4 * n * n * cfg.hidden_size for n in lengths]
    return {"flops_per_pair": sum(per_pair) / len(per_pair), "mean_tokens": sum(lengths) / len(lengths),
            "nonembedding_params": params}


def section_rerank(args: argparse.Namespace, payload: dict[str, Any], inputs: Path, model_dir: Path) -> dict[str, Any]:
    import numpy as np
    from scipy.stats import spearmanr

    from querit_st.inference import has_native_bf16

    names = [n for n in CONFIGS if args.configs is None or n in args.configs or n == ANCHOR]
    slow_bf16 = not has_native_bf16()
    n_pairs = len(payload["rows"])
    workers: dict[str, Worker] = {}
    out: dict[str, Any] = {"num_pairs": n_pairs, "batch_size": args.batch_size, "rounds": args.rounds, "configs": {}}
    for name in names:
        _log(f"[rerank] starting {name}")
        w = Worker(name, args, inputs, model_dir)
        if not w.hello.get("ok"):
            out["configs"][name] = {"available": False, "error": w.hello.get("error")}
            _log(f"[rerank] {name} unavailable: {w.hello.get('error')}")
            w.close()
            continue
        workers[name] = w
        out["configs"][name] = {"available": True, "load_s": w.hello["load_s"], "rss_loaded_mb": w.hello["rss_loaded_mb"]}
        if w.hello.get("mode_applied"):
            out["configs"][name]["mode_applied"] = w.hello["mode_applied"]
    # bf16 without native support is ~100x slower than fp32 here: it gets a subset and one round (flagged)
    bf16_names = [n for n in workers if "bf16" in n]
    subset = max(8, n_pairs // 20)
    # timing rounds: the first --timing-pairs pairs (all of them by default in --quick); scores and nDCG: all pairs
    timed = None if not args.timing_pairs or args.timing_pairs >= n_pairs else args.timing_pairs
    out["timed_pairs"] = timed or n_pairs
    # first pass: scores (also the warm-up)
    scores: dict[str, list[float]] = {}
    for name, w in workers.items():
        n = subset if (slow_bf16 and name in bf16_names) else None
        r = w.run(n=n, scores=True)
        scores[name] = r["scores"]
        _log(f"[rerank] {name}: warm-up {r['n'] / r['seconds']:.1f} pairs/s")
    times: dict[str, list[float]] = {n: [] for n in workers}
    ratios: dict[str, list[float]] = {n: [] for n in workers}
    peak: dict[str, float] = {}
    for rnd in range(args.rounds):
        order = [n for n in workers if not (slow_bf16 and n in bf16_names)]
        random.shuffle(order)
        if slow_bf16 and rnd == 0:
            order += bf16_names
        rt: dict[str, float] = {}
        for name in order:
            r = workers[name].run(n=subset if (slow_bf16 and name in bf16_names) else timed)
            rt[name] = r["n"] / r["seconds"]  # pairs/s
            peak[name] = r["peak_rss_mb"]
        for name, pps in rt.items():
            times[name].append(pps)
            if ANCHOR in rt:
                ratios[name].append(pps / rt[ANCHOR])
        out.setdefault("load_average_per_round", []).append([round(x, 2) for x in os.getloadavg()])
        _log(f"[rerank] round {rnd + 1}/{args.rounds}: " + ", ".join(f"{k} {v:.1f}" for k, v in rt.items()))
    for w in workers.values():
        w.close()
    ref = np.asarray(scores[ANCHOR]) if ANCHOR in scores else None
    for name in workers:
        c = out["configs"][name]
        sub = slow_bf16 and name in bf16_names
        c.update({
            "pairs_per_s": float(np.median(times[name])),
            "pairs_per_s_all_rounds": [round(x, 2) for x in times[name]],
            "ratio_vs_st_fp32": float(np.median(ratios[name])) if ratios[name] else None,
            "ratio_rounds": [round(x, 3) for x in ratios[name]],
            "peak_rss_mb": peak.get(name),
            "measured_on_pairs": subset if sub else (timed or n_pairs),
        })
        if sub:
            c["note"] = f"no native bf16 on this CPU: measured once on the first {subset} pairs (emulated bf16)"
        if not sub:
            c["nDCG@10"] = _ndcg(payload, scores[name])
        if ref is not None:
            s = np.asarray(scores[name])
            c["spearman_vs_st_fp32"] = float(spearmanr(ref[: len(s)], s).statistic)
            c["max_abs_diff_vs_st_fp32"] = float(np.abs(ref[: len(s)] - s).max())
    # the best configuration sentence-transformers offers here: its own backends, or (where they do not install)
    # the proxies that run the same graph; by the median ratio to the anchor (robust to the machine's load)
    st_best = max(
        (n for n, c in out["configs"].items()
         if n.startswith(("st-", "proxy-st-")) and c.get("available") and c.get("ratio_vs_st_fp32") and not c.get("note")),
        key=lambda n: out["configs"][n]["ratio_vs_st_fp32"], default=None,
    )
    out["st_best"] = st_best
    if st_best:
        for name, c in out["configs"].items():
            if c.get("ratio_vs_st_fp32") and out["configs"][st_best].get("ratio_vs_st_fp32"):
                c["ratio_vs_st_best"] = c["ratio_vs_st_fp32"] / out["configs"][st_best]["ratio_vs_st_fp32"]
    anchor_ndcg = out["configs"].get(ANCHOR, {}).get("nDCG@10")
    for c in out["configs"].values():
        if anchor_ndcg is not None and c.get("nDCG@10") is not None:
            c["nDCG@10_delta_points"] = 100 * (c["nDCG@10"] - anchor_ndcg)
    out["first_stage_nDCG@10"] = _ndcg(payload, [0.0] * 0 + [payload["first_stage"][r[0]][r[1]] for r in payload["rows"]])
    out["flops"] = _flops_per_pair(model_dir, payload["rows"])
    return out


# ------------------------------------------------------------------------------------------------ section 2


def section_limits(args: argparse.Namespace) -> dict[str, Any]:
    """Matmul throughput. On a shared machine one timing says little: every kernel is timed in each of several
    interleaved trials and its best trial is reported (the peak the hardware gave us)."""
    import warnings

    import numpy as np
    import torch

    def timeit(fn: Any, reps: int) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) / reps

    n = 1024
    reps = 3 if args.quick else 5
    trials = 3 if args.quick else 5
    kernels: dict[str, tuple[Any, float, int]] = {}  # name -> (fn, ops per call, reps)
    a, b = torch.randn(2 * n, n), torch.randn(n, n)
    kernels["fp32_torch_matmul_gflops"] = (lambda: a @ b, 2 * 2 * n * n * n, reps)
    from querit_st.inference import cpu_features

    feats = cpu_features()
    # bf16 / _int_mm are emulated (very slow) without AVX-512 BF16 / VNNI: then a small product, run once
    native_bf16, native_int8 = bool(feats["avx512_bf16"] or feats["amx"]), bool(feats["avx512_vnni"] or feats["amx"])
    mb = 2 * n if native_bf16 else 256
    ab, bb = torch.randn(mb, n).bfloat16(), torch.randn(n, n).bfloat16()
    kernels["bf16_torch_matmul_gflops"] = (lambda: ab @ bb, 2 * mb * n * n, reps if native_bf16 else 1)
    mi = 2 * n if native_int8 else 256
    ai = torch.randint(-128, 127, (mi, n), dtype=torch.int8)
    bi = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    kernels["int8_torch_int_mm_gops"] = (lambda: torch._int_mm(ai, bi), 2 * mi * n * n, reps if native_int8 else 1)
    x = torch.randn(2 * n, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        for engine in ("x86", "fbgemm"):
            if engine in torch.backends.quantized.supported_engines:
                torch.backends.quantized.engine = engine
                q = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(n, n)), {"0": per_channel_dynamic_qconfig},
                                     dtype=torch.qint8)
                kernels[f"int8_torch_dynamic_linear_{engine}_gops"] = (lambda q=q: q(x), 2 * 2 * n * n * n, reps)
    out: dict[str, Any] = {"shape": [2 * n, n, n], "trials": trials, "how": "best of interleaved trials"}
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()

        def session(node: Any, xtype: int, ytype: int, inits: list[Any]) -> Any:
            graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", xtype, [None, n])],
                                      [helper.make_tensor_value_info("y", ytype, [None, n])], inits)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
            return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

        w8 = np.random.randint(0, 255, (n, n)).astype(np.uint8)
        s8 = session(helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"]), TensorProto.UINT8,
                     TensorProto.INT32,
                     [onnx.numpy_helper.from_array(w8, "w"), onnx.numpy_helper.from_array(np.array(128, np.uint8), "xz"),
                      onnx.numpy_helper.from_array(np.array(128, np.uint8), "wz")])
        xq = np.random.randint(0, 255, (2 * n, n)).astype(np.uint8)
        kernels["int8_ort_matmulinteger_u8u8_gops"] = (lambda: s8.run(None, {"x": xq}), 2 * 2 * n * n * n, reps)
        sf = session(helper.make_node("MatMul", ["x", "w"], ["y"]), TensorProto.FLOAT, TensorProto.FLOAT,
                     [onnx.numpy_helper.from_array(np.random.randn(n, n).astype(np.float32), "w")])
        xf = np.random.randn(2 * n, n).astype(np.float32)
        kernels["fp32_ort_matmul_gflops"] = (lambda: sf.run(None, {"x": xf}), 2 * 2 * n * n * n, reps)
    except Exception as exc:
        out["ort"] = f"unavailable: {type(exc).__name__}: {exc}"[:300]
    best: dict[str, float] = {}
    for _ in range(trials):
        for name, (fn, ops, r) in kernels.items():
            if r == 1 and name in best:  # the slow emulated kernels: once is enough
                continue
            try:
                best[name] = max(best.get(name, 0.0), ops / timeit(fn, r) / 1e9)
            except Exception as exc:  # pragma: no cover
                out[name] = f"unavailable: {exc}"
    out.update(best)
    out["fp32_peak"] = max(v for k, v in best.items() if k.startswith("fp32"))
    # a bf16 / int8 "peak" below the fp32 one is emulation, not a limit worth a fraction: None
    for kind in ("bf16", "int8"):
        peak = max((v for k, v in best.items() if k.startswith(kind)), default=None)
        out[f"{kind}_peak"] = peak if peak is not None and peak > out["fp32_peak"] else None
    return out


# ------------------------------------------------------------------------------------------------ section 3


def section_training(args: argparse.Namespace, payload: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """Training pairs/s: sentence-transformers' ``CrossEncoderTrainer`` fp32 against querit-st's fast path on the
    same stage-1 lists (``benchmarks/speed_train.py``, which also writes ``speed_train.json``)."""
    import speed_train

    out = ROOT / "benchmarks" / "results" / "speed_train.json"
    speed_train.main(["--lists", "32" if args.quick else "64,128", "--rounds", "1" if args.quick else "2",
                      "--output", str(out)])
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------ section 4


def section_scaling(args: argparse.Namespace, payload: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    from querit_st.inference import optimize_for_inference

    out: dict[str, Any] = {}
    # reranking: candidates per query double; a few queries
    by_q: dict[str, list[list[str]]] = {}
    for r in payload["rows"]:
        by_q.setdefault(r[0], []).append(r)
    n_q = 2 if args.quick else 5
    depths = (5, 10, 20, 40) if args.quick else (25, 50, 100, 200)
    # candidates deeper than the reranking inputs: the same retriever, searched deeper for these queries
    from querit_st.data import doc_text, load_beir
    from querit_st.retriever import DenseRetriever

    data = load_beir(str(args.data))
    qids0 = list(by_q)[:n_q]
    deep_retriever = DenseRetriever("minilm-l6")
    deep_retriever.index(data.corpus)
    deep = deep_retriever.search({q: by_q[q][0][2] for q in qids0}, top_k=max(depths))
    extra = {q: [[q, d, by_q[q][0][2], doc_text(data.corpus[d])] for d, _ in sorted(h.items(), key=lambda kv: -kv[1])]
             for q, h in deep.items()}
    del deep_retriever
    anchor = CrossEncoder(str(model_dir))
    compact = optimize_for_inference(CrossEncoder(str(model_dir)), "compact")
    kw = {"batch_size": args.batch_size, "show_progress_bar": False, "activation_fn": torch.nn.Identity()}
    qids = list(by_q)[:n_q]
    rer: dict[str, Any] = {}
    for depth in depths:
        pairs = []
        for q in qids:
            rs = extra.get(q, by_q[q])
            pairs += [(r[2], r[3]) for r in rs[:depth]]
        res = {}
        for name, m in (("st-fp32", anchor), ("ours-compact", compact)):
            t = time.perf_counter()
            m.predict(pairs, **kw)
            res[name] = time.perf_counter() - t
        rer[str(depth)] = {"pairs": len(pairs), "queries": len(qids), **{f"{k}_s": v for k, v in res.items()},
                           "ratio": res["st-fp32"] / res["ours-compact"]}
        _log(f"[scale] rerank depth {depth}: {rer[str(depth)]}")
    out["rerank_vs_candidates"] = rer
    # mining / first stage: corpus doubles
    ids = list(data.corpus)[: (800 if args.quick else 4000)]
    sizes = [100, 200, 400, 800] if args.quick else [500, 1000, 2000, 4000]
    queries = dict(list(data.queries.items())[: (5 if args.quick else 20)])
    mine: dict[str, Any] = {}
    try:
        from querit_st.mining import mine_soft_labels

        how = "querit_st.mining.mine_soft_labels (DenseRetriever minilm-l6 + a constant-time teacher)"
    except Exception as exc:
        mine_soft_labels = None
        how = f"retriever index + search (mining not importable: {exc})"
    from querit_st.retriever import DenseRetriever

    retr = DenseRetriever("minilm-l6", cache_dir=False)
    teacher = lambda qs, ds: [float(len(d) % 13) for d in ds]  # noqa: E731
    for size in sizes:
        corpus = {i: data.corpus[i] for i in ids[:size]}
        t = time.perf_counter()
        try:
            if mine_soft_labels is not None:
                retr.doc_ids, retr.embeddings = [], None
                mine_soft_labels(corpus, retr, teacher, queries=queries, top_k=min(50, size), num_candidates=8,
                                 output_dir=None, show_progress_bar=False)
            else:
                retr.index({k: doc_text(v) for k, v in corpus.items()})
                retr.search(queries, top_k=min(100, size))
        except Exception as exc:
            how = f"retriever index + search (mine_soft_labels failed: {type(exc).__name__}: {exc})"[:300]
            mine_soft_labels = None
            retr.index({k: doc_text(v) for k, v in corpus.items()})
            retr.search(queries, top_k=min(100, size))
        mine[str(size)] = {"docs": size, "queries": len(queries), "seconds": time.perf_counter() - t}
        _log(f"[scale] mining corpus {size}: {mine[str(size)]}")
    out["mining_vs_corpus"] = {"how": how, "points": mine}
    # slopes on log-log: cost ~ size^b
    for key, pts, col in (("rerank_exponent_ours", rer, "ours-compact_s"), ("rerank_exponent_st", rer, "st-fp32_s")):
        xs = np.log([v["pairs"] for v in pts.values()])
        ys = np.log([v[col] for v in pts.values()])
        out[key] = float(np.polyfit(xs, ys, 1)[0])
    xs = np.log([v["docs"] for v in mine.values()])
    ys = np.log([v["seconds"] for v in mine.values()])
    out["mining_exponent"] = float(np.polyfit(xs, ys, 1)[0])
    return out


# ------------------------------------------------------------------------------------------------ report


def _peak(value: float | None, unit: str) -> str:
    return f"{value:.1f} {unit}" if value else "emulated (below fp32)"


def print_tables(res: dict[str, Any]) -> None:
    r = res.get("rerank")
    if r:
        print(f"\n== Reranking: {r['num_pairs']} pairs, batch {r['batch_size']}, {r['rounds']} interleaved rounds "
              f"(ratios: median of per-round ratios) ==")
        print(f"{'config':22s} {'pairs/s':>9s} {'x st-fp32':>10s} {'x st-best':>10s} {'nDCG@10':>8s} {'d pts':>6s} {'spearman':>9s} {'peakRSS MB':>11s}")
        for name, c in r["configs"].items():
            if not c.get("available"):
                print(f"{name:22s} unavailable: {c.get('error', '')[:90]}")
                continue
            def f(x: Any, fmt: str) -> str:
                return format(x, fmt) if isinstance(x, (int, float)) else "-"
            print(f"{name:22s} {f(c.get('pairs_per_s'), '9.1f')} {f(c.get('ratio_vs_st_fp32'), '10.2f')} "
                  f"{f(c.get('ratio_vs_st_best'), '10.2f')} {f(c.get('nDCG@10'), '8.4f')} {f(c.get('nDCG@10_delta_points'), '6.2f')} "
                  f"{f(c.get('spearman_vs_st_fp32'), '9.4f')} {f(c.get('peak_rss_mb'), '11.0f')}"
                  + (" *" if c.get("note") else "") + (f"  [{c['mode_applied']}]" if c.get("mode_applied") else ""))
        print(f"st-best = {r.get('st_best')}; first stage nDCG@10 = {r.get('first_stage_nDCG@10'):.4f}; "
              f"* = {next((c['note'] for c in r['configs'].values() if c.get('note')), '')}")
        if r.get("quality_model"):
            print(f"quality model: {r['quality_model']}")
        m = res.get("machine", {})
        print(f"load average (1/5/15 min): start {m.get('load_average_at_start')}, per round "
              f"{[x[0] for x in r.get('load_average_per_round', [])]}; timed on {r.get('timed_pairs')} pairs per round")
    lim = res.get("limits")
    if lim:
        print("\n== Machine limit (matmul throughput) ==")
        for k, v in lim.items():
            if k.endswith(("gflops", "gops")):
                print(f"{k:40s} {v:9.1f}" if isinstance(v, float) else f"{k:40s} {v}")
        if r and "flops" in r:
            fl = r["flops"]["flops_per_pair"]
            print(f"FLOPs per pair: {fl / 1e9:.2f} GFLOP (mean {r['flops']['mean_tokens']:.1f} tokens); "
                  f"peaks: fp32 {lim['fp32_peak']:.1f} GFLOP/s, bf16 {_peak(lim.get('bf16_peak'), 'GFLOP/s')}, "
                  f"int8 {_peak(lim.get('int8_peak'), 'GOP/s')}")
            for name, c in r["configs"].items():
                if c.get("pairs_per_s") and not c.get("note"):
                    done = c["pairs_per_s"] * fl / 1e9
                    frac = f"{100 * done / lim['fp32_peak']:5.1f}% of the fp32 peak"
                    applied = c.get("mode_applied") or name
                    if ("bf16" in name or "openvino" in name or "compact" in name) and lim.get("bf16_peak"):
                        frac += f", {100 * done / lim['bf16_peak']:5.1f}% of the bf16 peak"
                    if "int8" in applied and lim.get("int8_peak"):
                        frac += f", {100 * done / lim['int8_peak']:5.1f}% of the int8 peak"
                    print(f"{name:22s} {done:7.1f} GFLOP/s (dense-equivalent) = {frac}")
            print("(packed / [CLS]-only modes skip ~14% of the FLOPs counted here, so they can pass 100%)")
    tr = res.get("training")
    if tr:
        print("\n== Training (pairs/s; CrossEncoderTrainer, identical stage-1 lists; x = vs ST fp32) ==")
        for n, run in tr.get("runs", {}).items():
            for c, v in run["configs"].items():
                print(f"lists {n:>5s} {c:12s} {v['pairs_per_s']:8.1f} pairs/s  x{v['ratio_vs_st_fp32']:.2f}  "
                      f"train {v['train_call_s']:.0f}s")
    sc = res.get("scaling")
    if sc:
        print("\n== How cost grows ==")
        for d, v in sc["rerank_vs_candidates"].items():
            print(f"candidates/query {d:>4s}: {v['pairs']:5d} pairs  st-fp32 {v['st-fp32_s']:7.2f}s  "
                  f"ours-compact {v['ours-compact_s']:7.2f}s  x{v['ratio']:.2f}")
        for d, v in sc["mining_vs_corpus"]["points"].items():
            print(f"corpus {d:>6s} docs: mining {v['seconds']:7.2f}s")
        print(f"exponents (time ~ size^b): rerank ours {sc['rerank_exponent_ours']:.2f}, st {sc['rerank_exponent_st']:.2f}; "
              f"mining {sc['mining_exponent']:.2f} ({sc['mining_vs_corpus']['how']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small run: 10 queries x 20 candidates, 3 rounds, small scaling points")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR folder (default ../shared/data/vaswani)")
    p.add_argument("--queries", type=int, default=None, help="queries (default 20, quick 10)")
    p.add_argument("--top-k", type=int, default=None, help="candidates per query (default 100, quick 20)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 5, quick 3)")
    p.add_argument("--batch-size", type=int, default=32, help="predict batch size for every configuration (ST's default)")
    p.add_argument("--sections", default="rerank,limits,training,scaling")
    p.add_argument("--configs", default=None, help="comma-separated subset of: " + ", ".join(CONFIGS))
    p.add_argument("--model-dir", type=Path, default=None, help="cross-encoder folder (default: MiniLM-L6 backbone, built once)")
    p.add_argument("--optimum-path", default=os.environ.get("QUERIT_OPTIMUM_PATH"), help="extra sys.path for optimum (see docs)")
    p.add_argument("--st-python", default=os.environ.get("QUERIT_ST_PYTHON"),
                   help="a Python where sentence-transformers' ONNX / OpenVINO backends install (runs the st-onnx*, "
                        "st-openvino workers; see the module docstring)")
    p.add_argument("--timing-pairs", type=int, default=None,
                   help="pairs per timing round (default 640, quick: all); scores / nDCG always use every pair")
    p.add_argument("--calibration-pairs", type=int, default=256, help="calibration pairs for ours-compact (static int8)")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--merge", action="store_true", help="keep the other sections of an existing --output file")
    p.add_argument("--verbose", action="store_true", help="show the workers' stderr")
    p.add_argument("--seed", type=int, default=0)
    # worker mode (internal)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--inputs", default=None, help=argparse.SUPPRESS)
    p.add_argument("--calibration", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.model_dir = str(args.model_dir)
        worker_main(args)
        return 0
    args.queries = args.queries or (10 if args.quick else 20)
    args.top_k = args.top_k or (20 if args.quick else 100)
    args.rounds = args.rounds or (3 if args.quick else 5)
    if args.timing_pairs is None:
        args.timing_pairs = 0 if args.quick else 640
    args.configs = None if args.configs is None else set(args.configs.split(","))
    random.seed(args.seed)
    sections = set(args.sections.split(","))
    work = Path(os.environ.get("QUERIT_ST_CACHE", Path.home() / ".cache" / "querit_st")) / "bench"
    work.mkdir(parents=True, exist_ok=True)

    command = " ".join([Path(sys.executable).name, *sys.argv])
    res: dict[str, Any] = {}
    if args.merge and args.output.is_file():
        res = json.loads(args.output.read_text())
        res.setdefault("section_runs", {})
    res.update({"command": command, "date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_info()})
    if args.st_python:
        probe = ("import json, importlib.metadata as m\nout = {}\nfor d in ('sentence-transformers', 'transformers', "
                 "'torch', 'optimum', 'optimum-intel', 'optimum-onnx', 'openvino', 'onnxruntime'):\n    try: out[d] = m.version(d)\n"
                 "    except Exception: out[d] = None\nprint(json.dumps(out))")
        try:
            got = subprocess.run([args.st_python, "-c", probe], capture_output=True, text=True, timeout=120)
            res["machine"]["st_python"] = {"path": args.st_python, **json.loads(got.stdout)}
        except Exception as exc:  # pragma: no cover
            res["machine"]["st_python"] = {"path": args.st_python, "error": str(exc)[:200]}
    for sec in sections:
        res.setdefault("section_runs", {})[sec] = {"command": command, "date": res["date"]}
    trained = find_trained_reranker()
    model_dir = args.model_dir or trained or build_model(work / "minilm-l6-ce-seed0")
    res["model"] = {"path": str(model_dir), "trained": bool(trained and Path(model_dir) == trained),
                    "note": None if trained else "no trained reranker under runs/ or benchmarks/: the untrained "
                    "MiniLM-L6 backbone cross-encoder (random head, seed 0); nDCG@10 and Spearman compare it to its fp32 self"}
    inputs = work / f"inputs_{args.data.name}_{args.queries}x{args.top_k}.json"
    payload = json.loads(inputs.read_text()) if inputs.is_file() else build_inputs(args.data, args.queries, args.top_k, inputs)
    res["inputs"] = {"dataset": payload["dataset"], "queries": args.queries, "top_k": args.top_k, "pairs": len(payload["rows"])}
    calib = work / f"calibration_{args.data.name}_{args.queries}x{args.top_k}_{args.calibration_pairs}.json"
    if not calib.is_file():
        build_calibration(args.data, set(payload["qrels"]) | {r[0] for r in payload["rows"]}, args.calibration_pairs, calib)
    args.calibration = str(calib)
    res["inputs"]["calibration"] = json.loads(calib.read_text())["how"]
    _log(f"model {model_dir}; {len(payload['rows'])} pairs")
    t0 = time.perf_counter()
    if "rerank" in sections:
        res["rerank"] = section_rerank(args, payload, inputs, Path(model_dir))
        res["rerank"]["quality_model"] = res["model"]["note"] or f"trained reranker {model_dir}"
    if "limits" in sections:
        res["limits"] = section_limits(args)
    if "training" in sections:
        res["training"] = section_training(args, payload, Path(model_dir))
    if "scaling" in sections:
        res["scaling"] = section_scaling(args, payload, Path(model_dir))
    res["total_s"] = time.perf_counter() - t0
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print_tables(res)
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
