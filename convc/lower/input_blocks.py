"""Deep convs over narrow NCHW model inputs read a channel-blocked copy made in their kernel.

Stage: part of lowering, one kernel at a time (`group.lower_group`). Input: a planned
(expression, schedule) pair and the values stored channel-blocked. Output: None, or the
copy's expression and schedule (a first nest of the same kernel, stored NCHW[B]c into a
scratch of its own) and the conv rewritten to read it, with the schedule of a conv over
blocked values.

Why: a model's input stays NCHW (the caller's array), so a conv reading it runs the
reduction `c, a, b` over planes, where a row of 7 is one register block of 14 registers
that leaves none for unrolled taps (`nest.reduction._unrolled_taps`); over channel
blocks the same conv runs its input lanes around its unrolled innermost taps
(`nest.reduction._lanes_inside`) in blocks of 4 + 3. Where the reduction is deep and the
rows narrow, the input is small beside the work: 3x3 512 @7 reads 100 KB for 231 MFLOP.
Measured on a Zen 3 (AVX2, one thread, the layer alone, with and without the copy
compiled in one process and timed in rounds beside ONNX Runtime,
`benchmarks/slow_rounds.py`; ms, median of the rounds at the machine's usual speed / of
its slow ones), before the taps unrolled: 3x3 512 @7 3.18 -> 2.55 / 3.58 -> 3.67 (ONNX
Runtime 2.96 / 3.32), at batch 8 25.6 -> 24.0; 3x3 256 @14 2.44 -> 2.39 / 3.93 -> 3.49.
Shallower or wider layers lost (3x3 128 @28, all rounds: 3.52 -> 3.85), so they keep
their NCHW kernel: a layer qualifies with at least MIN_DEPTH input channels and rows of
at most MAX_WIDTH columns. Since unrolled innermost taps, which a row of 7 over NCHW
planes cannot take (14 registers): 512 @7 2.43 / 2.94 ms (fast / slow rounds, 60 rounds)
against 3.04 / 3.55 without the copy (ONNX Runtime 2.61 / 3.15); 256 @14 over its planes
with the taps unrolled ran 2.23 / 2.78 against 2.30 / 2.87 with the copy (100 rounds;
level at batch 8), so rows of 14 no longer take it. Only with AVX2's register blocks
(`RegisterBlocks.input_blocks`): on AVX-512, converting 3x3 64 @56's input cost more
than it gained, and no deeper layer has been measured.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc import loops
from convc.texpr import TensorExpr, access, index
from ir import Graph

from .layout import channel_vectorizable
from .registers import blocks
from .schedule import channel_schedule

MIN_DEPTH, MAX_WIDTH = 256, 7
BLOCK = 16  # channels a block of the copy: one AVX2 step's two registers of lanes


def input_blocks(
    graph: Graph, te: TensorExpr, schedule: loops.Schedule, layouts: dict, blocked_output: bool
) -> tuple | None:
    """(copy, copy schedule, conv reading the copy, its schedule) for a forward conv on a
    channel-vector schedule that reads one model input, when that input qualifies (see
    the module doc), else None; `blocked_output`: whether the kernel stores the conv's
    value channel-blocked. The copy is named after the conv (`<conv>.input`), so two
    convs over one input each keep their own."""
    if not blocks().input_blocks or te.attrs.get("family") != "conv":
        return None
    if te.reduction != "sum" or not channel_vectorizable(te):  # the op is then "conv"
        return None
    if not (schedule.vector_axis or "").endswith(".i"):
        return None
    inputs = {str(a.base) for a in te.body.atoms(sympy.Indexed) if str(a.base) in graph.inputs}
    if len(inputs) != 1:
        return None
    (source,) = inputs
    shape = tuple(sympy.sympify(d) for d in graph.values[source].type.shape)
    depth = sympy.sympify(te.reduce_shape[0])
    if len(shape) != 4 or source in layouts or not all(d.is_number for d in shape[1:]):
        return None
    if int(shape[1]) % BLOCK or not depth.is_number or int(depth) < MIN_DEPTH:
        return None
    if int(shape[3]) > MAX_WIDTH:
        return None
    name = f"{te.name}.input"
    idx = tuple(index(f"{name}_{axis}") for axis in "nchw")
    copy = TensorExpr(
        name,
        idx,
        shape,
        access(source, idx, te.dtype),
        dtype=te.dtype,
        op="copy",
        node=te.node,
        role="temp",
        attrs={"family": "elementwise"},
    )
    body = te.body.replace(
        lambda e: isinstance(e, sympy.Indexed) and str(e.base) == source,
        lambda e: access(name, e.indices, te.dtype),
    )
    conv = replace(te, body=body)
    conv_schedule = channel_schedule(
        conv, schedule.vector_width, blocked_output=blocked_output, nchw_input=False
    )
    copy_schedule = channel_schedule(copy, BLOCK, blocked_output=True, nchw_input=True)
    return copy, copy_schedule, conv, conv_schedule
