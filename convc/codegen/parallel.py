"""Parallel loops: outlining into a body function dispatched through the OpenMP runtime.

Stage: codegen. A ``parallel`` loop ``for v in start..stop: body`` (together with the
parallel loops perfectly nested in it, collapsed into one flat iteration space) becomes

- ``<kernel>.parK(ptr noalias bufs..., i64 indices..., lets..., i64 lo, i64 hi)``: the serial
  loop over ``lo..hi`` (noalias survives: when inlined into the thunk LLVM turns it into
  scoped alias metadata);
- ``<kernel>.parK.thunk(ptr ctx)``: unpacks the captured values from a struct, then runs
  its thread's contiguous share of ``start..stop`` chunk by chunk, and then what is left
  of the other shares (each share's chunks are claimed through a counter in the struct,
  an atomic add);
- at the loop's place: the struct filled on the stack, then
  ``GOMP_parallel(thunk, ctx, min(nthreads, extent), 0)`` when more than one thread is
  useful, else a direct call of the thunk.

Why libgomp's C ABI (GOMP_parallel): it is a real thread pool whose workers spin briefly and
then sleep, so a parallel region costs a few microseconds and the whole model still runs inside
one native call. Measured here (2 cores, quiet): a whole run with one 2-thread region took 3.1
us against 1.8 us for the same run on one thread, while dispatching two ctypes calls to a
Python thread pool took about 115 us; on an oversubscribed machine (load 5 on 2 cores) every
option degrades to tens or hundreds of microseconds, since the second thread has to wait for a
core. Parallel loops therefore belong around work of tens of microseconds or more (the schedule
decides). The runtime loads libgomp (or installs a serial stand-in when it is missing).
Captured: buffer pointers, index values (symbols and enclosing loop variables) and scalar `Let`
values; `Alloc` locals of the enclosing scope are not shared between threads (using one inside
the parallel body is an error).
"""

from __future__ import annotations

from llvmlite import ir

from ..loops import ir as L
from .llvmutil import I32, I64, PTR, VOID, declare, for_range, i64, smax, smin
from .memory import fence_streaming_stores

GOMP_PARALLEL = "GOMP_parallel"
THREAD_NUM = "omp_get_thread_num"
NUM_THREADS = "omp_get_num_threads"
#: The most threads a parallel loop uses (the size of its table of per-thread counters).
MAX_TEAM = 64
#: Chunks each thread's share of a parallel loop is cut into. A thread runs its own share
#: first, chunk by chunk, so consecutive kernels hand the same images (or rows) to the
#: same thread and it finds its data in its own cache (ResNet-18 at batch 8 on 2 threads:
#: 96.3 ms when threads took chunks in turn from one counter, 92.0 with shares); then it
#: takes the remaining chunks of the other shares, so a thread that starts late (woken
#: from sleep, or its core taken by another process) does not hold the others up. Each
#: iteration still runs whole on one thread, so results do not depend on the thread count.
CHUNKS_PER_THREAD = 8


def emit_parallel_loop(em, s: L.For) -> None:
    """Outline `s` (a parallel For, with the parallel loops perfectly nested in it) out of
    the emitter `em`'s function and dispatch it."""
    mctx, b = em.mctx, em.b
    nest = parallel_nest(s)
    starts = [em.index(loop.start) for loop in nest]
    extents = [smax(b, b.sub(em.index(loop.stop), st), i64(0)) for loop, st in zip(nest, starts)]
    total = extents[0]
    for extent in extents[1:]:
        total = b.mul(total, extent)
    values, body_fn = _outline_body(em, nest)
    wide = smin(b, smin(b, b.sext(em.nthreads, I64), total), i64(MAX_TEAM))
    counters = ir.ArrayType(I64, MAX_TEAM)  # how far each thread's share has been claimed
    fields = [*values, *starts, *extents, total, ir.Constant(counters, None)]
    struct = ir.LiteralStructType([v.type for v in fields])
    thunk = _thunk(mctx.module, f"{body_fn.name}.thunk", struct, body_fn)
    with b.goto_block(em.entry):
        b.position_at_start(em.entry)
        ctx = b.alloca(struct, name=f"{body_fn.name}.ctx")
    for k, v in enumerate(fields):
        b.store(v, b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, k)]))
    threads = b.trunc(wide, I32)
    gomp = declare(mctx.module, GOMP_PARALLEL, VOID, [PTR, PTR, I32, I32])
    with b.if_else(b.icmp_signed(">", threads, ir.Constant(I32, 1))) as (many, one):
        with many:
            b.call(gomp, [thunk, ctx, threads, ir.Constant(I32, 0)])
        with one:
            b.call(thunk, [ctx])


