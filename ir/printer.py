"""Deterministic text and Graphviz forms of a graph.

One line a node in topological order, with the inferred type of each output;
`%name` is a computed or input value, `@name` a parameter or constant.
Attributes equal to their neutral value (stride 1, pad 0, group 1, ...) are
left out so the line shows what is special about the node.
"""

from __future__ import annotations

from .ops import get_op

_NEUTRAL = {"strides": 1, "dilations": 1, "pads": 0, "output_padding": 0}
_SPATIAL_OPS = ("conv", "conv_transpose", "max_pool", "avg_pool")


def display_op(graph, node) -> str:
    """conv/pool ops print with their spatial rank (conv2d, max_pool3d)."""
    if node.op in _SPATIAL_OPS:
        return f"{node.op}{graph.values[node.inputs[0]].type.rank - 2}d"
    return node.op


def value_ref(graph, name) -> str:
    if name is None:
        return "_"
    return f"@{name}" if graph.values[name].is_constant else f"%{name}"


def _format_attr(value) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def shown_attrs(node) -> dict:
    """The attributes worth printing: set, and not equal to their default or neutral value."""
    schema = get_op(node.op).attrs
    shown = {}
    for key in sorted(node.attrs):
        value = node.attrs[key]
        if (
            value is None
            or not schema[key].shown
            or value == schema[key].default
            or key == "kernel_shape"
            and node.op.startswith("conv")
        ):
            continue
        if key in _NEUTRAL and all(v == _NEUTRAL[key] for v in value):
            continue
        shown[key] = value
    return shown


def node_text(graph, node) -> str:
    outs = ", ".join(f"%{o}: {graph.values[o].type}" for o in node.outputs)
    args = ", ".join(value_ref(graph, v) for v in node.inputs)
    attrs = " ".join(f"{k}={_format_attr(v)}" for k, v in shown_attrs(node).items())
    return f"{outs} = {display_op(graph, node)}({args})" + (f" {attrs}" if attrs else "")


def graph_text(graph) -> str:
    header = ", ".join(f"%{v}: {graph.values[v].type}" for v in graph.inputs)
    lines = [f"graph {graph.name}({header}) {{"]
    for value in graph.values.values():
        if value.is_constant:
            tag = "param" if value.kind == "param" else "const"
            frozen = "" if value.trainable or value.kind == "const" else " frozen"
            lines.append(f"  @{value.name}: {value.type} {tag}{frozen}")
    lines.extend(f"  {node_text(graph, n)}" for n in graph.topological_nodes())
    lines.append("  return " + ", ".join(f"%{o}" for o in graph.outputs))
    lines.append("}")
    return "\n".join(lines)


def _dot_id(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def graph_dot(graph) -> str:
    """Graphviz DOT: op nodes as boxes, inputs and outputs as ellipses, edges typed."""
    lines = [
        f"digraph {_dot_id(graph.name)} {{",
        "  rankdir=TB;",
        "  node [shape=box, fontname=monospace];",
    ]
    for v in graph.inputs:
        lines.append(
            f'  {_dot_id("in:" + v)} [shape=ellipse, label="{v}\\n{graph.values[v].type}"];'
        )
    for node in graph.topological_nodes():
        attrs = " ".join(f"{k}={_format_attr(v)}" for k, v in shown_attrs(node).items())
        label = f"{node.name}\\n{display_op(graph, node)}" + (f"\\n{attrs}" if attrs else "")
        lines.append(f'  {_dot_id(node.name)} [label="{label}"];')
        for v in node.present_inputs:
            value = graph.values[v]
            source = {"input": "in:" + v, "node": value.producer}.get(value.kind)
            if source is not None:
                lines.append(f'  {_dot_id(source)} -> {_dot_id(node.name)} [label="{value.type}"];')
    for v in graph.outputs:
        lines.append(f'  {_dot_id("out:" + v)} [shape=ellipse, label="{v}"];')
        lines.append(
            f"  {_dot_id(graph.values[v].producer or 'in:' + v)} -> {_dot_id('out:' + v)};"
        )
    lines.append("}")
    return "\n".join(lines)
