"""This core's FP32 FMA peak, measured: the default of `convc bench`'s % of peak column.

Stage: benchmark set-up. Input: nothing. Output: GFLOP/s of one core.

Why measure: the percentage says how close a kernel comes to what the core can do, and
cores differ by more than their clocks: the reference machine of shared/BENCHMARKS.md (Zen
4) peaks at about 115 GFLOP/s a core, a Xeon with two 512-bit FMA units at 205-209, so a
fixed figure reads above 100% on one and too low on the other.

How: one kernel in loop IR, compiled like every model (`convc.runtime.load`), keeps
independent chains of FMAs one vector register wide (`fma_shape`: enough chains to cover
the FMA latency of two units, few enough to stay in registers) and steps them STEPS
times; the best of REPEATS runs on one thread counts 2 FLOPs a lane per FMA. The chains'
results are stored, so no step is dead code. Sized for AVX-512 on an AVX2 machine (16
chains of 16 lanes: 32 of its 16 registers) the kernel spilled and read 37-40 GFLOP/s of
a Zen 3 core that runs 100.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from ir.types import symbol

from .. import loops as L
from .. import runtime

STEPS, REPEATS = 2_000_000, 5
#: Registers left for the two step operands and spare.
FREE_REGISTERS = 4


def fma_shape() -> tuple[int, int]:
    """(chains, lanes) of the peak kernel on this machine: one register's lanes, and 16
    chains, or as many as leave FREE_REGISTERS of the register file (12 on AVX2)."""
    count, lanes = runtime.llvm.vector_registers()
    return min(16, count - FREE_REGISTERS), lanes


def fma_program() -> L.Program:
    """`out[a, :] = x[a, :]` after STEPS of `acc = acc * y + z` (y, z: one register's
    lanes), in `fma_shape()` chains."""
    accumulators, lanes = fma_shape()
    lane, step, chain = L.loop_var("lane"), L.loop_var("step"), L.loop_var("chain")
    steps = symbol("steps")
    update = L.Assign(
        "acc", (chain,), L.Fma(L.Ref("acc", (chain,)), L.Load("y", (lane,)), L.Load("z", (lane,)))
    )

    def each_chain(stmt):
        return L.For(chain, 0, accumulators, [stmt], "unrolled")

    body = [
        L.Alloc("acc", "float32", (accumulators,)),
        each_chain(L.Assign("acc", (chain,), L.Load("x", (chain, lane)))),
        L.For(step, 0, steps, [each_chain(update)]),
        each_chain(L.Store("out", (chain, lane), L.Ref("acc", (chain,)))),
    ]
    vector = L.For(lane, 0, lanes, body, "vectorized", lanes)
    shape = (accumulators, lanes)
    buffers = [
        L.Buffer("x", "float32", shape, "input"),
        L.Buffer("y", "float32", (lanes,), "input"),
        L.Buffer("z", "float32", (lanes,), "input"),
        L.Buffer("out", "float32", shape, "output"),
    ]
    return L.Program("fma_peak", buffers, [L.Kernel("fma_peak", [vector])], ("steps",))


@functools.cache
def measured_peak() -> float:
    """One core's FP32 FMA peak in GFLOP/s (see the module doc); measured once a process."""
    code = runtime.load(fma_program(), threads=1)
    accumulators, lanes = fma_shape()
    inputs = {
        "x": np.ones((accumulators, lanes), np.float32),
        "y": np.full(lanes, 1.0 - 1e-7, np.float32),
        "z": np.full(lanes, 1e-7, np.float32),
    }
    out = np.empty((accumulators, lanes), np.float32)
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        code.run(inputs, {"out": out}, {"steps": STEPS})
        best = min(best, time.perf_counter() - start)
    return 2 * lanes * accumulators * STEPS / best / 1e9
