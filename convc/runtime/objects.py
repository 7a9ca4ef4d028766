"""Program -> object code, compiled in parallel parts on the available cores.

Stage: runtime. Input: a loop-IR `Program`. Output: a list of PIC object files (bytes) that
together define the entry point and every kernel; `llvm.LoadedCode` links them in one MCJIT
engine. A part is ``generate`` (some kernels, maybe the entry point) -> verify -> O3 ->
``emit_object``.

Why processes: llvmlite serialises every LLVM call behind one lock, so threads cannot overlap
two O3 pipelines; forked children can. The kernels are split into `jobs` parts balanced by a
size estimate (statements, counting unrolled copies); the parent compiles the first part
(with the entry point) while each child compiles one other part and sends its object back
through a pipe. A child that fails reports its error (re-raised as `CodegenError`); a child
that dies is reported as a `CodegenError` naming its kernels. Small programs compile in
one part: forking costs more than it saves there.
"""

from __future__ import annotations

import os

from ir.errors import CodegenError, InputError

from ..codegen import generate
from ..loops import ir as L
from . import llvm

MIN_PARALLEL_WEIGHT = 400  # statements (unrolled copies counted) below which one part wins


def compile_jobs() -> int:
    """``CONVC_COMPILE_JOBS`` or the number of cores this process may use."""
    env = os.environ.get("CONVC_COMPILE_JOBS")
    if env:
        if not env.strip().isdigit() or int(env) < 1:
            raise InputError(f"CONVC_COMPILE_JOBS={env!r} is not a positive integer")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def kernel_weight(kernel: L.Kernel) -> int:
    """A compile-cost estimate: statements, each unrolled loop body counted once per copy."""
    return _weight(kernel.body)


def _weight(s: L.Stmt) -> int:
    if isinstance(s, L.Block):
        return sum(_weight(st) for st in s.stmts)
    if isinstance(s, L.For):
        extent = s.stop - s.start
        copies = int(extent) if s.kind == "unrolled" and extent.is_Integer else 1
        return 1 + copies * _weight(s.body)
    if isinstance(s, L.If):
        return 1 + _weight(s.then) + (0 if s.orelse is None else _weight(s.orelse))
    return 1


def partition(program: L.Program, jobs: int) -> list[list[str]]:
    """Kernel names in `jobs` groups of similar weight (longest first, to the lightest)."""
    weights = {k.name: kernel_weight(k) for k in program.kernels}
    if jobs <= 1 or len(weights) < 2 or sum(weights.values()) < MIN_PARALLEL_WEIGHT:
        return [list(weights)]
    groups: list[list[str]] = [[] for _ in range(min(jobs, len(weights)))]
    loads = [0] * len(groups)
    for name in sorted(weights, key=lambda n: -weights[n]):
        lightest = loads.index(min(loads))
        groups[lightest].append(name)
        loads[lightest] += weights[name]
    return groups


def compile_part(program: L.Program, kernels: list[str] | None, entry: bool) -> bytes:
    gen = generate(program, kernels, entry, **llvm.codegen_options())
    mod = llvm.parse_verified(gen, program)
    llvm.optimize(mod)
    return llvm.emit_object(mod)


def compile_objects(program: L.Program, jobs: int | None = None) -> list[bytes]:
    """Object files for the whole program (see the module docstring)."""
    if not hasattr(os, "fork"):
        jobs = 1
    groups = partition(program, compile_jobs() if jobs is None else jobs)
    with llvm.LLVM_LOCK:  # one compile at a time: no other thread of ours is in LLVM at fork
        if len(groups) == 1:
            return [compile_part(program, None, entry=True)]
        children = [_fork_part(program, group) for group in groups[1:]]
        try:
            first = compile_part(program, groups[0], entry=True)
        finally:  # reap every child, even when the parent's own part failed
            parts = [_collect(pid, fd, group) for (pid, fd), group in zip(children, groups[1:])]
    for part in parts:
        if isinstance(part, CodegenError):
            raise part
    return [first, *parts]


def _fork_part(program: L.Program, kernels: list[str]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compile, report, and leave without running the parent's cleanup
        os.close(read_fd)
        try:
            payload = b"\0" + compile_part(program, kernels, entry=False)
        except BaseException as err:  # noqa: BLE001 - every failure must reach the parent
            payload = b"\1" + str(err).encode()
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def _collect(pid: int, read_fd: int, kernels: list[str]) -> bytes | CodegenError:
    """The child's object, or the error it reported (returned, so every child is reaped)."""
    with os.fdopen(read_fd, "rb") as source:
        payload = source.read()
    _, status = os.waitpid(pid, 0)
    if payload[:1] == b"\0" and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return payload[1:]
    if payload[:1] == b"\1":
        return CodegenError(payload[1:].decode())
    return CodegenError(
        f"the compiler process for kernel(s) {', '.join(kernels)} died (status {status})"
    )
