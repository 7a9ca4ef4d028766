"""`convc bench`: time convc side by side with NumPy, PyTorch and ONNX Runtime.

Stage: a driver above the compiler, like the CLI. Input: a model file or a suite name
(`layers`: the single layers of shared/BENCHMARKS.md; `shapes`: convs of unusual shapes;
`ops`: softmax, small dense layers, activations, batch norm and pools run alone;
`models`: LeNet-5, ResNet-18 and MobileNetV2 from samples/; `training`: one optimizer
step of LeNet-5, see `training`), thread counts, batch sizes, repeats and peers. Output:
Markdown tables of medians and minima, ratios to each peer, GFLOP/s and % of peak (see
`table`), optionally JSON.

Thread counts are pinned for every framework. OpenBLAS (NumPy) and OpenMP
read their thread variables once, when they load, so each thread count runs
in a child process started with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
MKL_NUM_THREADS and CONVC_NUM_THREADS set; a process whose variables already
say the requested count runs its cases itself. Every case is checked and
timed in one run of one process, its peers interleaved (see `timing`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from ir import ConvcError, InputError, UnsupportedError

from .cases import Case, file_cases, layer_cases, model_cases, op_cases, shape_cases
from .peak import measured_peak
from .peers import PEER_NAMES, PEERS
from .runner import (
    CaseResult,
    PeerResult,
    pin_threads,
    run_case,
    thread_environment,
    threads_pinned,
)
from .table import format_results
from .training import TrainingCase, run_training_case, training_cases

SUITES = ("layers", "shapes", "ops", "models", "training")
DEFAULT_THREADS = {
    "layers": (1,),
    "shapes": (1,),
    "ops": (1,),
    "models": (1, 2),
    "training": (1,),
    None: (1,),
}
#: Default pause before each timed block, ms, on one thread and on more. ONNX Runtime's
#: pool spins for tens of milliseconds after a run and took the second core from the next
#: block: MobileNetV2 at batch 1 on two threads, convc beside it 4.12 ms (min 3.36) with
#: 20 ms, 3.77 (3.53) with 300, 3.35 beside PyTorch alone; ONNX Runtime 4.29 / 4.41.
SETTLE_MS_ONE_THREAD, SETTLE_MS_THREADS = 20.0, 300.0

__all__ = ["SUITES", "CaseResult", "add_arguments", "command", "format_results", "run_cases"]


def run_cases(
    cases: list[Case],
    peers: list[str],
    threads: int,
    repeat: int,
    block_s: float = 0.05,
    settle_s: float = 0.0,
) -> list[CaseResult]:
    """Run every case in this process with `threads` threads per peer; progress on stderr."""
    pin_threads(threads)
    results = []
    for case in cases:
        print(f"bench: {case.name}, N={case.batch}, {threads} threads", file=sys.stderr)
        if isinstance(case, TrainingCase):
            results.append(run_training_case(case, peers, threads, repeat, block_s))
        else:
            results.append(run_case(case, peers, threads, repeat, block_s, settle_s))
    return results


def select_peers(requested: list[str] | None) -> list[str]:
    """Table columns: convc when the compiler exists, then the requested peers installed here."""
    unknown = [p for p in requested or () if p not in PEER_NAMES]
    if unknown:
        raise UnsupportedError(f"unknown peer '{unknown[0]}'; known: {', '.join(PEER_NAMES)}")
    wanted = ["convc", *(requested or PEER_NAMES)]
    missing = [p for p in wanted if not PEERS[p].available()]
    for name in missing:
        if name != "convc":
            print(f"bench: {name} is not installed; its column is left out", file=sys.stderr)
    return [p for p in wanted if p not in missing]


def suite_cases(args: argparse.Namespace) -> list[Case]:
    """The cases named by FILE or --suite, restricted by --batch and --only."""
    batches = args.batch
    if args.suite == "layers":
        cases = layer_cases(batches)
    elif args.suite == "shapes":
        cases = shape_cases(batches)
    elif args.suite == "ops":
        cases = op_cases(batches)
    elif args.suite == "models":
        cases = model_cases(batches)
    elif args.suite == "training":
        cases = training_cases(batches)
    else:
        cases = file_cases(args.file, batches or (1,))
    chosen = [c for c in cases if args.only is None or args.only.lower() in c.name.lower()]
    if not chosen:
        names = ", ".join(sorted({c.name for c in cases}))
        raise InputError(f"convc bench: --only {args.only!r} matches no case; cases: {names}")
    return chosen


def command(args: argparse.Namespace) -> int:
    """The `convc bench` command: run, print the tables, save JSON when asked."""
    if (args.file is None) == (args.suite is None):
        raise ConvcError(f"convc bench: give either a model FILE or --suite {'|'.join(SUITES)}")
    peers = select_peers(args.peers)
    peak = args.peak or measured_peak()  # before the peers' thread pools start
    source = "given" if args.peak else "measured"
    header = f"convc bench: {environment()}; FP32 FMA peak {peak:.3g} GFLOP/s a core ({source})\n"
    threads = args.threads or DEFAULT_THREADS[args.suite]
    cases = suite_cases(args)
    results = []
    for count in threads:
        if threads_pinned(count):
            block_s, settle_s = args.block_ms / 1e3, _settle_ms(args, count) / 1e3
            results += run_cases(cases, peers, count, args.repeat, block_s, settle_s)
        else:
            results += _run_child(args, count)
    order = {(c.name, c.batch): i for i, c in enumerate(cases)}
    results.sort(key=lambda r: (order[(r.case, r.batch)], r.threads))
    print(header)
    print(format_results(results, peers, peak), end="")
    if args.json:
        _save_json(args.json, results)
    return 0


def _save_json(path: str, results: list[CaseResult]) -> None:
    try:
        Path(path).write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    except OSError as error:
        raise InputError(f"convc bench: cannot write --json {path}: {error}") from error


def environment() -> str:
    """Date, CPU and library versions: what a recorded figure must be quoted with."""
    versions = [f"Python {platform.python_version()}"]
    for package in ("numpy", "torch", "onnxruntime", "onnx", "llvmlite"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{_cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    return f"{date}; {machine}; {', '.join(versions)}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run_child(args: argparse.Namespace, threads: int) -> list[CaseResult]:
    """Run the same benchmark for one thread count in a process started with it pinned."""
    env = {**os.environ, **thread_environment(threads)}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.json"
        argv = [sys.executable, "-m", "convc", "bench", *_forwarded(args, threads, out)]
        status = subprocess.run(argv, check=False, env=env, stdout=subprocess.DEVNULL).returncode
        if status != 0:
            raise ConvcError(f"convc bench: the {threads}-thread run failed (status {status})")
        return [_result(r) for r in json.loads(out.read_text())]


def _settle_ms(args: argparse.Namespace, threads: int) -> float:
    """`--settle-ms`, or its default for `threads` (SETTLE_MS_ONE_THREAD and _THREADS)."""
    if args.settle_ms is not None:
        return args.settle_ms
    return SETTLE_MS_ONE_THREAD if threads == 1 else SETTLE_MS_THREADS


def _forwarded(args: argparse.Namespace, threads: int, out: Path) -> list[str]:
    """The child's arguments: the parent's, one thread count, results to `out`."""
    argv = [args.file] if args.file else ["--suite", args.suite]
    argv += ["--threads", str(threads), "--repeat", str(args.repeat)]
    argv += ["--block-ms", str(args.block_ms), "--settle-ms", str(_settle_ms(args, threads))]
    argv += ["--json", str(out)]
    if args.batch:
        argv += ["--batch", ",".join(map(str, args.batch))]
    if args.peers:
        argv += ["--peers", ",".join(args.peers)]
    if args.only:
        argv += ["--only", args.only]
    return argv


def _result(data: dict) -> CaseResult:
    peers = {name: PeerResult(**fields) for name, fields in data.pop("peers").items()}
    one_thread = data.pop("one_thread", None)
    one_thread = PeerResult(**one_thread) if one_thread else None
    return CaseResult(**data, peers=peers, one_thread=one_thread)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,2; got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `convc bench` options, added to the CLI's subcommand parser."""
    parser.add_argument("file", nargs="?", help="a sample .py or an .onnx model")
    parser.add_argument("--suite", choices=SUITES, help="a built-in suite instead of a FILE")
    parser.add_argument(
        "--threads",
        type=_int_list,
        metavar="T,...",
        help="thread counts, e.g. 1,2 (default 1; models: 1,2)",
    )
    parser.add_argument(
        "--batch", type=_int_list, metavar="N,...", help="batch sizes (default: the suite's)"
    )
    parser.add_argument(
        "--repeat", type=_positive, default=7, help="timed blocks per peer (default 7)"
    )
    parser.add_argument(
        "--peers",
        type=_name_list,
        metavar="P,...",
        help=f"peers to time beside convc ({','.join(PEER_NAMES)})",
    )
    parser.add_argument("--only", metavar="TEXT", help="only cases whose name contains TEXT")
    parser.add_argument(
        "--block-ms", type=float, default=50.0, help="length of a timed block (default 50)"
    )
    parser.add_argument(
        "--settle-ms",
        type=float,
        default=None,
        help="pause before each timed block, so thread pools stop spinning (default 20 on "
        "one thread, 300 on more)",
    )
    parser.add_argument("--json", metavar="OUT.json", help="also save the raw results")
    parser.add_argument(
        "--peak",
        type=float,
        default=None,
        help="one core's FP32 peak in GFLOP/s for the %% column (default: measured on this "
        "core, convc/bench/peak.py)",
    )


def _positive(text: str) -> int:
    values = _int_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer; got {text!r}")
    return values[0]
