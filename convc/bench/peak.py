"""This core's FP32 FMA peak, measured: the default of `convc bench`'s % of peak column.

Stage: benchmark set-up. Input: nothing. Output: GFLOP/s of one core.

Why measure: the percentage says how close a kernel comes to what the core can do, and
cores differ by more than their clocks: the reference machine of shared/BENCHMARKS.md (Zen
4) peaks at about 115 GFLOP/s a core, a Xeon with two 512-bit FMA units at 205-209, so a
fixed figure reads above 100% on one and too low on the other.

How: one kernel in loop IR, compiled like every model (`convc.runtime.load`), keeps
ACCUMULATORS independent chains of 16-lane FMAs (enough to cover the FMA latency of two
units) and steps them STEPS times; the best of REPEATS runs on one thread counts 32 FLOPs
(16 multiplies, 16 adds) per FMA. The chains' results are stored, so no step is dead code.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from ir.types import symbol

from .. import loops as L
from .. import runtime

ACCUMULATORS, LANES, STEPS, REPEATS = 16, 16, 2_000_000, 5


def fma_program() -> L.Program:
    """`out[a, :] = x[a, :]` after STEPS of `acc = acc * y + z` (y, z: 16-lane vectors)."""
    lane, step, chain = L.loop_var("lane"), L.loop_var("step"), L.loop_var("chain")
    steps = symbol("steps")
    update = L.Assign(
        "acc", (chain,), L.Fma(L.Ref("acc", (chain,)), L.Load("y", (lane,)), L.Load("z", (lane,)))
    )

    def each_chain(stmt):
        return L.For(chain, 0, ACCUMULATORS, [stmt], "unrolled")

    body = [
        L.Alloc("acc", "float32", (ACCUMULATORS,)),
        each_chain(L.Assign("acc", (chain,), L.Load("x", (chain, lane)))),
        L.For(step, 0, steps, [each_chain(update)]),
        each_chain(L.Store("out", (chain, lane), L.Ref("acc", (chain,)))),
    ]
    lanes = L.For(lane, 0, LANES, body, "vectorized", LANES)
    shape = (ACCUMULATORS, LANES)
    buffers = [
        L.Buffer("x", "float32", shape, "input"),
        L.Buffer("y", "float32", (LANES,), "input"),
        L.Buffer("z", "float32", (LANES,), "input"),
        L.Buffer("out", "float32", shape, "output"),
    ]
    return L.Program("fma_peak", buffers, [L.Kernel("fma_peak", [lanes])], ("steps",))


@functools.cache
def measured_peak() -> float:
    """One core's FP32 FMA peak in GFLOP/s (see the module doc); measured once a process."""
    code = runtime.load(fma_program(), threads=1)
    inputs = {
        "x": np.ones((ACCUMULATORS, LANES), np.float32),
        "y": np.full(LANES, 1.0 - 1e-7, np.float32),
        "z": np.full(LANES, 1e-7, np.float32),
    }
    out = np.empty((ACCUMULATORS, LANES), np.float32)
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        code.run(inputs, {"out": out}, {"steps": STEPS})
        best = min(best, time.perf_counter() - start)
    return 2 * LANES * ACCUMULATORS * STEPS / best / 1e9
