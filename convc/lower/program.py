"""Program assembly: kernels, buffers, the liveness-planned arena, packed parameters.

Stage: (graph after passes, fused groups) -> `convc.loops.Program`.

Buffers: one per graph input (`input`), graph output (`output`), constant a
kernel reads (`param`, its array stored in `Program.params`, C-contiguous, in
the value's dtype, converted once here) and every other value a kernel writes
(`temp`: group outputs that are not graph outputs, and the scratch
temporaries of multi-step ops such as an average pool's divisor).

Arena plan (decided symbolically, so one plan serves every batch size): temps
are assigned to *slots* in call order; a slot is free again after the last
kernel that reads its current tenant, and a new temp reuses a free slot (the
one whose size at N=1 fits best) before a new slot is opened. A slot's size is
the `Max` of its tenants' sizes (rounded up to 64 bytes) as a sympy
expression, its offset the sum of the slots before it, and the arena size the
sum of all slots: valid for every binding of the run-time symbols, evaluated
by the runtime once N is known. Rank-0 values get shape (1,).

Views (flatten, reshape, identity of a computed temporary) get no kernel: their
buffer sits at the offset of the value they re-index (same elements, same
order), whose lifetime then extends to the view's last reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import sympy

from convc import loops
from convc.passes import FusedGroup
from ir import Graph, UnsupportedError

from .concat_slices import concats_in_place
from .group import LoweredGroup
from .layout import blocked_shape, choose_layouts, group_texprs
from .row_fusion import lower_groups

#: The alignment graph inputs are declared with: NumPy's own (its large arrays start 16, 32
#: or 48 bytes past a 64-byte boundary), so the runtime reads a caller's array in place
#: instead of copying it to 64-byte-aligned scratch. Measured on 64-channel 112x112 inputs
#: 16-48 bytes off: depthwise 3x3 0.285 -> 0.140 ms, max pool 0.435 -> 0.183, relu 0.492
#: -> 0.252 (0.137-0.243 when 64-aligned): unaligned vector loads cost far less than the
#: copy, even where rows are reused from L1 (1x1 32->64 @112: 0.517 -> 0.479 ms).
INPUT_ALIGN = 16


def _shape(shape) -> tuple:
    return tuple(shape) if shape else (1,)


def _aligned(nbytes) -> sympy.Expr:
    return 64 * sympy.ceiling(sympy.sympify(nbytes) / 64)


def _at_one(expr) -> float:
    expr = sympy.sympify(expr)
    return float(expr.subs({s: 1 for s in expr.free_symbols}))


@dataclass
class ArenaPlan:
    """Slots (size expressions) and the slot of every temp."""

    sizes: list = field(default_factory=list)
    tenants: dict = field(default_factory=dict)  # temp name -> slot
    free_after: dict = field(default_factory=dict)  # slot -> last call reading its tenant

    def place(self, name: str, nbytes, start: int, end: int) -> None:
        free = [s for s, last in self.free_after.items() if last < start]
        need = _at_one(nbytes)
        fitting = [s for s in free if _at_one(self.sizes[s]) >= need]
        if fitting:
            slot = min(fitting, key=lambda s: _at_one(self.sizes[s]))
        elif free:
            slot = max(free, key=lambda s: _at_one(self.sizes[s]))
        else:
            slot = len(self.sizes)
            self.sizes.append(sympy.Integer(0))
        self.sizes[slot] = sympy.Max(self.sizes[slot], nbytes)
        self.tenants[name] = slot
        self.free_after[slot] = end

    def offsets(self) -> list:
        result, total = [], sympy.Integer(0)
        for size in self.sizes:
            result.append(total)
            total = total + size
        return result


def _root(name: str, aliases: dict) -> str:
    while name in aliases:
        name = aliases[name]
    return name


def _stored_shape(graph: Graph, name: str, layouts: dict) -> tuple:
    """The buffer shape of graph value `name`: channel-blocked ones in their layout."""
    shape = graph.values[name].shape
    return _shape(blocked_shape(shape, layouts[name]) if name in layouts else shape)


def _lifetimes(graph: Graph, lowered: list[LoweredGroup], aliases: dict, layouts: dict) -> dict:
    """temp name -> (first call, last call, nbytes) for everything kernels write; a read of
    a view counts as a read of the value it shares memory with."""
    spans = {}
    outputs = set(graph.outputs)
    for k, group in enumerate(lowered):
        for te in group.scratch:
            if te.name in spans:  # a temporary recomputed by a later kernel (gradients)
                spans[te.name][1] = k
                continue
            spans[te.name] = [k, k, _aligned(sympy.Mul(*_shape(te.shape)) * _size(te.dtype))]
        for name in group.writes:
            if name not in outputs and name not in spans:
                shape = _stored_shape(graph, name, layouts)
                nbytes = sympy.Mul(*shape) * _size(graph.values[name].dtype)
                spans[name] = [k, k, _aligned(nbytes)]
        for name in group.reads:
            name = _root(name, aliases)
            if name in spans:
                spans[name][1] = k
    return spans


def _size(dtype: str) -> int:
    return loops.ir.DTYPE_SIZES[dtype]


def plan_arena(
    graph: Graph,
    lowered: list[LoweredGroup],
    aliases: dict | None = None,
    layouts: dict | None = None,
):
    """({temp name: arena offset}, arena size); views sit at their source's offset."""
    aliases = aliases or {}
    spans = _lifetimes(graph, lowered, aliases, layouts or {})
    plan = ArenaPlan()
    for name, (start, end, nbytes) in spans.items():
        plan.place(name, nbytes, start, end)
    slots = plan.offsets()
    offsets = {name: slots[plan.tenants[name]] for name in spans}
    offsets.update({name: offsets[_root(name, aliases)] for name in aliases})
    return offsets, sum(plan.sizes, sympy.Integer(0))


