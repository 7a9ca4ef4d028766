"""convc beside ONNX Runtime on the sample models at 1 and 2 threads, both in one process.

Why a script beside `convc bench`: measured in `convc bench`'s interleaved blocks, convc's
two-thread runs came out 10-70% slower beside ONNX Runtime than beside PyTorch or alone,
while one-thread runs were not affected (benchmarks/RESULTS.md). Here each thread count
gets a fresh compiled model and a fresh `InferenceSession`; the two alternate in blocks
of runs after a short pause, and the medians are printed with ONNX Runtime / convc and
each framework's two-thread speed-up.

    python benchmarks/onnxruntime_threads.py [--models resnet18,mobilenet_v2] [--batch 1,8]

Needs the `bench` extra (onnxruntime, onnx).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import onnxruntime

import convc
from convc.bench.onnx_export import to_onnx

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def load_sample(name: str):
    spec = importlib.util.spec_from_file_location(name, SAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def session(graph, threads: int):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = to_onnx(graph).SerializeToString()
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def alternate(runners: dict, rounds: int, runs: int, pause_s: float) -> dict:
    """Median seconds per run of each runner, their blocks alternating."""
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            run()
            time.sleep(pause_s)
            for _ in range(runs):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name in args.models.split(","):
        sample = load_sample(name)
        for batch in map(int, args.batch.split(",")):
            graph, inputs = sample.build(batch=batch), sample.example_inputs(batch=batch)
            medians = {}
            for threads in (1, 2):
                model, ort = convc.compile(graph, threads=threads), session(graph, threads)
                runners = {
                    "convc": lambda m=model, x=inputs: m.run(x),
                    "ort": lambda s=ort, x=inputs: s.run(None, x),
                }
                medians[threads] = alternate(runners, args.rounds, 20 if batch == 1 else 6, 0.05)
                ms = {k: v * 1e3 for k, v in medians[threads].items()}
                print(
                    f"{name} N={batch} threads={threads}: convc {ms['convc']:.2f} ms, "
                    f"ONNX Runtime {ms['ort']:.2f} ms, ratio {ms['ort'] / ms['convc']:.2f}x",
                    flush=True,
                )
            scale = {k: medians[1][k] / medians[2][k] for k in ("convc", "ort")}
            print(
                f"  2-thread speed-up: convc {scale['convc']:.2f}x, ONNX Runtime {scale['ort']:.2f}x"
            )


if __name__ == "__main__":
    main()
