"""The parallel runtime behind parallel loops: libgomp's C ABI, or a serial stand-in.

Stage: runtime. Generated code calls ``GOMP_parallel(fn, data, nthreads, 0)``,
``omp_get_thread_num()`` and ``omp_get_num_threads()`` (see `convc.codegen.parallel` for
why). `ensure_loaded` makes those symbols resolvable before any code is finalised: it loads
libgomp (shipped with gcc) into the process; without it, it registers ctypes stand-ins that
run the region on the calling thread, so code still runs, on one core.

Wait policy: libgomp's default (workers spin for a while after a region, then sleep) is
kept. Measured here on 2 cores shared with other work: a register-blocked 3x3 conv ran at
about 300 GFLOP/s on 2 threads spinning against 150 (the 1-thread speed) with
``OMP_WAIT_POLICY=passive``, whose woken worker kept landing on the busy core, while an
empty region cost 25-200 us spinning against 10-60 us passive. Big layers matter more, so the
default stays; a user on a crowded machine may set ``OMP_WAIT_POLICY=passive``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import llvmlite.binding as llvm

REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_STAND_INS: list = []


@functools.cache
def ensure_loaded() -> str:
    """Make the parallel runtime's symbols resolvable; returns ``"libgomp"`` or ``"serial"``."""
    path = ctypes.util.find_library("gomp")
    if path is not None:
        try:
            llvm.load_library_permanently(path)
            return "libgomp"
        except RuntimeError:
            pass
    _install_serial()
    return "serial"


def _install_serial() -> None:
    @ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)
    def gomp_parallel(fn, data, nthreads, flags):
        REGION(fn)(data)

    zero = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 0)
    one = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 1)
    _STAND_INS.extend([gomp_parallel, zero, one])
    llvm.add_symbol("GOMP_parallel", ctypes.cast(gomp_parallel, ctypes.c_void_p).value)
    llvm.add_symbol("omp_get_thread_num", ctypes.cast(zero, ctypes.c_void_p).value)
    llvm.add_symbol("omp_get_num_threads", ctypes.cast(one, ctypes.c_void_p).value)
