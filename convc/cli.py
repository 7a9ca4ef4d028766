"""The command line: `convc show | summary | run FILE`, `convc train`.

Stage: the last one; it drives the others. FILE is a sample `.py` (defining
`build(batch="N") -> ir.Graph` and `example_inputs(batch=1, seed=0) -> dict`)
or an `.onnx` model. The stages it drives are imported inside the command that
needs them, so `convc show` stays quick and does not depend on the back end.

`convc show --stage NAME` prints one representation from the `STAGES` table.
A later stage adds its printer with one line at the end of this module,
importing its own module inside the render function so that this module keeps
importing only `ir` at load time:

    register_stage("loops", "the loop IR", lambda graph, args: _loops_text(graph, args))

`convc run` executes with an engine from `ENGINES`: native code by default
(then it also checks the outputs against the reference), the NumPy reference
interpreter with `--interpret`. For native code, `--tune` compiles with tile sizes
chosen by timing (`convc.tune`) and `--profile` prints each kernel's time
(`CompiledModel.profile`).

Every `ConvcError` reaching `main` is printed as `convc: error: <message>`
and exits with status 1; so are a missing file and a malformed argument
(`UsageError`). Exceptions raised by the code inside a sample file keep their
traceback: they are bugs in that code, and the traceback is what locates them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ir import ConvcError, Graph, InputError
from ir.report import format_table
from ir.types import dim_str

TRAINING_SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "train_digits.py"


class UsageError(ConvcError):
    """A command-line mistake: a missing or unreadable file, a malformed option."""


# ----- tables: what `show` can print and what `run` can execute -------------------------------


@dataclass(frozen=True)
class Stage:
    """One printable representation: `render(graph, args)` returns its text."""

    help: str
    render: Callable[[Graph, argparse.Namespace], str]


@dataclass(frozen=True)
class Engine:
    """One way to execute a graph.

    `prepare(graph)` returns a callable from inputs to outputs (for native code it
    compiles), so `convc run` can report preparation and execution apart.
    """

    description: str
    prepare: Callable[[Graph], Callable[[dict], dict]]


STAGES: dict[str, Stage] = {}
ENGINES: dict[str, Engine] = {}
DEFAULT_ENGINE = "interpret"


def register_stage(name: str, help: str, render: Callable[[Graph, argparse.Namespace], str]):
    """Make `convc show --stage NAME` print `render(graph, args)`."""
    STAGES[name] = Stage(help, render)


def register_engine(
    name: str, description: str, prepare: Callable[[Graph], Callable[[dict], dict]]
):
    """Make an execution engine available to `convc run`."""
    ENGINES[name] = Engine(description, prepare)


# ----- loading models and inputs ---------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A loaded FILE: its graph, and the sample's `example_inputs` when it has one."""

    path: Path
    graph: Graph
    example_inputs: Callable | None


