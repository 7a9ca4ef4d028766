"""The layer report: per-node output shape, parameters, MACs, FLOPs and receptive field.

Stage: reads a verified `ir.Graph` (after shape inference, which `add_node`
runs); writes a `Report`, plain data plus an aligned text table. It never
changes the graph and caches nothing: every call recomputes from the graph as
it is now.

Counts are Python ints where every dim is known and sympy expressions where
a dim is symbolic (`117600*N`); `bindings` (`{"N": 1}` or `{symbol: 1}`)
substitutes values first, so the same graph reports per sample or per batch.

What is counted (`out` = elements of the node's first output):

- params: elements of the `param` values a node reads. A parameter read by
  several nodes counts once, at its first reader in topological order; consts
  (reshape targets, clip bounds) are not parameters.
- MACs (multiply-accumulates), only for the ops that multiply tensors:
  conv = out * (C/group) * prod(kernel), i.e. N*M*prod(out_spatial)*(C/group)*prod(kernel);
  conv_transpose = N*C*prod(in_spatial) * (M/group) * prod(kernel) (each input element
  scatters into M/group kernel windows, including those cropped by padding);
  gemm and matmul = out * K, i.e. M*K*P (times the broadcast batch for matmul).
  Every other op has 0 MACs.
- FLOPs: 2*MACs for conv/conv_transpose/gemm/matmul, plus one per output
  element for a bias (conv's b, gemm's C); gemm's alpha and beta scalings are
  not counted (they fold into the weights). For the other ops, the work:

  | op | FLOPs |
  |---|---|
  | add/sub/mul/div, every activation, prelu, clip | 1 per output element (a transcendental counts as one) |
  | batch_norm | 2 per element (scale and shift after folding the statistics); training_mode: 6 (sum for the mean; subtract, square, accumulate for the variance; scale, shift) |
  | max_pool, avg_pool | prod(kernel) per output element (each window element combined once) |
  | global_avg_pool, global_max_pool | 1 per input element |
  | softmax, log_softmax | 5 per element (max, subtract, exp, sum, divide or log) |
  | softmax_cross_entropy | 5 per score element (log_softmax) + 1 per label (pick and accumulate) |
  | mse_loss | 3 per element (subtract, square, accumulate) |
  | dropout | 0 at inference; 1 per element in training mode (the scaled mask) |
  | flatten, reshape, concat, identity, pad | 0 (data movement) |

- receptive field (RF) and jump (cumulative stride), per spatial axis of the
  graph input, in input pixels, for one element of the node's output. A float
  graph input of rank >= 3 starts with rf = 1 and jump = 1 on each spatial
  axis (axes 2 and up); integer inputs (labels) and flat inputs have none. A
  window op (conv, max_pool, avg_pool) with kernel k, dilation d and stride s
  gives rf_out = rf_in + (k-1)*d*jump_in and jump_out = jump_in*s.
  conv_transpose gives rf_out = rf_in + floor((k-1)*d/s)*jump_in (the widest
  span of input positions one output element reads) and jump_out = jump_in/s.
  A node with several inputs takes the elementwise max of its inputs' rf and
  jump (params and consts have none). Ops that mix every position (global
  pooling, gemm and matmul, whose contraction in a conv net runs over a
  flattened feature axis, losses that reduce, softmax over a spatial axis)
  see the whole input: rf becomes the input's extent, or stays larger when
  padding has already pushed it past the edge; jump is left as it was. Every
  other op (activations, batch_norm, flatten, reshape, pad, ...) passes rf and
  jump through unchanged. Theoretical RFs count padding, so they may exceed
  the image. A window op whose spatial rank differs from the input's (after
  a reshape) leaves the RF unknown, shown as "?".
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from fractions import Fraction

import sympy

from .errors import ShapeError, UnsupportedError
from .ops import get_op
from .printer import display_op
from .types import FLOAT_DTYPES, dim_str, is_known, symbol

# ----- numbers: ints while concrete, sympy only where a dim is symbolic -----------------------


def _plain(d):
    """A dim as a Python int when it is known, else the sympy expression."""
    if isinstance(d, (int, Fraction)):
        return d
    return int(d) if is_known(d) else d


def _max(a, b):
    if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic):
        return sympy.Max(a, b)
    return max(a, b)


def _ceil(x):
    if isinstance(x, sympy.Basic):
        return sympy.ceiling(x)
    return math.ceil(x)


def _simplify(x):
    return sympy.expand(x) if isinstance(x, sympy.Basic) else x


def format_count(x) -> str:
    """An int with thousands separators; a symbolic count with its integers separated."""
    if isinstance(x, int):
        return f"{x:,}"
    return re.sub(r"\b\d{4,}\b", lambda m: f"{int(m.group()):,}", str(x).replace(" ", ""))


def _format_axes(values) -> str:
    if values is None:
        return "?"
    if not values:
        return "-"
    return "x".join(dim_str(v) if isinstance(v, sympy.Basic) else str(v) for v in values)


# ----- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRow:
    """One node's line; `shape` is its first output's. Counts are ints or sympy expressions.

    `receptive_field` and `stride` (the jump) are per spatial axis of the graph
    input, () when it has none, None when unknown.
    """

    name: str
    op: str
    shape: tuple
    params: int
    macs: object
    flops: object
    receptive_field: tuple | None
    stride: tuple | None


@dataclass(frozen=True)
class Report:
    """The layer table of one graph and its totals (symbolic in N while N is unbound)."""

    graph_name: str
    inputs: tuple  # (name, shape) pairs
    rows: tuple
    total_params: int
    trainable_params: int
    total_macs: object
    total_flops: object

    def __str__(self) -> str:
        headers = ("layer", "op", "output", "params", "MACs", "FLOPs", "RF", "stride")
        body = [
            (
                r.name,
                r.op,
                "[" + ",".join(_format_dim(d) for d in r.shape) + "]",
                format_count(r.params),
                format_count(r.macs),
                format_count(r.flops),
                _format_axes(r.receptive_field),
                _format_axes(r.stride),
            )
            for r in self.rows
        ]
        body.append(
            (
                "total",
                "",
                "",
                format_count(self.total_params),
                format_count(self.total_macs),
                format_count(self.total_flops),
                "",
                "",
            )
        )
        inputs = ", ".join(f"{n}[{','.join(_format_dim(d) for d in s)}]" for n, s in self.inputs)
        title = f"model {self.graph_name}: inputs {inputs}"
        footer = (
            f"params: {format_count(self.total_params)} "
            f"(trainable {format_count(self.trainable_params)})"
        )
        return "\n".join([title, format_table(headers, body, right=(3, 4, 5)), footer])


def _format_dim(d) -> str:
    return dim_str(d) if isinstance(d, sympy.Basic) else str(d)


def format_table(headers, rows, right=()) -> str:
    """Columns padded to their widest cell; column indices in `right` are right-aligned."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells):
        padded = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def summarize(graph, bindings=None) -> Report:
    """The layer report of `graph`, with symbols in `bindings` replaced by their values."""
    shapes = _Shapes(graph, _normalize_bindings(graph, bindings))
    fields = _input_fields(graph, shapes)
    counted: set = set()
    rows = []
    for node in graph.topological_nodes():
        params = _node_params(graph, node, counted)
        macs, flops = _cost_rule(node.op)(shapes, node)
        field = _propagate_field(shapes, node, fields)
        for out in node.outputs:
            fields[out] = field
        rows.append(
            LayerRow(
                name=node.name,
                op=display_op(graph, node),
                shape=shapes.of(node.outputs[0]),
                params=params,
                macs=_simplify(macs),
                flops=_simplify(flops),
                receptive_field=None if field is None else field.rf,
                stride=None if field is None else field.jump,
            )
        )
    trainable = sum(
        math.prod(v.data.shape) for v in graph.values.values() if v.kind == "param" and v.trainable
    )
    return Report(
        graph_name=graph.name,
        inputs=tuple((name, shapes.of(name)) for name in graph.inputs),
        rows=tuple(rows),
        total_params=sum(r.params for r in rows),
        trainable_params=trainable,
        total_macs=_simplify(sum(r.macs for r in rows)),
        total_flops=_simplify(sum(r.flops for r in rows)),
    )


