"""Value expressions of the loop IR -> IR values (scalar, or ``<W x T>`` in a vector loop).

Stage: codegen, used by the kernel emitter. A value is emitted as a scalar until it meets a
lane-varying operand, then broadcast: invariant subexpressions of a vectorized loop stay
scalar (computed once per vector iteration, hoisted by LLVM where possible). Constants adopt
the dtype of the operand they meet, so ``Load(...) * 2.0`` works for float64 buffers too.
NaN semantics follow NumPy: max/min propagate NaN (``llvm.maximum``/``llvm.minimum``),
comparisons are false on NaN except ``ne``.
"""

from __future__ import annotations

from llvmlite import ir

from ..loops import ir as L
from .index import IndexEmitter, depends_on, stride_in
from .llvmutil import FLOAT_FLAGS, const, intrinsic, is_float, lanes, splat, value_type
from .vmath import call_math

FCMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
IDENTITY_FLOAT = {"add": 0.0, "mul": 1.0, "max": float("-inf"), "min": float("inf")}
IDENTITY_INT = {"add": 0, "mul": 1, "max": -(2**62), "min": 2**62}


def widen(b: ir.IRBuilder, v: ir.Value, width: int | None) -> ir.Value:
    """Broadcast scalar `v` to the vector width (no-op for vectors or width None)."""
    if width is None or isinstance(v.type, ir.VectorType):
        return v
    return splat(b, v, width)


def _same_shape(b: ir.IRBuilder, *vals: ir.Value) -> list[ir.Value]:
    width = next((v.type.count for v in vals if isinstance(v.type, ir.VectorType)), None)
    return [widen(b, v, width) for v in vals]


def identity(op: str, dtype: str, t: ir.Type) -> ir.Constant:
    """The neutral element of a reduction op."""
    table = IDENTITY_FLOAT if dtype.startswith("float") else IDENTITY_INT
    return const(t, table[op])


def binary(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, dtype: str) -> ir.Value:
    """``op(x, y)`` elementwise; both of `dtype`, scalars broadcast to the other's width."""
    x, y = _same_shape(b, x, y)
    if dtype.startswith("float"):
        return _binary_float(b, op, x, y)
    if op in ("and", "or"):
        return b.and_(x, y) if op == "and" else b.or_(x, y)
    simple = {"add": b.add, "sub": b.sub, "mul": b.mul}
    if op in simple:
        return simple[op](x, y)
    if op in ("max", "min"):
        return b.select(b.icmp_signed(">" if op == "max" else "<", x, y), x, y)
    if op in ("div", "mod"):
        return _int_division(b, op, x, y)
    raise ValueError(f"operator '{op}' is not defined on {dtype}")


