"""What of a kernel's default schedule the tuner may change, and the key its choice is
cached under.

Stage: lowering, for `convc.tune`. Input: a tensor expression and its default
`Schedule`. Output: {axis: [tile sizes]} (`tile_choices`) and a stable text key
(`tuning_key`); `convc.tune` times the choices and hands the table back to lowering.
"""

from __future__ import annotations

import sympy

from convc.loops import Schedule
from convc.texpr import TensorExpr

from .registers import blocks

#: The attributes `tuning_key` includes.
TUNING_ATTRS = ("family", "group", "strides", "dilations", "kernel_shape", "pads", "global")


def tile_choices(te: TensorExpr, schedule: Schedule) -> dict:
    """{axis: [tile sizes]} a tuner may try for `te` instead of `schedule.tiles`: every
    size is valid (the nest handles leftovers) and fits the registers. Channel-vector
    schedules: the register block of output columns (or dense rows), up to the register
    file's accumulator registers (`blocks().accumulators`: 28 on AVX-512, 12 on AVX2);
    width-vector convs: the block of output channels among those dividing it.
    Not the rows of a GEMV's weight streams (`streams`): each row is one stream, and the
    point is to read them side by side."""
    choices, limits = {}, blocks()
    for axis, size in schedule.tiles.items():
        if f"{axis}.i" not in schedule.unroll or "streams_of" in te.attrs:
            continue
        extent = sympy.sympify(te.shape[[str(i) for i in te.indices].index(axis)])
        if schedule.vector_axis and schedule.vector_axis.endswith(".i"):
            registers = max(1, schedule.vector_width // limits.lanes)
            most = min(limits.accumulators // registers, int(extent) if extent.is_number else 99)
            sizes = range(1, most + 1)
        else:
            blocks_of = limits.channel_blocks
            sizes = [b for b in blocks_of if extent.is_number and int(extent) % b == 0]
        choices[axis] = sorted({size, *sizes})
    return choices


def tuning_key(te: TensorExpr) -> str:
    """A stable text naming what decides a kernel's best tiles: op, family, shapes, window
    attributes and the bounds condition (two kernels with equal keys tune alike)."""
    attrs = {k: te.attrs[k] for k in sorted(te.attrs) if k in TUNING_ATTRS}
    shape = ",".join(map(str, te.shape))
    reduce = ",".join(map(str, te.reduce_shape))
    return f"{te.op}|{te.reduction}|{shape}|{reduce}|{attrs}|{te.condition}"
