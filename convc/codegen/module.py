"""Program -> one llvmlite module: a function per kernel plus ONE C-ABI entry point.

Stage: codegen (the only stage that imports `llvmlite.ir`). Input: a loop-IR `Program`.
Output: a `GeneratedModule` (the `llvmlite.ir.Module` and the calling convention).

The entry point, ``void convc_main(ptr buffers, ptr arena, ptr symbols, i32 nthreads)``:
``buffers`` is an array of pointers to the external buffers in
`Program.external_buffers()` order (inputs, outputs, params); ``arena`` holds every temp at
its offset; ``symbols`` is an array of int64 values in `Program.symbols` order; ``nthreads``
bounds the threads of parallel loops. It calls the kernels in `Program.calls` order, so a
whole model runs in one native call. Beside it, ``void convc_profile(..., ptr ticks)`` (same
arguments, then an int64 array of ``len(calls) + 1``) makes the same calls and stores a
monotonic nanosecond timestamp before the first and after each one (`convc.profile`): a
separate function, so the plain entry point carries no timing code.

Each kernel is ``noinline void @kernel.<name>(ptr noalias align 64 <buffer>..., i64
<symbol>..., i32 nthreads)`` (external, so parts of a program compiled separately link)
over the buffers its body names (program order). ``noalias`` is sound because the arena
planner never overlaps two buffers that one kernel uses, and user arrays are distinct;
``align`` is the buffer's `align` (64 for everything the runtime allocates or copies).
Any failure while emitting a kernel raises `convc.CodegenError` naming that kernel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llvmlite import ir

from ir.errors import CodegenError

from ..loops import ir as L
from ..loops.analysis import loaded_buffers, walk
from ..loops.verify import verify_program
from .index import IndexCodegenError, emit_index
from .kernel import FunctionEmitter
from .llvmutil import I32, I64, PTR, VOID, declare
from .memory import fence_streaming_stores

ENTRY = "convc_main"
PROFILE_ENTRY = "convc_profile"
#: Linux's CLOCK_MONOTONIC and ``struct timespec`` (two 64-bit fields on LP64 targets).
CLOCK_MONOTONIC = 1
TIMESPEC = ir.LiteralStructType([ir.IntType(64), ir.IntType(64)])
KERNEL_ERRORS = (ValueError, TypeError, KeyError, IndexError, IndexCodegenError, AssertionError)


@dataclass
class GeneratedModule:
    """The module and the names of the kernels defined in it (the entry point, when
    generated, is `ENTRY`; its calling convention is in the module docstring)."""

    module: ir.Module
    kernels: tuple[str, ...]


class ModuleContext:
    """Shared state while emitting one program's module."""

    def __init__(
        self,
        program: L.Program,
        name: str,
        scalef: bool = False,
        rolled_blocks: bool = False,
        masked_stores: bool = True,
    ):
        self.program = program
        self.module = ir.Module(name=name)
        #: the target scales by powers of two in one instruction (see `generate`)
        self.scalef = scalef
        #: loops around register blocks stay rolled (see `generate`)
        self.rolled_blocks = rolled_blocks
        #: a store under a mask of lanes is one instruction (see `generate`)
        self.masked_stores = masked_stores
        self._names: dict[str, int] = {}

    def fresh_name(self, prefix: str) -> str:
        k = self._names.get(prefix, 0)
        self._names[prefix] = k + 1
        return f"{prefix}{k}"

    def annotate_buffer_arg(self, arg: ir.Argument, buffer_name: str) -> None:
        arg.add_attribute("noalias")
        align = self.program.buffer(buffer_name).align
        if align > 1:
            arg.attributes.align = align


def kernel_buffers(program: L.Program, kernel: L.Kernel) -> list[str]:
    """Names of the buffers `kernel` reads or writes, in program order."""
    used = loaded_buffers(kernel.body)
    used |= {st.buffer for st in walk(kernel.body) if isinstance(st, (L.Store, L.Prefetch))}
    unknown = used - {b.name for b in program.buffers}
    if unknown:
        raise CodegenError(f"kernel '{kernel.name}': unknown buffer(s) {sorted(unknown)}")
    return [b.name for b in program.buffers if b.name in used]


def kernel_symbol(name: str) -> str:
    """The kernel's function name: prefixed so it can never resolve to a process symbol."""
    return f"kernel.{name}"


def _declare_kernel(mctx: ModuleContext, kernel: L.Kernel) -> ir.Function:
    program = mctx.program
    buffers = kernel_buffers(program, kernel)
    params = [PTR] * len(buffers) + [I64] * len(program.symbols) + [I32]
    return ir.Function(mctx.module, ir.FunctionType(VOID, params), kernel_symbol(kernel.name))


def _emit_kernel(mctx: ModuleContext, kernel: L.Kernel) -> ir.Function:
    program = mctx.program
    buffers = kernel_buffers(program, kernel)
    fn = _declare_kernel(mctx, kernel)
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    args = list(fn.args)
    for arg, name in zip(args, buffers):
        mctx.annotate_buffer_arg(arg, name)
    env = dict(zip(program.symbols, args[len(buffers) : -1]))
    em = FunctionEmitter(mctx, fn, dict(zip(buffers, args)), env, {})
    em.nthreads = args[-1]
    try:
        if kernel.parallel_when is not None:  # else its parallel loops run on one thread
            split, _ = em.expr_as(kernel.parallel_when, "bool")
            em.nthreads = em.b.select(split, args[-1], ir.Constant(I32, 1))
        em.stmt(kernel.body)
    except KERNEL_ERRORS as err:
        raise CodegenError(f"kernel '{kernel.name}': {err}") from err
    fence_streaming_stores(em.b, kernel.body)
    em.b.ret_void()
    return fn


