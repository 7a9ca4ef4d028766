"""Lowered programs on disk, by graph: a compile from the cache skips the lowering.

Stage: between the graph stages and the runtime (`convc.compiler`). The code cache
(`runtime.cache`) is keyed by the program, so finding a model's code there used to need
the whole lowering first: ResNet-18 took 1.6-2.3 s to compile from the code cache on a
Zen 3 guest, 1.8 s of it lowering (0.9 s with sympy's caches warm), against 0.12 s to
unpickle its program (47 MB, weights included). Here the program itself is kept, under a
key that names everything it is a function of:

- the graph's fingerprint (its text and parameter bytes: new weights are a new entry);
- the register file schedules are sized for (`lower.registers.register_file`);
- the host and code-generator options (`runtime.llvm.cache_key_parts`);
- every source of convc and `ir` (`runtime.cache.lowering_version`): changing the
  compiler, its schedules' constants included, invalidates every entry;
- the versions of Python, NumPy and sympy, whose objects the pickle holds.

An entry is the pickle of (program, the names of the outputs that are graph inputs or
constants, copied rather than computed), read back with sympy's evaluation off: the
expressions were pickled in evaluated form, and rebuilding them through evaluation took
0.44 s of ResNet-18's 0.55 s (off: 0.11 s, the same program hash). It sits in the code
cache's directory as ``<key>.program``, checksummed and written atomically like the
object files; a torn, corrupted or unreadable entry is a miss. Tuned compiles
(`tune=True`) are not kept: their tiles come from measurements, which the tuning table
caches (`convc.tune`).
"""

from __future__ import annotations

import hashlib
import pickle
import sys

import numpy as np
import sympy

from convc.loops import Program
from convc.lower.registers import register_file
from convc.runtime import cache
from convc.runtime.llvm import cache_key_parts

#: What reading an entry written by another build may raise: a miss, not an error.
UNREADABLE = (
    pickle.UnpicklingError,
    AttributeError,
    EOFError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
)


def program_key(fingerprint: str) -> str:
    """The key of the lowered program of the graph whose `Graph.fingerprint()` is
    `fingerprint` (see the module docstring)."""
    versions = (sys.version, np.__version__, sympy.__version__)
    parts = (fingerprint, register_file(), *cache_key_parts(), *versions)
    text = "\n".join((*parts, cache.lowering_version()))
    return hashlib.sha256(text.encode()).hexdigest()


def load_lowered(key: str) -> tuple[Program, list[str]] | None:
    """(program, passthrough output names) kept under `key`, or None."""
    payload = cache.entry_get(key, cache.PROGRAM)
    if payload is None:
        return None
    try:
        with sympy.evaluate(False):  # the pickled expressions are already in their evaluated form
            program, passthrough = pickle.loads(payload)
    except UNREADABLE:
        return None
    if not isinstance(program, Program):
        return None
    cache.STATS["program_hits"] += 1
    return program, list(passthrough)


def store_lowered(key: str, program: Program, passthrough: list[str]) -> None:
    """Keep `program` under `key` (best effort, as the code cache)."""
    payload = pickle.dumps((program, list(passthrough)), protocol=pickle.HIGHEST_PROTOCOL)
    if cache.entry_put(key, cache.PROGRAM, payload):
        cache.STATS["program_writes"] += 1
