"""LLVM proper: host target machine, verification, the O3 pipeline, object code, JIT loading.

Stage: runtime (the only package that imports `llvmlite.binding`). Input: a
`GeneratedModule` from `convc.codegen`. Output: object code bytes (PIC, so they can be cached
on disk and loaded back) and a loaded MCJIT engine.

Why objects and MCJIT: compiling always goes IR -> verify -> O3 -> ``emit_object``, and
loading always goes bytes -> ``add_object_file`` -> ``finalize_object``, so a code-cache
hit and a fresh compile run the same loading path, and a cache hit needs no LLVM pipeline
at all. Process-killing misuses are avoided by construction: the module is always verified
before it is optimised or emitted; each pass manager runs once; each engine gets its own
fresh target machine (the engine owns it).
"""

from __future__ import annotations

import functools
import threading

import llvmlite
import llvmlite.binding as llvm

from ir.errors import CodegenError

from ..codegen import GeneratedModule, generate
from ..loops import Program

LLVM_LOCK = threading.RLock()  # held around engine creation and fork


@functools.cache
def initialize() -> None:
    """Initialise LLVM's native target once (``llvm.initialize()`` raises in 0.50)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.cache
def host() -> tuple[str, str, str]:
    """(triple, CPU name, feature string) of this machine: part of every cache key."""
    initialize()
    return (
        llvm.get_process_triple(),
        llvm.get_host_cpu_name(),
        llvm.get_host_cpu_features().flatten(),
    )


def target_machine(pic: bool = False) -> llvm.TargetMachine:
    """A fresh host target machine (O3; `pic` for cacheable object code)."""
    triple, cpu, features = host()
    target = llvm.Target.from_triple(triple)
    if pic:
        return target.create_target_machine(
            cpu=cpu, features=features, opt=3, reloc="pic", codemodel="default"
        )
    return target.create_target_machine(cpu=cpu, features=features, opt=3, jit=True)


def cache_key_parts() -> tuple[str, ...]:
    return (*host(), llvmlite.__version__)


def parse_verified(gen: GeneratedModule, program: Program) -> llvm.ModuleRef:
    """Parse and verify; a failure raises `CodegenError` naming the kernel(s) at fault."""
    initialize()
    try:
        mod = llvm.parse_assembly(str(gen.module))
        mod.verify()
    except RuntimeError as err:
        culprits = _failing_kernels(program) or ["<entry point>"]
        raise CodegenError(
            f"LLVM rejected the code of kernel(s) {', '.join(culprits)} in program "
            f"'{program.name}': {str(err).strip()}"
        ) from err
    tm = target_machine(pic=True)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    return mod


def _failing_kernels(program: Program) -> list[str]:
    """Verify each kernel in a module of its own to find which ones are invalid."""
    bad = []
    for kernel in program.kernels:
        try:
            llvm.parse_assembly(str(generate(program, [kernel.name], entry=False).module)).verify()
        except RuntimeError:
            bad.append(f"'{kernel.name}'")
    return bad


def optimize(mod: llvm.ModuleRef) -> None:
    """The O3 new-pass-manager pipeline for the host CPU, SLP vectorisation on."""
    tm = target_machine(pic=True)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.slp_vectorization = True
    pto.loop_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def emit_object(mod: llvm.ModuleRef) -> bytes:
    return target_machine(pic=True).emit_object(mod)


def emit_assembly(mod: llvm.ModuleRef) -> str:
    return target_machine(pic=True).emit_assembly(mod)


class LoadedCode:
    """Object files linked in one MCJIT engine; keeps the engine (and so the code) alive."""

    def __init__(self, objects: list[bytes]):
        initialize()
        with LLVM_LOCK:
            empty = llvm.parse_assembly("")
            empty.triple = host()[0]
            self._engine = llvm.create_mcjit_compiler(empty, target_machine(pic=False))
            for obj in objects:
                self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self._engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise CodegenError(f"symbol '{name}' missing from the compiled code")
        return addr
