"""Adjoints derived from tensor expressions: differentiate the body, solve the index equations.

Stage: one forward TensorExpr, the tensor X it reads and the name of its upstream
gradient -> TensorExprs whose sum is that expression's contribution to dL/dX.

For  y[I] = E(acc, I),  acc = Σ_J body(I, J)  where cond(I, J),  each access
X[f(I, J)] in the body contributes

    dX[U] += Σ_{I, J : f(I, J) = U, cond}  dy[I] * dE/dacc * d body / d X[f(I, J)]

and each access in the epilogue E the same with the body's factor left out. The
sum over the solutions of f(I, J) = U is made explicit by solving the index
equations axis by axis (`solve_access`): a variable that appears linearly, output
indices first, is eliminated, e.g. s*i + d*a - p = u gives i = (u + p - d*a)/s,
kept where the division is exact (a Mod condition) and 0 <= i < extent; the
variables left over are the new expression's reduction indices. A grouped
channel index A*floor(o/K) + c (c < A) is solved for both c and o
(`_group_split`), and floor/Mod of indices known to be in range are simplified
(`within_ranges`). For a conv this turns the input gradient into a transposed
convolution and the weight gradient into a correlation of the input with dy,
without any per-op code; `residues.split_residues` then removes the taps a
divisibility condition would reject.

Not derived by differentiation, and why:
- max reductions (max_pool, global_max_pool): the derivative of a max is the
  indicator of its argument that attains it; ties are broken as PyTorch does, by
  routing dy to the FIRST maximum in window order. That choice is a convention,
  so it is made explicit: a temporary `<y>.first[I] = max_J -linear(J) where
  body == y[I]` finds it, and the adjoint is the sum's adjoint restricted to it.
- the shift of softmax (its `.max` temporary, attrs stop_gradient): the result
  does not depend on it mathematically, so its derivative is exactly zero and
  it is not propagated.
- views (reshape, flatten, identity, dropout at inference): their floor/Mod index
  maps have no linear variable to solve for; being row-major bijections, their
  adjoint is the inverse view (`inverse_view`) rather than a filtered scan.
- sympy's Heaviside(0) = 1/2 is replaced by 0 (relu'(0) = 0, as PyTorch).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy

from convc.texpr import ACC, TensorExpr, access, index
from convc.texpr.movement import view_indices
from convc.texpr.rules import axis_indices, bound_condition, simplify_condition

from .residues import split_residues


def partial(expr, a: sympy.Indexed) -> sympy.Expr:
    """d expr / d a for one access a, with the derivative of max taken as 0 at the kink."""
    dummy = sympy.Dummy("d")
    derivative = sympy.diff(expr.xreplace({a: dummy}), dummy).xreplace({dummy: a})
    return derivative.replace(
        sympy.Heaviside, lambda arg, *_: sympy.Piecewise((1, arg > 0), (0, True))
    )


@dataclass
class IndexSolution:
    """The gradient's indices, the eliminated variables' values and what remains summed."""

    targets: tuple
    substitution: dict
    remaining: tuple
    conditions: list
    extents: dict = field(default_factory=dict)  # of the remaining indices


def _linear_in(f, v):
    """(coefficient, rest) when f = coefficient*v + rest with a constant coefficient, else None."""
    expanded = sympy.expand(f)
    coeff = expanded.coeff(v)
    rest = sympy.expand(expanded - coeff * v)
    if coeff == 0 or coeff.free_symbols or v in rest.free_symbols:
        return None
    return coeff, rest


def _eliminate(f, target, variables, remaining, preferred):
    """Pick a variable of f to solve f = target for: linear, output indices first."""
    candidates = sorted(
        (v for v in f.free_symbols if v in remaining and _linear_in(f, v) is not None),
        key=lambda v: (v not in preferred, list(variables).index(v)),
    )
    if not candidates:
        return None
    v = candidates[0]
    coeff, rest = _linear_in(f, v)
    return v, (target - rest) / coeff


def within_ranges(expr, extents: dict):
    """floor(v/E) -> 0 and Mod(v, E) -> v for each index v known to lie in [0, E)."""
    expr = sympy.sympify(expr)
    present = expr.atoms(sympy.floor, sympy.Mod)
    if not present:
        return expr
    rules = {}
    for v, extent in extents.items():
        rules[sympy.floor(v / extent)] = sympy.Integer(0)
        rules[sympy.Mod(v, extent)] = v
    return expr.xreplace({f: rules[f] for f in present if f in rules})


def _group_split(f, target, target_extent, variables, remaining):
    """Solve f = A*floor(o/K) + c with 0 <= c < A (a grouped channel) for both c and o.

    The decomposition is unique: c = u mod A (written u - A*floor(u/A)) and
    floor(o/K) = floor(u/A), so o = K*floor(u/A) + r with a new index r < K. This
    keeps a grouped convolution's input gradient to the K output channels of the
    group instead of a scan over all of them. Returns (values, (r, K)) or None.
    """
    for c in remaining:
        found = _linear_in(f, c)
        if found is None or found[0] != 1:
            continue
        width = variables[c]
        quotient = sympy.expand(found[1] / width)
        if not isinstance(quotient, sympy.floor):
            continue
        for o in sorted(quotient.args[0].free_symbols & set(remaining) - {c}, key=str):
            inner = _linear_in(quotient.args[0], o)
            if inner is None or inner[1] != 0 or not (1 / inner[0]).is_Integer:
                continue
            size = 1 / inner[0]
            if sympy.simplify(variables[o] / size - target_extent / width) != 0:
                continue
            group = sympy.floor(target / width)
            r = index(f"{o}_in_group")
            return {c: target - width * group, o: size * group + r}, (r, size)
    return None


def solve_access(indices, variables: dict, target_shape, preferred) -> IndexSolution:
    """Solve access index f_k(vars) = u_k for the variables, axis by axis.

    `variables` maps every index symbol of the forward expression to its extent;
    `preferred` are the forward output indices (eliminated first, so a strided
    window becomes a divisibility condition rather than a scan).
    """
    targets = [index(f"u{k}") for k in range(len(indices))]
    variables = dict(variables)
    remaining = list(variables)
    substitution, conditions, exact = {}, [], set()
    for k, f in enumerate(indices):
        f = sympy.sympify(f).subs(substitution, simultaneous=True)
        f = within_ranges(f, {v: variables[v] for v in remaining})
        split = _group_split(f, targets[k], target_shape[k], variables, remaining)
        if split is not None:
            values, (r, size) = split
            variables[r] = size
            remaining = [v for v in remaining if v not in values] + [r]
            substitution = {w: e.subs(values, simultaneous=True) for w, e in substitution.items()}
            substitution.update(values)
            exact |= set(values)  # in range by construction
            continue
        found = _eliminate(f, targets[k], variables, remaining, preferred)
        if found is None:
            if not (f == 0 and target_shape[k] == 1):
                conditions.append(sympy.Eq(f, targets[k]))
            continue
        v, value = found
        substitution = {w: e.subs(v, value) for w, e in substitution.items()}
        substitution[v] = value
        remaining.remove(v)
    for v, value in substitution.items():
        numerator, denominator = sympy.fraction(sympy.together(value))
        if denominator != 1:
            conditions.append(sympy.Eq(sympy.Mod(numerator, denominator), 0))
        if v not in exact:
            conditions.append(bound_condition(value, variables[v], {}))
    solution = _rename(targets, substitution, remaining, conditions)
    solution.extents = {v: variables[v] for v in solution.remaining}
    return solution


def _rename(targets, substitution, remaining, conditions) -> IndexSolution:
    """Give a target the name of the variable it equals (grad_w[o, c, a, b], not [u0, ...])."""
    renames = {}
    for v, value in substitution.items():
        if value in targets and value not in renames:
            renames[value] = v
    targets = tuple(renames.get(t, t) for t in targets)
    substitution = {
        v: e.xreplace(renames) for v, e in substitution.items() if e.xreplace(renames) != v
    }
    conditions = [sympy.sympify(c).xreplace(renames) for c in conditions]
    return IndexSolution(targets, substitution, tuple(remaining), conditions)


def pullback(term, a, variables, condition, preferred, target_shape, name, e) -> TensorExpr:
    """The TensorExpr summing `term` over the solutions of a's index equations."""
    indices = a.indices if target_shape else ()  # a rank-0 tensor is read as name[0]
    solution = solve_access(indices, variables, target_shape, preferred)
    ranges = dict(zip(solution.targets, target_shape)) | solution.extents
    body = sympy.sympify(term).subs(solution.substitution, simultaneous=True)
    body = within_ranges(body, ranges)
    cond = sympy.sympify(condition).subs(solution.substitution, simultaneous=True)
    cond = within_ranges(cond, ranges)
    cond = simplify_condition(sympy.And(cond, *solution.conditions), ranges)
    return split_residues(
        TensorExpr(
            name=name,
            indices=solution.targets,
            shape=target_shape,
            body=body,
            reduction="sum" if solution.remaining else "none",
            reduce_indices=solution.remaining,
            reduce_shape=tuple(solution.extents[v] for v in solution.remaining),
            condition=cond,
            dtype=e.dtype,
            op=e.op,
            node=e.node,
            role="temp",
            attrs={"family": "grad", "of": e.name, "wrt": str(a.base)},
        )
    )


