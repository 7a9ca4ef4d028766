"""The parallel runtime behind parallel loops: libgomp's C ABI, or a serial stand-in.

Stage: runtime. Generated code calls ``GOMP_parallel(fn, data, nthreads, 0)``,
``omp_get_thread_num()`` and ``omp_get_num_threads()`` (see `convc.codegen.parallel` for
why). `ensure_loaded` makes those symbols resolvable before any code is finalised: it loads
libgomp (shipped with gcc) into the process; without it, it registers ctypes stand-ins that
run the region on the calling thread, so code still runs, on one core.

Thread pool behaviour is libgomp's: workers spin briefly after a region and then sleep, so a
model's consecutive parallel layers reuse warm threads. Set ``OMP_WAIT_POLICY=passive``
before the first compile to make idle workers sleep at once on a busy machine.
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
