"""The parallel runtime behind parallel loops: libgomp's C ABI, or a serial stand-in.

Stage: runtime. Generated code calls ``GOMP_parallel(fn, data, nthreads, 0)``,
``omp_get_thread_num()`` and ``omp_get_num_threads()`` (see `convc.codegen.parallel` for
why). `ensure_loaded` makes those symbols resolvable before any code is finalised: it loads
libgomp (shipped with gcc) into the process; without it, it registers ctypes stand-ins that
run the region on the calling thread, so code still runs, on one core.

Fork: libgomp's thread pool does not survive ``fork``. A child forked after the parent ran a
parallel region (`multiprocessing`'s default start method on Linux before Python 3.14)
inherits a pool whose workers do not exist there, and its first ``GOMP_parallel`` waits for
them forever. `call_threads` therefore runs every call of such a child on one thread (the
entry point then calls each region's body directly, never libgomp) and warns once; the
"spawn" and "forkserver" start methods give workers their own pool.

Wait policy: workers spin after a region, then sleep, but for less long than libgomp's
default. Measured on 2 cores shared with other work (Zen 4): a register-blocked 3x3 conv ran
at about 300 GFLOP/s on 2 threads spinning against 150 (the 1-thread speed) with
``OMP_WAIT_POLICY=passive``, whose woken worker kept landing on the busy core, so workers
spin. libgomp's default spin (300,000 ``pause`` iterations) lasts 10-20 ms on Intel cores,
whose ``pause`` takes about 140 cycles: on a 2-core Xeon with another process on one core, a
worker spinning that long between model runs kept the main thread waiting for the core at
each join (ResNet-18, batch 1, 2 threads: 85-156 ms against 30 ms on one thread). The gaps
between back-to-back regions of one model are the serial kernels between them, tens of
microseconds, so `SPIN_COUNT` (about 0.4 ms: a spin iteration took 12 ns on that Xeon)
covers them and lets the core go soon after a run. Measured there, quiet moments, batch 1,
2 threads, best of 15 blocks (ms): spin count 3,000: ResNet-18 17.2-17.7, MobileNetV2
6.7 (the worker fell asleep between regions); 30,000: 16.3, 5.9-6.5; 100,000: 15.8-16.0,
6.0-6.5; 300,000 (libgomp's default): 88 and 109 (another process had started on one core).
The cost, on a quiet machine: a worker asleep when a run starts is woken first. Single 3x3
ResNet-18 layers timed in 3 ms blocks alternating with 1-thread blocks (so every 2-thread
block starts with a sleeping worker unless the spin outlasts 3 ms), 2-thread speed-up:
1.44-1.86x at 30,000, 1.56-1.78x at 100,000, 1.67-1.94x at 300,000. It is passed to libgomp through ``GOMP_SPINCOUNT`` while it loads, unless
the user set ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY``; the process environment is restored
afterwards (child processes do not inherit it). A libgomp already loaded keeps its settings.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import warnings

import llvmlite.binding as llvm

REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_STAND_INS: list = []
#: libgomp, opened with RTLD_NODELETE before LLVM opens it: at exit LLVM closes the libraries
#: it loaded, and a worker still spinning in libgomp's code (OMP_WAIT_POLICY=active, a long
#: GOMP_SPINCOUNT, or an exit right after a parallel region) then ran into unmapped pages and
#: the process died of SIGSEGV.
_LOADED: list = []
#: libgomp's spin iterations before a worker sleeps (see the module docstring).
SPIN_COUNT = 30_000
_USER_WAIT_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


#: Whether this process ran a parallel region (libgomp's pool exists), and whether it is a
#: child forked after its parent had (the pool it inherited has no workers).
_TEAM = {"started": False, "inherited": False}


def call_threads(threads: int) -> int:
    """The thread count a native call may use: `threads`, or 1 in a process forked after
    its parent ran a parallel region (see the module docstring)."""
    if _TEAM["inherited"]:
        if threads > 1:
            _warn_forked()
        return 1
    if threads > 1 and ensure_loaded() == "libgomp":
        _TEAM["started"] = True
    return threads


@functools.cache
def _warn_forked() -> None:
    warnings.warn(
        "convc: this process was forked after its parent ran parallel code, and libgomp's "
        "threads do not survive fork: models run on one thread here (start worker "
        "processes with the 'spawn' or 'forkserver' method to run them in parallel)",
        RuntimeWarning,
        stacklevel=4,
    )


def _after_fork_in_child() -> None:
    _TEAM["inherited"] = _TEAM["inherited"] or _TEAM["started"]


if hasattr(os, "register_at_fork"):  # no fork, nothing to register (Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.cache
def ensure_loaded() -> str:
    """Make the parallel runtime's symbols resolvable; returns ``"libgomp"`` or ``"serial"``."""
    path = ctypes.util.find_library("gomp")
    if path is not None:
        try:
            with spin_count_while_loading():
                mode = ctypes.RTLD_GLOBAL | getattr(os, "RTLD_NODELETE", 0)
                _LOADED.append(ctypes.CDLL(path, mode=mode))
                llvm.load_library_permanently(path)
            return "libgomp"
        except (OSError, RuntimeError):
            pass
    _install_serial()
    return "serial"


@contextlib.contextmanager
def spin_count_while_loading():
    """Set ``GOMP_SPINCOUNT`` to `SPIN_COUNT` for the duration (libgomp reads it when it
    loads), unless the user chose a wait setting; restore the environment afterwards."""
    if any(name in os.environ for name in _USER_WAIT_SETTINGS):
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        yield
    finally:
        del os.environ["GOMP_SPINCOUNT"]


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