def _normalize_bindings(graph, bindings) -> dict:
    """Map names or symbols to the graph's interned symbols; values must be positive ints."""
    known = set().union(*(v.type.free_symbols for v in graph.values.values()))
    result = {}
    for key, value in (bindings or {}).items():
        sym = symbol(key if isinstance(key, str) else getattr(key, "name", str(key)))
        if sym not in known:
            names = ", ".join(sorted(s.name for s in known)) or "none"
            raise ShapeError(
                f"graph '{graph.name}': binding {key}={value!r} names no symbol of the graph "
                f"(symbols: {names})"
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ShapeError(
                f"graph '{graph.name}': binding {key}={value!r} must be a positive integer"
            )
        result[sym] = int(value)
    return result


def _node_params(graph, node, counted: set) -> int:
    total = 0
    for name in node.present_inputs:
        value = graph.values[name]
        if value.kind == "param" and name not in counted:
            counted.add(name)
            total += math.prod(value.data.shape)
    return total


class _Shapes:
    """Value shapes with the bindings substituted; dims as ints where known."""

    def __init__(self, graph, bindings: dict):
        self.graph = graph
        self.bindings = bindings

    def of(self, name: str) -> tuple:
        dims = self.graph.values[name].type.shape
        if self.bindings:
            dims = [d.subs(self.bindings) if d.free_symbols else d for d in dims]
        return tuple(_plain(d) for d in dims)

    def elements(self, name: str):
        return math.prod(self.of(name))


# ----- costs ----------------------------------------------------------------------------------


def _out_elements(shapes, node):
    return shapes.elements(node.outputs[0])


def _bias_flops(shapes, node, index: int):
    has_bias = len(node.inputs) > index and node.inputs[index] is not None
    return _out_elements(shapes, node) if has_bias else 0


def _conv_cost(shapes, node):
    weight = shapes.of(node.inputs[1])
    macs = _out_elements(shapes, node) * math.prod(weight[1:])
    return macs, 2 * macs + _bias_flops(shapes, node, 2)


def _conv_transpose_cost(shapes, node):
    weight = shapes.of(node.inputs[1])
    macs = shapes.elements(node.inputs[0]) * math.prod(weight[1:])
    return macs, 2 * macs + _bias_flops(shapes, node, 2)


def _gemm_cost(shapes, node):
    a = shapes.of(node.inputs[0])
    inner = a[0] if node.attrs["transA"] else a[1]
    macs = _out_elements(shapes, node) * inner
    return macs, 2 * macs + _bias_flops(shapes, node, 2)


def _matmul_cost(shapes, node):
    macs = _out_elements(shapes, node) * shapes.of(node.inputs[0])[-1]
    return macs, 2 * macs


def _pool_cost(shapes, node):
    return 0, _out_elements(shapes, node) * math.prod(node.attrs["kernel_shape"])


def _global_pool_cost(shapes, node):
    return 0, shapes.elements(node.inputs[0])


def _batch_norm_cost(shapes, node):
    return 0, (6 if node.attrs["training_mode"] else 2) * _out_elements(shapes, node)


def _dropout_cost(shapes, node):
    return 0, _out_elements(shapes, node) if node.attrs["training_mode"] else 0


def _cross_entropy_cost(shapes, node):
    return 0, 5 * shapes.elements(node.inputs[0]) + shapes.elements(node.inputs[1])


def _per_element(flops: int):
    """A cost rule charging `flops` per element of the node's first input."""

    def cost(shapes, node):
        return 0, flops * shapes.elements(node.inputs[0])

    return cost


_COSTS = {
    "conv": _conv_cost,
    "conv_transpose": _conv_transpose_cost,
    "gemm": _gemm_cost,
    "matmul": _matmul_cost,
    "max_pool": _pool_cost,
    "avg_pool": _pool_cost,
    "global_avg_pool": _global_pool_cost,
    "global_max_pool": _global_pool_cost,
    "batch_norm": _batch_norm_cost,
    "dropout": _dropout_cost,
    "softmax": _per_element(5),
    "log_softmax": _per_element(5),
    "softmax_cross_entropy": _cross_entropy_cost,
    "mse_loss": _per_element(3),
}
_FAMILY_COSTS = {
    "elementwise": lambda shapes, node: (0, _out_elements(shapes, node)),
    "tensor": lambda shapes, node: (0, 0),
    # derived gradient programs: one FLOP per output element (their reductions are not counted)
    "texpr": lambda shapes, node: (0, _out_elements(shapes, node)),
}


def _cost_rule(op: str):
    """The (MACs, FLOPs) rule of an op: by name, else by family (elementwise, tensor)."""
    rule = _COSTS.get(op) or _FAMILY_COSTS.get(get_op(op).family)
    if rule is None:
        raise UnsupportedError(f"the layer report has no cost rule for op '{op}'")
    return rule


# ----- receptive field ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """Per spatial axis: RF size and jump of one element, and the graph input's extent."""

    rf: tuple
    jump: tuple
    extent: tuple

    def merge(self, other: _Field | None) -> _Field | None:
        """Elementwise max; a field without spatial axes (labels, a flat input) is neutral."""
        if other is None:
            return None
        if not other.rf or not self.rf:
            return self if self.rf else other
        if len(other.rf) != len(self.rf):
            return None
        return _Field(
            tuple(map(_max, self.rf, other.rf)),
            tuple(map(_max, self.jump, other.jump)),
            tuple(map(_max, self.extent, other.extent)),
        )

    def whole(self, axes=None) -> _Field:
        """Every position along `axes` (default: all) reaches this element."""
        axes = range(len(self.rf)) if axes is None else axes
        rf = tuple(
            _max(r, e) if i in axes else r for i, (r, e) in enumerate(zip(self.rf, self.extent))
        )
        return _Field(rf, self.jump, self.extent)


_NO_AXES = _Field((), (), ())


def _input_fields(graph, shapes) -> dict:
    """Float inputs start with rf 1, jump 1 on each spatial axis; labels and flat inputs have none."""
    fields = {}
    for name in graph.inputs:
        spatial = shapes.of(name)[2:] if graph.values[name].dtype in FLOAT_DTYPES else ()
        fields[name] = _Field((1,) * len(spatial), (1,) * len(spatial), spatial)
    return fields


def _window_field(field: _Field, node, transposed: bool) -> _Field | None:
    attrs = node.attrs
    kernel, strides, dilations = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    if len(kernel) != len(field.rf):
        return None
    rf, jump = [], []
    for r, j, k, s, d in zip(field.rf, field.jump, kernel, strides, dilations):
        if transposed:
            rf.append(_ceil(r + ((k - 1) * d // s) * j))
            jump.append(j / Fraction(s))
        else:
            rf.append(_ceil(r + (k - 1) * d * j))
            jump.append(j * s)
    return _Field(tuple(rf), tuple(_plain_fraction(j) for j in jump), field.extent)


def _plain_fraction(j):
    return int(j) if isinstance(j, Fraction) and j.denominator == 1 else j


def _softmax_field(shapes, node, field: _Field) -> _Field:
    axis = node.attrs["axis"] - 2
    rank = len(shapes.of(node.inputs[0])) - 2
    return field.whole([axis]) if rank == len(field.rf) and axis >= 0 else field


_FIELD_RULES = {
    "conv": lambda shapes, node, f: _window_field(f, node, transposed=False),
    "max_pool": lambda shapes, node, f: _window_field(f, node, transposed=False),
    "avg_pool": lambda shapes, node, f: _window_field(f, node, transposed=False),
    "conv_transpose": lambda shapes, node, f: _window_field(f, node, transposed=True),
    "global_avg_pool": lambda shapes, node, f: f.whole(),
    "global_max_pool": lambda shapes, node, f: f.whole(),
    "gemm": lambda shapes, node, f: f.whole(),
    "matmul": lambda shapes, node, f: f.whole(),
    "softmax": _softmax_field,
    "log_softmax": _softmax_field,
    "softmax_cross_entropy": lambda shapes, node, f: _loss_field(node, f),
    "mse_loss": lambda shapes, node, f: _loss_field(node, f),
}


def _loss_field(node, field: _Field) -> _Field:
    return field if node.attrs["reduction"] == "none" else field.whole()


def _propagate_field(shapes, node, fields: dict) -> _Field | None:
    """The merged field of the node's inputs, transformed by the op's rule (default: unchanged)."""
    merged = _NO_AXES
    for name in node.present_inputs:
        if name in fields:
            merged = merged.merge(fields[name]) if merged is not None else None
    if merged is None:
        return None
    rule = _FIELD_RULES.get(node.op)
    return merged if rule is None else rule(shapes, node, merged)