def load_model(path: str) -> Model:
    """Load a sample `.py` file (by path, with importlib) or an `.onnx` model."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such file")
    if file.suffix == ".py":
        return _load_sample(file)
    if file.suffix == ".onnx":
        from convc import from_onnx

        return Model(file, from_onnx(str(file)), None)
    raise UsageError(f"{path}: expected a sample .py file or an .onnx model")


def _import_file(file: Path):
    """Execute a sample file as the module `convc_sample_<stem>`, its folder importable."""
    spec = importlib.util.spec_from_file_location(f"convc_sample_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickle look a module up by name
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise UsageError(f"{file}:{err.lineno}: {err.msg}") from err
    finally:
        sys.path.remove(str(file.parent))
    return module


def _load_sample(file: Path) -> Model:
    module = _import_file(file)
    build = getattr(module, "build", None)
    if not callable(build):
        raise UsageError(f"{file}: defines no build(batch='N') function")
    graph = build()
    if not isinstance(graph, Graph):
        raise UsageError(f"{file}: build() returned {type(graph).__name__}, not an ir.Graph")
    examples = getattr(module, "example_inputs", None)
    return Model(file, graph, examples if callable(examples) else None)


def _leading_dims(graph: Graph) -> list:
    return [graph.values[name].shape[0] for name in graph.inputs if graph.values[name].shape]


def batch_symbols(graph: Graph) -> set:
    """The symbols that are the leading (batch) dim of some graph input."""
    return {d for d in _leading_dims(graph) if d.is_Symbol}


def batch_bindings(graph: Graph, batch: int | None) -> dict:
    """Bind the batch symbols to `--batch` (none when it is not given); a fixed batch must match."""
    if batch is None:
        return {}
    bindings = dict.fromkeys(batch_symbols(graph), batch)
    fixed = [int(d) for d in _leading_dims(graph) if not d.free_symbols]
    if not bindings and any(d != batch for d in fixed):
        raise UsageError(
            f"--batch {batch}: graph '{graph.name}' has a fixed batch size of {fixed[0]}"
        )
    return bindings


def read_inputs(graph: Graph, specs: list[str]) -> dict:
    """Arrays from `--input NAME=FILE.npy` options, checked against the graph's input names."""
    arrays = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--input {spec!r}: expected NAME=FILE.npy")
        if name not in graph.inputs:
            raise InputError(
                f"--input {name}: graph '{graph.name}' has no input '{name}' "
                f"(inputs: {', '.join(graph.inputs)})"
            )
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UsageError(f"--input {name}: cannot read {path}: {err}") from err
    return arrays


def gather_inputs(model: Model, args: argparse.Namespace) -> dict:
    """--input files first; the rest from the sample's example_inputs, else random."""
    graph = model.graph
    inputs = read_inputs(graph, args.input)
    missing = [name for name in graph.inputs if name not in inputs]
    if not missing:
        return inputs
    if model.example_inputs is not None:
        examples = model.example_inputs(batch=args.batch or 1, seed=args.seed)
        return {**{k: v for k, v in examples.items() if k not in inputs}, **inputs}
    from convc.nn.examples import random_inputs

    bindings = batch_bindings(graph, args.batch) or dict.fromkeys(batch_symbols(graph), 1)
    return {**random_inputs(graph, missing, bindings, args.seed), **inputs}


