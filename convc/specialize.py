"""Compiling graphs whose shapes depend on run-time input values.

Stage: the public entry, beside `convc.compiler`. A reshape or pad whose
target shape arrives as a graph input (ONNX allows it) has output dims that no
input *shape* fixes, so no program can be planned ahead of time. Such graphs
compile lazily: each run validates the inputs, turns the shape-giving inputs
into constants (`Graph.with_constants`), and compiles that specialised graph
once per distinct value (cached), then runs it on the remaining inputs. A
model whose target shapes never change therefore compiles once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from ir import Graph, GraphError
from ir.binding import bind_inputs


def shape_inputs(graph: Graph) -> tuple[str, ...]:
    """Integer graph inputs read by a node whose output dims no input shape determines."""
    known = graph.symbols
    found = []
    for node in graph.topological_nodes():
        unknown = any(graph.values[out].type.free_symbols - known for out in node.outputs)
        if not unknown:
            continue
        for name in node.present_inputs[1:]:
            value = graph.values[name]
            if value.kind == "input" and value.dtype.startswith("int") and name not in found:
                found.append(name)
    return tuple(found)


class ShapeSpecializedModel:
    """A graph compiled once per distinct value of its shape-giving inputs."""

    def __init__(self, graph: Graph, specialize_on: tuple[str, ...], threads: int, compile_fn):
        self.graph = graph
        self.specialize_on = specialize_on
        self.threads = threads
        self._compile = compile_fn
        self._models: dict = {}
        self._latest = None
        self._lock = threading.Lock()

    def run(self, inputs: Mapping) -> dict[str, np.ndarray]:
        """Outputs by name, like `CompiledModel.run`; compiles on a new shape-input value."""
        bind_inputs(self.graph, inputs)
        fixed = {name: np.array(inputs[name]) for name in self.specialize_on}
        key = tuple((name, array.shape, array.tobytes()) for name, array in fixed.items())
        with self._lock:
            model = self._models.get(key)
        if model is None:
            model = self._compile(self.graph.with_constants(fixed), self.threads)
            with self._lock:
                self._models[key] = model
        self._latest = model
        return model.run({k: v for k, v in inputs.items() if k not in fixed})

    __call__ = run

    def source(self, stage: str) -> str:
        """A stage's text for the latest specialisation (there is none before a run)."""
        return self._latest_model().source(stage)

    def memory_report(self, **symbols: int):
        return self._latest_model().memory_report(**symbols)

    def _latest_model(self):
        if self._latest is None:
            names = ", ".join(self.specialize_on)
            raise GraphError(
                f"graph '{self.graph.name}' is compiled per value of its shape inputs ({names}); "
                "run it once before asking for its code"
            )
        return self._latest

    def __repr__(self) -> str:
        names = ", ".join(self.specialize_on)
        return (
            f"<ShapeSpecializedModel {self.graph.name}: specialised on {names}, "
            f"{len(self._models)} compiled, threads={self.threads}>"
        )
