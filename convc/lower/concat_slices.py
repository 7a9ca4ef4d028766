"""Channel concats without a copy: each input's producer stores into its slice of the output.

Stage: program assembly (`program.assemble`), after the groups are lowered. Input: the
graph, its lowered groups (in call order) and the channel-blocked values. Output: the
groups with each qualifying concat's kernel gone, and the kernels that computed its
inputs storing `x_k[n, c, i, j]` as `y[n, off_k + c, i, j]` instead.

Why: a concat of NCHW values (an Inception block's four branches) was a kernel that read
every branch's output and wrote it again, and every branch's output had a buffer of its
own. In place, the branches write the concat's buffer directly: one pass over the
block's output fewer, and one buffer (the concat's) where there were five.

Which concats: along channels (axis 1) of 4-D values, with no epilogue fused after them,
and nothing channel-blocked (the concat keeps NCHW, `layout`), whose every input is a
distinct value that exactly one kernel writes and that nothing but the concat reads: no
graph input, output or constant, no view of another value and no value a view shares.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc import loops
from convc.loops.analysis import rewritten
from ir import Graph

from .group import LoweredGroup


def concats_in_place(
    graph: Graph, lowered: list[LoweredGroup], layouts: dict
) -> list[LoweredGroup]:
    """`lowered` with every qualifying concat (module doc) written in place, one at a
    time (a concat of concats qualifies once its inputs are written in place)."""
    while True:
        found = [(g, s) for g in lowered if (s := _slices(graph, g, lowered, layouts))]
        if not found:
            return lowered
        concat, slices = found[0]
        (out,) = concat.writes
        lowered = [_into_slices(g, out, slices) for g in lowered if g is not concat]


def _slices(
    graph: Graph, group: LoweredGroup, lowered: list[LoweredGroup], layouts: dict
) -> dict | None:
    """{input: channel offset} when `group` is a concat that qualifies, else None."""
    if len(group.writes) != 1 or group.view_of is not None:
        return None
    out = group.writes[0]
    node = graph.producer(out)
    if node is None or node.op != "concat":
        return None
    value = graph.values[out]
    if len(value.shape) != 4 or node.attrs.get("axis") != 1 or out in layouts:
        return None
    if set(group.reads) != set(node.inputs) or len(set(node.inputs)) != len(node.inputs):
        return None  # an epilogue after the concat reads more
    slices, offset = {}, sympy.Integer(0)
    for name in node.inputs:
        if not _sliceable(graph, name, group, lowered, layouts):
            return None
        slices[name] = offset
        offset += sympy.sympify(graph.values[name].shape[1])
    return slices


def _sliceable(
    graph: Graph, name: str, concat: LoweredGroup, lowered: list[LoweredGroup], layouts: dict
) -> bool:
    """Whether concat input `name` is written by one kernel and read by the concat alone."""
    value = graph.values[name]
    if value.kind != "node" or name in graph.outputs or name in layouts:
        return False
    writers = [g for g in lowered if name in g.writes]
    readers = [g for g in lowered if g is not concat and name in g.reads]
    shared = any(g.view_of == name for g in lowered)
    return len(writers) == 1 and writers[0].view_of is None and not readers and not shared


def _into_slices(group: LoweredGroup, out: str, slices: dict) -> LoweredGroup:
    """`group` storing (and loading) each value of `slices` in its slice of `out`."""
    written = [name for name in group.writes if name in slices]
    if not written:
        return group

    def rule(node):
        if isinstance(node, (loops.Load, loops.Store, loops.Prefetch)) and node.buffer in slices:
            n, c, *rest = node.index
            moved = replace(node, buffer=out, index=(n, c + slices[node.buffer], *rest))
            return rewritten(moved, rule) if isinstance(node, loops.Store) else moved
        return None

    kernel = replace(group.kernel, body=rewritten(group.kernel.body, rule))
    writes = tuple(dict.fromkeys(out if name in slices else name for name in group.writes))
    return replace(group, kernel=kernel, writes=writes)