# ----- commands --------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    graph = load_model(args.file).graph
    print(STAGES[args.stage].render(graph, args))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    graph = load_model(args.file).graph
    print(graph.summary(batch_bindings(graph, args.batch)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    model = load_model(args.file)
    engine_name = "interpret" if args.interpret else DEFAULT_ENGINE
    engine = ENGINES[engine_name]
    inputs = gather_inputs(model, args)
    start = time.perf_counter()
    runner = engine.prepare(model.graph, **_native_options(args))
    prepared = time.perf_counter()
    outputs = runner(inputs)
    elapsed = time.perf_counter() - prepared
    print(f"model {model.graph.name} ({model.path}), run by {engine.description}")
    print(f"prepared {runner!r} in {(prepared - start) * 1e3:.1f} ms")
    print(_arrays_table(inputs, outputs))
    print(f"elapsed: {elapsed * 1e3:.3f} ms")
    if engine_name != "interpret":
        print(_reference_check(model.graph, inputs, outputs))
    if args.profile:
        print(_profile_text(runner, inputs, args))
    if args.output:
        _save(args.output, outputs)
        print(f"outputs written to {args.output}")
    return 0


def _native_options(args: argparse.Namespace) -> dict:
    """`compile` options from --tune; --tune and --profile need native code."""
    if args.interpret and (args.tune or args.profile):
        option = "--tune" if args.tune else "--profile"
        raise UsageError(f"{option} applies to native code, not to --interpret")
    return {"tune": True} if args.tune else {}


def _profile_text(runner, inputs: dict, args: argparse.Namespace) -> str:
    """The per-kernel profile table (`CompiledModel.profile`)."""
    if not hasattr(runner, "profile"):
        raise UsageError(f"--profile: {runner!r} compiles per shape-input value; run it in Python")
    profile = runner.profile(inputs, repeat=args.repeat)
    return f"profile:\n{profile.format(by_time=args.profile == 'time')}"


def cmd_train(args: argparse.Namespace) -> int:
    if args.training_sample is None:
        raise UsageError(
            f"{TRAINING_SAMPLE}: not found; convc train runs it from a source checkout"
        )
    args.training_sample.run(args)
    return 0


def _add_train_command(commands) -> None:
    """`convc train`: the digits sample, with the options its `add_arguments` declares."""
    train = commands.add_parser(
        "train", help="train a LeNet-style CNN on scikit-learn's digits (samples/train_digits.py)"
    )
    sample = _import_file(TRAINING_SAMPLE) if TRAINING_SAMPLE.is_file() else None
    if sample is not None:
        sample.add_arguments(train)
    train.set_defaults(handler=cmd_train, training_sample=sample)


def cmd_bench(args: argparse.Namespace) -> int:
    from convc.bench import command

    return command(args)


def _arrays_table(inputs: dict, outputs: dict, shown: int = 6) -> str:
    rows = [("input", name, _array_type(a), "") for name, a in inputs.items()]
    for name, array in outputs.items():
        flat = array.reshape(-1)
        values = ", ".join(f"{v:.5g}" if array.dtype.kind == "f" else str(v) for v in flat[:shown])
        more = f", ... ({flat.size} values)" if flat.size > shown else ""
        rows.append(("output", name, _array_type(array), f"[{values}{more}]"))
    return format_table(("", "name", "type", "values"), rows)


def _array_type(array: np.ndarray) -> str:
    return f"{array.dtype}[{','.join(str(d) for d in array.shape)}]"


def _save(path: str, outputs: dict) -> None:
    try:
        np.savez(path, **outputs)
    except OSError as err:
        raise UsageError(f"--output {path}: cannot write: {err}") from err


# ----- the built-in stages and engines ---------------------------------------------------------


def _shapes_table(graph: Graph, args: argparse.Namespace) -> str:
    """Every value's kind, dtype and shape (symbolic unless --batch binds the batch)."""
    bindings = batch_bindings(graph, getattr(args, "batch", None))
    rows = []
    for name, value in graph.values.items():
        value_type = value.type.subs(bindings) if bindings else value.type
        shape = "[" + ",".join(dim_str(d) for d in value_type.shape) + "]"
        rows.append((name, value.kind, value.dtype, shape))
    return format_table(("value", "kind", "dtype", "shape"), rows)


class _Interpreted:
    """The reference interpreter bound to a graph (nothing to prepare)."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def __call__(self, inputs: dict) -> dict:
        from convc import interpret

        return interpret(self.graph, inputs)

    def __repr__(self) -> str:
        return f"<interpreter of {self.graph.name}: {len(self.graph.nodes)} nodes>"


def _reference_check(graph: Graph, inputs: dict, outputs: dict) -> str:
    """One line comparing outputs with the reference interpreter's."""
    reference = _Interpreted(graph)(inputs)
    worst = max(
        float(np.max(np.abs(outputs[name] - reference[name]), initial=0.0)) for name in reference
    )
    return f"checked against the NumPy reference interpreter: max |difference| = {worst:.3g}"


register_stage("graph", "the graph IR as text", lambda graph, args: graph.to_text())
register_stage("shapes", "every value's symbolic shape", _shapes_table)
register_stage("dot", "the graph in Graphviz DOT", lambda graph, args: graph.to_dot())
register_engine("interpret", "the NumPy reference interpreter (convc.interpret)", _Interpreted)


def _texpr_text(graph: Graph, args: argparse.Namespace) -> str:
    from convc.texpr import texpr_text

    return texpr_text(graph, latex=getattr(args, "latex", False))


def _grad_text(graph: Graph, args: argparse.Namespace) -> str:
    from convc.autodiff import grad_text

    return grad_text(graph, latex=getattr(args, "latex", False))


register_stage("texpr", "each op's tensor expressions (index notation)", _texpr_text)
register_stage("grad", "the derived gradient formulas of each op", _grad_text)


def _compiled_stage(stage: str) -> Callable[[Graph, argparse.Namespace], str]:
    def render(graph: Graph, args: argparse.Namespace) -> str:
        from convc.compiler import stage_source

        return stage_source(graph, stage)

    return render


def _native(graph: Graph, tune: bool = False):
    from convc import compile

    return compile(graph, tune=tune)


for _stage, _help in (
    ("passes", "the graph after each graph pass (;; after <pass>)"),
    ("fused", "the fusion decisions: which nodes each kernel computes"),
    ("loops", "the loop IR of every kernel, buffers and arena plan"),
    ("llvm", "the generated LLVM IR"),
    ("llvm-opt", "the LLVM IR after the O3 pipeline"),
    ("asm", "the machine code for this CPU"),
):
    register_stage(_stage, _help, _compiled_stage(_stage))
register_engine("native", "native code (convc.compile)", _native)
DEFAULT_ENGINE = "native"


def cmd_compile(args: argparse.Namespace) -> int:
    from convc.compiler import emit

    data = emit(load_model(args.file).graph, args.emit, tune=args.tune)
    try:
        Path(args.output).write_bytes(data)
    except OSError as err:
        raise UsageError(f"-o {args.output}: cannot write: {err}") from err
    print(f"{args.emit} of {args.file} written to {args.output} ({len(data)} bytes)")
    return 0


# ----- argument parsing and the entry point ----------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Report argument mistakes as UsageError, so main prints them like every other error."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convc", description="Inspect, summarize and run convolutional networks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    file_help = "a sample .py (build, example_inputs) or an .onnx model"
    batch_help = "bind the symbolic batch dim N to this size"
    tune_help = "choose tile sizes by timing candidates (cached on disk; see docs/tuning.md)"

    show = commands.add_parser("show", help="print one stage's representation")
    show.add_argument("file", help=file_help)
    show.add_argument("--stage", choices=list(STAGES), default="graph")
    show.add_argument("--batch", type=_positive_int, help=batch_help + " (shapes)")
    show.add_argument("--latex", action="store_true", help="LaTeX formulas (texpr, grad)")
    show.set_defaults(handler=cmd_show)

    summary = commands.add_parser("summary", help="layer table: shapes, params, MACs, RF")
    summary.add_argument("file", help=file_help)
    summary.add_argument("--batch", type=_positive_int, help=batch_help)
    summary.set_defaults(handler=cmd_summary)

    run = commands.add_parser("run", help="run a model and show what it computed")
    run.add_argument("file", help=file_help)
    run.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    run.add_argument("--batch", type=_positive_int, help=batch_help + " (default 1)")
    run.add_argument("--seed", type=int, default=0, help="seed for generated inputs")
    run.add_argument("--interpret", action="store_true", help="use the reference interpreter")
    run.add_argument("--output", metavar="OUT.npz", help="save the outputs")
    run.add_argument("--tune", action="store_true", help=tune_help)
    run.add_argument(
        "--profile",
        nargs="?",
        const="order",
        choices=("order", "time"),
        help="print each kernel's time, in call order (default) or slowest first",
    )
    run.add_argument(
        "--repeat", type=_positive_int, default=10, help="runs a --profile takes the median of"
    )
    run.set_defaults(handler=cmd_run)

    compile_ = commands.add_parser("compile", help="write the native code of a model")
    compile_.add_argument("file", help=file_help)
    compile_.add_argument("--emit", choices=("llvm", "asm", "obj"), default="obj")
    compile_.add_argument("-o", "--output", required=True, metavar="OUT")
    compile_.add_argument("--tune", action="store_true", help=tune_help)
    compile_.set_defaults(handler=cmd_compile)

    _add_train_command(commands)

    from convc.bench import add_arguments as add_bench_arguments

    bench = commands.add_parser("bench", help="time FILE or a suite beside NumPy, torch, ORT")
    add_bench_arguments(bench)
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `convc` script and `python -m convc`; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except ConvcError as err:
        print(f"convc: error: {err}", file=sys.stderr)
        return 1
    except SystemExit as exit_:  # --help exits through argparse
        return exit_.code if isinstance(exit_.code, int) else 0
    except BrokenPipeError:  # the reader (`| head`) left early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
