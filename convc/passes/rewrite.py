"""Rebuilding a graph node by node: the mechanism every rewriting pass uses.

A `Rewriter` starts a fresh `ir.Graph` with the old graph's name, inputs and
constant values, then lets a pass re-emit the old nodes in topological order,
replacing, dropping or renaming as it goes. Re-emitting goes through
`Graph.add_node`, so every rewritten node is shape-checked again, and the old
graph is never mutated (passes stay pure). `alias(old, new)` redirects later
uses of a value; graph outputs keep their names (a pass that would rename an
output must keep a node that produces it under that name).
"""

from __future__ import annotations

import ir


class Rewriter:
    """Copy `graph` into a new graph, letting the caller rewrite nodes on the way."""

    def __init__(self, graph: ir.Graph):
        self.old = graph
        self.new = ir.Graph(graph.name)
        self._alias: dict[str, str] = {}
        for name in graph.inputs:
            value = graph.values[name]
            self.new.add_input(name, value.type.shape, value.dtype)
        for value in graph.values.values():
            if value.kind == "param":
                self.new.add_param(value.name, value.data, value.trainable)
            elif value.kind == "const":
                self.new.add_const(value.name, value.data)

    def resolve(self, name: str | None) -> str | None:
        """The new graph's name for an old value (after aliases)."""
        while name in self._alias:
            name = self._alias[name]
        return name

    def alias(self, old: str, new: str) -> None:
        """Make later uses of `old` read `new` instead."""
        self._alias[old] = new

    def emit(self, node: ir.Node, **changes) -> list[ir.Value]:
        """Re-add `node` (inputs resolved), with optional op/inputs/attrs/name/outputs changes."""
        inputs = changes.get("inputs", node.inputs)
        return self.new.add_node(
            changes.get("op", node.op),
            [self.resolve(v) for v in inputs],
            changes.get("attrs", node.attrs),
            name=changes.get("name", node.name),
            outputs=changes.get("outputs", node.outputs),
        )

    def add_param(self, stem: str, data, trainable: bool = True) -> str:
        """A new parameter under a fresh name derived from `stem`."""
        name = self.new.unique_name(stem)
        while name in self.old.values or name in self.old.nodes:
            name = self.new.unique_name(name + "_")
        self.new.add_param(name, data, trainable)
        return name

    def finish(self) -> ir.Graph:
        """Set the outputs (resolved through aliases) and drop constants nobody reads."""
        outputs = [self.resolve(v) for v in self.old.outputs]
        assert outputs == self.old.outputs, "a pass renamed a graph output"
        self.new.set_outputs(*outputs)
        used = {v for n in self.new.nodes.values() for v in n.present_inputs} | set(outputs)
        for name in [v.name for v in self.new.values.values() if v.is_constant]:
            if name not in used:
                del self.new.values[name]
        return self.new


def single_use(graph: ir.Graph, value: str) -> ir.Node | None:
    """The only consumer of `value`, or None when it has several or is a graph output."""
    if value in graph.outputs:
        return None
    consumers = graph.consumers(value)
    return consumers[0] if len(consumers) == 1 else None
