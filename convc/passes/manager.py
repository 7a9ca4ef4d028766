"""Named, pure, verified graph passes and the pipeline that runs them.

Stage: graph -> graph. A `Pass` wraps a function `fn(graph) -> graph` that must
not mutate its argument (passes build a new graph, see `rewrite.Rewriter`).
`run_passes` verifies the graph after every pass, so a pass that leaves
malformed IR is caught at its own name, and prints `;; after <pass>` dumps to
stderr when `CONVC_DUMP` names the pass or the `passes` stage.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ir


def dump_requested(stage: str) -> bool:
    """Whether `CONVC_DUMP` (a comma-separated list of stage names) names `stage`."""
    wanted = {s.strip() for s in os.environ.get("CONVC_DUMP", "").split(",")}
    return stage in wanted or "all" in wanted


def dump(stage: str, text: str) -> None:
    """Print one stage's text form to stderr under a `;; after <stage>` header."""
    print(f";; after {stage}\n{text}", file=sys.stderr)


@dataclass(frozen=True)
class Pass:
    """A named graph-to-graph function; `run` verifies what it returns."""

    name: str
    fn: Callable[[ir.Graph], ir.Graph]

    def run(self, graph: ir.Graph) -> ir.Graph:
        result = self.fn(graph)
        try:
            result.verify()
        except ir.ConvcError as error:
            raise ir.GraphError(f"pass '{self.name}' left an invalid graph: {error}") from error
        return result


def run_passes(graph: ir.Graph, passes: Sequence[Pass], trace: list | None = None) -> ir.Graph:
    """Apply `passes` in order; the input graph is left untouched.

    `trace`, when given, receives `(pass name, graph text)` after every pass (the
    `passes` stage of `convc show`).
    """
    for p in passes:
        graph = p.run(graph)
        if dump_requested(p.name) or dump_requested("passes"):
            dump(p.name, graph.to_text())
        if trace is not None:
            trace.append((p.name, graph.to_text()))
    return graph


def trace_text(trace: list) -> str:
    """The `;; after <pass>` dumps of a trace, in order."""
    return "\n\n".join(f";; after {name}\n{text}" for name, text in trace)
