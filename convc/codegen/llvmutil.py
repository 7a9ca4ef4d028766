"""Small IRBuilder helpers shared by the code generator: types, constants, loops, intrinsics.

Stage: used only inside `convc.codegen`. Everything here builds `llvmlite.ir` objects through
the IRBuilder; no IR text is pasted together.

Fast-math policy (the one place it is decided): float add/sub/mul carry ``contract`` (so
``a*b + c`` fuses into FMA) and ``reassoc`` (so LLVM may vectorise and re-associate the
reductions that remain scalar loops). ``nnan``/``ninf``/``nsz`` stay off: NaN and infinity
must propagate exactly as in the NumPy reference, and ``max(x, 0)`` must not be rewritten on
the assumption that x is never NaN. ``fdiv`` carries no flags (no reciprocal approximation),
and ``afn`` is never set: math functions are our own polynomials with stated error bounds.

No function attribute has to be written as text: without a ``min-legal-vector-width``
attribute LLVM keeps explicit ``<16 x float>`` code in zmm registers even on CPUs whose tuning
prefers 256-bit vectors (checked in the generated assembly), so ``prefer-vector-width`` is
left alone; it only steers LLVM's own vectorisers, which here handle the scalar leftovers.
"""

from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

FLOAT_FLAGS = ("contract", "reassoc")
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()

VALUE_TYPES = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I1}
MEMORY_TYPES = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I8}


def value_type(dtype: str, width: int | None = None) -> ir.Type:
    """The register type of `dtype`, a ``<width x T>`` vector when `width` is given."""
    t = VALUE_TYPES[dtype]
    return ir.VectorType(t, width) if width else t


def is_float(t: ir.Type) -> bool:
    t = t.element if isinstance(t, ir.VectorType) else t
    return isinstance(t, (ir.FloatType, ir.DoubleType))


def const(t: ir.Type, value) -> ir.Constant:
    """A constant of type `t`, splatted over the lanes when `t` is a vector."""
    if isinstance(t, ir.VectorType):
        return ir.Constant(t, [ir.Constant(t.element, value)] * t.count)
    return ir.Constant(t, value)


def i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def splat(b: ir.IRBuilder, value: ir.Value, width: int) -> ir.Value:
    """Broadcast a scalar to ``<width x T>`` (insertelement + zero shufflevector)."""
    if isinstance(value, ir.Constant) and not isinstance(value.type, ir.VectorType):
        return ir.Constant(ir.VectorType(value.type, width), [value] * width)
    vt = ir.VectorType(value.type, width)
    v = b.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(I32, 0))
    return b.shuffle_vector(
        v, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(I32, width), [0] * width)
    )


def lanes(width: int, t: ir.IntType = I64) -> ir.Constant:
    """The vector ``<0, 1, ..., width-1>``."""
    return ir.Constant(ir.VectorType(t, width), list(range(width)))


def type_suffix(t: ir.Type) -> str:
    """LLVM's intrinsic name mangling: f32, v16f32, i64, v16i1, ..."""
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{type_suffix(t.element)}"
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    if isinstance(t, ir.PointerType):
        return "p0"
    raise TypeError(f"no intrinsic suffix for {t}")


def declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """Get or declare an external function or intrinsic by its full (mangled) name.

    Needed because `declare_intrinsic` rejects vector types in llvmlite 0.50.
    """
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, args), name)


def intrinsic(b: ir.IRBuilder, base: str, args: list[ir.Value], ret: ir.Type | None = None):
    """Call an overloaded intrinsic such as ``llvm.fma`` on scalars or vectors alike."""
    t = args[0].type
    fn = declare(b.module, f"{base}.{type_suffix(t)}", ret or t, [a.type for a in args])
    return b.call(fn, args)


def vector_fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """``x*y + z`` with one rounding (``llvm.fma``), scalar or ``<W x float>``."""
    return intrinsic(b, "llvm.fma", [x, y, z])


def smin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def smax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed(">", x, y), x, y)


@contextmanager
def for_range(
    b: ir.IRBuilder,
    start: ir.Value,
    stop: ir.Value,
    step: int = 1,
    name: str = "i",
    rolled: bool = False,
):
    """``for (i = start; i < stop; i += step)`` over i64; yields the induction variable.

    The body is built at the builder's position inside the ``with``; afterwards the builder
    sits in the exit block. The loop is rotated (guard + bottom test) as LLVM prefers.
    `rolled`: LLVM may not unroll it (``llvm.loop.unroll.disable``).
    """
    pre = b.block
    body = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.end")
    b.cbranch(b.icmp_signed("<", start, stop), body, done)
    b.position_at_end(body)
    var = b.phi(I64, name=name)
    var.add_incoming(start, pre)
    yield var
    nxt = b.add(var, i64(step), name=f"{name}.next", flags=("nsw",))
    var.add_incoming(nxt, b.block)
    latch = b.cbranch(b.icmp_signed("<", nxt, stop), body, done)
    if rolled:
        latch.set_metadata("llvm.loop", _unroll_disabled(b.module))
    b.position_at_end(done)


class _VolatileLoad(ir.instructions.LoadInstr):
    """``load volatile``, which llvmlite's builder does not write."""

    def descr(self, buf):
        [ptr] = self.operands
        buf.append(f"load volatile {self.type}, {ptr.type} {ptr.get_reference()}\n")


def load_apart(b: ir.IRBuilder, ptr: ir.Value, typ: ir.Type) -> ir.Value:
    """A load LLVM keeps as written: never merged with an equal load, removed, or
    reordered with another volatile one (a volatile load, of memory no one else writes).
    For the broadcasts of unrolled register-block copies that read the same element (tap
    b of column j + 1 and tap b + 1 of column j): shared, each lives across copies and
    the accumulators spill (`memory.Memory.load`)."""
    load = _VolatileLoad(b.block, ptr, typ=typ)
    b._insert(load)
    return load


def _unroll_disabled(module: ir.Module) -> ir.MDValue:
    """A fresh loop ID ``!n = !{!n, !{"llvm.loop.unroll.disable"}}``: LLVM reads a loop's
    properties from a node whose first operand is the node itself, one node a loop."""
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    fresh = ir.MetaDataString(module, f"loop{len(module.metadata)}")
    loop_id = module.add_metadata([fresh, disable])  # unique operands: a node of its own
    loop_id.operands = (loop_id, disable)
    return loop_id


def floordiv(b: ir.IRBuilder, x: ir.Value, d: ir.Value) -> ir.Value:
    """Python's ``x // d`` for i64 (rounds toward minus infinity; d != 0)."""
    q = b.sdiv(x, d)
    r = b.srem(x, d)
    adjust = b.and_(
        b.icmp_signed("!=", r, i64(0)),
        b.xor(b.icmp_signed("<", r, i64(0)), b.icmp_signed("<", d, i64(0))),
    )
    return b.sub(q, b.zext(adjust, I64))
