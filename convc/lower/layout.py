"""Channel-blocked activations: which values a compiled model stores as NCHW[B]c.

Stage: part of lowering, before the groups are lowered. Input: the graph after passes
and its fused groups. Output: {value name: channel block B}, which the kernels honour
through `Scope.layouts` (every access and store of such a value is re-indexed) and the
program through its buffer shapes.

Why: a conv vectorized over B output channels (the fast schedule for windows, strides,
narrow rows and deep reductions) stores B lanes that are H*W apart in NCHW: a scatter
per output column, and its successor reads them back the same way. Stored as
[N][ceil(C/B)][H][W][B], those B channels are one contiguous vector; the reduction over
input channels walks 4 bytes at a time inside a block instead of H*W*4.

Which values: 4-D float32 activations with at least MIN_CHANNELS channels that are
neither graph inputs nor graph outputs, written by a group and read only by groups that
all take a channel-vector schedule (`schedule.channel_schedule`): every tensor
expression of their anchor is a 4-D conv (dense, depthwise, or grouped with whole groups
per channel block; not transposed, not a gradient), pooling or elementwise kernel with at
least MIN_CHANNELS output channels.
Views, movement, dense layers and gradients read elements in NCHW order, so their
inputs stay NCHW; so do the model's inputs and outputs, whose first and last kernels
convert while they compute (there is no separate conversion pass; with AVX2's blocks a
deep conv over a narrow model input copies it to blocks in its own kernel,
`input_blocks`).

B is 32 (the 32-lane schedules) unless the last block of 32 would be at most half
full, then 16 (`channel_block`); a block past C is partly empty, and its lanes past C
are never read or written (the kernels' last tile is masked). B depends on C alone, so
every kernel that maps input channels to the same output channels (elementwise,
pooling, depthwise, a residual add) finds its operands and its result blocked alike.
"""

from __future__ import annotations

import sympy

from convc.passes import FusedGroup
from convc.texpr import TensorExpr, texpr_of
from ir import Graph

from .registers import channel_block
from .schedule import depthwise, whole_groups

MIN_CHANNELS = 16
CHANNEL_FAMILIES = ("conv", "pool", "elementwise")


def blocked_shape(shape, block: int) -> tuple:
    """[N, C, *rest] -> [N, ceil(C/block), *rest, block]."""
    n, c, *rest = shape
    return (n, sympy.ceiling(sympy.sympify(c) / block), *rest, block)


def channel_vectorizable(te: TensorExpr) -> bool:
    """Whether `te` can run on a channel-vector schedule (see the module doc)."""
    family = te.attrs.get("family")
    if len(te.indices) != 4 or family not in CHANNEL_FAMILIES or te.attrs.get("view"):
        return False
    if te.reduction not in ("none", "sum", "max") or te.dtype != "float32":
        return False
    channels = sympy.sympify(te.shape[1])
    if not channels.is_number or int(channels) < MIN_CHANNELS:
        return False
    if family == "conv" and te.op != "conv":
        return False
    return family != "conv" or depthwise(te) or whole_groups(te, channel_block(channels))


def group_texprs(graph: Graph, groups: list[FusedGroup]) -> dict:
    """{node name: its tensor expressions} for every node of `groups`: derived once per
    compile and shared by the layout choice, the schedules and the lowering."""
    return {name: texpr_of(graph, graph.nodes[name]) for group in groups for name in group.nodes}


def group_reads(group: FusedGroup, texprs: dict) -> set:
    """The values a group's kernel reads (its anchor's and its epilogue's operands)."""
    return {r for name in group.nodes for te in texprs[name] for r in te.reads}


