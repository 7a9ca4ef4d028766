"""Memory report of a compiled model: `CompiledModel.memory_report(**symbols)`.

Stage: after compiling. Input: the loop-IR `Program` (its buffers, calls and arena plan)
and the `Executable` holding its parameters and arenas, at one binding of the run-time
symbols. Output: a `MemoryReport` of bytes by category.

Categories: ``weights`` (the parameter arrays the executable holds, packed layouts
included, originals that no kernel reads excluded; from 4 MB one block, with the gaps that
keep each param 64-byte aligned: the up to 2 MB allocated before its huge-page boundary is
never touched, `runtime.executable.PARAM_BLOCK_MIN`), ``activations`` (the arena: every
intermediate, in the liveness plan's slots), ``inputs`` and ``outputs`` (the caller's
arrays at this binding; outputs are allocated per run), ``scratch`` (aligned copies of
misaligned or strided arrays made so far). ``peak`` is their sum: nothing else scales with
the model (each thread's stack holds at most a few packed panels and a ring of conv rows,
`lower.row_fusion.RING_MAX_BYTES`, whatever the batch). ``largest_live_set`` is the most
intermediate bytes live during any one kernel call, the least any arena could hold; the
plan's arena is at least that (a slot is sized for its largest tenant, so it can be more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import sympy

from convc import loops
from convc.codegen import kernel_buffers


@dataclass(frozen=True)
class MemoryReport:
    """Bytes by category at one binding of the symbols (see the module docstring)."""

    symbols: dict
    weights: int
    activations: int
    inputs: int
    outputs: int
    scratch: int
    largest_live_set: int

    @property
    def peak(self) -> int:
        return self.weights + self.activations + self.inputs + self.outputs + self.scratch

    def as_dict(self) -> dict:
        return {**asdict(self), "peak": self.peak}

    def __str__(self) -> str:
        rows = [
            ("weights", self.weights),
            ("activations (arena)", self.activations),
            ("inputs", self.inputs),
            ("outputs", self.outputs),
            ("scratch", self.scratch),
            ("peak", self.peak),
            ("largest live set", self.largest_live_set),
        ]
        binding = ", ".join(f"{k}={v}" for k, v in self.symbols.items()) or "static shapes"
        lines = [f"memory ({binding}):"]
        lines += [
            f"  {name:<20} {nbytes / 2**20:10.3f} MiB  {nbytes:>12} B" for name, nbytes in rows
        ]
        return "\n".join(lines)


def _value(expr, symbols: Mapping) -> int:
    expr = sympy.sympify(expr)
    return int(expr.subs({s: symbols[s.name] for s in expr.free_symbols}))


def tensor_bytes(shape, dtype: str, symbols: Mapping) -> int:
    """Bytes of a tensor of `shape` (sympy dims, symbols matched by name) and `dtype`."""
    count = sympy.Mul(*shape) if shape else sympy.Integer(1)
    return _value(count, symbols) * loops.ir.DTYPE_SIZES[dtype]


def buffer_bytes(buf: loops.Buffer, symbols: Mapping) -> int:
    return tensor_bytes(buf.shape, buf.dtype, symbols)


def live_bytes(program: loops.Program, symbols: Mapping) -> list[int]:
    """Intermediate bytes live during each call, in call order.

    A temp lives from the first call touching it to the last; live bytes are the union of
    the arena ranges of the live temps, so a view and the value it re-indexes (one range)
    count once.
    """
    temps = {b.name: b for b in program.buffers if b.role == "temp"}
    touched = [set(kernel_buffers(program, program.kernel(name))) for name in program.calls]
    spans = {}
    for k, names in enumerate(touched):
        for name in names & temps.keys():
            spans[name] = (spans.get(name, (k, k))[0], k)
    ranges = {}
    for name, buf in temps.items():
        start = _value(buf.offset or 0, symbols)
        ranges[name] = (start, start + buffer_bytes(buf, symbols))
    return [
        _union([ranges[n] for n, (first, last) in spans.items() if first <= k <= last])
        for k in range(len(touched))
    ]


def _union(intervals: list) -> int:
    total, reach = 0, None
    for start, stop in sorted(intervals):
        if reach is None or start >= reach:
            total, reach = total + stop - start, stop
        elif stop > reach:
            total, reach = total + stop - reach, stop
    return total


def memory_report(
    program: loops.Program, executable, symbols: Mapping, copied_outputs: int = 0
) -> MemoryReport:
    """The report for `program` run by `executable` at `symbols` (every program symbol);
    `copied_outputs`: bytes of outputs that are not program buffers (inputs or constants
    returned as outputs, copied by the caller)."""
    held = executable.memory(symbols)
    by_role = {"input": 0, "output": 0}
    for buf in program.buffers:
        if buf.role in by_role:
            by_role[buf.role] += buffer_bytes(buf, symbols)
    live = live_bytes(program, symbols)
    return MemoryReport(
        symbols=dict(symbols),
        weights=held["params"],
        activations=held["arena"],
        inputs=by_role["input"],
        outputs=by_role["output"] + copied_outputs,
        scratch=held["scratch"],
        largest_live_set=max(live, default=0),
    )
