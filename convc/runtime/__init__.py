"""JIT runtime: host target, O3 pipeline, object code, caches, parallel runtime, calling.

The only package that imports `llvmlite.binding`. `load(program, threads)` returns an
`Executable` (``run(inputs, outputs, symbols)``, ``source(stage)``); `STATS` counts LLVM
compiles and cache hits.
"""

from .cache import STATS, cache_dir, cache_key
from .executable import Executable, aligned_empty, build, default_threads, is_aligned, load
from .parallel import ensure_loaded as parallel_runtime

__all__ = [
    "STATS",
    "Executable",
    "aligned_empty",
    "build",
    "cache_dir",
    "cache_key",
    "default_threads",
    "is_aligned",
    "load",
    "parallel_runtime",
]
