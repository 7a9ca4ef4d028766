"""JIT runtime: host target, O3 pipeline, object code, caches, parallel runtime, calling.

The only package that imports `llvmlite.binding`. `load(program, threads)` returns an
`Executable` with ``run(inputs, outputs, symbols, threads=None)`` and ``source(stage)``
(``llvm``, ``llvm-opt``, ``asm``).

Environment: ``CONVC_NUM_THREADS`` (threads of parallel loops; default: every core this
process may use), ``CONVC_CACHE=0`` (no on-disk code cache), ``CONVC_CACHE_DIR`` (its
directory; default ``~/.cache/convc``), ``CONVC_COMPILE_JOBS`` (processes compiling one
program; default: every core). `STATS` counts LLVM compiles and cache hits.

Modules: `llvm` (target machine, verify, O3, objects, MCJIT loading), `objects` (a program
to object files, in parallel parts), `cache` (keys, disk format), `parallel` (libgomp or a
serial stand-in), `executable` (buffers, arenas, the ctypes call).
"""

from .cache import STATS, cache_dir, cache_key
from .executable import Executable, address, aligned_empty, default_threads, is_aligned, load
from .parallel import ensure_loaded as parallel_runtime

__all__ = [
    "STATS",
    "Executable",
    "address",
    "aligned_empty",
    "cache_dir",
    "cache_key",
    "default_threads",
    "is_aligned",
    "load",
    "parallel_runtime",
]
