"""A conv layer compiled with schedule variants, timed beside ONNX Runtime in rounds, and
the rounds split by whether the machine ran at its usual speed.

Why a script: on the AVX2 guest of benchmarks/RESULTS.md convc's 3x3 kernels alternate
between stretches at their best speed and stretches 1.5x slower, while ONNX Runtime's
slow much less. A change can only be judged in both kinds of stretch, and they come and
go on their own: so every variant runs in every round (one process, fresh compiles, no
cache), each round starting with the next runner, rounds are spread over time, and the
summary gives each variant's median over all rounds, over the rounds where the runners
ran within 1.2x of their fastest rounds (the geometric mean of each runner's time over
its fastest: "fast") and over the others ("slow"). Every runner counts alike in that
split, and none always runs first after the pause: MobileNetV2 at batch 8 with the
default always first read 77.2 ms against a variant's 70.4 over all rounds, and rotated
65.06 against 65.18; split by the default's own times, its slow-round median is high by
construction.

A variant is `;`-separated assignments, each `module.NAME=expr` for a constant of
`convc.lower.schedule` (`S.`), `convc.lower.reduction_chunks` (`C.`),
`convc.lower.nest.reduction` (`R.`), `convc.lower.nest.hints` (`H.`) or
`convc.lower.input_blocks` (`I.`), or `field=expr` for a field of the register file's
`RegisterBlocks` (`registers.blocks()`); an empty variant is the default, which is
compiled first:

    python benchmarks/slow_rounds.py --layer 128:28 --rounds 200 \\
        "H.PREFETCH_MAX_USES=0" "max_column=4;min_column=4;wide_max_column=4"

`--case ResNet-18` (any case of `convc bench --suite models`, `--suite layers` or
`--suite shapes`, by name; `--model` is the same option) times that case instead of the
3x3 layer, and `--threads 2` runs every variant and ONNX Runtime on two threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

os.environ["CONVC_CACHE"] = "0"  # no code from disk: each variant's is compiled here

from convc import compiler
from convc.bench import cases, peers
from convc.lower import input_blocks, reduction_chunks, registers, schedule
from convc.lower.nest import hints, reduction

MODULES = {
    "S": schedule,
    "C": reduction_chunks,
    "R": reduction,
    "H": hints,
    "I": input_blocks,
}
SLOW = 1.2  # a round is slow when the runners took this much more than their best


def compiled(graph, variant: str, threads: int):
    """`graph` compiled for `threads` threads with `variant`'s assignments in force."""
    assignments = dict(part.split("=", 1) for part in variant.split(";") if part)
    constants = {k: eval(v) for k, v in assignments.items() if "." in k}
    fields = {k: eval(v) for k, v in assignments.items() if "." not in k}
    saved_constants = {k: getattr(MODULES[k[0]], k[2:]) for k in constants}
    which = "AVX512_BLOCKS" if registers.blocks() is registers.AVX512_BLOCKS else "AVX2_BLOCKS"
    saved_blocks = getattr(registers, which)
    try:
        for k, v in constants.items():
            setattr(MODULES[k[0]], k[2:], v)
        setattr(registers, which, dataclasses.replace(saved_blocks, **fields))
        return compiler._builder(graph, threads)[2](None)  # lowered afresh, past the caches
    finally:
        for k, v in saved_constants.items():
            setattr(MODULES[k[0]], k[2:], v)
        setattr(registers, which, saved_blocks)


def best_ms(run, calls: int) -> float:
    run()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help="assignments, as in the module doc")
    parser.add_argument("--layer", default="128:28", help="CHANNELS:SIZE of a 3x3 conv")
    parser.add_argument(
        "--case", "--model", help="a model or layer case of `convc bench` instead (ResNet-18, ...)"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--calls", type=int, default=10, help="calls a round (the best kept)")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between rounds")
    args = parser.parse_args()
    if args.case:
        listed = (cases.model_cases, cases.layer_cases, cases.shape_cases)
        known = {c.name: c for listing in listed for c in listing([args.batch])}
        if args.case not in known:
            parser.error(f"--case {args.case!r}: one of {', '.join(known)}")
        graph, inputs = known[args.case].build()
    else:
        channels, size = map(int, args.layer.split(":"))
        graph, inputs = cases._conv_layer(channels, channels, size, 3, 1, 1)(args.batch)
    runs = {}
    for variant in ["", *args.variants]:
        model = compiled(graph, variant, args.threads)
        runs[variant or "default"] = lambda model=model: model.run(inputs)
    runs["ONNX Runtime"] = peers.prepare(
        peers.PEERS["onnxruntime"], graph, inputs, args.threads
    ).run
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):  # the first runner after the pause rotates
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(best_ms(runs[name], args.calls))
        time.sleep(args.pause)
    slowness = [
        statistics.geometric_mean(ms[i] / min(ms) for ms in times.values())
        for i in range(args.rounds)
    ]
    every = list(range(args.rounds))
    fast = [i for i in every if slowness[i] < SLOW]
    slow = [i for i in every if slowness[i] >= SLOW]
    for label, rounds in (("all", every), ("fast", fast), ("slow", slow)):
        print(f"{label} rounds: {len(rounds)} of {args.rounds}")
        for name, ms in times.items():
            if rounds:
                print(f"  {statistics.median(ms[i] for i in rounds):8.3f} ms  {name}")


if __name__ == "__main__":
    main()
