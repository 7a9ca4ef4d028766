"""Epilogue fusion decisions: which nodes run inside which kernel.

Stage: graph -> list[FusedGroup] (the `fused` stage; the graph is unchanged).

Every node ends up in exactly one group. A group has an anchor (a conv,
gemm, matmul, pool, elementwise or batch-norm node: anything whose lowering
ends in one store per output element) and an epilogue: a chain of
elementwise nodes applied to the anchor's result before it is stored, so the
intermediate values never reach memory. A node joins the chain when

- it reads the chain's current value, which nothing else reads and which is
  not a graph output;
- its result has the chain value's shape (other operands broadcast *to* it:
  a bias, a per-channel scale, a residual of the same shape);
- it is an elementwise op (activations, clip, prelu, add/sub/mul/div,
  inference batch norm).

Such chains cover conv + bias + activation + residual add + activation, and
chains of elementwise ops. Because the chain's intermediate values have a
single reader, any other operand of a chain node cannot depend on them, so a
group runs correctly at the position of its last node (the groups' order).
"""

from __future__ import annotations

from dataclasses import dataclass

import ir
from ir.ops.elementwise import UNARY
from ir.printer import node_text

ELEMENTWISE = (*UNARY, "add", "sub", "mul", "div", "prelu", "clip")
ANCHORS = (
    *ELEMENTWISE,
    "conv",
    "conv_transpose",
    "gemm",
    "matmul",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "global_max_pool",
    "batch_norm",
)


@dataclass(frozen=True)
class FusedGroup:
    """One kernel's worth of nodes: `anchor` then `epilogue`, storing only `output`."""

    anchor: str
    epilogue: tuple[str, ...]
    output: str

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.anchor, *self.epilogue)

    @property
    def name(self) -> str:
        """The kernel's name: the anchor, plus the last epilogue node when there is one."""
        return self.anchor if not self.epilogue else f"{self.anchor}__{self.epilogue[-1]}"


def is_epilogue_op(node: ir.Node) -> bool:
    if node.op == "batch_norm":
        return not node.attrs["training_mode"]
    return node.op in ELEMENTWISE


def _takes_epilogue(node: ir.Node) -> bool:
    if len(node.outputs) != 1:
        return False
    return node.op in ANCHORS and (node.op != "batch_norm" or is_epilogue_op(node))


def _next_in_chain(graph: ir.Graph, value: str) -> ir.Node | None:
    if value in graph.outputs:
        return None
    consumers = graph.consumers(value)
    if len(consumers) != 1 or not is_epilogue_op(consumers[0]):
        return None
    node = consumers[0]
    if graph.type_of(node.outputs[0]).shape != graph.type_of(value).shape:
        return None
    return node


def plan_fusion(graph: ir.Graph) -> list[FusedGroup]:
    """Partition the graph's nodes into fused groups, in a valid execution order."""
    groups, absorbed = [], set()
    order = graph.topological_nodes()
    position = {node.name: index for index, node in enumerate(order)}
    for node in order:
        if node.name in absorbed:
            continue
        chain, value = [], node.outputs[0]
        nxt = _next_in_chain(graph, value) if _takes_epilogue(node) else None
        while nxt is not None and nxt.name not in absorbed:
            chain.append(nxt.name)
            absorbed.add(nxt.name)
            value = nxt.outputs[0]
            nxt = _next_in_chain(graph, value)
        groups.append(FusedGroup(node.name, tuple(chain), value))
    return sorted(groups, key=lambda g: max(position[n] for n in g.nodes))


def fused_text(graph: ir.Graph, groups: list[FusedGroup]) -> str:
    """The `fused` stage: one block a kernel, its nodes in the order they are applied."""
    header = ", ".join(f"%{v}: {graph.values[v].type}" for v in graph.inputs)
    lines = [f"fused {graph.name}({header}) {{"]
    for group in groups:
        lines.append(f"  kernel {group.name} -> %{group.output}")
        for name in group.nodes:
            tag = "  ; epilogue" if name in group.epilogue else ""
            lines.append(f"    {node_text(graph, graph.nodes[name])}{tag}")
    lines.append("  return " + ", ".join(f"%{o}" for o in graph.outputs))
    lines.append("}")
    return "\n".join(lines)
