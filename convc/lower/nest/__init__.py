"""One tensor expression + its schedule -> a loop nest (the heart of lowering).

Stage: (TensorExpr, Schedule, fused epilogue) -> `convc.loops` statement.

Two shapes, chosen by the schedule. Width vectors (`vector_axis` an output
index, e.g. "j"; elementwise, pooling, depthwise and 1x1 convs):

    parallel for n*o_o:                     # schedule.parallel_axis "n*o"
      for i:
        vector(16) for j in border:         # every bound checked, lane by lane (masked)
        vector(16) for j in interior:       # checks on j dropped
          alloc acc[B] = 0                  # B = schedule.tiles["o"], "o.i" unrolled
          for c: for a: [if row bound] for b:
            unrolled for o_i: acc[o_i] += x[...] * w[o_o*B + o_i, ...]
          unrolled for o_i: y[...] = epilogue(acc[o_i])

The outer loops follow `schedule.order` (1x1 convs put the rows outside the channel
blocks: order n,i,o,j, parallel over "n*i"; unpadded ones run packed panels instead,
`width_vectors.packed_nest`).

Channel vectors (`vector_axis` a tile's inner part, "o.i"; windowed convs and
dense layers): 16 output channels (features) a vector and a register block of
output columns (rows), see `channel_vectors.channel_vector_nest`.

Invariants: an access runs only where its expression's condition holds (bounds
are either checked by an `if` placed right after the loop that binds their last
index or inside the unrolled copy of a register block, or proven by the interior
split); the epilogue (the op's own, then the fused chain as `let`s) is applied
to the accumulator in registers, so only the group's final value is stored.

Modules: `base` (the nest's state and outer loops), `width_vectors` and
`channel_vectors` (the two shapes), `reduction` (a register block's accumulators,
reduction loops and stores) and `hints` (prefetch hints).
"""

from __future__ import annotations

from convc import loops

from ..regions import conjuncts
from ..schedule import merge_rows
from .base import Names, Nest
from .channel_vectors import channel_vector_nest
from .width_vectors import packed_nest, width_vector_nest

__all__ = ["Names", "lower_nest"]


def lower_nest(te, schedule, store, epilogue, scope, names, partials=None) -> loops.Stmt:
    """The loop nest computing `te` (then `epilogue`) into buffer `store`; `partials`: the
    channel-blocked buffer a cache-blocked reduction keeps its partial sums in (default:
    `store` itself)."""
    if schedule.merge_rows > 1:
        te, epilogue = merge_rows(te, epilogue, schedule.merge_rows)
    width = schedule.vector_width
    nest = Nest(te, store, tuple(epilogue), scope, names, width=width, partials=partials)
    atoms = conjuncts(te.condition)
    if schedule.vector_axis and schedule.vector_axis.endswith(".i"):
        return channel_vector_nest(nest, schedule, atoms)
    if schedule.pack_columns:
        return packed_nest(nest, schedule)
    return width_vector_nest(nest, schedule, atoms)
