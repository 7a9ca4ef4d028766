"""`load(program) -> Executable`: compile (or fetch cached code) and call the entry point.

Stage: runtime. Input: a loop-IR `Program` (with its packed `params`). Output: an
`Executable` whose ``run(inputs, outputs, symbols)`` executes the whole program in one
native call through ctypes (which releases the GIL); ``profile_fresh(...)`` does the same
through the timed entry point and also returns each kernel call's nanoseconds.

Memory: params are used where they are (64-byte aligned) or copied once into aligned storage;
from PARAM_BLOCK_MIN bytes in all they share one block on a huge-page boundary instead (see
there). The arena (all temps) is one aligned block per distinct symbol binding, reused across
runs, on a huge-page boundary from the same size. Inputs and outputs are
used in place when they satisfy their buffer's declared `align` and are C-contiguous; otherwise
they go through aligned scratch kept per buffer (copied in, or copied back). Measured on a
memory-bound 4 MB elementwise kernel (quiet machine): in place 0.28 ms; a misaligned array
through the scratch copy 0.90 ms; the same kernel compiled for ``align=4`` reading misaligned
data in place 0.26 ms. The copy costs more than unaligned loads even where rows are reused
from L1, so compiled models declare their inputs ``align=16``, NumPy's own
(`convc.lower.program.INPUT_ALIGN`). Aligned allocation over-allocates a NumPy byte
array and offsets into it (`aligned_empty`);
`CompiledModel` allocates its outputs that way. A run re-using the same input arrays costs
about 2 us of Python (their pointers are cached per slot).
"""

from __future__ import annotations

import ctypes
import math
import operator
import os
import threading
from collections.abc import Mapping
from fractions import Fraction
from functools import reduce

import numpy as np
import sympy

from ir.errors import CodegenError, InputError

from ..codegen import ENTRY, generate
from ..codegen.module import PROFILE_ENTRY
from ..loops import Program
from . import cache, llvm
from .objects import compile_objects
from .parallel import call_threads, ensure_loaded