def inverse_view(e: TensorExpr, target: str, grad: str, target_shape, name: str) -> TensorExpr:
    """The adjoint of a view (reshape, flatten, identity): the inverse view of the gradient.

    A view's index map is a bijection between row-major positions, so instead of
    solving its floor/Mod equations (which have no linear variable) the adjoint reads
    the gradient through the same row-major re-indexing in the other direction.
    """
    idx = axis_indices(len(target_shape))
    body = access(grad, view_indices(e.shape, target_shape, idx))
    return TensorExpr(
        name,
        idx,
        target_shape,
        body,
        dtype=e.dtype,
        op=e.op,
        node=e.node,
        role="temp",
        attrs={"family": "grad", "of": e.name, "wrt": target, "view": True},
    )


def _linear_position(symbols, extents):
    position = sympy.Integer(0)
    for s, d in zip(symbols, extents):
        position = position * d + s
    return position


def first_maximum(e: TensorExpr) -> TensorExpr:
    """`<y>.first[I] = max_J -linear(J) where cond and body == y[I]`: the first maximum's position."""
    return replace(
        e,
        name=f"{e.name}.first",
        body=-_linear_position(e.reduce_indices, e.reduce_shape),
        condition=sympy.And(e.condition, sympy.Eq(e.body, e.output)),
        role="temp",
        attrs={"family": "grad", "of": e.name},
    )


