"""How long `make demo` takes: on a fresh clone with an empty cache, then again in the same clone with the cache
(``runs/demo`` removed, so stage 2, the merge and the evaluation run again), each as one ``make demo`` command.

    python benchmarks/demo_time.py --data ../shared/data [--keep stage1,embeddings] \
        [--output benchmarks/results/demo_time.json]

``--keep`` names what of the cache the second run may use (sub-folders of the cache: ``stage1``, ``embeddings``,
``scores``, ``backbones``; default all of them); ``--keep stage1,backbones`` is the run "with only the stage-1 cache"
(the built e5 backbone is not a result, so keeping it is fair; corpus embeddings and evaluation scores are
recomputed). The clone is made from this repository's HEAD; the package registries must be reachable (the venv is
created and installed as on a new machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
CACHE_PARTS = ("stage1", "embeddings", "scores", "backbones")


def parse_keep(value: str) -> list[str]:
    """``--keep``: comma-separated cache sub-folders, each one of :data:`CACHE_PARTS`."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    bad = [p for p in parts if p not in CACHE_PARTS]
    if bad:
        raise argparse.ArgumentTypeError(f"--keep {bad[0]!r}: expected a comma-separated subset of {', '.join(CACHE_PARTS)}")
    return parts


def prune_cache(cache: Path, keep: list[str]) -> list[str]:
    """Remove every entry of ``cache`` not named in ``keep``; returns the removed names."""
    removed = []
    for entry in sorted(cache.iterdir()) if cache.is_dir() else []:
        if entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    return removed


def timed_make_demo(clone: Path, data: Path, cache: Path, log: Path) -> dict:
    """One ``make demo`` in ``clone``: wall seconds, peak RSS (``/usr/bin/time``, where installed) and the run's
    results.json timings and nDCG@10."""
    env = {**os.environ, "QUERIT_DATA": str(data), "QUERIT_ST_CACHE": str(cache)}
    rss_file = log.with_suffix(".maxrss")
    gnu_time = shutil.which("time")  # GNU time (the shell's builtin is not on PATH)
    cmd = ([gnu_time, "-f", "%M", "-o", str(rss_file)] if gnu_time else []) + ["make", "demo"]
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, cwd=clone, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"make demo failed (exit {rc}); see {log}")
    results = json.loads((clone / "runs" / "demo" / "results.json").read_text())
    rss = rss_file.read_text().split()[-1] if rss_file.is_file() else None
    return {"wall_s": round(wall, 1), "max_rss_mb": round(int(rss) / 1024) if rss and rss.isdigit() else None,
            "pipeline_timings_s": results["timings_s"], "log": str(log),
            "nDCG@10": {t: {k: v["nDCG@10"] for k, v in rep.items() if isinstance(v, dict) and "nDCG@10" in v}
                        for t, rep in results["results"].items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("QUERIT_DATA", ROOT.parent / "shared" / "data")))
    p.add_argument("--keep", type=parse_keep, default=list(CACHE_PARTS))
    p.add_argument("--work", type=Path, default=None, help="folder for the clone and the cache (default: a temp folder)")
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "demo_time.json")
    args = p.parse_args(argv)
    if not (args.data / "xquad-r-de" / "corpus.jsonl").is_file():
        p.error(f"--data {str(args.data)!r}: expected the shared BEIR folders (xquad-r-de/corpus.jsonl missing)")
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        p.error(f"--work {str(args.work)!r}: expected a new or empty folder (the clone and the cache go there)")
    work = args.work or Path(tempfile.mkdtemp(prefix="querit_demo_time_"))
    clone, cache = work / "clone", work / "cache"
    work.mkdir(parents=True, exist_ok=True)
    head = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    subprocess.check_call(["git", "clone", "-q", str(ROOT), str(clone)])
    subprocess.check_call(["git", "checkout", "-q", head], cwd=clone)
    print(f"fresh clone of {head[:10]} in {clone}, empty cache {cache}", flush=True)
    fresh = timed_make_demo(clone, args.data, cache, work / "fresh.log")
    print(f"fresh: {fresh['wall_s']:.0f} s", flush=True)
    shutil.rmtree(clone / "runs" / "demo")
    removed = prune_cache(cache, args.keep)
    again = timed_make_demo(clone, args.data, cache, work / "again.log")
    print(f"again (cache kept: {', '.join(args.keep)}; removed: {', '.join(removed) or 'nothing'}): "
          f"{again['wall_s']:.0f} s", flush=True)
    from querit_st.utils.machine import machine_info

    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": head,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(), "fresh": fresh,
           "again": {**again, "cache_kept": args.keep, "cache_removed": removed}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2))
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
