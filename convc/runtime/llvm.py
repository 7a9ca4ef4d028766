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

import ctypes
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


def vector_registers() -> tuple[int, int]:
    """(count, float32 lanes) of this machine's vector registers: 32 of 16 with AVX-512,
    16 of 8 with AVX, 16 of 4 otherwise (SSE). Register blocks are sized by it
    (`lower.registers`); the feature string it reads is part of every cache key."""
    if _has("avx512f"):
        return 32, 16
    return (16, 8) if _has("avx") else (16, 4)


def rolled_blocks() -> bool:
    """Whether loops around register blocks stay rolled (`codegen.generate`): on machines
    with 16 vector registers."""
    return vector_registers()[0] < 32


def has_scalef() -> bool:
    """Whether this machine has AVX-512F (``vscalefps``: `codegen.generate`'s `scalef`);
    the feature string is part of every cache key, so code for either kind never mixes."""
    return _has("avx512f")


def codegen_options() -> dict:
    """`codegen.generate`'s options for this machine: `scalef`, `rolled_blocks` and
    `masked_stores` (AVX-512's k-masked stores)."""
    return {
        "scalef": has_scalef(),
        "rolled_blocks": rolled_blocks(),
        "masked_stores": _has("avx512f"),
    }


def _has(feature: str) -> bool:
    """Whether the host CPU has `feature` (LLVM's name, e.g. "avx512f")."""
    return f"+{feature}" in host()[2].split(",")


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
    """What besides the program decides its code: the host, llvmlite, `codegen_options`."""
    return (*host(), llvmlite.__version__, repr(sorted(codegen_options().items())))


def parse_verified(gen: GeneratedModule, program: Program) -> llvm.ModuleRef:
    """Parse and verify; a failure raises `CodegenError` naming the kernel(s) at fault."""
    initialize()
    try:
        mod = llvm.parse_assembly(str(gen.module))
        mod.verify()
    except RuntimeError as err:
        culprits = _failing_kernels(program, gen.kernels) or ["<entry point>"]
        raise CodegenError(
            f"LLVM rejected the code of kernel(s) {', '.join(culprits)} in program "
            f"'{program.name}': {str(err).strip()}"
        ) from err
    tm = target_machine(pic=True)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    return mod


def _failing_kernels(program: Program, kernels: tuple[str, ...]) -> list[str]:
    """Verify each of `kernels` in a module of its own to find which ones are invalid."""
    bad = []
    for name in kernels:
        try:
            part = generate(program, [name], entry=False, **codegen_options())
            llvm.parse_assembly(str(part.module)).verify()
        except RuntimeError:
            bad.append(f"'{name}'")
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


def object_symbols(obj: bytes) -> tuple[set[str], set[str]]:
    """(defined, undefined) symbol names of an ELF64 object file, from its symbol table."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        return set(), set()  # not little-endian ELF64: nothing we can check here
    shoff = int.from_bytes(obj[0x28:0x30], "little")
    shentsize = int.from_bytes(obj[0x3A:0x3C], "little")
    shnum = int.from_bytes(obj[0x3C:0x3E], "little")
    sections = []
    for k in range(shnum):
        header = obj[shoff + k * shentsize : shoff + (k + 1) * shentsize]
        sh_type = int.from_bytes(header[4:8], "little")
        offset, size = (int.from_bytes(header[a : a + 8], "little") for a in (24, 32))
        sections.append((sh_type, offset, size, int.from_bytes(header[40:44], "little")))
    defined, undefined = set(), set()
    for sh_type, offset, size, link in sections:
        if sh_type != 2:  # SHT_SYMTAB
            continue
        strtab = sections[link][1]
        for at in range(offset, offset + size, 24):
            name_at = int.from_bytes(obj[at : at + 4], "little")
            if name_at:
                name = obj[strtab + name_at : obj.index(b"\0", strtab + name_at)].decode()
                index = int.from_bytes(obj[at + 6 : at + 8], "little")
                (undefined if index == 0 else defined).add(name)  # 0: SHN_UNDEF
    return defined, undefined


def _check_symbols(objects: list[bytes]) -> None:
    """An unresolved external would leave a call to address 0 (a segfault): refuse instead."""
    defined, used = set(), set()
    for obj in objects:
        has, needs = object_symbols(obj)
        defined |= has
        used |= needs
    missing = sorted(name for name in used - defined if not _resolvable(name))
    if missing:
        raise CodegenError(f"compiled code needs symbol(s) not found in this process: {missing}")


def _resolvable(name: str) -> bool:
    if llvm.address_of_symbol(name):
        return True
    try:
        ctypes.CDLL(None)[name]  # the process's own symbols (libc, libm)
    except AttributeError:
        return False
    return True


class LoadedCode:
    """Object files linked in one MCJIT engine; keeps the engine (and so the code) alive."""

    def __init__(self, objects: list[bytes]):
        initialize()
        with LLVM_LOCK:
            empty = llvm.parse_assembly("")
            empty.triple = host()[0]
            self._engine = llvm.create_mcjit_compiler(empty, target_machine(pic=False))
            _check_symbols(objects)
            for obj in objects:
                self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self._engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise CodegenError(f"symbol '{name}' missing from the compiled code")
        return addr
