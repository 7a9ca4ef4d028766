"""The search space: which kernels have tiles to tune, and the candidates tried for each.

Stage: after fusion, beside lowering. Input: the graph after passes and its fused groups.
Output: per group (named by its nodes, as its kernel's comment names them) the `Tunable`
schedules of its kernel: a `tuning_key` and candidate tiles, the lowering's default first.

The schedules are the ones `assemble` will pick (`lower.group`'s planning with an empty
tuning table); `tile_choices` says which sizes are valid for each. Each key keeps at most
`MAX_CANDIDATES`: the default, its nearest smaller and larger neighbours (the likeliest
improvements), and sizes spread evenly over the rest of the range (to catch a default
that is far off, as for unusual shapes). Axes whose extent is a run-time symbol (a dense
layer's block of batch rows) are left alone: measured at batch 1 every block size does the
same single row, so a choice there would be noise.

`plan_group` is the lowering's own planning step, called here so that the schedules
tuned are exactly the ones lowered (tests check that every key found here is one the
lowering looks up).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from convc.lower.group import plan_group
from convc.lower.layout import choose_layouts, group_texprs
from convc.lower.tuning import tile_choices, tuning_key
from ir import Graph

MAX_CANDIDATES = 6


@dataclass(frozen=True)
class Tunable:
    """One schedule with a choice: `candidates` are {axis: tile}, the default first."""

    key: str
    candidates: tuple[dict, ...]


def tunables(graph: Graph, groups) -> dict[tuple[str, ...], list[Tunable]]:
    """{group nodes: [Tunable]} for every fused group, in group order."""
    texprs = group_texprs(graph, groups)
    layouts = choose_layouts(graph, groups, texprs)
    found = {}
    for group in groups:
        planned, _ = plan_group(graph, group, layouts, {}, texprs)
        schedules = [_tunable(te, schedule) for te, schedule in planned]
        found[tuple(group.nodes)] = [t for t in schedules if t is not None]
    return found


def _tunable(te, schedule) -> Tunable | None:
    extents = dict(zip(map(str, te.indices), map(sympy.sympify, te.shape)))
    choices = {
        axis: sizes
        for axis, sizes in tile_choices(te, schedule).items()
        if not extents[axis].free_symbols
    }
    if not choices:
        return None
    default = {axis: schedule.tiles[axis] for axis in choices}
    per_axis = max(1, (MAX_CANDIDATES - 1) // len(choices))
    candidates = [default]
    for axis, sizes in choices.items():
        candidates += [{**default, axis: size} for size in spread(sizes, default[axis], per_axis)]
    return Tunable(tuning_key(te), tuple(candidates)) if len(candidates) > 1 else None


def spread(sizes: list[int], default: int, count: int) -> list[int]:
    """Up to `count` of `sizes` other than `default`: its two neighbours, then sizes evenly
    spaced inside the range of the others, endpoints left out (a block of one column or
    of every register is rarely best), ascending."""
    others = [s for s in sizes if s != default]
    picked = [s for s in others if s < default][-1:] + [s for s in others if s > default][:1]
    picked = picked[:count]
    rest = [s for s in others if s not in picked]
    wanted = min(count - len(picked), len(rest))
    step = (len(rest) + 1) / (wanted + 1)  # >= 1: distinct positions
    picked += [rest[round((k + 1) * step) - 1] for k in range(wanted)]
    return sorted(set(picked))
