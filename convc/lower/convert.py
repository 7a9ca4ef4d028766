"""Tensor-expression values (sympy) -> loop-IR values.

Stage: part of lowering. Input: a sympy expression from a `TensorExpr` (its body,
epilogue, `otherwise` or a condition atom) and a `Scope` saying what each tensor
access and the accumulator symbol stand for. Output: a `convc.loops` `Expr`.

Tensor accesses become `Load`s of the buffer of the same name with their index
expressions rewritten by the scope's substitution (e.g. a blocked output channel
`o -> o_o*4 + o_i`), unless the scope binds the tensor to a value already in
registers (a fused epilogue's input). Numbers become constants of the
expression's dtype; comparisons of pure index expressions become integer
comparisons (`Index`), everything else floating point.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy

from convc import loops
from convc.texpr import ACC
from ir import UnsupportedError

_UNARY = {sympy.exp: "exp", sympy.log: "log", sympy.tanh: "tanh", sympy.erf: "erf"}
_UNARY.update({sympy.Abs: "abs", sympy.floor: "floor", sympy.ceiling: "ceil"})
_CMP = {sympy.Lt: "lt", sympy.Le: "le", sympy.Gt: "gt", sympy.Ge: "ge"}
_CMP.update({sympy.Eq: "eq", sympy.Ne: "ne"})


@dataclass
class Scope:
    """What names mean while converting: accumulator, inlined tensors, index substitution.

    `inline`: tensor name -> loop-IR value (the running value of a fused chain).
    `subs`: index variable -> its expression in loop variables (blocks, collapsed loops).
    `rewrites`: index subexpressions known to simplify after `subs` (for a register
    block `o_i` in [0, B): `floor(o_i/B) -> 0`, `Mod(o_i, B) -> o_i`), applied until
    none applies.
    `layouts`: buffer name -> channel block B of a value stored channel-blocked
    (`convc.lower.layout`): its element [n, c, ...] sits at [n, c // B, ..., c % B].
    """

    dtype: str = "float32"
    acc: loops.Expr | None = None
    inline: dict = field(default_factory=dict)
    subs: dict = field(default_factory=dict)
    rewrites: dict = field(default_factory=dict)
    layouts: dict = field(default_factory=dict)
    where: str = ""

    def place(self, name: str, indices) -> tuple:
        """The buffer index of element `indices` of tensor `name`, in loop variables."""
        if name in self.layouts:
            indices = blocked_index(indices, self.layouts[name])
        return tuple(self.index(i) for i in indices)

    def index(self, expr) -> sympy.Expr:
        """`expr` in loop variables; a quotient such as `(u + p - a)/s` becomes its floor.

        Tensor expressions read `x[(u + p - a)/s]` only where `(u + p - a) mod s == 0` holds
        (a transposed convolution's condition), so the floor is exact wherever it is read.
        """
        expr = sympy.sympify(expr).xreplace(self.subs)
        rewritten = expr.xreplace(self.rewrites) if self.rewrites else expr
        while rewritten != expr:  # a rewrite may leave another to do (`group_rewrites`)
            expr, rewritten = rewritten, rewritten.xreplace(self.rewrites)
        if not expr.is_integer and isinstance(expr, sympy.Add | sympy.Mul):
            numer, denom = sympy.fraction(sympy.together(expr))
            if denom.is_Integer and denom > 1:
                return sympy.floor(sympy.expand(numer) / denom)
        return expr


def blocked_index(indices, block: int) -> tuple:
    """[n, c, *rest] -> [n, c // block, *rest, c % block] (the NC..[B]c layout)."""
    n, c, *rest = indices
    return (n, sympy.floor(sympy.sympify(c) / block), *rest, sympy.Mod(c, block))


def is_index_expr(expr) -> bool:
    """True when `expr` holds no tensor access and no accumulator (an integer index formula)."""
    return not expr.atoms(sympy.Indexed) and ACC not in expr.free_symbols


def convert(expr, scope: Scope) -> loops.Expr:
    """The loop-IR value of a sympy value expression."""
    expr = sympy.sympify(expr)
    if expr == ACC:
        return scope.acc
    if isinstance(expr, sympy.Indexed):
        return _access(expr, scope)
    if expr.is_number:
        return _number(expr, scope)
    if isinstance(expr, sympy.Add):
        return _fold("add", [convert(a, scope) for a in expr.args])
    if isinstance(expr, sympy.Mul):
        return _product(expr, scope)
    if isinstance(expr, sympy.Pow):
        return _power(expr, scope)
    if isinstance(expr, (sympy.Max, sympy.Min)):
        op = "max" if isinstance(expr, sympy.Max) else "min"
        return _fold(op, [convert(a, scope) for a in expr.args])
    if isinstance(expr, sympy.Piecewise):
        return _piecewise(expr.args, scope)
    if expr.func in _UNARY:
        return loops.Unary(_UNARY[expr.func], convert(expr.args[0], scope))
    if isinstance(expr, sympy.Symbol) and is_index_expr(expr):
        return loops.Cast(loops.Index(scope.index(expr)), scope.dtype)
    raise UnsupportedError(f"{scope.where}: cannot lower the expression {expr} to loops")


def condition(expr, scope: Scope) -> loops.Expr:
    """The loop-IR boolean of a sympy condition (relations, And, Or, Not)."""
    if expr is sympy.true or expr == sympy.true:
        return loops.Const(True, "bool")
    if expr is sympy.false or expr == sympy.false:
        return loops.Const(False, "bool")
    if isinstance(expr, (sympy.And, sympy.Or)):
        op = "and" if isinstance(expr, sympy.And) else "or"
        return _fold(op, [condition(a, scope) for a in expr.args])
    if isinstance(expr, sympy.Not):
        return loops.Unary("not", condition(expr.args[0], scope))
    if type(expr) in _CMP:
        lhs, rhs = expr.args
        if is_index_expr(lhs) and is_index_expr(rhs):
            a, b = _integer_sides(scope.index(lhs) - scope.index(rhs))
        elif lhs.is_integer and rhs.is_integer:
            a, b = _as_int64(lhs, scope), _as_int64(rhs, scope)
        else:
            a, b = convert(lhs, scope), convert(rhs, scope)
        return loops.Cmp(_CMP[type(expr)], a, b)
    raise UnsupportedError(f"{scope.where}: cannot lower the condition {expr} to loops")


def _as_int64(expr, scope: Scope) -> loops.Expr:
    """An integer operand (an index, or a read of an integer tensor such as labels) as int64."""
    if is_index_expr(expr):
        return loops.Index(scope.index(expr))
    return loops.Cast(convert(expr, replace(scope, dtype="int64")), "int64")


def _integer_sides(difference) -> tuple:
    """`difference op 0` as integer index values: a positive denominator is multiplied out."""
    difference = sympy.expand(difference)
    if all(r.is_Integer for r in difference.atoms(sympy.Rational)):
        return loops.Index(difference), loops.Index(sympy.Integer(0))
    numer, denom = sympy.fraction(sympy.together(difference))
    if not (denom.is_Integer and denom > 0):
        numer = difference
    return loops.Index(sympy.expand(numer)), loops.Index(sympy.Integer(0))


def _access(expr: sympy.Indexed, scope: Scope) -> loops.Expr:
    name = str(expr.base)
    if name in scope.inline:
        return scope.inline[name]
    return loops.Load(name, scope.place(name, expr.indices))


def _number(expr, scope: Scope) -> loops.Expr:
    if scope.dtype == "bool":
        return loops.Const(bool(expr), "bool")
    if scope.dtype.startswith("int"):
        return loops.Const(int(expr), scope.dtype)
    return loops.Const(float(expr), scope.dtype)


def _fold(op: str, values: list) -> loops.Expr:
    result = values[0]
    for v in values[1:]:
        result = loops.Binary(op, result, v)
    return result


def _product(expr: sympy.Mul, scope: Scope) -> loops.Expr:
    """Numerators multiplied, then divided by the product of the x**-k factors (a
    logistic factor, as in SiLU's ``x/(1 + exp(-x))``, is a numerator: `_logistic`)."""
    numer, denom = [], []
    for factor in expr.args:
        base, exponent = factor.as_base_exp()
        if exponent == -1 and (x := _logistic(base)) is not None:
            numer.append(loops.Unary("sigmoid", convert(x, scope)))
        elif exponent.is_number and exponent < 0 and not factor.is_number:
            denom.append(convert(base**-exponent, scope))
        else:
            numer.append(convert(factor, scope))
    value = _fold("mul", numer) if numer else loops.Const(1.0, scope.dtype)
    return loops.Binary("div", value, _fold("mul", denom)) if denom else value


def _logistic(base) -> sympy.Expr | None:
    """`x` where `base` is ``1 + exp(-x)``, so that ``1/base`` is the logistic sigmoid of
    x, else None. The sigmoid is one math op (`codegen.vmath`), which can spare its exp
    the care for the ends of the range that 1/(1 + exp) does not need."""
    if not isinstance(base, sympy.Add) or len(base.args) != 2 or sympy.S.One not in base.args:
        return None
    (other,) = (a for a in base.args if a != sympy.S.One)
    return -other.args[0] if other.func is sympy.exp else None


def _power(expr: sympy.Pow, scope: Scope) -> loops.Expr:
    base, exponent = expr.args
    if exponent == -1 and (x := _logistic(base)) is not None:
        return loops.Unary("sigmoid", convert(x, scope))
    x = convert(base, scope)
    if exponent == sympy.Rational(1, 2):
        return loops.Unary("sqrt", x)
    if exponent == sympy.Rational(-1, 2):
        return loops.Binary("div", loops.Const(1.0, scope.dtype), loops.Unary("sqrt", x))
    if exponent.is_integer and 1 <= exponent <= 4:
        return _fold("mul", [x] * int(exponent))
    if exponent.is_integer and -4 <= exponent <= -1:
        return loops.Binary(
            "div", loops.Const(1.0, scope.dtype), _fold("mul", [x] * -int(exponent))
        )
    return loops.Binary("pow", x, convert(exponent, scope))


def _piecewise(pieces, scope: Scope) -> loops.Expr:
    (value, cond), rest = pieces[0], pieces[1:]
    if cond == sympy.true or not rest:
        return convert(value, scope)
    return loops.Select(condition(cond, scope), convert(value, scope), _piecewise(rest, scope))
