"""Loop-IR statements -> the body of one LLVM function (a kernel or an outlined parallel body).

Stage: codegen. Input: a kernel's statement tree and the function's parameters (buffer
pointers, index values, scalar locals). Output: instructions appended through one IRBuilder.
Invariants: every ``alloca`` sits in the entry block (so mem2reg/SROA turn accumulators into
registers); a vectorized loop is emitted as a main loop of whole vectors plus a masked or
scalar tail (`vector_loops`; see `convc.loops.ir`); a parallel loop is outlined into a
separate function run by the parallel runtime (`convc.codegen.parallel`).
"""

from __future__ import annotations

from dataclasses import replace

import sympy
from llvmlite import ir

from ..loops import ir as L
from ..loops.analysis import walk
from .index import IndexEmitter, depends_on, stride_in
from .llvmutil import const, for_range, i64, value_type, vector_fma
from .memory import Memory, VecCtx, flat_index
from .parallel import emit_parallel_loop
from .transpose import TILE
from .values import binary, cast, compare, index_value, unary, widen
from .vector_loops import VectorLoops


class Local:
    """A `Let` value (``value``) or an `Alloc` array (``ptr`` to ``[size x T]``)."""

    def __init__(self, dtype: str, value=None, ptr=None, shape=(), width=None):
        self.dtype, self.value, self.ptr, self.shape, self.width = dtype, value, ptr, shape, width


