"""Schedule tuning: each kernel's tiles chosen by timing candidates in the whole model.

Stage: between lowering and the runtime. Input: the graph after passes, its fused groups,
the thread count and `build(table) -> CompiledModel` (from `convc.compiler`). Output: a
tuning table {`tuning_key`: {axis: tile}} for `assemble(graph, groups, tuning=table)`.

`space` finds the kernels with a choice (`lower.tuning.tile_choices`) and their
candidates; `search` times them in context with the per-kernel profile
(`CompiledModel.profile`); `store` caches the result on disk beside the code, so only
keys never tuned on this machine (at this thread count, with these compiler sources) are
measured. The tables are data: a tuned model computes the same function as an untuned
one, only its loops are blocked differently.
"""

from __future__ import annotations

from collections.abc import Callable

from ir import Graph

from .search import STATS, measure_inputs, search
from .space import MAX_CANDIDATES, Tunable, spread, tunables
from .store import read_table, table_path, write_table


def tuned_table(graph: Graph, groups, threads: int, build: Callable[[dict], object]) -> dict:
    """{key: tiles} for every tunable kernel of `graph`, from the cache or measured."""
    per_group = tunables(graph, groups)
    needed = {t.key for found in per_group.values() for t in found}
    if not needed:
        return {}
    path = table_path(threads)
    cached = read_table(path)
    known = {key: cached[key] for key in needed if key in cached}
    if len(known) < len(needed):
        found = search(per_group, known, build, measure_inputs(graph))
        write_table(path, found)
        known.update(found)
    return known


__all__ = [
    "MAX_CANDIDATES",
    "STATS",
    "Tunable",
    "measure_inputs",
    "search",
    "spread",
    "tunables",
    "tuned_table",
]
