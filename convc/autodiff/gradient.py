"""convc.gradient: reverse-mode differentiation of a graph into a new graph.

Stage: ir.Graph -> ir.Graph. The result is the forward graph plus, for every
node on a path from a `wrt` value to the output (in reverse topological order),
one `texpr` node per differentiated input whose program `program.node_adjoint`
derives from the node's tensor expressions; gradients of a value read by several
nodes are summed with `add` nodes. It is an ordinary graph: the interpreter runs
it (the `texpr` op is evaluated from its program) and it prints and verifies
like any other.

Names follow DESIGN.md: the upstream gradient is the input `grad_<output>`, the
results are the outputs `grad_<name>` (names kept verbatim), after the original
outputs. Intermediate values are named `d_<node>.<input>`.
"""

from __future__ import annotations

import sympy

from convc.texpr import TensorExpr, texpr_of
from convc.texpr.expr import rename_tensors
from convc.texpr.rules import axis_indices
from convc.texpr.serialize import program_formula, program_to_str
from ir import ConvcError, Graph, GraphError
from ir.types import FLOAT_DTYPES

from .program import node_adjoint


def gradient(graph: Graph, wrt=None, output: str | None = None) -> Graph:
    """The graph computing `graph`'s outputs and d(output)/d(name) for every name in `wrt`.

    `wrt` defaults to every float input and trainable parameter; `output` to the
    only output. Inputs of the result: the original ones plus `grad_<output>` (the
    upstream gradient, shaped like the output). Outputs: the original ones plus
    `grad_<name>` per name in `wrt`, shaped like that value (zeros when it does
    not affect the output).
    """
    output = _output_name(graph, output)
    wrt = _wrt_names(graph, wrt)
    g = graph.copy()
    seed = f"grad_{output}"
    for name in (seed, *(f"grad_{w}" for w in wrt)):
        if name in graph.values or name in graph.nodes:
            raise GraphError(f"gradient of graph '{graph.name}': the name '{name}' is already used")
    out = graph.values[output].type
    g.add_input(seed, out.shape, out.dtype)
    grads = _backward(graph, g, output, seed, _depends_on(graph, wrt))
    for w in wrt:
        _final_gradient(g, graph, w, grads.get(w, []))
    g.set_outputs(*graph.outputs, *(f"grad_{w}" for w in wrt))
    return g


def _output_name(graph: Graph, output) -> str:
    if output is None:
        if len(graph.outputs) != 1:
            raise ConvcError(
                f"gradient of graph '{graph.name}': it has outputs {graph.outputs}; "
                "name the one to differentiate with output="
            )
        return graph.outputs[0]
    if output not in graph.outputs:
        raise ConvcError(
            f"gradient of graph '{graph.name}': output='{output}' is not one of {graph.outputs}"
        )
    if graph.values[output].dtype not in FLOAT_DTYPES:
        raise ConvcError(f"gradient of graph '{graph.name}': output '{output}' is not a float")
    return output


def _wrt_names(graph: Graph, wrt) -> list[str]:
    if wrt is None:
        return [
            v.name
            for v in graph.values.values()
            if v.dtype in FLOAT_DTYPES
            and (v.kind == "input" or (v.kind == "param" and v.trainable))
        ]
    names = [wrt] if isinstance(wrt, str) else list(wrt)
    for name in names:
        value = graph.values.get(name)
        if value is None or value.kind == "node":
            raise ConvcError(
                f"gradient of graph '{graph.name}': wrt name '{name}' is not an input, "
                "parameter or constant of the graph"
            )
        if value.dtype not in FLOAT_DTYPES:
            raise ConvcError(
                f"gradient of graph '{graph.name}': wrt name '{name}' has dtype {value.dtype}; "
                "only float values have gradients"
            )
    if len(set(names)) != len(names):
        raise ConvcError(f"gradient of graph '{graph.name}': wrt {names} repeats a name")
    return names


def _depends_on(graph: Graph, wrt) -> set[str]:
    """The values computed from any of `wrt` (and `wrt` themselves)."""
    found = set(wrt)
    for node in graph.topological_nodes():
        if any(v in found for v in node.present_inputs):
            found.update(node.outputs)
    return found