class FunctionEmitter(VectorLoops):
    """Emits statements into `fn`. `env` maps index names (symbols, loop variables) to i64
    values; `locals` maps local names to `Local`s; `buffers` maps buffer names to pointers."""

    def __init__(self, module_ctx, fn: ir.Function, buffers: dict, env: dict, locals_: dict):
        self.mctx, self.fn = module_ctx, fn
        self.program: L.Program = module_ctx.program
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.buffers, self.env, self.locals = buffers, env, locals_
        self.ix = IndexEmitter(self.b, env)
        self.mem = Memory(self.b, self.program, buffers, self.ix, module_ctx.rolled_blocks)
        self.vec: VecCtx | None = None
        self.in_parallel = False
        self.nthreads = None

    def spawn(self, fn: ir.Function, buffers: dict, env: dict, lets: dict) -> FunctionEmitter:
        """An emitter for another function of the same module (an outlined loop body);
        `lets` maps names to (dtype, value) of the scalar locals it receives."""
        locals_ = {name: Local(dtype, value=value) for name, (dtype, value) in lets.items()}
        return FunctionEmitter(self.mctx, fn, buffers, env, locals_)

    # ------------------------------------------------------------------ statements

    def stmt(self, s: L.Stmt) -> None:
        handler = getattr(self, "_" + type(s).__name__.lower(), None)
        if handler is None:
            raise TypeError(f"not a loop-IR statement: {s!r}")
        handler(s)

    def _block(self, s: L.Block) -> None:
        saved_env, saved_locals = dict(self.env), dict(self.locals)
        for st in s.stmts:
            self.stmt(st)
        self.env.clear()
        self.env.update(saved_env)
        self.locals.clear()
        self.locals.update(saved_locals)

    def _store(self, s: L.Store) -> None:
        value, _ = self.expr_as(s.value, self.mem.decl[s.buffer].dtype)
        if self.vec is not None:
            value = widen(self.b, value, self.vec.width)
        self.mem.store(s, value, self.vec)

    def _prefetch(self, s: L.Prefetch) -> None:
        """``llvm.prefetch`` (read, into L2: locality 2, data) of one element's line."""
        self.mem.prefetch(s)

    def _barrier(self, s: L.Barrier) -> None:
        """An empty inline assembly statement that may read and write any memory."""
        barrier = ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), "", "~{memory}", True)
        self.b.call(barrier, [])

    def _let(self, s: L.Let) -> None:
        value, dtype = self.expr(s.value)
        self.locals[s.name] = Local(dtype, value=value)

    def _alloc(self, s: L.Alloc) -> None:
        width = self.vec.width if self.vec is not None else None
        if s.lanes > 1:
            if width not in (None, s.lanes):
                raise ValueError(f"local '{s.name}' of {s.lanes} lanes in a {width}-lane loop")
            width = s.lanes
        size = 1
        for d in s.shape:
            size *= d
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            ptr = self.b.alloca(ir.ArrayType(value_type(s.dtype, width), size), name=s.name)
        local = Local(s.dtype, ptr=ptr, shape=s.shape, width=width)
        self.locals[s.name] = local
        if self.vec is not None and self.vec.tail_locals is not None:
            self.vec.tail_locals.add(s.name)
        if s.init is not None:
            init, _ = self.expr_as(s.init, s.dtype)
            init = widen(self.b, init, width)
            for k in range(size):
                self.b.store(init, self._local_ptr(local, i64(k)))

    def _assign(self, s: L.Assign) -> None:
        if self.vec is not None and s.name in self.vec.reductions:
            self._reduce_into(s)
            return
        local = self._local(s.name)
        if local.ptr is None:
            raise ValueError(f"'{s.name}' is a let binding and cannot be assigned")
        value, _ = self.expr_as(s.value, local.dtype)
        value = widen(self.b, value, local.width)
        ptr = self._element_ptr(local, s.name, s.index)
        if self._blended(s.name, local):
            value = self.b.select(self.vec.mask, value, self.b.load(ptr, typ=value.type))
        self.b.store(value, ptr)

    def _blended(self, name: str, local) -> bool:
        """Whether an update of vector local `name` keeps its dead lanes (a select): under a
        lane-varying `If`, and for locals that outlive a masked tail. A masked tail's own
        locals (its register block's accumulators) skip it: their dead lanes reach only
        masked stores, and with AVX2 each select is a blend beside the FMA it guards
        (MobileNetV2's 1x1 convs to 24 channels, 16 + 8 masked: a blend a FMA, and the
        block spilled)."""
        vec = self.vec
        if vec is None or vec.mask is None or local.width is None:
            return False
        return vec.tail_locals is None or name not in vec.tail_locals

    def _if(self, s: L.If) -> None:
        cond, dtype = self.expr(s.cond)
        if dtype != "bool":
            raise ValueError(f"an If condition must be a bool, got {dtype}")
        if isinstance(cond.type, ir.VectorType):
            self._predicated_if(s, cond)
            return
        if s.orelse is None:
            with self.b.if_then(cond), self.ix.scope():
                self.stmt(s.then)
            return
        with self.b.if_else(cond) as (then, orelse):
            with then, self.ix.scope():
                self.stmt(s.then)
            with orelse, self.ix.scope():
                self.stmt(s.orelse)

    def _predicated_if(self, s: L.If, cond: ir.Value) -> None:
        """A condition that varies across the lanes: each branch runs under the lanes where
        it holds (masked memory accesses, blended local updates) and is skipped when no lane
        is live, so a guard that keeps an index in bounds protects every access under it."""
        b, vec = self.b, self.vec
        branches = [(cond, s.then)]
        if s.orelse is not None:
            branches.append((b.xor(cond, const(cond.type, 1)), s.orelse))
        for lanes_on, body in branches:
            mask = lanes_on if vec.mask is None else b.and_(vec.mask, lanes_on)
            bits = ir.IntType(vec.width)
            live = b.icmp_unsigned("!=", b.bitcast(mask, bits), ir.Constant(bits, 0))
            with b.if_then(live), self.ix.scope():
                self.vec = replace(vec, mask=mask, tail_locals=None)
                try:
                    self.stmt(body)
                finally:
                    self.vec = vec

    def _for(self, s: L.For) -> None:
        if self.vec is not None and (
            depends_on(s.start, self.vec.var) or depends_on(s.stop, self.vec.var)
        ):
            raise ValueError(
                f"bounds of loop '{s.var}' depend on the vector variable '{self.vec.var}'"
            )
        if s.kind == "vectorized":
            self._vector_loop(s)
        elif s.kind == "unrolled":
            self._unrolled_loop(s)
        elif s.kind == "parallel" and not self.in_parallel and self.vec is None:
            emit_parallel_loop(self, s)
        elif s.kind in ("serial", "parallel"):
            if s.kind == "parallel" and self.vec is not None:
                raise ValueError("a parallel loop cannot sit inside a vectorized loop")
            rolled = self.mctx.rolled_blocks and _around_register_block(s)
            start, stop = self.index(s.start), self.index(s.stop)
            self.serial_loop(s.var.name, start, stop, s.body, rolled)
        else:
            raise ValueError(f"unknown loop kind '{s.kind}'")

    def serial_loop(
        self, var: str, start: ir.Value, stop: ir.Value, body: L.Stmt, rolled: bool = False
    ) -> None:
        with for_range(self.b, start, stop, name=var, rolled=rolled) as iv, self.ix.scope():
            saved = self.env.get(var)
            self.env[var] = iv
            self.stmt(body)
            self._restore(var, saved)

    def _restore(self, var: str, saved) -> None:
        if saved is None:
            self.env.pop(var, None)
        else:
            self.env[var] = saved

    def _unrolled_loop(self, s: L.For) -> None:
        extent = sympy.simplify(s.stop - s.start)
        if not extent.is_Integer:
            raise ValueError(f"unrolled loop '{s.var}' needs a constant extent, got {extent}")
        if self._row_stores(s, int(extent)):
            return
        start = self.index(s.start)
        saved = self.env.get(s.var.name)
        outer_unrolled = self.mem.unrolled
        self.mem.unrolled = (*outer_unrolled, (s.var.name, int(extent)))
        for k in range(int(extent)):
            self.env[s.var.name] = start if k == 0 else self.b.add(start, i64(k))
            self.stmt(s.body)
        self.mem.unrolled = outer_unrolled
        self._restore(s.var.name, saved)

    def _row_stores(self, s: L.For, count: int) -> bool:
        """Emit `s` as stores of rows (`transpose`) when it is a register block's stores:
        inside a vectorized loop, a body of lets ending in a float32 store whose element
        moves by 1 from one copy to the next and by at least `count` from one lane to the
        next. Returns whether it did."""
        vec = self.vec
        body = s.body.stmts if isinstance(s.body, L.Block) else (s.body,)
        last = body[-1] if body else None
        if vec is None or vec.width % TILE or not 2 <= count <= TILE:
            return False
        if not isinstance(last, L.Store) or not all(isinstance(t, L.Let) for t in body[:-1]):
            return False
        buf = self.mem.decl[last.buffer]
        flat = flat_index(buf, last.index)
        lane, step = stride_in(flat, vec.var), stride_in(flat, s.var.name)
        if buf.dtype != "float32" or step != 1 or lane is None or not lane.is_Integer:
            return False
        if int(lane) < count:
            return False
        start, saved, scope = self.index(s.start), self.env.get(s.var.name), dict(self.locals)
        values = []
        for k in range(count):
            self.env[s.var.name] = start if k == 0 else self.b.add(start, i64(k))
            for t in body[:-1]:
                self.stmt(t)
            value, _ = self.expr_as(last.value, "float32")
            values.append(widen(self.b, value, vec.width))
        self.env[s.var.name] = start
        self.mem.store_rows(last, values, int(lane), vec, self.mctx.masked_stores)
        self._restore(s.var.name, saved)
        self.locals.clear()
        self.locals.update(scope)
        return True

    # ------------------------------------------------------------------ values

    def index(self, e: sympy.Expr) -> ir.Value:
        return self.ix.emit(e)

    def expr_as(self, e: L.Expr, dtype: str):
        """Emit `e`; a bare constant takes `dtype`, anything else must already have it."""
        if isinstance(e, L.Const):
            e = L.Const(e.value, dtype)
        value, got = self.expr(e)
        if got != dtype:
            raise ValueError(f"expected a {dtype} value, got {got} (insert a Cast)")
        return value, got

    def expr(self, e: L.Expr):
        """Emit a value expression; returns (IR value, dtype)."""
        b = self.b
        if isinstance(e, L.Const):
            return const(value_type(e.dtype), e.value), e.dtype
        if isinstance(e, L.Index):
            return index_value(b, e, self.ix, self.vec), "int64"
        if isinstance(e, L.Load):
            return self.mem.load(e, self.vec), self.mem.decl[e.buffer].dtype
        if isinstance(e, L.Ref):
            return self._ref(e)
        if isinstance(e, L.Unary):
            x, dtype = self.expr(e.x)
            return unary(b, e.op, x, dtype, self.mctx.scalef), dtype
        if isinstance(e, (L.Binary, L.Cmp)):
            (x, y), dtype = self._operands(e.a, e.b)
            if isinstance(e, L.Cmp):
                return compare(b, e.op, x, y, dtype), "bool"
            return binary(b, e.op, x, y, dtype), dtype
        if isinstance(e, L.Fma):
            return self._fma(e)
        if isinstance(e, L.Select):
            return self._select(e)
        if isinstance(e, L.Cast):
            x, dtype = self.expr(e.x)
            return cast(b, x, dtype, e.dtype), e.dtype
        raise TypeError(f"not a loop-IR value: {e!r}")

    def _operands(self, *nodes: L.Expr):
        """Emit operands that must share a dtype; constants adopt the others' dtype."""
        emitted = {k: self.expr(n) for k, n in enumerate(nodes) if not isinstance(n, L.Const)}
        dtypes = {dtype for _, dtype in emitted.values()}
        if len(dtypes) > 1:
            raise ValueError(f"operands of different dtypes {sorted(dtypes)} (insert a Cast)")
        dtype = dtypes.pop() if dtypes else nodes[0].dtype
        values = [
            emitted[k][0] if k in emitted else self.expr_as(n, dtype)[0]
            for k, n in enumerate(nodes)
        ]
        return values, dtype

    def _fma(self, e: L.Fma):
        (x, y, z), dtype = self._operands(e.a, e.b, e.c)
        x, y, z = (widen(self.b, v, self._width_of(x, y, z)) for v in (x, y, z))
        if dtype.startswith("float"):
            return vector_fma(self.b, x, y, z), dtype
        return self.b.add(self.b.mul(x, y), z), dtype

    def _select(self, e: L.Select):
        cond, cdtype = self.expr(e.cond)
        if cdtype != "bool":
            raise ValueError(f"select condition must be bool, got {cdtype}")
        (x, y), dtype = self._operands(e.a, e.b)
        width = self._width_of(cond, x, y)
        x, y = widen(self.b, x, width), widen(self.b, y, width)
        return self.b.select(cond, x, y), dtype

    @staticmethod
    def _width_of(*vals):
        return next((v.type.count for v in vals if isinstance(v.type, ir.VectorType)), None)

    def _ref(self, e: L.Ref):
        if self.vec is not None and e.name in self.vec.reductions:
            raise ValueError(f"'{e.name}' is reduced in this vectorized loop; it cannot be read")
        local = self._local(e.name)
        if local.ptr is None:
            if e.index:
                raise ValueError(f"let binding '{e.name}' cannot be indexed")
            return local.value, local.dtype
        t = value_type(local.dtype, local.width)
        return self.b.load(self._element_ptr(local, e.name, e.index), typ=t), local.dtype

    def _local(self, name: str) -> Local:
        if name not in self.locals:
            raise ValueError(f"unknown local '{name}'")
        return self.locals[name]

    def _element_ptr(self, local: Local, name: str, index: tuple) -> ir.Value:
        if len(index) != len(local.shape):
            raise ValueError(
                f"local '{name}' has rank {len(local.shape)}, indexed with {len(index)}"
            )
        flat, stride = sympy.Integer(0), 1
        for i, d in zip(reversed(index), reversed(local.shape)):
            flat, stride = flat + i * stride, stride * d
        if self.vec is not None and any(s.name == self.vec.var for s in flat.free_symbols):
            raise ValueError(f"local '{name}' is indexed by the vector variable '{self.vec.var}'")
        return self._local_ptr(local, self.index(flat))

    def _local_ptr(self, local: Local, idx: ir.Value) -> ir.Value:
        return self.b.gep(local.ptr, [i64(0), idx], inbounds=True)


def _around_register_block(loop: L.For) -> bool:
    """Whether a serial loop holds a register block (an unrolled loop): see
    `generate`'s `rolled_blocks`."""
    return any(isinstance(s, L.For) and s.kind == "unrolled" for s in walk(loop.body))