def channel_group(graph: Graph, group: FusedGroup, texprs: dict) -> bool:
    """Whether a group's kernel can take channel-vector schedules: its anchor computes one
    channel-vectorizable expression, and its temporaries read constants only."""
    exprs = texprs[group.anchor]
    computed = [te for te in exprs if te.role != "temp"]
    temp_reads = {r for te in exprs if te.role == "temp" for r in te.reads}
    constant = all(r not in graph.values or graph.values[r].is_constant for r in temp_reads)
    return len(computed) == 1 and channel_vectorizable(computed[0]) and constant


def choose_layouts(graph: Graph, groups: list[FusedGroup], texprs: dict | None = None) -> dict:
    """{value name: channel block} for the values stored blocked (see the module doc);
    `texprs` as from `group_texprs` (derived here when not given)."""
    texprs = texprs if texprs is not None else group_texprs(graph, groups)
    friendly, readers = {}, {}
    for group in groups:
        friendly[group.name] = channel_group(graph, group, texprs)
        for name in group_reads(group, texprs):
            readers.setdefault(name, []).append(group.name)
    outputs = set(graph.outputs)
    layouts = {}
    for group in groups:
        value = graph.values.get(group.output)
        if value is None or group.output in outputs or not friendly[group.name]:
            continue
        shape = value.type.shape
        if len(shape) != 4 or value.dtype != "float32":
            continue
        channels = sympy.sympify(shape[1])
        if not channels.is_number or int(channels) < MIN_CHANNELS:
            continue
        if all(friendly[reader] for reader in readers.get(group.output, [])):
            layouts[group.output] = channel_block(channels)
    return _without_gathers(graph, groups, texprs, layouts)


def _without_gathers(graph: Graph, groups: list[FusedGroup], texprs: dict, layouts: dict) -> dict:
    """`layouts` less the outputs of groups that would gather every input vector: a pool,
    an elementwise op or a depthwise conv reads its input at its own output channel (its
    lanes), so on channel vectors an NCHW input is read H*W floats a lane apart. When
    every such read is of an NCHW activation (after a concat, which stays NCHW, or a
    model input) and the kernel reads no blocked value at all (a fused epilogue's
    operands included), its output stays NCHW too, and the kernel takes width vectors (a
    pool's row and column passes, `separable`); its readers then read NCHW, so the rule
    runs to a fixed point. Inception's 3x3/1 pool branch on a concat of 256 channels @32
    (kernel, two threads): 0.477 ms on gathered channel vectors, 0.014 as rows; the
    sample 1.79 -> 0.90 ms. A relu or a 3x3/1 max pool of the model's 64x56x56 input
    before two 3x3 convs (one thread): 0.053 -> 0.016 and 0.254 -> 0.043 ms, the conv after
    them 0-2.4% slower on NCHW rows (batch 8: 16.6 -> 15.4 and 18.3 -> 15.5 ms in all)."""
    layouts = dict(layouts)
    lanes = {group.name: _lane_reads(graph, group, texprs) for group in groups}
    reads = {group.name: group_reads(group, texprs) for group in groups}
    changed = True
    while changed:
        changed = False
        for group in groups:
            if (
                group.output in layouts
                and lanes[group.name]
                and not reads[group.name] & layouts.keys()
            ):
                del layouts[group.output]
                changed = True
    return layouts


def _lane_reads(graph: Graph, group: FusedGroup, texprs: dict) -> set:
    """The 4-D activations that `group`'s anchor (a pool, elementwise op or depthwise
    conv) reads at its own output channel: its channel lanes are theirs."""
    (te, *rest) = [e for e in texprs[group.anchor] if e.role != "temp"] or [None]
    if te is None or rest or len(te.indices) != 4:
        return set()
    if te.attrs.get("family") == "conv" and not depthwise(te):
        return set()
    channel = te.indices[1]
    found = set()
    for a in te.body.atoms(sympy.Indexed):
        value = graph.values.get(str(a.base))
        if value is None or value.is_constant or len(a.indices) != 4:
            continue
        if channel in sympy.sympify(a.indices[1]).free_symbols:
            found.add(str(a.base))
    return found
