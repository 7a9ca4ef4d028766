"""The `grad` stage's text: each op's derived gradient formulas.

Stage: ir.Graph -> str, for `convc show FILE --stage grad [--latex]`. The graph
is differentiated (first output, default `wrt`: float inputs and trainable
parameters) and every derived program is printed under the forward node and
input it differentiates, in the order the backward pass runs them.
"""

from __future__ import annotations

from convc.texpr import texpr_latex, texpr_str
from convc.texpr.serialize import program_from_str
from ir import ConvcError, Graph

from .gradient import gradient


def _lines(e, latex: bool) -> list[str]:
    """An expression; one split by residue is preceded by its derived form."""
    split = texpr_latex(e) if latex else texpr_str(e)
    if "derived" not in e.attrs:
        return [split]
    derived = e.attrs["derived_latex" if latex else "derived"]
    derived = f"{split.split(' = ', 1)[0]} = {derived}"
    return [derived, "  split by residue (no rejected taps):", split]


def grad_text(graph: Graph, latex: bool = False, output: str | None = None) -> str:
    """The derived gradient programs of `graph`, one block per (node, input)."""
    if not graph.outputs:
        raise ConvcError(f"graph '{graph.name}' has no outputs to differentiate")
    output = output or graph.outputs[0]
    gg = gradient(graph, output=output)
    blocks = [f"grad {graph.name}: d{output} flows in as grad_{output}"]
    for node in gg.topological_nodes():
        if node.op != "texpr":
            continue
        program = program_from_str(node.attrs["program"])
        result = program[-1]
        source = graph.nodes.get(result.node)
        title = f"# {node.name}"
        if source is not None:
            title += f": d/d({result.attrs['wrt']}) through {source.op} '{source.name}'"
        blocks.append("\n".join([title, *(line for e in program for line in _lines(e, latex))]))
    return "\n\n".join(blocks) + "\n"