def parallel_nest(s: L.For) -> list[L.For]:
    """`s` and the parallel loops perfectly nested in it whose bounds do not use the outer
    variables: they are collapsed into one iteration space, so ``parallel for n: parallel
    for oc:`` keeps both cores busy at batch 1."""
    nest = [s]
    while True:
        body = nest[-1].body
        if isinstance(body, L.Block) and len(body.stmts) == 1:
            body = body.stmts[0]
        outer = {loop.var.name for loop in nest}
        if not (isinstance(body, L.For) and body.kind == "parallel"):
            return nest
        used = {sym.name for e in (body.start, body.stop) for sym in e.free_symbols}
        if used & outer or body.var.name in outer:
            return nest
        nest.append(body)


def _outline_body(em, nest: list[L.For]) -> tuple[list[ir.Value], ir.Function]:
    """(captured values, the body function): ``body(captured..., starts..., extents..., lo,
    hi)`` runs the flattened iterations ``lo..hi`` of the nest."""
    mctx = em.mctx
    buffers = sorted(em.buffers)
    indices = sorted(em.env)
    lets = sorted(n for n, loc in em.locals.items() if loc.ptr is None and loc.width is None)
    values = [em.buffers[n] for n in buffers] + [em.env[n] for n in indices]
    values += [em.locals[n].value for n in lets]
    fnty = ir.FunctionType(VOID, [v.type for v in values] + [I64] * (2 * len(nest) + 2))
    body_fn = ir.Function(mctx.module, fnty, mctx.fresh_name(f"{em.fn.name}.par"))
    body_fn.linkage = "internal"
    args = list(body_fn.args)
    for arg, buf in zip(args, buffers):
        mctx.annotate_buffer_arg(arg, buf)
    let_args = args[len(buffers) + len(indices) : len(values)]
    sub = em.spawn(
        body_fn,
        dict(zip(buffers, args)),
        dict(zip(indices, args[len(buffers) :])),
        {n: (em.locals[n].dtype, a) for n, a in zip(lets, let_args)},
    )
    sub.in_parallel = True
    bounds = args[len(values) : -2]
    _flat_loop(sub, nest, bounds[: len(nest)], bounds[len(nest) :], args[-2], args[-1])
    fence_streaming_stores(sub.b, nest[-1].body)
    sub.b.ret_void()
    return values, body_fn


def _flat_loop(sub, nest: list[L.For], starts, extents, lo, hi) -> None:
    """``for f in lo..hi``: recover each loop variable from f (row-major), run the body."""
    b = sub.b
    with for_range(b, lo, hi, name="flat") as flat, sub.ix.scope():
        rest = flat
        for k in reversed(range(len(nest))):
            offset = rest if k == 0 else b.urem(rest, extents[k])
            if k > 0:
                rest = b.udiv(rest, extents[k])
            sub.env[nest[k].var.name] = b.add(starts[k], offset)
        sub.stmt(nest[-1].body)


def _thunk(module: ir.Module, name: str, struct: ir.LiteralStructType, body_fn) -> ir.Function:
    """``void thunk(ptr ctx)``: unpack, then run chunks of this thread's share of
    ``0..total`` and, once it is done, of the other threads' shares in turn (each share's
    counter in the last field says how far it has been claimed; ``total`` comes before
    it), calling the body with the other fields. Shares follow the team actually started
    (libgomp may start fewer threads than asked; the serial stand-in starts one)."""
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR]), name)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fields = []
    for k, t in enumerate(struct.elements[:-1]):
        ptr = b.gep(fn.args[0], [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=struct)
        fields.append(b.load(ptr, typ=t))
    total = fields[-1]
    tid = b.sext(b.call(declare(module, THREAD_NUM, I32, []), []), I64)
    team = b.sext(b.call(declare(module, NUM_THREADS, I32, []), []), I64)  # as started
    share = b.sdiv(b.add(total, b.sub(team, i64(1))), team)
    chunk = smax(b, b.sdiv(share, i64(CHUNKS_PER_THREAD)), i64(1))
    last = ir.Constant(I32, len(struct.elements) - 1)
    with for_range(b, i64(0), team, name="turn") as turn:
        owner = b.urem(b.add(tid, turn), team)
        counter = b.gep(fn.args[0], [ir.Constant(I32, 0), last, owner], source_etype=struct)
        first = b.mul(owner, share)
        end = smin(b, b.add(first, share), total)
        claim = fn.append_basic_block("claim")
        work = fn.append_basic_block("work")
        done = fn.append_basic_block("share.done")
        b.branch(claim)
        b.position_at_end(claim)
        lo = b.add(first, b.atomic_rmw("add", counter, chunk, "monotonic"))
        b.cbranch(b.icmp_signed("<", lo, end), work, done)
        b.position_at_end(work)
        b.call(body_fn, fields[:-1] + [lo, smin(b, b.add(lo, chunk), end)])
        b.branch(claim)
        b.position_at_end(done)
    b.ret_void()
    return fn
