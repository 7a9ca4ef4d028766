"""The training-step graph: forward, backward and optimizer update as one graph.

Stage: ir.Graph (a scalar loss, from tracing or given) -> ir.Graph (the step).
Built in three rewrites of the loss graph:

1. `masked_dropout`: every training-mode dropout becomes `mul(x, <node>:mask)`
   with a new float input holding keep / (1 - ratio). The mask is drawn in NumPy
   per step (see `step.dropout_masks`), so the interpreted and the compiled step
   see the same mask and their losses can be compared exactly; the op's own
   `seed` attribute is not used (the step's base seed, the step number and the
   mask's position pick the draw).
2. `convc.gradient` with respect to the optimized parameters.
3. `step_graph`: the optimized parameters and the batch-norm running
   statistics turn from parameters into inputs (they change every step, and
   compiled code bakes parameters in), the upstream gradient `grad_<loss>`
   becomes the constant 1, a training batch norm's running variance is made
   PyTorch's (unbiased batch variance, `_unbiased_running_var`), the
   optimizer's state and scalar inputs are declared and its update formulas
   appended.

Invariant of the result: inputs are the loss graph's inputs (data and dropout
masks), then the variables (each optimized parameter and running statistic),
then the per-batch scalars `<bn>:unbias`, then the optimizer's scalars and
states; outputs are the loss graph's outputs, then the
optimizer's updates. Every output named `<input>:updated` holds that input's
value for the next step; the caller writes it back.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
import sympy

from ir import Graph, GraphError, Node, UnsupportedError

from ..autodiff import gradient
from ..optim import UPDATED, Optimizer, add_elementwise
from ..texpr import access
from ..texpr.rules import axis_indices

MASK = ":mask"
UNBIAS = ":unbias"


def rebuild(
    graph: Graph,
    as_inputs: Collection[str] = (),
    as_consts: Mapping[str, np.ndarray] | None = None,
    rewrite: Callable[[Graph, Node], bool] | None = None,
) -> Graph:
    """A copy of `graph` where the params `as_inputs` become inputs (after the old inputs)
    and the inputs `as_consts` become constants; `rewrite(new, node)` may emit a node's
    replacement itself (returning True) instead of the plain copy."""
    as_consts = as_consts or {}
    new = Graph(graph.name)
    for name in graph.inputs:
        value = graph.values[name]
        if name in as_consts:
            new.add_const(name, np.asarray(as_consts[name], dtype=value.dtype))
        else:
            new.add_input(name, value.type.shape, value.dtype)
    for value in graph.values.values():
        if value.kind == "param" and value.name in as_inputs:
            new.add_input(value.name, value.type.shape, value.dtype)
        elif value.kind == "param":
            new.add_param(value.name, value.data, value.trainable)
        elif value.kind == "const":
            new.add_const(value.name, value.data)
    for node in graph.topological_nodes():
        if rewrite is None or not rewrite(new, node):
            new.add_node(node.op, node.inputs, node.attrs, name=node.name, outputs=node.outputs)
    new.set_outputs(*graph.outputs)
    return new


def masked_dropout(graph: Graph) -> tuple[Graph, dict[str, float]]:
    """(graph with training dropout as a product with mask inputs, {mask input: ratio})."""
    masks: dict[str, float] = {}

    def rewrite(new: Graph, node: Node) -> bool:
        if node.op != "dropout" or not node.attrs["training_mode"]:
            return False
        if len(node.outputs) > 1 and (
            graph.consumers(node.outputs[1]) or node.outputs[1] in graph.outputs
        ):
            raise UnsupportedError(
                f"dropout '{node.name}': its mask output '{node.outputs[1]}' is read; a training "
                "step supports dropout whose mask is not used"
            )
        x = node.inputs[0]
        mask = new.unique_name(node.name + MASK)
        new.add_input(mask, new.values[x].type.shape, new.values[x].dtype)
        new.add_node("mul", [x, mask], name=node.name, outputs=node.outputs[:1])
        masks[mask] = float(node.attrs["ratio"])
        return True

    return rebuild(graph, rewrite=rewrite), masks


def running_statistics(graph: Graph) -> list[str]:
    """The params whose next value is an output `<param>:updated` (batch-norm statistics)."""
    names = [o[: -len(UPDATED)] for o in graph.outputs if o.endswith(UPDATED)]
    return [n for n in names if n in graph.values and graph.values[n].kind == "param"]


def step_graph(graph: Graph, loss: str, optimizer: Optimizer, params: Collection[str]) -> Graph:
    """The training step of `graph` (dropout already masked); see the module docstring."""
    _check_loss(graph, loss)
    grads = gradient(graph, wrt=list(params), output=loss)
    variables = [*params, *running_statistics(graph)]
    seed = f"grad_{loss}"
    ones = {seed: np.ones((), np.float32)}
    step = rebuild(grads, as_inputs=variables, as_consts=ones, rewrite=_unbiased_running_var)
    optimizer.declare(step, params)
    new_outputs = []
    for param in params:
        new_outputs += optimizer.append_updates(step, param, _source(step, f"grad_{param}"))
    step.set_outputs(*graph.outputs, *new_outputs)
    step.verify()
    return step


def _unbiased_running_var(new: Graph, node: Node) -> bool:
    """Emit a training batch norm whose running variance is PyTorch's (see `bessel_inputs`).

    The op (ONNX's) updates running_var with the biased batch variance b:
    u = m * var + (1 - m) * b. PyTorch uses the unbiased one, b * n / (n - 1) for n
    values per channel, i.e. u + (u - m * var) / (n - 1); 1 / (n - 1) depends on the
    batch and comes in as the scalar input `<node>:unbias`.
    """
    if node.op != "batch_norm" or not node.attrs["training_mode"] or len(node.outputs) < 3:
        return False
    var, updated_var = node.inputs[4], node.outputs[2]
    biased = new.unique_name(updated_var + ".biased")
    new.add_node(
        node.op, node.inputs, node.attrs, name=node.name, outputs=(*node.outputs[:2], biased)
    )
    unbias = new.unique_name(node.name + UNBIAS)
    new.add_input(unbias, (), "float32")
    (c,) = axis_indices(1)
    momentum = sympy.Float(node.attrs["momentum"])
    growth = access(biased, (c,)) - momentum * access(var, (c,))
    body = access(biased, (c,)) + growth * access(unbias, ())
    add_elementwise(new, updated_var, new.values[var].type.shape, body)
    return True


def bessel_inputs(step: Graph) -> dict[str, str]:
    """{`<node>:unbias` input: the batch-norm input whose size per channel n gives 1/(n-1)}."""
    return {
        name: step.nodes[name[: -len(UNBIAS)]].inputs[0]
        for name in step.inputs
        if name.endswith(UNBIAS) and name[: -len(UNBIAS)] in step.nodes
    }


def _source(graph: Graph, name: str) -> str:
    """The value an identity chain ending in `name` copies.

    A texpr program names the values it reads inside its attributes, which graph
    passes that forward identities do not rewrite, so updates read the source.
    """
    producer = graph.producer(name)
    while producer is not None and producer.op == "identity":
        name = producer.inputs[0]
        producer = graph.producer(name)
    return name


def _check_loss(graph: Graph, loss: str) -> None:
    if loss not in graph.outputs:
        raise GraphError(
            f"training step of graph '{graph.name}': loss '{loss}' is not one of its outputs "
            f"{graph.outputs}"
        )
    loss_type = graph.values[loss].type
    if loss_type.rank != 0 or not loss_type.dtype.startswith("float"):
        raise GraphError(
            f"training step of graph '{graph.name}': loss '{loss}' is {loss_type}; "
            "expected a float scalar (use reduction='mean' or 'sum')"
        )
