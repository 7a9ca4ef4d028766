"""Tensor expressions: every compute op's one definition in index notation (sympy).

Stage: graph node -> list[TensorExpr] (built in `convc.texpr.rules`); consumed by the
lowering (loop IR) and by symbolic autodiff.

A `TensorExpr` defines one tensor element by element:

    name[indices] = epilogue(acc)      acc = REDUCE_{reduce_indices} body  where condition

- `indices` are sympy integer symbols, one per output axis, ranging over `shape`
  (extents are sympy expressions, possibly symbolic such as the batch `N`);
- `reduce_indices` range over `reduce_shape`; `reduction` is "sum", "max" or
  "none" (then there are no reduce indices and acc is the body itself);
- `body` is a sympy expression whose tensor reads are `sympy.Indexed` accesses of
  `sympy.IndexedBase`s named after graph values (or temporaries of the same op);
  index expressions are affine in the index symbols for conv/pool/dense, so that
  autodiff can solve `s*i + d*a - p = u` for `i`; reshape/flatten use floor/Mod
  and are flagged as views (see `attrs`);
- `condition` (a sympy boolean, `sympy.true` when always) makes zero padding
  explicit: a term counts only where it holds; elsewhere it contributes the
  reduction's identity (0 for sum, -inf for max: padding never wins a max pool),
  or, for reduction "none", the value `otherwise` (pad's constant, 0 by default).
  Accesses are only ever evaluated where the condition holds, so an access outside
  its tensor's bounds is always guarded by the condition;
- `epilogue` is an expression in the symbol `ACC` (the reduced value) and further
  accesses indexed by the output indices only (bias, alpha/beta, divisors);
  None means the output is acc itself. It is what lowering fuses after the
  accumulator loop, and what autodiff differentiates first (chain rule through ACC).

Multi-step ops (softmax, batch-norm statistics, average-pool divisor, losses) are
a short list of TensorExprs; the earlier ones write temporaries named
`<node>.<what>` (role "temp") that the later ones read.

`attrs` carries lowering hints as plain data: "family" (conv, pool, dense,
elementwise, reduce, norm, tensor, loss), "view" (True when the expression is a
pure re-indexing of a contiguous input in the same element order: reshape,
flatten, identity, dropout at inference; the lowering may alias the buffer), and
op-specific values (e.g. "group", "strides" for conv schedules).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

import sympy

REDUCTIONS = ("sum", "max", "none")

#: The reduced value inside an epilogue.
ACC = sympy.Symbol("acc", real=True)


@cache
def index(name: str) -> sympy.Symbol:
    """The interned index symbol `name` (a non-negative integer)."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


@cache
def tensor(name: str, dtype: str = "float32") -> sympy.IndexedBase:
    """The IndexedBase standing for the graph value (or temporary) `name`.

    Float tensors are real, integer tensors (labels) integer, so sympy simplifies
    and differentiates accesses correctly.
    """
    if dtype.startswith("int") or dtype == "bool":
        return sympy.IndexedBase(name, integer=True)
    return sympy.IndexedBase(name, real=True)


def access(name: str, idx, dtype: str = "float32") -> sympy.Expr:
    """`name[idx...]`; a rank-0 tensor is read as `name[0]`."""
    idx = tuple(idx)
    return tensor(name, dtype)[idx if idx else (0,)]


def in_bounds(expr, extent) -> sympy.Boolean:
    """0 <= expr < extent, simplified to True when it holds for every index value."""
    return sympy.And(sympy.Le(0, expr), sympy.Lt(expr, extent))


def accesses(expr) -> list[sympy.Indexed]:
    """The tensor accesses in `expr`, in a deterministic order (by printed form)."""
    found = expr.atoms(sympy.Indexed) if isinstance(expr, sympy.Basic) else set()
    return sorted(found, key=sympy.srepr)


def rename_tensors(exprs, mapping: dict) -> list:
    """The expressions with tensors renamed per `mapping`: definitions and every access."""

    def swap(part):
        if part is None or not isinstance(part, sympy.Basic):
            return part
        bases = {b for b in part.atoms(sympy.IndexedBase) if str(b) in mapping}
        return part.xreplace(
            {
                b: tensor(mapping[str(b)], "int64" if b.label.is_integer else "float32")
                for b in bases
            }
        )

    return [
        replace(
            e,
            name=mapping.get(e.name, e.name),
            body=swap(e.body),
            condition=swap(e.condition),
            otherwise=swap(e.otherwise),
            epilogue=swap(e.epilogue),
        )
        for e in exprs
    ]


@dataclass(frozen=True)
class TensorExpr:
    """One tensor defined in index notation; see the module docstring for the meaning."""

    name: str
    indices: tuple
    shape: tuple
    body: sympy.Expr
    reduction: str = "none"
    reduce_indices: tuple = ()
    reduce_shape: tuple = ()
    condition: sympy.Basic = sympy.true
    otherwise: sympy.Expr | None = None
    epilogue: sympy.Expr | None = None
    dtype: str = "float32"
    op: str = ""
    node: str = ""
    role: str = "output"  # "output" (a graph value of the node) or "temp"
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        assert self.reduction in REDUCTIONS, self.reduction
        assert len(self.indices) == len(self.shape), (self.indices, self.shape)
        assert len(self.reduce_indices) == len(self.reduce_shape)
        assert self.reduction != "none" or not self.reduce_indices
        object.__setattr__(self, "shape", tuple(sympy.sympify(d) for d in self.shape))
        object.__setattr__(self, "reduce_shape", tuple(sympy.sympify(d) for d in self.reduce_shape))

    @property
    def identity(self) -> sympy.Expr:
        """What a term outside the condition contributes."""
        if self.reduction == "max":
            return -sympy.oo
        if self.reduction == "sum":
            return sympy.Integer(0)
        return sympy.Integer(0) if self.otherwise is None else self.otherwise

    @property
    def output(self) -> sympy.Expr:
        """The defined element, `name[indices]`."""
        return access(self.name, self.indices, self.dtype)

    @property
    def reads(self) -> list[str]:
        """Names of the tensors read by the body, condition and epilogue, sorted."""
        parts = [self.body, self.condition, self.epilogue, self.otherwise]
        return sorted({str(a.base) for p in parts if p is not None for a in accesses(p)})

    def value(self) -> sympy.Expr:
        """The epilogue with ACC in place, or ACC: the element's value given acc."""
        return ACC if self.epilogue is None else self.epilogue

    def __str__(self) -> str:
        from .printer import texpr_str

        return texpr_str(self)
