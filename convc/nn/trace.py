"""Tracing: run a module or function on symbolic inputs and return the graph.

Stage: DSL -> ir. Input: a `Module` (or any callable taking Tensors) and the
`convc.Input` tensors to call it on. Output: a verified `ir.Graph` whose
inputs are those tensors (in order), whose params are the module's
parameters and buffers that the computation reads (named as in its
state_dict), and whose outputs are what the call returned: a Tensor, a
tuple/list of Tensors, or a dict (each value is renamed to its key with an
identity node when the names differ). Batch-norm layers traced in train mode
add their updated running statistics as further outputs, after these.
"""

from __future__ import annotations

from ir import Graph, GraphError

from .module import Module
from .tensor import Builder, Tensor


def trace(model_or_fn, *inputs: Tensor, name: str | None = None) -> Graph:
    """Build the graph of `model_or_fn(*inputs)`; see the module docstring."""
    if not callable(model_or_fn):
        raise GraphError(f"trace: {model_or_fn!r:.60} is neither a Module nor a function")
    graph = Graph(name or _default_name(model_or_fn))
    builder = Builder(graph)
    if isinstance(model_or_fn, Module):
        builder.set_root(model_or_fn)
    result = model_or_fn(*(_rebind(builder, i, t) for i, t in enumerate(inputs)))
    outputs = _output_names(builder, result)
    graph.set_outputs(*outputs, *builder.side_outputs)
    graph.verify()
    return graph


def _default_name(model_or_fn) -> str:
    if isinstance(model_or_fn, Module):
        return type(model_or_fn).__name__.lower()
    return getattr(model_or_fn, "__name__", "graph")


def _rebind(builder: Builder, index: int, tensor) -> Tensor:
    """Declare an input of the new graph mirroring a `convc.Input` tensor."""
    if not isinstance(tensor, Tensor) or tensor.graph.values[tensor.name].kind != "input":
        raise GraphError(
            f"trace: argument {index} is {tensor!r:.60}; expected a tensor made by convc.Input"
        )
    value = builder.graph.add_input(tensor.name, tensor.shape, tensor.dtype)
    return Tensor(builder, value.name)


def _output_names(builder: Builder, result) -> list[str]:
    if isinstance(result, dict):
        names = []
        for key, tensor in result.items():
            _check_output(builder, tensor, key)
            if tensor.name != key:
                tensor = builder.emit("identity", [tensor], name=str(key))[0]
            names.append(tensor.name)
        return names
    items = result if isinstance(result, (tuple, list)) else [result]
    for index, tensor in enumerate(items):
        _check_output(builder, tensor, index)
    return [t.name for t in items]


def _check_output(builder: Builder, tensor, key) -> None:
    if not isinstance(tensor, Tensor):
        raise GraphError(
            f"trace: output {key!r} is {type(tensor).__name__} {tensor!r:.60}; expected a Tensor"
        )
    builder.check_owns(tensor, f"trace: output {key!r}")
