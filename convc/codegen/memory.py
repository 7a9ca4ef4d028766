"""Buffer and local memory access for the kernel emitter, scalar or vectorized.

Stage: codegen. In a vectorized loop over ``v`` (width W) an access whose flat index has
stride 1 in ``v`` is one contiguous ``<W x T>`` load/store (masked in a masked tail, with the
alignment that the index provably has); stride 0 is a scalar load (broadcast by the user);
a constant stride of 2-4 is one wider masked load plus a shuffle (loads only); any other
stride or a non-affine index is a gather/scatter through ``llvm.masked.gather`` /
``llvm.masked.scatter`` of per-lane pointers. Every vector access honours the context's
lane mask (a masked tail, or a lane-varying `If`): inactive lanes touch no memory, so a
condition that keeps an index inside its buffer protects the access as it would in scalar code.
"""

from __future__ import annotations

import itertools
import platform
from dataclasses import dataclass, field
from functools import lru_cache

import sympy
from llvmlite import ir

from ..loops import ir as L
from ..loops.analysis import known_multiple, walk
from .index import IndexEmitter, depends_on, stride_in
from .llvmutil import (
    I1,
    I32,
    I64,
    MEMORY_TYPES,
    PTR,
    const,
    declare,
    i64,
    load_apart,
    type_suffix,
)
from .transpose import store_rows

#: A cache line: a non-temporal store writes whole aligned ones (`L.Store.streaming`).
LINE_BYTES = 64
MAX_SHUFFLE_STRIDE = 4  # constant strides up to this load contiguously and shuffle


@dataclass
class VecCtx:
    """The vectorized loop being emitted: `base` is the first lane's value of `var`, a
    multiple of `multiple`; `mask` (``<W x i1>``) marks the live lanes in a masked tail or
    under a lane-varying `If` (None: all lanes). `tail_locals`: in a masked tail (not under
    an `If`), the locals allocated in it, whose dead lanes are never stored, so updates to
    them need no blend (None elsewhere)."""

    var: str
    width: int
    base: ir.Value
    multiple: int
    mask: ir.Value | None = None
    reductions: dict = field(default_factory=dict)
    tail_locals: set | None = None


def _whole_last_axis(buf: L.Buffer, index: tuple, vec: VecCtx) -> bool:
    """Whether a vector load reads its buffer's last axis whole whatever its mask: the
    last index is the lane variable alone, the axis is one vector long, the vector starts
    at a multiple of it (so at 0 wherever a lane is live) and no other index varies by
    lane. Its dead lanes then read inside the buffer too, and it needs no masked load:
    with AVX2 that is a mask rebuilt from bits beside every load (a channel block's
    packed weights in a masked tail of output channels)."""
    last, lead = sympy.sympify(index[-1]), index[:-1]
    extent = sympy.sympify(buf.shape[-1])
    if not (isinstance(last, sympy.Symbol) and last.name == vec.var):
        return False
    if not (extent.is_Integer and int(extent) == vec.width and vec.multiple % vec.width == 0):
        return False
    return not any(depends_on(sympy.sympify(i), vec.var) for i in lead)


@lru_cache(maxsize=4096)
def _repeats_between_copies(flat: sympy.Expr, unrolled: tuple) -> bool:
    """Whether two copies of the unrolled loops (`unrolled`: (variable, extent) pairs)
    read the same element at `flat`: a conv's unrolled taps and register-block columns,
    ``b + j``. Only an index linear in them with integer steps is looked at."""
    steps = []
    for var, extent in unrolled:
        step = stride_in(flat, var)
        if step is None or not step.is_Integer:
            return False
        if step:
            steps.append([int(step) * k for k in range(extent)])
    if len(steps) < 2:
        return False
    offsets = [sum(parts) for parts in itertools.product(*steps)]
    return len(set(offsets)) < len(offsets)


@lru_cache(maxsize=65536)
def flat_index(buf: L.Buffer, index: tuple) -> sympy.Expr:
    """Row-major linear index of `index` into `buf` (rank checked)."""
    if len(index) != len(buf.shape):
        raise ValueError(
            f"buffer '{buf.name}' has rank {len(buf.shape)} but is indexed with {len(index)}"
        )
    return sympy.Add(*(i * s for i, s in zip(index, buf.strides())))


def to_value(b: ir.IRBuilder, v: ir.Value, dtype: str) -> ir.Value:
    """Memory representation -> register representation (bool: i8 -> i1)."""
    return b.icmp_unsigned("!=", v, const(v.type, 0)) if dtype == "bool" else v


def to_memory(b: ir.IRBuilder, v: ir.Value, dtype: str) -> ir.Value:
    if dtype != "bool":
        return v
    t = ir.VectorType(MEMORY_TYPES["bool"], v.type.count) if _is_vec(v) else MEMORY_TYPES["bool"]
    return b.zext(v, t)


def _is_vec(v: ir.Value) -> bool:
    return isinstance(v.type, ir.VectorType)