def adjoint(e: TensorExpr, target: str, grad: str, target_shape, fresh) -> tuple[list, list]:
    """e's contribution to dL/d target, given dL/de in the tensor named `grad`.

    Returns (helpers, parts): helper temporaries the parts read (the acc, the
    first maximum) and the parts, one per access of `target`, whose sum is the
    contribution; `fresh()` names the parts.
    """
    if e.attrs.get("view"):
        return [], [inverse_view(e, target, grad, target_shape, fresh())]
    upstream = access(grad, e.indices)
    outputs = dict(zip(e.indices, e.shape))
    helpers, terms = [], []
    if e.epilogue is not None:
        for a in _accesses_of(e.epilogue, target):
            terms.append((a, upstream * partial(e.epilogue, a), outputs, sympy.true))
    body, condition = e.body, e.condition
    if e.reduction == "none" and condition is not sympy.true:
        body = sympy.Piecewise((body, condition), (e.identity, True))
        condition = sympy.true
    factor = upstream * partial(e.epilogue, ACC) if e.epilogue is not None else upstream
    if e.reduction == "max":
        first = first_maximum(e)
        helpers.append(first)
        position = _linear_position(e.reduce_indices, e.reduce_shape)
        condition = sympy.And(condition, sympy.Eq(position, -access(first.name, e.indices)))
    variables = outputs | dict(zip(e.reduce_indices, e.reduce_shape))
    for a in _accesses_of(body, target):
        terms.append((a, factor * partial(body, a), variables, condition))
    if any(term.has(ACC) for _, term, _, _ in terms):
        acc = replace(e, name=f"{e.name}.acc", epilogue=None, role="temp")
        helpers.append(acc)
        terms = [(a, t.xreplace({ACC: acc.output}), v, c) for a, t, v, c in terms]
    parts = [
        pullback(term, a, v, c, e.indices, target_shape, fresh(), e) for a, term, v, c in terms
    ]
    return helpers, parts


def _accesses_of(expr, target: str) -> list[sympy.Indexed]:
    found = [a for a in expr.atoms(sympy.Indexed) if str(a.base) == target]
    return sorted(found, key=sympy.srepr)
