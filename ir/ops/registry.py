"""Op definitions: attribute schemas, arity and shape rules, one table entry an op.

Each op family module (conv, pool, dense, elementwise, norm, tensor, loss)
registers its ops here with `define`. `Graph.add_node` looks the op up,
checks and canonicalises the attributes (filling defaults, which may depend on
the input ranks) and runs the shape rule, so a mistake is reported at the
line that built the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy

from ..errors import ShapeError, UnsupportedError
from ..types import TensorType, symbol

REQUIRED = object()

_ATTR_KINDS = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "ints": (list, tuple),
    "floats": (list, tuple),
}


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: its kind, its default (REQUIRED or None allowed) and allowed values."""

    kind: str
    default: Any = None
    choices: tuple = ()
    shown: bool = True  # False: long machine-readable data the text form leaves out

    def check(self, op_name: str, node: str, name: str, value):
        """Return the value normalised to its kind, or raise naming node and attribute."""
        if value is None:
            return None
        if (
            not isinstance(value, _ATTR_KINDS[self.kind])
            or isinstance(value, bool)
            and self.kind != "int"
        ):
            raise ShapeError(
                f"{op_name} '{node}': attribute {name}={value!r} should be of kind {self.kind}"
            )
        if self.kind == "ints":
            value = tuple(int(v) if not isinstance(v, sympy.Expr) else v for v in value)
        elif self.kind == "floats":
            value = tuple(float(v) for v in value)
        elif self.kind == "float":
            value = float(value)
        elif self.kind == "int":
            value = int(value)
        if self.choices and value not in self.choices:
            raise UnsupportedError(
                f"{op_name} '{node}': attribute {name}={value!r} is not supported; "
                f"expected one of {list(self.choices)}"
            )
        return value


@dataclass
class InferContext:
    """What a shape rule sees: the node's name, input types, attributes and constant inputs.

    A rule may rewrite `attrs` into canonical form (e.g. fill per-rank defaults);
    the graph stores the canonical attributes on the node.
    """

    op: str
    node: str
    inputs: list  # TensorType, or None for an absent optional input
    attrs: dict
    constants: list  # np.ndarray when the input is a constant or parameter, else None

    def error(self, message: str) -> ShapeError:
        return ShapeError(f"{self.op} '{self.node}': {message}")

    def unsupported(self, message: str) -> UnsupportedError:
        return UnsupportedError(f"{self.op} '{self.node}': {message}")

    def const(self, index: int):
        """The constant value of input `index`, or None when it is absent or a run-time input."""
        return self.constants[index] if index < len(self.constants) else None

    def has_input(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index] is not None

    def fresh_dim(self, tag: str) -> sympy.Symbol:
        """A symbol for a dim only known at run time (e.g. a reshape to a run-time shape)."""
        return symbol(f"{self.node}_{tag}".replace(".", "_").replace("/", "_").replace(":", "_"))

    def require_rank(self, index: int, ranks, what: str = "input"):
        t = self.inputs[index]
        if t.rank not in ranks:
            raise self.error(
                f"{what} has rank {t.rank} ({t}); expected rank {' or '.join(map(str, ranks))}"
            )

    def require_float(self, index: int, what: str = "input"):
        t = self.inputs[index]
        if t.dtype not in ("float32", "float64"):
            raise self.error(f"{what} has dtype {t.dtype}; expected float32 or float64")


@dataclass(frozen=True)
class OpDef:
    """An op's schema: input names (trailing ones optional), attributes, outputs, shape rule."""

    name: str
    inputs: tuple
    infer: Callable[[InferContext], list]
    attrs: dict = field(default_factory=dict)
    num_required: int | None = None  # inputs that must be present; default: all
    outputs: tuple = ("y",)
    num_required_outputs: int = 1
    variadic: bool = False  # the last input may repeat (concat)
    family: str = "elementwise"
    doc: str = ""

    @property
    def min_inputs(self) -> int:
        return len(self.inputs) if self.num_required is None else self.num_required


OPS: dict[str, OpDef] = {}


def define(name: str, inputs, infer, **kwargs) -> OpDef:
    """Register an op; its `infer` returns the list of output TensorTypes."""
    if name in OPS:
        raise ValueError(f"op {name} defined twice")
    op = OpDef(name=name, inputs=tuple(inputs), infer=infer, **kwargs)
    OPS[name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise UnsupportedError(f"unknown op {name!r}") from None


def canonical_attrs(op: OpDef, node: str, attrs: dict) -> dict:
    """Check attribute names and kinds and fill defaults (REQUIRED ones must be given)."""
    unknown = sorted(set(attrs) - set(op.attrs))
    if unknown:
        raise UnsupportedError(
            f"{op.name} '{node}': unknown attribute {unknown[0]}={attrs[unknown[0]]!r}; "
            f"known: {sorted(op.attrs)}"
        )
    out = {}
    for name, spec in op.attrs.items():
        if name in attrs and attrs[name] is not None:
            out[name] = spec.check(op.name, node, name, attrs[name])
        elif spec.default is REQUIRED:
            raise ShapeError(f"{op.name} '{node}': attribute {name} is required")
        else:
            out[name] = spec.default
    return out


def broadcast_shapes(ctx: InferContext, *types: TensorType) -> tuple:
    """NumPy broadcasting of dim tuples; symbolic dims must match exactly or meet a 1."""
    rank = max(t.rank for t in types)
    result = []
    for axis in range(rank):
        dims = [t.shape[axis - rank + t.rank] for t in types if axis - rank + t.rank >= 0]
        out = sympy.Integer(1)
        for d in dims:
            if d == 1 or d == out:
                continue
            if out == 1:
                out = d
            else:
                shapes = ", ".join(str(t) for t in types)
                raise ctx.error(f"shapes {shapes} do not broadcast (axis {axis}: {out} vs {d})")
        result.append(out)
    return tuple(result)


def normalize_axis(ctx: InferContext, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    return axis % rank