def _emit_entry(mctx: ModuleContext, kernels: dict[str, ir.Function], profiled: bool) -> None:
    """`ENTRY`, or with `profiled` `PROFILE_ENTRY`: the same calls, each followed by a
    timestamp (`_stamp`) into its extra ``ticks`` argument."""
    program = mctx.program
    params = [PTR, PTR, PTR, I32] + ([PTR] if profiled else [])
    fn = ir.Function(
        mctx.module, ir.FunctionType(VOID, params), PROFILE_ENTRY if profiled else ENTRY
    )
    fn.attributes.add("nounwind")
    bufs, arena, syms, nthreads = fn.args[:4]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    env = {}
    for k, name in enumerate(program.symbols):
        env[name] = b.load(b.gep(syms, [ir.Constant(I64, k)], source_etype=I64), typ=I64, name=name)
    pointers = {}
    for k, buf in enumerate(program.external_buffers()):
        slot = b.gep(bufs, [ir.Constant(I64, k)], source_etype=PTR)
        pointers[buf.name] = b.load(slot, typ=PTR, name=buf.name)
    for buf in program.buffers:
        if buf.role == "temp":
            if buf.offset is None:
                raise CodegenError(f"temporary buffer '{buf.name}' has no arena offset")
            offset = emit_index(b, buf.offset, env)
            pointers[buf.name] = b.gep(arena, [offset], source_etype=ir.IntType(8), name=buf.name)
    clock = _Clock(b, fn.args[4]) if profiled else None
    if clock:
        clock.stamp(0)
    for k, call in enumerate(program.calls):
        kernel = program.kernel(call)
        args = [pointers[n] for n in kernel_buffers(program, kernel)]
        if call not in kernels:  # compiled in another module of the same program
            kernels[call] = _declare_kernel(mctx, kernel)
        b.call(kernels[call], args + [env[s] for s in program.symbols] + [nthreads])
        if clock:
            clock.stamp(k + 1)
    b.ret_void()


class _Clock:
    """Timestamps for `PROFILE_ENTRY`: ``ticks[k] = clock_gettime(CLOCK_MONOTONIC)`` in
    nanoseconds (a vDSO call, ~20 ns: small next to the shortest kernels' microseconds)."""

    def __init__(self, b: ir.IRBuilder, ticks: ir.Argument):
        self.b, self.ticks = b, ticks
        self.timespec = b.alloca(TIMESPEC, name="now")
        self.gettime = declare(b.module, "clock_gettime", I32, [I32, PTR])

    def stamp(self, k: int) -> None:
        b = self.b
        b.call(self.gettime, [ir.Constant(I32, CLOCK_MONOTONIC), self.timespec])
        zero = ir.Constant(I32, 0)
        fields = [b.gep(self.timespec, [zero, ir.Constant(I32, f)]) for f in (0, 1)]
        seconds, nanoseconds = (b.load(field, typ=I64) for field in fields)
        now = b.add(b.mul(seconds, ir.Constant(I64, 1_000_000_000)), nanoseconds)
        b.store(now, b.gep(self.ticks, [ir.Constant(I64, k)], source_etype=I64))


def generate(
    program: L.Program,
    kernels: Iterable[str] | None = None,
    entry: bool = True,
    scalef: bool = False,
    rolled_blocks: bool = False,
    masked_stores: bool = True,
) -> GeneratedModule:
    """Emit `program` as one module, or a part of it: only the named `kernels` (the others
    are declared where the entry point calls them), with or without the entry point. The
    runtime compiles parts in parallel and links their objects, and verifies kernels one
    at a time to name the one LLVM rejects. `scalef`: the target has AVX-512's
    ``vscalefps``, which `vmath` uses for the power of two in exp. `rolled_blocks`: LLVM
    may not unroll a serial loop around a register block (an unrolled loop): unrolling a
    conv's kernel-column loop lets it share each input broadcast between the copies, which
    with 16 vector registers keeps more live than the block leaves, and it spills (AVX2,
    3x3 64->64 @56 in blocks of 6 columns x 16 channels: 4.7 -> 2.8 ms); loop IR unrolls
    what pays already. For the same reason a broadcast that unrolled copies would share
    is loaded in each copy apart (`llvmutil.load_apart`), so that unrolled window taps
    (`lower.registers.RegisterBlocks.taps_unrolled`) compile without spills.
    `masked_stores`: a store of a vector's first elements under a mask is one fast
    instruction (AVX-512's k-masks, unlike AVX2's ``vmaskmovps``, 17-20 cycles on a Zen
    3), so the rows of a transposed register block store that way (`transpose`)."""
    verify_program(program)
    mctx = ModuleContext(program, program.name, scalef, rolled_blocks, masked_stores)
    wanted = None if kernels is None else set(kernels)
    emitted = {}
    for kernel in program.kernels:
        if wanted is None or kernel.name in wanted:
            emitted[kernel.name] = _emit_kernel(mctx, kernel)
    if entry:
        callees = dict(emitted)  # kernels of other parts get declared once, then shared
        _emit_entry(mctx, callees, profiled=False)
        _emit_entry(mctx, callees, profiled=True)
    return GeneratedModule(module=mctx.module, kernels=tuple(emitted))
