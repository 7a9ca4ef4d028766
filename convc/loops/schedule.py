"""Schedules: how a compute definition becomes loops, as plain data.

Stage: chosen by the lowering (a default per op family, later by tuning), applied by
`convc.lower` when it builds loop-IR kernels; printed with the kernel. A schedule never holds
code, only decisions, so it can be hashed, cached on disk and compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Schedule:
    """Decisions for one kernel.

    `tiles`: axis -> tile size (split ``axis`` into ``axis.o`` x ``axis.i``).
    `order`: loop order, outermost first, over axis names (split parts as ``"ow.o"``).
    `vector_axis`/`vector_width`: the innermost axis evaluated as ``<W x float>``
    (width 16 for AVX-512 float32). `tail`: ``"scalar"`` or ``"masked"`` leftover handling.
    `unroll`: axis -> full unroll of that (constant-extent) axis, e.g. a register block.
    `parallel_axis`: the axis split over threads (None: single-threaded kernel).
    `parallel_when`: None, or the condition on the run-time symbols (a sympy relational such
    as ``N >= 4``) under which the parallel axis is split; otherwise it runs on one thread.
    `layout`: buffer name -> layout tag such as ``"NCHW16c"``, for the lowering to honour.
    `merge_rows`: R > 1 runs R consecutive rows (the axis before the last) as one row of R
    times the width: in a row-major layout they are consecutive elements.
    `reduce_tiles`: reduction axis -> chunk size (cache blocking: the reduction runs chunk by
    chunk in a loop just outside the rows, partial sums kept in the output).
    `pack_columns`: P > 0 runs a width-vector 1x1 conv panel by panel of P output columns,
    first copying the panel's input columns into an aligned per-thread panel that every
    output-channel block then reads (a packed GEMM).
    `streaming_stores`: the kernel writes its output with non-temporal stores
    (`loops.Store.streaming`).
    """

    tiles: dict = field(default_factory=dict)
    order: tuple[str, ...] = ()
    vector_axis: str | None = None
    vector_width: int = 16
    tail: str = "masked"
    unroll: tuple[str, ...] = ()
    parallel_axis: str | None = None
    parallel_when: object = None
    layout: dict = field(default_factory=dict)
    reduce_tiles: dict = field(default_factory=dict)
    merge_rows: int = 1
    pack_columns: int = 0
    streaming_stores: bool = False

    def describe(self) -> str:
        """One line for printers, e.g. ``tiles ow=16 order n,oc,oh,ow.o,ow.i vector ow.i/16``."""
        parts = []
        if self.tiles:
            parts.append("tiles " + ",".join(f"{k}={v}" for k, v in sorted(self.tiles.items())))
        if self.order:
            parts.append("order " + ",".join(self.order))
        if self.vector_axis:
            parts.append(f"vector {self.vector_axis}/{self.vector_width} tail={self.tail}")
        if self.unroll:
            parts.append("unroll " + ",".join(self.unroll))
        if self.parallel_axis:
            parts.append(f"parallel {self.parallel_axis}")
            if self.parallel_when is not None:
                parts.append(f"when {self.parallel_when}")
        if self.merge_rows > 1:
            parts.append(f"merge-rows {self.merge_rows}")
        if self.pack_columns:
            parts.append(f"pack-columns {self.pack_columns}")
        if self.streaming_stores:
            parts.append("streaming-stores")
        if self.reduce_tiles:
            chunks = ",".join(f"{k}={v}" for k, v in sorted(self.reduce_tiles.items()))
            parts.append(f"reduce-tiles {chunks}")
        if self.layout:
            parts.append("layout " + ",".join(f"{k}:{v}" for k, v in sorted(self.layout.items())))
        return " ".join(parts) or "default"