ALIGN = 64
#: From this many bytes, the params are copied into one block and the arena allocated,
#: each starting on a HUGE_PAGE boundary. NumPy asks Linux to back allocations of 4 MB and
#: more with huge pages (``madvise``), which cover only the 2 MB-aligned stretches of the
#: block: aligned, every weight is on a huge page, and a model's weights need a few dozen TLB
#: entries instead of thousands. A layer whose weights come from memory pays for each 4 KB
#: page walk: 3x3 512 @7 with its weights evicted 1.36 ms on huge pages, 1.62 ms on 4 KB
#: pages. Whole models, separate arrays -> one block (A/B, alternating processes):
#: ResNet-18 at batch 1 21.60-22.03 -> 21.04-21.25 ms on one thread, 10.96-11.22 ->
#: 10.52-10.78 ms on two, at batch 8 159.4 -> 156.9 ms; MobileNetV2 5.32-5.38 -> 5.20-5.30.
PARAM_BLOCK_MIN, HUGE_PAGE = 4 << 20, 2 << 20
ENTRY_TYPE = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32
)
PROFILE_TYPE = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p
)
_MEMORY: dict[str, llvm.LoadedCode] = {}
_MEMORY_LOCK = threading.Lock()
_from_buffer = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def aligned_empty(shape, dtype, align: int = ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous array whose data pointer is a multiple of `align`
    (one element of slack past its end)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    return _aligned(shape, dtype, (count + 1) * dtype.itemsize, align)[0]


def _aligned(shape, dtype: np.dtype, nbytes: int, align: int = ALIGN):
    """(array, its data pointer): `shape` of `dtype` at a multiple of `align` in a new
    byte array of `nbytes` + `align` (one allocation, one address lookup: the per-call
    path of `Executable.run_fresh`)."""
    raw = np.empty(nbytes + align, np.uint8)
    start = address(raw)
    offset = -start % align
    return np.ndarray(shape, dtype, raw, offset), start + offset


def _aligned_param(value: np.ndarray, align: int) -> np.ndarray:
    """`value` itself when aligned to `align` bytes and C-contiguous, else an aligned copy."""
    if is_aligned(value, align):
        return value
    out = aligned_empty(value.shape, value.dtype, align)
    out[...] = value
    return out


def address(array: np.ndarray) -> int:
    """The data pointer of `array`: ~0.2 us through the buffer protocol for a writable
    C-contiguous array, against ~1 us for ``array.ctypes.data`` (used for the others)."""
    try:
        return _addressof(_from_buffer(array))
    except (TypeError, ValueError, BufferError):
        return array.ctypes.data


def is_aligned(a: np.ndarray, align: int = ALIGN) -> bool:
    return a.flags.c_contiguous and address(a) % align == 0


def default_threads() -> int:
    env = os.environ.get("CONVC_NUM_THREADS")
    if env:
        if not env.strip().isdigit() or int(env) < 1:
            raise InputError(f"CONVC_NUM_THREADS={env!r} is not a positive integer")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def compile_code(program: Program) -> tuple[llvm.LoadedCode, str]:
    """(loaded code, origin: compiled|memory|disk)."""
    key = cache.cache_key(program)
    with _MEMORY_LOCK:
        hit = _MEMORY.get(key)
    if hit is not None:
        cache.STATS["memory_hits"] += 1
        return hit, "memory"
    ensure_loaded()
    objects, origin = cache.disk_get(key), "disk"
    if objects is None:
        objects, origin = compile_objects(program), "compiled"
        cache.STATS["llvm_compiles"] += 1
        cache.disk_put(key, objects)
    code = llvm.LoadedCode(objects)
    with _MEMORY_LOCK:
        _MEMORY[key] = code
    return code, origin


def program_sources(program: Program, stage: str) -> str:
    """``llvm`` (as generated), ``llvm-opt`` (after O3) or ``asm`` for `program`."""
    gen = generate(program, **llvm.codegen_options())
    if stage == "llvm":
        return str(gen.module)
    mod = llvm.parse_verified(gen, program)
    llvm.optimize(mod)
    if stage == "llvm-opt":
        return str(mod)
    if stage == "asm":
        return llvm.emit_assembly(mod)
    raise ValueError(f"unknown source stage {stage!r}; expected llvm, llvm-opt or asm")


def _evaluate(expr, values: dict) -> int:
    """An integer sympy expression at the given symbol values (symbols matched by name),
    computed exactly in Python (`_exact`) rather than by sympy's `subs`: a program read
    from disk (`convc.lowered`) holds its expressions as built without evaluation, and
    `subs` then evaluated each whole, through sympy's assumptions: 0.12 s for LeNet-5's
    buffer shapes and arena size at a model's first call, against 0.1 ms."""
    return int(_exact(sympy.sympify(expr), values))


def _exact(e: sympy.Basic, values: dict) -> Fraction:
    """`e` at the symbol values, as an exact fraction (sums, products, integer powers,
    Max, Min, floor, ceiling and Mod; anything else through sympy)."""
    if e.is_Rational:
        return Fraction(int(e.p), int(e.q))
    if e.is_Symbol:
        return Fraction(values[e.name])
    op = _EXACT.get(type(e))
    if op is None or (isinstance(e, sympy.Pow) and not e.exp.is_Integer):
        bound = sympy.Rational(e.subs({s: values[s.name] for s in e.free_symbols}))
        return Fraction(int(bound.p), int(bound.q))
    return op([_exact(a, values) for a in e.args])


_EXACT = {
    sympy.Add: lambda args: sum(args, Fraction(0)),
    sympy.Mul: lambda args: reduce(operator.mul, args, Fraction(1)),
    sympy.Pow: lambda args: args[0] ** int(args[1]),
    sympy.Max: max,
    sympy.Min: min,
    sympy.floor: lambda args: Fraction(math.floor(args[0])),
    sympy.ceiling: lambda args: Fraction(math.ceil(args[0])),
    sympy.Mod: lambda args: args[0] - args[1] * math.floor(args[0] / args[1]),
}


class _Arena:
    """One binding's arena and the element counts of the external buffers under it."""

    def __init__(self, block: np.ndarray):
        self.block, self.pointer, self.sizes = block, block.ctypes.data, {}
        #: (slot, name, shape, dtype, bytes) of each output, for `Executable.run_fresh`
        self.fresh: list[tuple] = []


class Executable:
    """A program's native code plus its aligned parameters and arenas."""

    def __init__(self, program: Program, threads: int | None = None):
        self.program = program
        self.threads = threads or default_threads()
        code, self.origin = compile_code(program)
        self._sources: dict[str, str] = {}
        self._code = code  # keeps the engine, and so the function, alive
        self._entry = ENTRY_TYPE(code.address(ENTRY))
        self._profile_entry = PROFILE_TYPE(code.address(PROFILE_ENTRY))
        self._external = program.external_buffers()
        self._slots = (ctypes.c_void_p * max(len(self._external), 1))()
        self._params, self._param_block = self._param_arrays()
        for k, buf in enumerate(self._external):
            if buf.role == "param":
                self._slots[k] = self._params[buf.name].ctypes.data
        self._bindings: dict[tuple, tuple] = {}
        self._io = [
            (k, b, b.role == "input", np.dtype(b.dtype))
            for k, b in enumerate(self._external)
            if b.role != "param"
        ]
        self._inputs = [io for io in self._io if io[2]]
        self._last: list = [None] * len(self._external)
        self._scratch: list = [None] * len(self._external)
        self._lock = threading.Lock()

    def _param_arrays(self) -> tuple[dict, np.ndarray | None]:
        """({param name: its storage}, the block holding them all or None). Below
        PARAM_BLOCK_MIN bytes each param is shared when it is already 64-byte aligned and
        contiguous (pack weights with `aligned_empty` to keep one copy), else copied
        aligned. From it they are copied into one block (see PARAM_BLOCK_MIN), and
        `Program.params` then holds views of the block, so the arrays it held before can
        go: one copy of each weight either way."""
        params = [buf for buf in self._external if buf.role == "param"]
        aligns = {buf.name: max(buf.align, ALIGN) for buf in params}
        if sum(int(buf.nbytes) for buf in params) < PARAM_BLOCK_MIN:
            arrays = {b.name: _aligned_param(self._param_value(b), aligns[b.name]) for b in params}
            return arrays, None
        offsets, end = {}, 0
        for buf in params:
            offsets[buf.name] = -(-end // aligns[buf.name]) * aligns[buf.name]
            end = offsets[buf.name] + int(buf.nbytes)
        block = aligned_empty((end,), np.uint8, HUGE_PAGE)
        arrays = {}
        for buf in params:  # one param at a time, so each original can go once copied
            value = self._param_value(buf)
            arrays[buf.name] = np.ndarray(value.shape, value.dtype, block, offsets[buf.name])
            arrays[buf.name][...] = value
            self.program.params[buf.name] = arrays[buf.name]
        return arrays, block

    def _param_value(self, buf) -> np.ndarray:
        """The program's value of param `buf`, checked against the buffer's shape and dtype."""
        if buf.name not in self.program.params:
            raise CodegenError(f"param buffer '{buf.name}' has no value in the program")
        value = np.asarray(self.program.params[buf.name])
        shape = tuple(int(d) for d in buf.shape)
        if value.size != int(np.prod(shape)) or value.dtype != np.dtype(buf.dtype):
            raise CodegenError(
                f"param '{buf.name}' is {value.dtype}{list(value.shape)}, buffer is {buf.dtype}{list(shape)}"
            )
        return value.reshape(shape)

    def _binding(self, symbols: Mapping) -> tuple:
        """(symbol tuple, {buffer: shape}, arena) for one binding of the run-time symbols."""
        try:
            values = tuple([int(symbols[s]) for s in self.program.symbols])
        except KeyError as err:
            raise InputError(f"program '{self.program.name}': no value for symbol {err}") from None
        hit = self._bindings.get(values)
        if hit is None:
            by_name = dict(zip(self.program.symbols, values))
            shapes = {b.name: tuple(_evaluate(d, by_name) for d in b.shape) for b in self._external}
            size = _evaluate(self.program.arena_size, by_name)
            align = HUGE_PAGE if size >= PARAM_BLOCK_MIN else ALIGN
            arena = _Arena(aligned_empty((size,), np.uint8, align))
            arena.sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
            arena.fresh = [
                (k, buf.name, shapes[buf.name], dtype, arena.sizes[buf.name] * dtype.itemsize)
                for k, buf, is_input, dtype in self._io
                if not is_input
            ]
            hit = (values, shapes, arena, (ctypes.c_int64 * max(len(values), 1))(*values))
            self._bindings[values] = hit
        return hit

    def shapes(self, symbols: Mapping) -> dict[str, tuple]:
        """{buffer name: shape} of the inputs and outputs at one binding of the symbols."""
        return self._binding(symbols)[1]

    def run(
        self, inputs: Mapping, outputs: Mapping, symbols: Mapping, threads: int | None = None
    ) -> None:
        """Execute: read `inputs`, write `outputs` in place (arrays by buffer name).

        An input passed again in the same slot (same object) skips the checks and pointer
        lookup (~1.5 us each); it stays referenced until the slot gets another array.
        Outputs are checked every run and never kept: a kept output would still hold its
        memory when `CompiledModel.run` allocates the next one, so back-to-back runs would
        write two buffers in turn, each cold in cache. Freed, the allocator hands the same
        block back, still in L2 (3x3 64->64 @56, one thread, `convc bench`: 1.31-1.32 ->
        1.30 ms). Runs of one executable from several Python threads take turns: they share
        the arena."""
        with self._lock:
            self._call(inputs, outputs, self._binding(symbols), threads)

    def run_fresh(
        self, inputs: Mapping, symbols: Mapping, threads: int | None = None, ticks=None
    ) -> dict[str, np.ndarray]:
        """`run` into new 64-byte-aligned C-contiguous outputs, returned by buffer name: the
        per-call path of `CompiledModel.run`. Arrays made here need none of `run`'s output
        checks (about 1.2 us an output on a 6 us call); `ticks`: an int64 array of one more
        entry than `Program.calls` for the timed entry point (`profile_fresh`)."""
        with self._lock:
            binding = self._binding(symbols)
            outputs = {}
            for k, name, shape, dtype, nbytes in binding[2].fresh:
                outputs[name], self._slots[k] = _aligned(shape, dtype, nbytes)
            self._call(inputs, None, binding, threads, ticks)
        return outputs

    def profile_fresh(
        self, inputs: Mapping, symbols: Mapping, threads: int | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(outputs, nanoseconds per call): `run_fresh` through the timed entry point, the
        nanoseconds for each of `Program.calls` (int64, in call order), measured natively
        between consecutive calls."""
        ticks = np.zeros(len(self.program.calls) + 1, np.int64)
        outputs = self.run_fresh(inputs, symbols, threads, ticks)
        return outputs, np.diff(ticks)

    def _call(
        self, inputs: Mapping, outputs: Mapping | None, binding: tuple, threads, ticks=None
    ) -> None:
        """The call at one `_binding`; `outputs` None: their slots are already set
        (`run_fresh`), so only the inputs are looked at."""
        _, shapes, arena, syms = binding
        copy_back = []
        for k, buf, is_input, dtype in self._io if outputs is not None else self._inputs:
            array = (inputs if is_input else outputs).get(buf.name)
            size = arena.sizes[buf.name]
            last = self._last[k]
            if array is last and last is not None and array.size == size:
                continue
            self._argument(buf, array, dtype, size, shapes[buf.name])
            contiguous = array.flags.c_contiguous
            pointer = address(array)
            if contiguous and pointer % buf.align == 0:
                self._last[k] = array if is_input else None
            else:
                self._last[k] = None
                scratch = self._scratch_for(k, array, buf.align)
                if is_input:
                    scratch[...] = array
                else:
                    copy_back.append((array, scratch))
                pointer = address(scratch)
            self._slots[k] = pointer
        threads = call_threads(threads or self.threads)
        if ticks is None:
            self._entry(self._slots, arena.pointer, syms, threads)
        else:
            self._profile_entry(self._slots, arena.pointer, syms, threads, ticks.ctypes.data)
        for target, scratch in copy_back:
            target[...] = scratch

    def _scratch_for(self, slot: int, array: np.ndarray, align: int) -> np.ndarray:
        """Aligned storage for a misaligned or strided array, kept per slot and reused (a
        fresh allocation per run would page-fault on every call)."""
        scratch = self._scratch[slot]
        if scratch is None or scratch.shape != array.shape:
            scratch = aligned_empty(array.shape, array.dtype, max(align, ALIGN))
            self._scratch[slot] = scratch
        return scratch

    def _argument(self, buf, array, dtype: np.dtype, size: int, shape: tuple) -> None:
        if array is None:
            raise InputError(f"program '{self.program.name}': missing {buf.role} '{buf.name}'")
        if not isinstance(array, np.ndarray) or array.dtype != dtype:
            got = getattr(array, "dtype", type(array).__name__)
            raise InputError(f"{buf.role} '{buf.name}' must be a {buf.dtype} array, got {got}")
        if array.size != size:
            raise InputError(f"{buf.role} '{buf.name}' has shape {array.shape}, expected {shape}")
        if buf.role == "output" and not array.flags.c_contiguous:
            raise InputError(f"output '{buf.name}' must be C-contiguous")

    def memory(self, symbols: Mapping) -> dict[str, int]:
        """Bytes this executable holds for one binding of the symbols: ``params`` (its own
        copies; shared packed arrays count too), ``arena`` (all temps) and ``scratch``
        (aligned copies of misaligned arrays made so far)."""
        arena = self._binding(symbols)[2]
        scratch = sum(a.nbytes for a in self._scratch if a is not None)
        if self._param_block is not None:
            params = self._param_block.nbytes
        else:
            params = sum(a.nbytes for a in self._params.values())
        return {"params": params, "arena": arena.block.nbytes, "scratch": scratch}

    def source(self, stage: str) -> str:
        """``llvm``, ``llvm-opt`` or ``asm`` text of this program."""
        if stage not in self._sources:
            self._sources[stage] = program_sources(self.program, stage)
        return self._sources[stage]


def load(program: Program, threads: int | None = None) -> Executable:
    """Compile `program` for this CPU (or fetch it from the caches) and load it."""
    return Executable(program, threads)
