"""Interleaved timing of several runners of the same case.

Stage: benchmark measurement. Input: named zero-argument callables that have
each run at least once already (their output check). Output: per runner, the
seconds per call of every timed block, with median and minimum.

Method (shared/BENCHMARKS.md): each runner is calibrated to a block of `k`
calls lasting about `block_s` (`calls_per_block`), warmed up with one untimed
block, and then the runners' blocks alternate, A B C A B C ..., `repeat`
rounds, the starting runner rotating each round so none always follows the
same neighbour. Noise from other processes then hits every runner alike, which
is what makes the ratios of one run trustworthy on a shared machine even when
absolute times drift. The garbage collector is off while a block runs. A pause
of `settle_s` before each block (and before the calibration) lets the previous
runner's thread pool stop spinning (libgomp, as used by PyTorch and convc, and
ONNX Runtime's pool spin after a parallel region), so one framework's idle
workers do not steal the second core from the next framework's block.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from ir import ConvcError

#: The most calls in one timed block.
MAX_CALLS = 100_000


@dataclass(frozen=True)
class Timing:
    """Seconds per call, one entry per timed block of `calls` calls."""

    samples: tuple[float, ...]
    calls: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)


def _block(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call over `calls` back-to-back calls, collector paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        if enabled:
            gc.enable()


def calls_per_block(fn: Callable[[], object], block_s: float) -> int:
    """How many calls of `fn` fill about `block_s` seconds (at least one).

    Counted after one untimed call, from a block of calls doubled until it lasts a tenth of
    `block_s`, not from a single call: a first call after a pause also wakes the runner's
    sleeping thread pool. On a VM one such call of a 2-thread pool took 1.2 ms against 0.05 ms
    warm; blocks counted from it held 41 calls (3 ms), each paid another wake-up, and the
    2-thread medians of short kernels came out 1.5-5x slow.
    """
    fn()
    calls = 1
    per_call = _block(fn, calls)
    while per_call * calls < block_s / 10 and calls < MAX_CALLS:
        calls *= 2
        per_call = _block(fn, calls)
    return max(1, min(MAX_CALLS, math.ceil(block_s / max(per_call, 1e-9))))


def time_interleaved(
    runners: dict[str, Callable[[], object]],
    repeat: int,
    block_s: float = 0.05,
    settle_s: float = 0.0,
) -> dict[str, Timing]:
    """Time every runner in alternating blocks; see the module docstring."""
    if repeat < 1:
        raise ConvcError(f"benchmark repeat={repeat} must be at least 1")
    names = list(runners)
    calls = {}
    for name in names:  # calibrated and warmed up after a pause too, as each block is
        time.sleep(settle_s)
        calls[name] = calls_per_block(runners[name], block_s)
        _block(runners[name], calls[name])
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeat):
        shift = round_index % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            time.sleep(settle_s)
            samples[name].append(_block(runners[name], calls[name]))
    return {name: Timing(tuple(samples[name]), calls[name]) for name in names}