def _int_division(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
    """Truncating division or floor modulo; a zero divisor gives 0 (as NumPy does) instead
    of a SIGFPE, which also keeps the inactive lanes of a masked tail harmless."""
    zero = b.icmp_signed("==", y, const(y.type, 0))
    safe = b.select(zero, const(y.type, 1), y)
    if op == "div":
        out = b.sdiv(x, safe)
    else:
        r = b.srem(x, safe)
        fix = b.and_(b.icmp_signed("!=", r, const(r.type, 0)), b.xor(_neg(b, r), _neg(b, safe)))
        out = b.select(fix, b.add(r, safe), r)
    return b.select(zero, const(y.type, 0), out)


def _neg(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    return b.icmp_signed("<", v, const(v.type, 0))


def _binary_float(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
    if op == "add":
        return b.fadd(x, y, flags=FLOAT_FLAGS)
    if op == "sub":
        return b.fsub(x, y, flags=FLOAT_FLAGS)
    if op == "mul":
        return b.fmul(x, y, flags=FLOAT_FLAGS)
    if op == "div":
        return b.fdiv(x, y)
    if op in ("max", "min"):
        return intrinsic(b, "llvm.maximum" if op == "max" else "llvm.minimum", [x, y])
    if op == "pow":
        return intrinsic(b, "llvm.pow", [x, y])
    if op == "mod":
        r = b.frem(x, y)
        zero = const(r.type, 0.0)
        sign_differs = b.xor(b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", y, zero))
        fix = b.and_(b.fcmp_ordered("!=", r, zero), sign_differs)
        return b.select(fix, b.fadd(r, y), r)
    raise ValueError(f"operator '{op}' is not defined on floats")


def unary(b: ir.IRBuilder, op: str, x: ir.Value, dtype: str, scalef: bool = False) -> ir.Value:
    """``op(x)``; `scalef`: as for `codegen.generate`."""
    if op == "not":
        return b.xor(x, const(x.type, 1))
    if op in ("exp", "log", "tanh", "erf", "sigmoid"):
        if not dtype.startswith("float"):
            raise ValueError(f"{op} needs a float operand, got {dtype}")
        return call_math(b, op, x, scalef)
    if dtype.startswith("float"):
        if op == "neg":
            return b.fneg(x)
        llvm_name = {"abs": "llvm.fabs", "sqrt": "llvm.sqrt", "floor": "llvm.floor"}
        llvm_name["ceil"] = "llvm.ceil"
        if op in llvm_name:
            return intrinsic(b, llvm_name[op], [x])
    elif op == "neg":
        return b.neg(x)
    elif op == "abs":
        return b.select(_neg(b, x), b.neg(x), x)
    elif op in ("floor", "ceil"):
        return x
    raise ValueError(f"operator '{op}' is not defined on {dtype}")


def compare(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, dtype: str) -> ir.Value:
    x, y = _same_shape(b, x, y)
    if dtype.startswith("float"):
        if op == "ne":
            return b.fcmp_unordered("!=", x, y)
        return b.fcmp_ordered(FCMP[op], x, y)
    if dtype == "bool":
        return b.icmp_unsigned(FCMP[op], x, y)
    return b.icmp_signed(FCMP[op], x, y)


def cast(b: ir.IRBuilder, x: ir.Value, src: str, dst: str) -> ir.Value:
    """Convert between dtypes (float->int truncates; to bool is ``!= 0``)."""
    width = x.type.count if isinstance(x.type, ir.VectorType) else None
    t = value_type(dst, width)
    if src == dst:
        return x
    if dst == "bool":
        if is_float(x.type):
            return b.fcmp_unordered("!=", x, const(x.type, 0.0))
        return b.icmp_signed("!=", x, const(x.type, 0))
    sf, df = src.startswith("float"), dst.startswith("float")
    if sf and df:
        return b.fpext(x, t) if dst == "float64" else b.fptrunc(x, t)
    if sf:
        return b.fptosi(x, t)
    if df:
        return b.uitofp(x, t) if src == "bool" else b.sitofp(x, t)
    src_bits = (x.type.element if width else x.type).width
    dst_bits = (t.element if width else t).width
    if src_bits < dst_bits:
        return b.zext(x, t) if src == "bool" else b.sext(x, t)
    return b.trunc(x, t)


def index_value(b: ir.IRBuilder, node: L.Index, ix: IndexEmitter, vec) -> ir.Value:
    """An index expression as an int64 value; in a vector loop, one value per lane."""
    env = ix.env
    first = ix.emit(node.expr)
    if vec is None or not depends_on(node.expr, vec.var):
        return first
    stride = stride_in(node.expr, vec.var)
    if stride is not None:
        step = splat(b, ix.emit(stride), vec.width)
        return b.add(splat(b, first, vec.width), b.mul(step, lanes(vec.width)))
    saved = env[vec.var]
    out = ir.Constant(ir.VectorType(first.type, vec.width), ir.Undefined)
    for lane in range(vec.width):
        env[vec.var] = b.add(vec.base, const(first.type, lane))
        out = b.insert_element(out, ix.emit(node.expr), const(first.type, lane))
    env[vec.var] = saved
    return out
