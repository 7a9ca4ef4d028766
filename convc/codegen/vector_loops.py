"""Vectorized loops of a kernel: whole vectors, a masked or scalar tail, and reductions
into outer locals.

Stage: codegen, part of `FunctionEmitter` (`kernel`), which emits the body. Input: a
``vectorized`` loop of loop IR (see `convc.loops.ir`). Output: a main loop of whole vectors,
a tail (masked lanes, or scalar iterations), and, where the body reduces into a local of
the enclosing code (a row maximum, a sum), vector partials merged after the loop.
"""

from __future__ import annotations

from llvmlite import ir

from ..loops import ir as L
from ..loops.analysis import known_multiple, walk
from .llvmutil import const, declare, for_range, i64, lanes, smax, splat, type_suffix, value_type
from .memory import VecCtx
from .values import binary, identity, widen

#: Independent vector partials of a vectorized loop that reduces into outer locals (a max
#: along contiguous lanes: a softmax's row maximum, a global max pool): the main loop
#: takes this many vectors a step, each into its own partials, merged after the loop. One
#: chain waits on each step's NaN-propagating maximum (six dependent instructions, about
#: 12 cycles a vector). Measured (kernel, one thread): softmax over 64 rows of 1000 40 ->
#: 29 us; global max pool of 64 planes of 112x112 179 -> 103 us, 8 x 256 planes of 14x14
#: 71.5 -> 59 us. Only for reductions whose result does not depend on their order: a
#: float sum split this way would round differently (sums run as scalar loops that LLVM
#: vectorises, or in one chain here).
REDUCTION_CHAINS = 4
ORDERLESS_REDUCTIONS = ("max", "min")


class VectorLoops:
    """The vectorized-loop methods of `kernel.FunctionEmitter` (`_vector_loop`, and the
    partials of the outer locals a vectorized body reduces into: `_reduce_into`). They use
    the emitter's builder, environment and locals (``b``, ``env``, ``locals``, ``ix``) and
    its statement and value methods (``stmt``, ``expr_as``, ``serial_loop``)."""

    def _vector_loop(self, s: L.For) -> None:
        width = s.width
        if self.vec is not None:
            raise ValueError(f"vectorized loop '{s.var}' is nested in another vectorized loop")
        if width < 2 or width & (width - 1) or s.tail not in L.TAILS:
            raise ValueError(f"vectorized loop '{s.var}': bad width {width} or tail '{s.tail}'")
        b, var = self.b, s.var.name
        start, stop = self.index(s.start), self.index(s.stop)
        extent = smax(b, b.sub(stop, start), i64(0))
        main_stop = b.add(start, b.mul(b.sdiv(extent, i64(width)), i64(width)))
        multiple = width if known_multiple(s.start, "", 1) % width == 0 else 1
        reductions = self._start_reductions(s, width)
        chains = [reductions]
        saved = self.env.get(var)
        if reductions and all(r[1] in ORDERLESS_REDUCTIONS for r in reductions.values()):
            # REDUCTION_CHAINS vectors a step, each into its own partials
            chains += [self._start_reductions(s, width) for _ in range(REDUCTION_CHAINS - 1)]
            step = width * len(chains)
            chained_stop = b.add(start, b.mul(b.sdiv(extent, i64(step)), i64(step)))
            with for_range(b, start, chained_stop, step=step, name=var) as base:
                for k, partials in enumerate(chains):
                    with self.ix.scope():
                        first = b.add(base, i64(k * width))
                        self._vector_body(s, VecCtx(var, width, first, multiple, None, partials))
            start = chained_stop
        with for_range(b, start, main_stop, step=width, name=var) as base, self.ix.scope():
            self._vector_body(s, VecCtx(var, width, base, multiple, reductions=reductions))
        if s.tail == "masked":
            active = b.sub(stop, main_stop)
            with b.if_then(b.icmp_signed(">", active, i64(0))), self.ix.scope():
                mask = b.icmp_signed("<", lanes(width), splat(b, active, width))
                ctx = VecCtx(var, width, main_stop, multiple, mask, reductions, set())
                self._vector_body(s, ctx)
        if len(chains) > 1:
            self._merge_chains(chains)
        self._finish_reductions(reductions)
        self._restore(var, saved)
        if s.tail == "scalar":
            self.serial_loop(var, main_stop, stop, s.body)

    def _vector_body(self, s: L.For, ctx: VecCtx) -> None:
        self.vec = ctx
        self.env[ctx.var] = ctx.base
        try:
            self.stmt(s.body)
        finally:
            self.vec = None

    def _merge_chains(self, chains: list) -> None:
        """Fold the partials of every chain into the first's."""
        b = self.b
        for name, (ptr, op, dtype, nan) in chains[0].items():
            for other in chains[1:]:
                other_ptr, _, _, other_nan = other[name]
                self._combine(ptr, op, dtype, nan, b.load(other_ptr, typ=ptr.allocated_type))
                if nan is not None:
                    self._flag(nan, b.load(other_nan, typ=nan.allocated_type))

    def _flag(self, nan, lanes: ir.Value) -> None:
        """Mark `lanes` (``<W x i1>``) in the NaN flag `nan`."""
        self.b.store(self.b.or_(self.b.load(nan, typ=nan.allocated_type), lanes), nan)

    def _combine(self, ptr, op: str, dtype: str, nan, value: ir.Value) -> None:
        """``partial = op(partial, value)``. A float max or min with a NaN flag (`nan`)
        keeps the larger (smaller) of the ordered values with one compare and select
        (``vmaxps``), where NumPy's NaN-propagating maximum (``llvm.maximum``) took six
        dependent instructions a step; the flag says which lanes saw a NaN. Kernel us: softmax
        over 64 rows of 1000 25.2 -> 23.3; global max pool of 8 x 256 planes of 14x14 59 ->
        40, of 64 planes of 112x112 103 -> 100 (its 3.2 MB come from L3)."""
        b = self.b
        old = b.load(ptr, typ=ptr.allocated_type)
        if nan is None:
            b.store(binary(b, op, old, value, dtype), ptr)
            return
        better = b.fcmp_ordered(">" if op == "max" else "<", value, old)
        b.store(b.select(better, value, old), ptr)

    def _start_reductions(self, s: L.For, width: int) -> dict:
        """Vector partial accumulators for the outer locals the loop body reduces into
        (outer locals of `width` lanes are written lane by lane instead)."""
        out = {}
        for name in sorted(_assigned_names(s.body) & set(self.locals)):
            local = self.locals[name]
            if local.width == width:
                continue
            if local.ptr is None or local.shape != () or local.width is not None:
                raise ValueError(f"vectorized loop '{s.var}' assigns outer local '{name}'")
            op = _reduction_op(s.body, name)
            t = value_type(local.dtype, width)
            flagged = op in ORDERLESS_REDUCTIONS and local.dtype.startswith("float")
            lanes = ir.VectorType(ir.IntType(1), width)
            with self.b.goto_block(self.entry):
                self.b.position_at_start(self.entry)
                ptr = self.b.alloca(t, name=f"{name}.partial")
                nan = self.b.alloca(lanes, name=f"{name}.nan") if flagged else None
            self.b.store(identity(op, local.dtype, t), ptr)
            if nan is not None:
                self.b.store(ir.Constant(nan.allocated_type, None), nan)
            out[name] = (ptr, op, local.dtype, nan)
        return out

    def _reduce_into(self, s: L.Assign) -> None:
        ptr, op, dtype, nan = self.vec.reductions[s.name]
        term = s.value.b if _is_ref(s.value.a, s.name) else s.value.a
        value, _ = self.expr_as(term, dtype)
        value = widen(self.b, value, self.vec.width)
        if self.vec.mask is not None:
            value = self.b.select(self.vec.mask, value, identity(op, dtype, value.type))
        self._combine(ptr, op, dtype, nan, value)
        if nan is not None:
            self._flag(nan, self.b.fcmp_unordered("uno", value, value))

    def _finish_reductions(self, reductions: dict) -> None:
        b = self.b
        for name, (ptr, op, dtype, nan) in reductions.items():
            vt = value_type(dtype, None)
            partial = b.load(ptr, typ=ptr.allocated_type)
            if nan is None:
                parts = [b.extract_element(partial, i64(k)) for k in range(partial.type.count)]
                while len(parts) > 1:
                    pairs = zip(parts[::2], parts[1::2])
                    parts = [binary(b, op, x, y, dtype) for x, y in pairs]
                value = parts[0]
            else:
                value = _orderless_reduce(b, op, partial, b.load(nan, typ=nan.allocated_type))
            target = self._local_ptr(self.locals[name], i64(0))
            b.store(binary(b, op, b.load(target, typ=vt), value, dtype), target)


