"""Per-kernel profiles of a compiled model: where the time of one run goes.

Stage: public API, after the runtime. Input: the nanoseconds each kernel call took over
several runs, measured natively by the program's timed entry point (`convc_profile`, see
`convc.codegen.module`: a monotonic timestamp before the first call and after each one).
Output: a `Profile`, one `KernelTime` per call in call order (kernel name, the graph nodes
it computes, its schedule and its median time) and their total, printable as a table.

The nodes and the schedule come from the kernel's comment, which the lowering writes as
``node + node | schedule`` (`convc.lower.group`). The per-kernel medians are taken
separately, so their sum is close to, but not exactly, the median of whole runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convc.loops import Program
from ir.report import format_table


@dataclass(frozen=True)
class KernelTime:
    """One kernel call: `ms` is the median over the profiled runs."""

    name: str
    nodes: tuple[str, ...]
    schedule: str
    ms: float


@dataclass(frozen=True)
class Profile:
    """The kernel calls of one model in call order, with the run's settings."""

    model: str
    kernels: tuple[KernelTime, ...]
    repeat: int
    threads: int

    @property
    def total_ms(self) -> float:
        return sum(k.ms for k in self.kernels)

    def format(self, by_time: bool = False) -> str:
        """A table: call order (or slowest first with `by_time`), ms, % of total, nodes and
        schedule; a last line gives the total."""
        total = self.total_ms or 1.0
        order = sorted(self.kernels, key=lambda k: -k.ms) if by_time else self.kernels
        rows = [
            (k.name, f"{k.ms:.4g}", f"{100 * k.ms / total:.1f}", " + ".join(k.nodes), k.schedule)
            for k in order
        ]
        table = format_table(("kernel", "ms", "%", "nodes", "schedule"), rows, right=(1, 2))
        return (
            f"{table}\ntotal {self.total_ms:.4f} ms in {len(self.kernels)} kernels "
            f"(median of {self.repeat} runs each, {self.threads} thread(s))"
        )

    __str__ = format


def kernel_parts(comment: str) -> tuple[tuple[str, ...], str]:
    """(graph nodes, schedule description) from a kernel comment ``a + b | schedule``."""
    nodes, _, schedule = comment.partition(" | ")
    return tuple(n for n in nodes.split(" + ") if n), schedule


def profile_of(program: Program, nanoseconds: np.ndarray, threads: int) -> Profile:
    """The profile of `program` from per-run call times (`nanoseconds`: runs x calls)."""
    medians = np.median(np.asarray(nanoseconds, dtype=np.float64), axis=0) / 1e6
    kernels = []
    for call, ms in zip(program.calls, medians):
        nodes, schedule = kernel_parts(program.kernel(call).comment)
        kernels.append(KernelTime(call, nodes, schedule, float(ms)))
    return Profile(program.name, tuple(kernels), len(nanoseconds), threads)
