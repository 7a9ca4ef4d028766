"""Lowering: fused groups of tensor expressions + schedules -> a loop-IR Program.

Stage: (graph after passes, fused groups) -> `convc.loops.Program`. Entry point
`assemble(graph, groups)` (module `program`); `lower_group` lowers one group to
one kernel, `default_schedule` picks each op family's schedule (plain data,
`convc.loops.Schedule`), `lower_nest` applies a schedule to one expression,
`pack_weights` repacks constant weights once at compile time.

Decisions worth knowing:

- Activations inside a model are stored channel-blocked (NCHW[32]c or NCHW[16]c,
  `layout`) wherever every kernel that writes or reads them vectorizes over
  channels; their accesses are re-indexed at conversion (`Scope.layouts`), so
  schedules and tensor expressions stay in NCHW terms. `plan_group` gives the
  (expression, schedule) pairs of a group's kernel, which a tuner may re-tile.
- Every kernel is derived from the op's tensor expression; the fused epilogue
  (bias, activation, residual add, folded batch norm) is applied to the
  accumulator in registers and only the group's last value is stored. A pool
  or depthwise conv that alone reads a blocked conv output runs in the conv's
  kernel, row after row, the conv's rows kept in a ring (`row_fusion`).
- Nests that run row by row in one loop (a softmax's max, exponentials, sum and
  scaling) then sum what they store while storing it (`row_sums`), and a temporary
  the output is computed from element by element is stored into the output instead
  (`forward`).
- Convs with deep weights per output-channel block run their reduction one
  input channel block at a time outside the rows (`reduction_chunks.reduce_chunks`).
- Padding never reaches the vectorized interior: the vector (or register-
  blocked) axis is split into borders, where every bound is checked, and an
  interior where the bounds are proven (`regions`).
- Convs with 16k output channels and a window, a stride, narrow rows or a deep
  reduction (and every kernel on blocked values) vectorize over output channels
  with a register block of output columns, placed at fixed places in a row of
  known width; 2-D dense layers over output features with a block of rows; the
  rest (elementwise, pooling, depthwise, shallow 1x1) over the innermost output
  axis with a block of output channels.
- Derived gradients (family "grad") are scheduled like convs (`grad_schedule`):
  weight gradients vectorize over output channels around a reduction over space,
  summed over a few batch chunks; input gradients take a conv's schedule. They,
  and forward kernels whose weights are run-time inputs (training steps), read
  run-time copies made inside the kernel (`relayout`): operands blocked by 16
  channels, and zero-padded operands that remove a gradient's bound checks.
- Schedules do not depend on the thread count (it is an argument of the entry
  point): one program serves every count, with identical results.
- The arena is planned once, symbolically in the run-time sizes (N): see
  `program`.
"""

from .group import LoweredGroup, lower_group, plan_group
from .nest import lower_nest
from .packing import pack_weights
from .program import assemble, plan_arena
from .schedule import default_schedule

__all__ = [
    "LoweredGroup",
    "assemble",
    "default_schedule",
    "lower_group",
    "lower_nest",
    "pack_weights",
    "plan_arena",
    "plan_group",
]