def _is_ref(e: L.Expr, name: str) -> bool:
    return isinstance(e, L.Ref) and e.name == name and e.index == ()


def _orderless_reduce(b: ir.IRBuilder, op: str, partial: ir.Value, nan: ir.Value) -> ir.Value:
    """The max (min) of a vector of float partials, NaN where a lane saw one (`nan`). The
    partials themselves hold no NaN (the compare and select that built them keeps the old
    value), so LLVM may reduce them with plain ``vmaxps`` shuffles (``nnan``): over 64
    rows of 1000, a softmax's row maxima reduced lane by lane through ``llvm.maximum``
    took about 50 instructions a row."""
    t = partial.type
    fn = declare(b.module, f"llvm.vector.reduce.f{op}.{type_suffix(t)}", t.element, [t])
    value = b.call(fn, [partial], fastmath=("nnan", "nsz"))
    flags = nan.type
    any_fn = declare(b.module, f"llvm.vector.reduce.or.v{flags.count}i1", flags.element, [flags])
    return b.select(b.call(any_fn, [nan]), const(t.element, float("nan")), value)


def _assigned_names(s: L.Stmt) -> set[str]:
    declared = {st.name for st in walk(s) if isinstance(st, (L.Alloc, L.Let))}
    return {st.name for st in walk(s) if isinstance(st, L.Assign)} - declared


def _reduction_op(body: L.Stmt, name: str) -> str:
    """The op of every ``name = op(name, e)`` in `body` (they must all agree)."""
    ops = set()
    for st in walk(body):
        if isinstance(st, L.Assign) and st.name == name:
            v = st.value
            if not (isinstance(v, L.Binary) and v.op in L.REDUCE_OPS and st.index == ()):
                raise ValueError(f"'{name}' is assigned in a vectorized loop but not reduced")
            if not (_is_ref(v.a, name) or _is_ref(v.b, name)):
                raise ValueError(f"'{name}' is assigned in a vectorized loop but not reduced")
            ops.add(v.op)
    if len(ops) != 1:
        raise ValueError(f"'{name}' is reduced with different ops {sorted(ops)}")
    return ops.pop()