class Memory:
    """Loads and stores of one function; `ix` emits indices over the live environment."""

    def __init__(
        self,
        b: ir.IRBuilder,
        program: L.Program,
        buffers: dict,
        ix: IndexEmitter,
        broadcasts_apart: bool = False,
    ):
        self.b, self.program, self.buffers, self.ix, self.env = b, program, buffers, ix, ix.env
        self.decl = {buf.name: buf for buf in program.buffers}
        self.broadcasts_apart = broadcasts_apart
        #: the unrolled loops being emitted, outermost first: (variable, extent) pairs
        self.unrolled: tuple[tuple[str, int], ...] = ()

    def load(self, node: L.Load, vec: VecCtx | None) -> ir.Value:
        buf = self.decl[node.buffer]
        etype = MEMORY_TYPES[buf.dtype]
        flat = flat_index(buf, node.index)
        b = self.b
        if vec is None or not depends_on(flat, vec.var):
            ptr = self._gep(node.buffer, etype, flat)
            apart = vec is not None and self.broadcasts_apart
            if apart and _repeats_between_copies(flat, self.unrolled):
                return to_value(b, load_apart(b, ptr, etype), buf.dtype)
            return to_value(b, b.load(ptr, typ=etype), buf.dtype)
        vt = ir.VectorType(etype, vec.width)
        stride = stride_in(flat, vec.var)
        if stride == 1:
            ptr = self._gep(node.buffer, etype, flat)
            if vec.mask is not None and not _whole_last_axis(buf, node.index, vec):
                fn = declare(
                    b.module, f"llvm.masked.load.{type_suffix(vt)}.p0", vt, [PTR, vec.mask.type, vt]
                )
                out = b.call(fn, [ptr, vec.mask, const(vt, 0)])
            else:
                out = b.load(ptr, typ=vt, align=self._align(buf, flat, vec))
            return to_value(b, out, buf.dtype)
        if stride is not None and stride.is_Integer and 2 <= stride <= MAX_SHUFFLE_STRIDE:
            return to_value(
                b, self._strided_load(node.buffer, etype, flat, int(stride), vec), buf.dtype
            )
        ptrs = self._lane_pointers(node.buffer, etype, flat, stride, vec)
        mask = vec.mask if vec.mask is not None else const(ir.VectorType(I1, vec.width), 1)
        name = f"llvm.masked.gather.{type_suffix(vt)}.v{vec.width}p0"
        fn = declare(b.module, name, vt, [ptrs.type, mask.type, vt])
        return to_value(b, b.call(fn, [ptrs, mask, const(vt, 0)]), buf.dtype)

    def store(self, node: L.Store, value: ir.Value, vec: VecCtx | None) -> None:
        buf = self.decl[node.buffer]
        etype = MEMORY_TYPES[buf.dtype]
        flat = flat_index(buf, node.index)
        b = self.b
        value = to_memory(b, value, buf.dtype)
        if vec is None:
            b.store(value, self._gep(node.buffer, etype, flat))
            return
        if not depends_on(flat, vec.var):
            raise ValueError(
                f"store to '{node.buffer}' does not depend on the vector variable '{vec.var}'"
            )
        vt = value.type
        stride = stride_in(flat, vec.var)
        if stride == 1:
            ptr = self._gep(node.buffer, etype, flat)
            if vec.mask is None:
                align = self._align(buf, flat, vec)
                store = b.store(value, ptr, align=align)
                if node.streaming and align >= LINE_BYTES:
                    store.set_metadata("nontemporal", b.module.add_metadata([ir.Constant(I32, 1)]))
                return
            fn = declare(
                b.module,
                f"llvm.masked.store.{type_suffix(vt)}.p0",
                ir.VoidType(),
                [vt, PTR, vec.mask.type],
            )
            b.call(fn, [value, ptr, vec.mask])
            return
        ptrs = self._lane_pointers(node.buffer, etype, flat, stride, vec)
        mask = vec.mask if vec.mask is not None else const(ir.VectorType(I1, vec.width), 1)
        name = f"llvm.masked.scatter.{type_suffix(vt)}.v{vec.width}p0"
        fn = declare(b.module, name, ir.VoidType(), [vt, ptrs.type, mask.type])
        b.call(fn, [value, ptrs, mask])

    def store_rows(
        self, node: L.Store, values: list, lane_stride: int, vec: VecCtx, masked_stores: bool
    ) -> None:
        """`values[r]` (one per copy of a register block) stored where `node` puts copy r,
        whose index moves by 1 from copy to copy and by `lane_stride` from lane to lane:
        transposed in registers and written one lane's row at a time (`transpose`;
        `masked_stores` as for `codegen.generate`)."""
        buf = self.decl[node.buffer]
        base = self._gep(node.buffer, MEMORY_TYPES[buf.dtype], flat_index(buf, node.index))
        store_rows(self.b, base, values, lane_stride, vec.mask, masked_stores)

    def prefetch(self, node: L.Prefetch) -> None:
        """``llvm.prefetch`` of the line holding ``buffer[index]``: read, locality 2 (kept
        in L2 but not L1, where it would evict what the kernel is using), data cache."""
        buf = self.decl[node.buffer]
        ptr = self._gep(node.buffer, MEMORY_TYPES[buf.dtype], flat_index(buf, node.index))
        fn = declare(self.b.module, "llvm.prefetch.p0", ir.VoidType(), [PTR, I32, I32, I32])
        self.b.call(fn, [ptr, ir.Constant(I32, 0), ir.Constant(I32, 2), ir.Constant(I32, 1)])

    def _strided_load(self, name, etype, flat, stride: int, vec: VecCtx) -> ir.Value:
        """Lanes ``base + stride*k``: one masked load of ``stride*W`` elements whose mask
        selects exactly the wanted ones (so nothing past the last wanted element is touched;
        AVX-512 masked loads do not fault on masked-off lanes), then a shuffle picks them.
        Much cheaper than a gather for the small strides of strided convolution and pooling."""
        b, width = self.b, vec.width
        wide = ir.VectorType(etype, stride * width)
        wide_mask_type = ir.VectorType(I1, stride * width)
        picks = [k * stride for k in range(width)]
        if vec.mask is None:
            mask = ir.Constant(
                wide_mask_type, [int(p % stride == 0) for p in range(stride * width)]
            )
        else:  # spread lane k of the mask to position k*stride; other positions read `false`
            spread = [p // stride if p % stride == 0 else width for p in range(stride * width)]
            off = const(vec.mask.type, 0)
            mask = b.shuffle_vector(
                vec.mask, off, ir.Constant(ir.VectorType(I32, len(spread)), spread)
            )
        fn = declare(
            b.module, f"llvm.masked.load.{type_suffix(wide)}.p0", wide, [PTR, wide_mask_type, wide]
        )
        loaded = b.call(fn, [self._gep(name, etype, flat), mask, const(wide, 0)])
        return b.shuffle_vector(
            loaded, ir.Constant(wide, ir.Undefined), ir.Constant(ir.VectorType(I32, width), picks)
        )

    def _gep(self, name: str, etype: ir.Type, flat: sympy.Expr) -> ir.Value:
        idx = self.ix.emit(flat)
        return self.b.gep(self.buffers[name], [idx], inbounds=True, source_etype=etype)

    def _align(self, buf: L.Buffer, flat: sympy.Expr, vec: VecCtx) -> int:
        """Bytes of alignment the first lane's address provably has (at most one vector)."""
        size = L.DTYPE_SIZES[buf.dtype]
        k = known_multiple(flat, vec.var, vec.multiple) * size
        align = size
        while align < buf.align and align < size * vec.width and k % (2 * align) == 0:
            align *= 2
        return align

    def _lane_pointers(self, name, etype, flat, stride, vec: VecCtx) -> ir.Value:
        """``<W x ptr>`` of the lanes' addresses (the gather/scatter mask guards their use).

        A constant stride gives the first lane's address plus a constant ``<W x i32>`` of
        offsets, which x86 turns into one ``vgatherdps``/``vscatterdps`` per 16 lanes;
        per-lane 64-bit addresses take one instruction per 8 lanes plus their arithmetic
        (a channel-vector conv storing NCHW output spent a quarter of its time there)."""
        b, saved = self.b, self.env[vec.var]
        first = self.ix.emit(flat)
        if stride is not None and stride.is_Integer and abs(int(stride)) * vec.width < 2**31:
            base = b.gep(self.buffers[name], [first], inbounds=True, source_etype=etype)
            offsets = [int(stride) * lane for lane in range(vec.width)]
            lanes = b.gep(
                base,
                [ir.Constant(ir.VectorType(I32, vec.width), offsets)],
                inbounds=True,
                source_etype=etype,
            )
            lanes.type = ir.VectorType(PTR, vec.width)  # llvmlite types a GEP as scalar
            return lanes
        step = None if stride is None else self.ix.emit(stride)
        out = ir.Constant(ir.VectorType(PTR, vec.width), ir.Undefined)
        for lane in range(vec.width):
            if step is not None:
                idx = b.add(first, b.mul(step, i64(lane)))
            else:
                self.env[vec.var] = b.add(vec.base, i64(lane))
                idx = self.ix.emit(flat)
                self.env[vec.var] = saved
            ptr = b.gep(self.buffers[name], [idx], inbounds=True, source_etype=etype)
            out = b.insert_element(out, ptr, ir.Constant(I64, lane))
        return out


def fence_streaming_stores(b: ir.IRBuilder, body: L.Stmt) -> None:
    """A store fence where `body` has streaming stores: non-temporal stores are weakly
    ordered, and the fence makes them visible before the function returns (to the thread
    that joins the parallel region, or to the caller). On x86 that is ``sfence``, the fence
    the architecture defines for them (LLVM lowers ``fence seq_cst`` to a locked ``or``);
    elsewhere ``fence seq_cst``."""
    if not any(isinstance(st, L.Store) and st.streaming for st in walk(body)):
        return
    if platform.machine().lower() in ("x86_64", "amd64"):
        b.call(declare(b.module, "llvm.x86.sse.sfence", ir.VoidType(), []), [])
    else:
        b.fence("seq_cst")
