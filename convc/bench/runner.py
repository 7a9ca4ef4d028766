"""Run one benchmark case on every peer: build, check outputs, time side by side.

Stage: benchmark execution. Input: a `Case`, the peers to time and a thread
count. Output: a `CaseResult` holding, per peer, the median and minimum
seconds per call, the setup time and the largest deviation from the
reference, or a note saying why the peer was not timed (not installed, an op
it cannot express, an error, or a wrong result: a peer is timed only after
its outputs match).

On more than one thread, convc compiled for one thread is timed in the same rounds
(`CaseResult.one_thread`), so its speed-up from the extra threads is measured side by
side like every ratio: runs of one thread count each go to a process of their own (see
`convc.bench`), minutes apart, and on a shared 2-vCPU guest a ratio of two such runs
moved with whatever else the host ran meanwhile (3x3 128->128 @28 at batch 1: 1.71x
across the two processes of one suite run, 1.85-1.95x interleaved in one).

The reference is the convc NumPy interpreter. Outputs match when every
element satisfies |out - ref| <= RTOL*|ref| + ATOL*max|ref|: float32
reductions reordered by another library drift by a few ulps of the output's
scale, not of each element (an element near zero is a difference of large
terms), so the absolute term follows the output's size, small or large.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .cases import Case
from .peers import PEERS, as_arrays, prepare
from .timing import time_interleaved

RTOL = 1e-4
ATOL = 1e-5
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: The runner name of convc on one thread in a run of more (`CaseResult.one_thread`).
ONE_THREAD = "convc on one thread"


@dataclass
class PeerResult:
    """One peer's figures for one case; `note` says why there are none."""

    median_s: float | None = None
    min_s: float | None = None
    setup_s: float | None = None
    max_err: float | None = None
    note: str = ""


@dataclass
class CaseResult:
    """A case at one batch size and thread count, with each peer's result by peer name;
    `one_thread`: convc compiled for one thread, timed beside the others (threads > 1)."""

    case: str
    batch: int
    threads: int
    macs: int
    peers: dict[str, PeerResult] = field(default_factory=dict)
    one_thread: PeerResult | None = None


def threads_pinned(threads: int) -> bool:
    """True when the BLAS/OpenMP thread variables were set to `threads` (before NumPy loaded)."""
    return all(os.environ.get(name) == str(threads) for name in THREAD_VARIABLES)


def thread_environment(threads: int) -> dict[str, str]:
    """The environment variables that pin every library (and convc's runtime) to `threads`."""
    return {name: str(threads) for name in (*THREAD_VARIABLES, "CONVC_NUM_THREADS")}


def pin_threads(threads: int) -> None:
    """Set the thread variables for the libraries still to load and for convc's runtime."""
    os.environ.update(thread_environment(threads))


def count_macs(graph, batch: int) -> int:
    """Multiply-accumulates of the whole graph at this batch size, from the layer report."""
    bindings = {symbol.name: batch for symbol in graph.symbols}
    return int(graph.summary(bindings).total_macs)


def max_error(outputs: dict, reference: dict) -> tuple[float, bool]:
    """Largest |out - ref| over all outputs, and whether every element is within tolerance.
    A NaN matches only a NaN (as in the tests' comparisons); the largest error and the
    scale are taken over the other elements."""
    worst, ok = 0.0, True
    for name, ref in reference.items():
        out = outputs.get(name)
        if out is None or out.shape != ref.shape:
            return float("inf"), False
        nan = np.isnan(ref)
        if not np.array_equal(nan, np.isnan(out)):
            return float("nan"), False
        ref, out = ref[~nan], out[~nan].astype(np.float64)
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        scale = scale or 1.0  # an all-zero output: absolute tolerance
        diff = np.abs(out - ref)
        worst = max(worst, float(np.max(diff)) if diff.size else 0.0)
        ok = ok and bool(np.all(diff <= RTOL * np.abs(ref) + ATOL * scale))
    return worst, ok


def run_case(
    case: Case,
    peers: list[str],
    threads: int,
    repeat: int,
    block_s: float = 0.05,
    settle_s: float = 0.0,
) -> CaseResult:
    """Build `case`, check every peer against the interpreter, then time the good ones."""
    pin_threads(threads)
    graph, inputs = case.build()
    result = CaseResult(case.name, case.batch, threads, count_macs(graph, case.batch))
    interpreter = prepare(PEERS["numpy"], graph, inputs, threads)
    reference = as_arrays(interpreter.run())
    runners = {}
    for name in peers:
        peer_result = result.peers[name] = PeerResult()
        if name == "numpy":  # the reference itself: already built and run once
            runners[name] = interpreter.run
            continue
        runner = _checked_runner(name, graph, inputs, threads, reference, peer_result)
        if runner is not None:
            runners[name] = runner
    if threads > 1 and "convc" in runners:
        result.one_thread = PeerResult()
        runner = _checked_runner("convc", graph, inputs, 1, reference, result.one_thread)
        if runner is not None:
            runners[ONE_THREAD] = runner
    for name, timing in time_interleaved(runners, repeat, block_s, settle_s).items():
        timed = result.one_thread if name == ONE_THREAD else result.peers[name]
        timed.median_s, timed.min_s = timing.median, timing.min
    return result


def _checked_runner(name, graph, inputs, threads, reference, peer_result):
    """The peer's runner if it builds and matches the reference, else None with a note."""
    peer = PEERS[name]
    if not peer.available():
        peer_result.note = "not installed"
        return None
    try:
        prepared = prepare(peer, graph, inputs, threads)
        outputs = as_arrays(prepared.run())
    except Exception as error:  # noqa: BLE001 - any peer failure is a table entry, not fatal
        peer_result.note = _one_line(f"{type(error).__name__}: {error}")
        return None
    peer_result.setup_s = prepared.setup_s
    peer_result.max_err, ok = max_error(outputs, reference)
    if not ok:
        peer_result.note = f"wrong output (max error {peer_result.max_err:.3g})"
        return None
    return prepared.run


def _one_line(text: str, limit: int = 300) -> str:
    """A note fit for a Markdown list item: one line, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