def _temp_types(graph: Graph, lowered: list[LoweredGroup], aliases: dict, layouts: dict) -> dict:
    types = {name: (graph.values[name].dtype, _shape(graph.values[name].shape)) for name in aliases}
    for group in lowered:
        for te in group.scratch:
            types[te.name] = (te.dtype, _shape(te.shape))
        for name in group.writes:
            if name in graph.values:
                types[name] = (graph.values[name].dtype, _stored_shape(graph, name, layouts))
    return types


def _buffers(
    graph: Graph, lowered: list[LoweredGroup], offsets: dict, aliases: dict, layouts: dict
):
    read = {v for group in lowered for v in group.reads}
    buffers, params = [], {}
    for name in graph.inputs:
        value = graph.values[name]
        shape = _shape(value.shape)
        buffers.append(loops.Buffer(name, value.dtype, shape, "input", align=INPUT_ALIGN))
    for name in graph.outputs:
        value = graph.values[name]
        if value.producer is None:
            continue  # an input or constant returned as is: the caller copies it
        buffers.append(loops.Buffer(name, value.dtype, _shape(value.shape), "output"))
    for value in graph.values.values():
        if value.is_constant and value.name in read:
            buffers.append(loops.Buffer(value.name, value.dtype, _shape(value.shape), "param"))
            array = np.ascontiguousarray(value.data, dtype=value.dtype)
            params[value.name] = array.reshape(_shape(value.shape))
    for group in lowered:
        for name, array in group.packed.items():
            if name in params:
                continue
            buffers.append(loops.Buffer(name, str(array.dtype), array.shape, "param"))
            params[name] = array
    types = _temp_types(graph, lowered, aliases, layouts)
    for name, offset in offsets.items():
        dtype, shape = types[name]
        buffers.append(loops.Buffer(name, dtype, shape, "temp", offset))
    return buffers, params


def _check_symbols(graph: Graph) -> tuple[str, ...]:
    known = graph.symbols
    for value in graph.values.values():
        extra = value.type.free_symbols - known
        if extra:
            raise UnsupportedError(
                f"value '{value.name}' has shape {value.type} with dims {sorted(map(str, extra))} "
                "known only while running; the compiler needs shapes fixed by the inputs"
            )
    return tuple(sorted(str(s) for s in known))


def _unique_names(kernels: list) -> tuple:
    """Kernels renamed `name_1`, ... where two graph names map to one C identifier."""
    seen, result = set(), []
    for kernel in kernels:
        name, k = kernel.name, 0
        while name in seen:
            k += 1
            name = f"{kernel.name}_{k}"
        seen.add(name)
        result.append(replace(kernel, name=name))
    return tuple(result)


def assemble(graph: Graph, groups: list[FusedGroup], tuning: dict | None = None):
    """(Program, lowered groups) for `graph` partitioned into `groups` (in execution order);
    `tuning`: {`tuning_key`: {axis: tile}} overriding the default schedules' tiles."""
    symbols = _check_symbols(graph)
    texprs = group_texprs(graph, groups)
    layouts = choose_layouts(graph, groups, texprs)
    lowered = concats_in_place(graph, lower_groups(graph, groups, layouts, tuning, texprs), layouts)
    aliases = {g.writes[0]: g.view_of for g in lowered if g.view_of is not None}
    lowered = [g for g in lowered if g.view_of is None]
    offsets, arena = plan_arena(graph, lowered, aliases, layouts)
    buffers, params = _buffers(graph, lowered, offsets, aliases, layouts)
    program = loops.Program(
        name=re.sub(r"\W", "_", graph.name),
        buffers=tuple(buffers),
        kernels=_unique_names([group.kernel for group in lowered]),
        symbols=symbols,
        arena_size=arena,
        params=params,
    )
    return program, lowered