def _backward(graph: Graph, g: Graph, output: str, seed: str, needed: set) -> dict:
    """Walk the nodes in reverse; returns value -> list of gradient value names in g."""
    grads: dict[str, list[str]] = {output: [seed]}
    for node in reversed(graph.topological_nodes()):
        upstream = {o: _summed(g, grads[o]) for o in node.outputs if grads.get(o)}
        if not upstream:
            continue
        inputs = [v for v in dict.fromkeys(node.present_inputs) if v in needed]
        if not inputs:
            continue
        exprs = texpr_of(graph, node)
        for x in inputs:
            value = _add_adjoint(g, graph, node, exprs, x, upstream)
            if value is not None:
                grads.setdefault(x, []).append(value)
    return grads


def _add_adjoint(g, graph, node, exprs, x, upstream) -> str | None:
    """Add the texpr node computing d/dx through `node`; its value name, or None."""
    name = g.unique_name(f"d_{node.name}.{x}")
    x_type = graph.values[x].type
    program = node_adjoint(exprs, x, x_type.shape, upstream, name)
    if program is None:
        return None
    _add_texpr(g, name, program)
    return name


def _add_texpr(g: Graph, name: str, program: list[TensorExpr]) -> None:
    """Add a texpr node running `program`; its inputs are the values it reads, plus graph
    inputs that carry any dim symbol (such as a symbolic H inside ceil(H/2)) that those
    values' shapes do not bind by themselves."""
    program = _private_names(g, program)
    defined = {e.name for e in program}
    reads = sorted({r for e in program for r in e.reads} - defined)
    reads += _dim_carriers(g, reads, program)
    shapes = {r: g.values[r].type.shape for r in reads}
    result = program[-1]
    g.add_node(
        "texpr",
        reads,
        {
            "shape": result.shape,
            "dtype": result.dtype,
            "program": program_to_str(program, shapes),
            "formula": program_formula(program),
        },
        name=name,
        outputs=[name],
    )


def _private_names(g: Graph, program: list[TensorExpr]) -> list[TensorExpr]:
    """Rename the program's temporaries that share a name with a value or node of g."""
    taken = set(g.values) | set(g.nodes) | {e.name for e in program}
    mapping = {}
    for e in program[:-1]:
        if e.name in g.values or e.name in g.nodes:
            k = 1
            while f"{e.name}_{k}" in taken:
                k += 1
            mapping[e.name] = f"{e.name}_{k}"
            taken.add(mapping[e.name])
    return rename_tensors(program, mapping) if mapping else program


def _dim_carriers(g: Graph, reads: list[str], program: list[TensorExpr]) -> list[str]:
    needed = set()
    for e in program:
        parts = (*e.shape, *e.reduce_shape, e.body, e.condition, e.epilogue, e.otherwise)
        own = set(e.indices) | set(e.reduce_indices)
        needed |= {s for p in parts if p is not None for s in p.free_symbols} - own
    bound = {d for r in reads for d in g.values[r].type.shape if isinstance(d, sympy.Symbol)}
    carried = {d: v for v in reversed(g.inputs) for d in g.values[v].type.shape}
    carriers = []
    for symbol in sorted((needed & set(carried)) - bound, key=str):
        carrier = carried[symbol]
        if carrier not in reads + carriers:
            carriers.append(carrier)
    return carriers


def _summed(g: Graph, pieces: list[str]) -> str:
    """One value holding the sum of gradient pieces (an add chain when several)."""
    total = pieces[0]
    for piece in pieces[1:]:
        (value,) = g.add_node("add", [total, piece], name=g.unique_name(f"{total}+"))
        total = value.name
    pieces[:] = [total]
    return total


def _final_gradient(g: Graph, graph: Graph, w: str, pieces: list[str]) -> None:
    """The output `grad_<w>`: the summed pieces, or zeros when w does not reach the output."""
    name = f"grad_{w}"
    w_type = graph.values[w].type
    if pieces:
        g.add_node("identity", [_summed(g, pieces)], name=name, outputs=[name])
        return
    idx = axis_indices(len(w_type.shape))
    zeros = TensorExpr(name, idx, w_type.shape, sympy.Integer(0), dtype=w_type.dtype, op="grad")
    _add_texpr(g, name, [zeros])
