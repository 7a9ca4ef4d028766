"""The compile pipeline and `CompiledModel`: graph -> native code -> run(inputs).

Stage: the public entry. Input: an `ir.Graph`. Output: a `CompiledModel`.

    graph --passes--> graph --plan_fusion--> fused groups --assemble--> loop-IR Program
          --runtime (codegen, O3, JIT, one entry point)--> executable

Every stage keeps its text form for `m.source(stage)` (graph, fused, texpr,
loops, llvm, llvm-opt, asm), and `CONVC_DUMP=stage,...` prints the named stages
to stderr while compiling (graph passes print after each pass: name the pass,
or `passes` for all of them). Compiled models are cached in memory by (graph
fingerprint, thread count, tuning): compiling the same graph again returns the same
model. Untuned programs are also kept on disk by graph (`convc.lowered`), so a compile
in a new process finds both its program and its code without lowering the graph; the
graph stages then run only when `m.optimized` or `m.groups` (or a stage that shows them)
is asked for. Threads: `threads=`, else `CONVC_NUM_THREADS`, else every core.

`tune=True` chooses each kernel's tiles by measuring candidates in the whole model
(`convc.tune`, cached on disk); `m.profile(inputs)` times every kernel (`convc.profile`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from functools import partial

import numpy as np

from convc import loops, runtime
from convc.lower import assemble
from convc.lower.registers import register_file
from convc.lowered import load_lowered, program_key, store_lowered
from convc.memory import MemoryReport, memory_report, tensor_bytes
from convc.passes import (
    PIPELINE,
    dump,
    dump_requested,
    fused_text,
    plan_fusion,
    run_passes,
    trace_text,
)
from convc.profile import Profile, profile_of
from convc.specialize import ShapeSpecializedModel, shape_inputs
from convc.tune import tuned_table
from ir import Graph, GraphError, InputError
from ir.binding import bind_inputs

STAGES = ("graph", "fused", "texpr", "loops", "llvm", "llvm-opt", "asm")
_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def resolve_threads(threads: int | None) -> int:
    """`threads`, else CONVC_NUM_THREADS, else the number of cores this process may use."""
    if threads is None:
        env = os.environ.get("CONVC_NUM_THREADS")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise InputError(f"CONVC_NUM_THREADS={env!r} is not an integer") from None
        else:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads={threads!r} must be a positive integer")
    return threads


class CompiledModel:
    """A graph compiled to one native entry point; call it like `convc.interpret`."""

    def __init__(
        self,
        graph: Graph,
        optimized: Graph | None,
        groups,
        program,
        executable,
        threads,
        tuning=None,
        passthrough=None,
    ):
        """`optimized` and `groups` (the graph stages' results) may be None, with
        `passthrough` given: a program read from disk (`convc.lowered`); they are then
        computed again when first asked for."""
        self.graph = graph
        self._planned = None if optimized is None else (optimized, groups)
        self.program = program
        self.threads = threads
        #: {`tuning_key`: {axis: tile}} chosen by `compile(..., tune=True)`; empty: defaults
        self.tuning = dict(tuning or {})
        self._executable = executable
        self._bound: dict = {}
        self._input_names = tuple(graph.inputs)
        if passthrough is None:
            passthrough = [n for n in optimized.outputs if optimized.values[n].producer is None]
        #: outputs that are inputs or constants of the graph: copied, not computed
        self._passthrough = list(passthrough)

    @property
    def optimized(self) -> Graph:
        """The graph after the graph passes."""
        return self._plan()[0]

    @property
    def groups(self) -> list:
        """The fused groups, one kernel each."""
        return self._plan()[1]

    def _plan(self) -> tuple:
        if self._planned is None:
            self._planned = _plan(self.graph)
        return self._planned

    @property
    def input_names(self) -> list[str]:
        return list(self.graph.inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self.graph.outputs)

    def run(self, inputs: Mapping) -> dict[str, np.ndarray]:
        """Outputs by name (fresh C-contiguous arrays), for `inputs` checked like the interpreter's.

        A repeated input signature (names, shapes, dtypes) reuses its validation and output
        plan: the per-call Python path is the signature and `Executable.run_fresh` (one
        aligned allocation per output; about 5 us a call in all, the native call included)."""
        return self._execute(inputs, self._executable.run_fresh)

    def profile(self, inputs: Mapping, repeat: int = 10) -> Profile:
        """The time of every kernel call (median of `repeat` runs, after one warm-up run),
        through the program's timed entry point; `inputs` are checked like `run`'s."""
        if not isinstance(repeat, int) or repeat < 1:
            raise InputError(f"profile: repeat={repeat!r} must be a positive integer")
        runs = []

        def timed(inputs, symbols):
            outputs, nanoseconds = self._executable.profile_fresh(inputs, symbols)
            runs.append(nanoseconds)
            return outputs

        for _ in range(repeat + 1):
            self._execute(inputs, timed)
        return profile_of(self.program, np.stack(runs[1:]), self.threads)

    def _execute(self, inputs: Mapping, launch) -> dict[str, np.ndarray]:
        """`run` with the native call made by `launch(inputs, symbols)`, which returns the
        computed outputs by name."""
        signature = self._signature(inputs)
        hit = self._bound.get(signature) if signature is not None else None
        symbols, specs, reshaped = hit or self._bind(inputs, signature)
        if signature is None:
            inputs = {name: np.ascontiguousarray(inputs[name]) for name in self.graph.inputs}
        computed = launch(inputs, symbols)
        for name, shape in reshaped:
            computed[name] = computed[name].reshape(shape)
        if not self._passthrough:
            return computed
        outputs = {}
        for name, shape, dtype in specs:
            if name in self._passthrough:
                value = self.optimized.values[name]
                outputs[name] = np.empty(shape, dtype)
                outputs[name][...] = inputs[name] if value.kind == "input" else value.data
            else:
                outputs[name] = computed[name]
        return outputs

    def _bind(self, inputs: Mapping, signature: tuple | None) -> tuple[dict, list, list]:
        """(symbol values, output specs: name, shape and dtype, and the name and shape of
        each computed output whose buffer has another shape: a scalar's is one element)
        for `inputs`, validated by `ir.binding.bind_inputs`.

        Validation depends only on the names, shapes and dtypes of the arrays, so its result
        is cached by that signature (`_signature`): a repeated call skips the symbolic checks.
        """
        bindings = bind_inputs(self.graph, inputs)
        symbols = {str(s): int(v) for s, v in bindings.items()}
        specs = []
        for name in self.graph.outputs:
            value_type = self.graph.values[name].type
            shape = tuple(int(d) for d in value_type.subs(bindings).shape)
            dtype = np.dtype(value_type.dtype)
            specs.append((name, shape, dtype))
        buffers = self._executable.shapes(symbols)
        reshaped = [
            (name, shape)
            for name, shape, _ in specs
            if name not in self._passthrough and buffers[name] != shape
        ]
        if signature is not None:
            self._bound[signature] = (symbols, specs, reshaped)
        return symbols, specs, reshaped

    def _signature(self, inputs: Mapping) -> tuple | None:
        """The arrays' shapes and dtypes in input order, None unless every input is an
        `np.ndarray` (others go through full validation on every call)."""
        try:
            if len(inputs) != len(self._input_names):
                return None
            arrays = [inputs[name] for name in self._input_names]
        except (KeyError, TypeError):
            return None
        signature = []
        for a in arrays:
            if type(a) is not np.ndarray:
                return None
            signature.append((a.shape, a.dtype))
        return tuple(signature)

    __call__ = run

    def memory_report(self, **symbols: int) -> MemoryReport:
        """Peak memory of a run by category (`convc.memory`), at the given run-time symbol
        values (e.g. ``N=8``; symbols not given are 1)."""
        unknown = set(symbols) - set(self.program.symbols)
        if unknown:
            raise InputError(
                f"model '{self.graph.name}' has no symbol(s) {sorted(unknown)}; "
                f"its symbols are {list(self.program.symbols)}"
            )
        values = {name: int(symbols.get(name, 1)) for name in self.program.symbols}
        if any(v < 1 for v in values.values()):
            raise InputError(f"model '{self.graph.name}': symbol values {values} must be >= 1")
        copied = sum(
            tensor_bytes(self.graph.values[name].type.shape, self.graph.values[name].dtype, values)
            for name in self._passthrough
        )
        return memory_report(self.program, self._executable, values, copied)

    def source(self, stage: str) -> str:
        """The text of one stage: graph, fused, texpr, loops, llvm, llvm-opt or asm."""
        if stage == "graph":
            return self.optimized.to_text()
        if stage == "fused":
            return fused_text(self.optimized, self.groups)
        if stage == "texpr":
            from convc.texpr import texpr_text

            return texpr_text(self.optimized)
        if stage == "loops":
            return loops.format_program(self.program)
        if stage in ("llvm", "llvm-opt", "asm"):
            return self._executable.source(stage)
        raise GraphError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")

    def __repr__(self) -> str:
        return (
            f"<CompiledModel {self.graph.name}: {len(self.program.kernels)} kernels, "
            f"threads={self.threads}>"
        )


def _builder(graph: Graph, threads: int):
    """(optimized graph, groups, build): `build(tuning)` lowers and loads the program."""
    optimized, groups = _plan(graph)

    def build(tuning: dict | None) -> CompiledModel:
        program, _ = assemble(optimized, groups, tuning)
        executable = runtime.load(program, threads=threads)
        return CompiledModel(graph, optimized, groups, program, executable, threads, tuning)

    return optimized, groups, build


def _tuned(graph: Graph, threads: int) -> CompiledModel:
    optimized, groups, build = _builder(graph, threads)
    return build(tuned_table(optimized, groups, threads, build))


def _untuned(graph: Graph, threads: int, fingerprint: str) -> CompiledModel:
    """The model of the default schedules, its program read from disk when kept there
    (`convc.lowered`), else lowered and kept; `fingerprint`: the graph's."""
    key = program_key(fingerprint)
    kept = load_lowered(key)
    if kept is not None:
        program, passthrough = kept
        executable = runtime.load(program, threads=threads)
        return CompiledModel(graph, None, None, program, executable, threads, None, passthrough)
    model = _builder(graph, threads)[2](None)
    store_lowered(key, model.program, model._passthrough)
    return model


def _check_graph(graph) -> None:
    if not isinstance(graph, Graph):
        raise GraphError(f"compile expects an ir.Graph; got {type(graph).__name__}")
    if not graph.outputs:
        raise GraphError(f"graph '{graph.name}' has no outputs; call set_outputs first")
    graph.verify()


def _plan(graph: Graph) -> tuple[Graph, list]:
    """(optimized graph, fused groups): the graph stages."""
    _check_graph(graph)
    optimized = run_passes(graph, PIPELINE)
    return optimized, plan_fusion(optimized)


def lower_graph(graph: Graph):
    """(optimized graph, fused groups, Program): every stage before native code."""
    optimized, groups = _plan(graph)
    program, _ = assemble(optimized, groups)
    return optimized, groups, program


def stage_source(graph: Graph, stage: str) -> str:
    """One stage's text for `graph`; stages before LLVM are produced without compiling.

    `passes` gives the graph after each graph pass (`;; after <pass>` dumps)."""
    if stage == "passes":
        _check_graph(graph)
        trace: list = []
        run_passes(graph, PIPELINE, trace)
        return trace_text(trace)
    if stage in ("llvm", "llvm-opt", "asm"):
        return compile(graph).source(stage)
    optimized, groups, program = lower_graph(graph)
    return CompiledModel(graph, optimized, groups, program, None, 1).source(stage)


def emit(graph: Graph, kind: str, tune: bool = False) -> bytes:
    """The whole model as `llvm` (IR text), `asm` (assembly) or `obj` (an ELF object file
    defining the entry points `convc_main`, `convc_profile` and every kernel, position
    independent); `tune` as for `compile`."""
    if kind in ("llvm", "asm"):
        return compile(graph, tune=tune).source(kind).encode()
    if kind == "obj":
        from convc.runtime.objects import compile_part

        program = compile(graph, tune=True).program if tune else lower_graph(graph)[2]
        return compile_part(program, None, True)
    raise GraphError(f"unknown output kind {kind!r}; expected llvm, asm or obj")


def compile(
    graph: Graph, threads: int | None = None, tune: bool = False
) -> CompiledModel | ShapeSpecializedModel:
    """Compile `graph` to native code for this CPU (see the module docstring).

    `tune=True` picks every kernel's tiles by timing candidates in the whole model at batch
    1 (`convc.tune`; seconds per model the first time, then read from the disk cache); the
    choices are in `m.tuning` and in the schedules of `m.source("loops")`.

    A graph with shapes fixed only by run-time input values (a reshape or pad target
    fed as an input) gives a `ShapeSpecializedModel`, which compiles on first use of
    each distinct target (`convc.specialize`)."""
    _check_graph(graph)
    threads = resolve_threads(threads)
    if not isinstance(tune, bool):
        raise InputError(f"compile: tune={tune!r} must be True or False")
    specialize_on = shape_inputs(graph)
    if specialize_on:
        return ShapeSpecializedModel(graph, specialize_on, threads, partial(compile, tune=tune))
    fingerprint = graph.fingerprint()
    key = (fingerprint, threads, tune, register_file())
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    model = _tuned(graph, threads) if tune else _untuned(graph, threads, fingerprint)
    for stage in STAGES:
        if dump_requested(stage):
            dump(stage, model.source(stage))
    with _CACHE_LOCK:
        _CACHE[key] = model
    return model
