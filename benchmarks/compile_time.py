"""Compile time of the sample models, cold and from the caches, each in a fresh process.

Why a script: the issue's target is a time to compile, not to run (ResNet-18 under 10 s
cold, under 1 s from the cache), and both depend on what a new process finds on disk:
here every sample gets an empty cache directory of its own, one process compiles it
cold, then `--repeat` processes compile it again from the caches (the lowered program
and the object code, `convc/lowered.py` and `convc/runtime/cache.py`).

    python benchmarks/compile_time.py [--models lenet5,resnet18,mobilenet_v2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

CHILD = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("sample", sys.argv[1])
sample = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sample)
import convc
from convc import runtime
graph = sample.build()
start = time.perf_counter()
convc.compile(graph, threads=1)
print(json.dumps({"s": time.perf_counter() - start, "stats": runtime.STATS}))
"""


def compile_once(sample: Path, cache: str) -> dict:
    env = {**os.environ, "CONVC_CACHE_DIR": cache}
    env.pop("CONVC_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(sample)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{sample.name}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5,resnet18,mobilenet_v2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':14s} {'cold s':>8s}  from the caches, s")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="convc-compile-") as cache:
            cold = compile_once(SAMPLES / f"{name}.py", cache)
            again = [compile_once(SAMPLES / f"{name}.py", cache) for _ in range(args.repeat)]
        hits = all(r["stats"]["program_hits"] == 1 for r in again)
        times = " ".join(f"{r['s']:.2f}" for r in again)
        note = "" if hits else "  (not every run found its program: see convc/lowered.py)"
        print(f"{name:14s} {cold['s']:8.2f}  {times}{note}")


if __name__ == "__main__":
    main()
