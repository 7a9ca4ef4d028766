"""Reverse mode over one node's tensor expressions: the program computing dL/d(one input).

Stage: (a node's forward TensorExprs, the input to differentiate, the names of the
upstream gradients of its outputs) -> list[TensorExpr], carried by one `texpr`
node of the gradient graph.

The forward expressions are walked in reverse; each one's gradient (the sum of
the parts its readers contributed) is pulled back through `adjoint.adjoint`
into the tensors it reads: the input itself and the node's temporaries (softmax
sums, batch statistics, ...). Forward temporaries the adjoints read are
recomputed at the head of the program (they are not graph values); forward
outputs are read from the graph. Steps that do not lead to the result are
pruned, so the program is the minimal one.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc.texpr import TensorExpr, access
from convc.texpr.rules import axis_indices

from .adjoint import adjoint


def _total(name: str, pieces: list[str], shape, dtype, node: str) -> TensorExpr:
    """`name[idx] = Σ pieces[idx]`: the sum of gradient parts of one tensor."""
    idx = axis_indices(len(shape))
    body = sympy.Add(*(access(p, idx) for p in pieces))
    return TensorExpr(
        name,
        idx,
        shape,
        body,
        dtype=dtype,
        op="grad",
        node=node,
        role="temp",
        attrs={"family": "grad"},
    )


def node_adjoint(exprs, target, target_shape, upstream: dict, name: str) -> list[TensorExpr] | None:
    """The program whose last expression, `name`, is dL/d target through these expressions.

    `upstream` maps the node's output names to the graph values holding their
    gradients. Returns None when no path leads from `target` to those outputs.
    """
    by_name = {e.name: e for e in exprs}
    pieces = {out: [grad] for out, grad in upstream.items()}
    made: list[TensorExpr] = []
    counter = iter(range(1 << 30))

    def fresh():
        return f"{name}.part{next(counter)}"

    for e in reversed(exprs):
        if e.name not in pieces or e.attrs.get("stop_gradient"):
            continue
        grad = _gradient_of(e.name, pieces, by_name, made, name)
        for read in e.reads:
            if read == target or (read in by_name and not by_name[read].attrs.get("stop_gradient")):
                shape = target_shape if read == target else by_name[read].shape
                helpers, parts = adjoint(e, read, grad, shape, fresh)
                known = {m.name for m in made}
                made += [h for h in helpers if h.name not in known] + parts
                pieces.setdefault(read, []).extend(p.name for p in parts)
    if target not in pieces:
        return None
    if len(pieces[target]) == 1 and pieces[target][0] in {m.name for m in made}:
        (part,) = [m for m in made if m.name == pieces[target][0]]
        made[made.index(part)] = replace(part, name=name)
    else:
        total = _total(name, pieces[target], target_shape, exprs[-1].dtype, exprs[-1].node)
        made.append(replace(total, attrs={"family": "grad", "wrt": target}))
    temps = [e for e in exprs if e.role == "temp"]
    return _prune(temps + made, name)


def _gradient_of(tensor, pieces, by_name, made, name) -> str:
    """The name of tensor's full gradient: its one part, or a new sum of its parts."""
    if len(pieces[tensor]) == 1:
        return pieces[tensor][0]
    e = by_name[tensor]
    total = _total(f"{name}.grad[{tensor}]", pieces[tensor], e.shape, e.dtype, e.node)
    made.append(total)
    return total.name


def _prune(program: list[TensorExpr], result: str) -> list[TensorExpr]:
    """The steps `result` depends on, in order; the result is renamed out of temp role."""
    needed, kept = {result}, []
    for e in reversed(program):
        if e.name in needed:
            kept.append(e)
            needed |= set(e.reads)
    kept.reverse()
    last = kept[-1]
    kept[-1] = replace(last, role="output")
    return kept
