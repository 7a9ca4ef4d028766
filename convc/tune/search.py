"""The measurement: every candidate timed inside the whole model, the fastest kept.

Stage: drives lowering and the runtime through `build(table) -> CompiledModel` (given by
`convc.compiler`). Input: the `Tunable` schedules per group (`space`) and the choices
already known (from the cache). Output: {`tuning_key`: {axis: tile}} for every other key.

Round r compiles the whole model with every searched key on its r-th candidate (keys with
fewer candidates on their default), so each kernel is timed with its real neighbours in
the caches and one compile serves every key. The rounds' models are then profiled in
turn, `REPEAT` times, so that a change in the machine's load hits every round alike. A
key's time in a round is the sum of the medians of the kernels whose schedules it tiles
(kernels sharing a key share the choice). A candidate replaces the default only when it is
`MARGIN` (and `MIN_GAIN_MS`) faster: timing noise alone must not move a schedule.

Inputs are seeded normal floats (integer and bool inputs zero) with every run-time symbol
bound to 1: the tuning is for batch 1, and a key names the symbolic shape, so it applies
at every batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convc.nn.examples import random_inputs
from ir import Graph

from .space import Tunable

REPEAT = 15
#: A candidate must beat the default by this fraction and by MIN_GAIN_MS (a few-microsecond
#: kernel's run-to-run noise is larger than 3% of it).
MARGIN, MIN_GAIN_MS = 0.03, 0.001
#: Counts of searches and compiled rounds, so tests can tell a cache hit measured nothing.
STATS = {"searches": 0, "rounds": 0}


def measure_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for `graph` with every run-time symbol bound to 1."""
    return random_inputs(graph, graph.inputs, dict.fromkeys(graph.symbols, 1), seed)


def search(
    per_group: dict[tuple[str, ...], list[Tunable]],
    known: dict,
    build: Callable[[dict], object],
    inputs: dict,
) -> dict:
    """{key: tiles} for every key of `per_group` not in `known` (see the module docstring)."""
    searched = {t.key: t for tunables in per_group.values() for t in tunables}
    searched = {key: t for key, t in searched.items() if key not in known}
    if not searched:
        return {}
    STATS["searches"] += 1
    rounds = max(len(t.candidates) for t in searched.values())
    models = [build({**known, **_round_table(searched, r)}) for r in range(rounds)]
    STATS["rounds"] += rounds
    nodes, ms = _kernel_times(models, inputs)
    chosen = {}
    for key, tunable in searched.items():
        kernels = [k for k, computed in enumerate(nodes) if _tiles(per_group, computed, key)]
        times = ms[: len(tunable.candidates), kernels].sum(axis=1)
        best = int(np.argmin(times))
        faster = times[0] - times[best] > max(MARGIN * times[0], MIN_GAIN_MS)
        chosen[key] = tunable.candidates[best if faster else 0]
    return chosen


def _round_table(searched: dict[str, Tunable], r: int) -> dict:
    return {key: t.candidates[r if r < len(t.candidates) else 0] for key, t in searched.items()}


def _tiles(per_group: dict, nodes: tuple[str, ...], key: str) -> bool:
    """Whether the kernel computing `nodes` has a schedule tiled by `key` (a kernel may
    compute two groups: a conv and the pool or depthwise conv fused into it,
    `lower.row_fusion`)."""
    groups = [tunables for group, tunables in per_group.items() if set(group) <= set(nodes)]
    return any(t.key == key for tunables in groups for t in tunables)


def _kernel_times(models: list, inputs: dict) -> tuple[list, np.ndarray]:
    """(each kernel's nodes, rounds x kernels median ms), the models profiled in turn, one
    run each, `REPEAT` times."""
    runs = [[] for _ in models]
    for _ in range(REPEAT):
        for r, model in enumerate(models):
            runs[r].append(model.profile(inputs, repeat=1).kernels)
    nodes = [k.nodes for k in runs[0][0]]
    ms = [[[k.ms for k in kernels] for kernels in per_round] for per_round in runs]
    return nodes, np.median(np.asarray(ms), axis=1)
