"""The ONNX op table: for each supported op, the versions, attributes and outputs it
accepts and how it becomes ir nodes.

`versions` lists the op's `since_version`s whose semantics the rule implements
(a model's opset picks one through `onnx.defs.get_schema`); versions that only
add element types are included, ones that change meaning are not, so a future
op version is rejected rather than mistranslated. Most ops map one-to-one onto
an ir op with the same attribute names (ir's op set follows ONNX); the others
are spelled out below:

- Softmax/LogSoftmax before opset 13 coerce the input to 2-D at `axis`; that
  is an ir softmax over the last axis of a reshape to (d0..d[axis-1], -1),
  reshaped back.
- Clip before opset 11 and Pad before opset 11 take attributes where later
  versions take inputs; they become ir constants.
- Dropout is the identity unless `training_mode` is a constant true, in which
  case `ratio` must be constant too; MaxPool's `Indices` output is rejected.
- HardSwish is x * hard_sigmoid(x; 1/6, 1/2); Mish is x * tanh(softplus(x)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .model import tensor_array

WINDOW_ATTRS = ("kernel_shape", "strides", "dilations", "pads", "auto_pad")


@dataclass(frozen=True)
class Rule:
    """How one ONNX op is imported."""

    convert: Callable
    versions: tuple
    attrs: tuple = ()
    outputs: int = 1  # how many leading ONNX outputs the rule can produce


RULES: dict[str, Rule] = {}


def rule(op_type: str, versions, attrs=(), outputs: int = 1):
    """Register the decorated converter for `op_type`."""

    def register(convert):
        RULES[op_type] = Rule(convert, tuple(versions), tuple(attrs), outputs)
        return convert

    return register


def direct(ir_op: str) -> Callable:
    """A converter for an op that ir holds under another name with the same inputs and attrs."""

    def convert(ctx):
        ctx.emit(ir_op, ctx.inputs, ctx.attrs)

    return convert


DIRECT = {
    # ONNX op: (ir op, versions, attributes)
    "Conv": ("conv", (1, 11, 22), (*WINDOW_ATTRS, "group")),
    "ConvTranspose": (
        "conv_transpose",
        (1, 11, 22),
        (*WINDOW_ATTRS, "group", "output_padding", "output_shape"),
    ),
    "AveragePool": (
        "avg_pool",
        (7, 10, 11, 19, 22),
        (*WINDOW_ATTRS, "ceil_mode", "count_include_pad"),
    ),
    "GlobalAveragePool": ("global_avg_pool", (1, 22), ()),
    "GlobalMaxPool": ("global_max_pool", (1, 22), ()),
    "Gemm": ("gemm", (7, 9, 11, 13), ("alpha", "beta", "transA", "transB")),
    "MatMul": ("matmul", (1, 9, 13), ()),
    "Flatten": ("flatten", (1, 9, 11, 13, 21, 23, 24, 25), ("axis",)),
    "Reshape": ("reshape", (5, 13, 14, 19, 21, 23, 24, 25), ("allowzero",)),
    "Concat": ("concat", (4, 11, 13), ("axis",)),
    "Identity": ("identity", (1, 13, 14, 16, 19, 21, 23, 24, 25), ()),
    "Relu": ("relu", (6, 13, 14), ()),
    "LeakyRelu": ("leaky_relu", (6, 16), ("alpha",)),
    "PRelu": ("prelu", (7, 9, 16), ()),
    "Elu": ("elu", (6, 22), ("alpha",)),
    "Selu": ("selu", (6, 22), ("alpha", "gamma")),
    "Sigmoid": ("sigmoid", (6, 13), ()),
    "HardSigmoid": ("hard_sigmoid", (6, 22), ("alpha", "beta")),
    "Tanh": ("tanh", (6, 13), ()),
    "Softplus": ("softplus", (1, 22), ()),
    "Gelu": ("gelu", (20,), ("approximate",)),
}
for _op_type, (_ir_op, _versions, _attrs) in DIRECT.items():
    rule(_op_type, _versions, _attrs)(direct(_ir_op))

rule("SoftmaxCrossEntropyLoss", (12, 13), ("reduction", "ignore_index"), outputs=2)(
    direct("softmax_cross_entropy")
)


def binary(ir_op: str) -> Callable:
    """Arithmetic on float tensors (integer division and overflow rules are not modelled)."""

    def convert(ctx):
        for index in (0, 1):
            dtype = ctx.value(index).dtype
            if dtype not in ("float32", "float64"):
                raise ctx.unsupported(
                    f"input '{ctx.input(index)}' has dtype {dtype}; expected float"
                )
        ctx.emit(ir_op, ctx.inputs)

    return convert


for _op_type in ("Add", "Sub", "Mul", "Div"):
    rule(_op_type, (7, 13, 14))(binary(_op_type.lower()))


@rule("MaxPool", (1, 8, 10, 11, 12, 22), (*WINDOW_ATTRS, "ceil_mode", "storage_order"))
def max_pool(ctx):
    """storage_order only orders the Indices output, which the rule table already rejects."""
    attrs = {k: v for k, v in ctx.attrs.items() if k != "storage_order"}
    ctx.emit("max_pool", ctx.inputs, attrs)


@rule("BatchNormalization", (9, 14, 15), ("epsilon", "momentum", "training_mode"), outputs=3)
def batch_norm(ctx):
    """Running statistics given as initializers are parameters, but not trainable ones."""
    training = ctx.attrs.get("training_mode", 0)
    if len(ctx.outputs) > 1 and ctx.since < 14:
        raise ctx.unsupported(
            f"training outputs of BatchNormalization-{ctx.since} are not supported "
            "(use opset 14+ and training_mode=1)"
        )
    if len(ctx.outputs) > 1 and not training:
        raise ctx.malformed("outputs running_mean and running_var exist only with training_mode=1")
    for index in (3, 4):
        if ctx.value(index).kind == "param":
            ctx.value(index).trainable = False
    ctx.emit("batch_norm", ctx.inputs, ctx.attrs)


@rule("Dropout", (7, 10, 12, 13, 22), ("ratio", "seed"), outputs=2)
def dropout(ctx):
    """Identity (and an all-true mask) unless training_mode is a constant true."""
    if ctx.since < 10 and len(ctx.outputs) > 1:
        raise ctx.unsupported("the float-typed mask output of Dropout-7 is not supported")
    training = bool(ctx.constant_scalar(2, "training_mode", False))
    attrs = {"seed": ctx.attrs.get("seed", 0)}
    if training:
        attrs["ratio"] = float(ctx.constant_scalar(1, "ratio", 0.5))
        attrs["training_mode"] = 1
    ctx.emit("dropout", ctx.inputs[:1], attrs)


@rule("Clip", (6, 11, 12, 13), ("min", "max"))
def clip(ctx):
    """Clip-6 has min/max attributes (absent: unbounded); later versions take them as inputs."""
    if ctx.since >= 11:
        ctx.emit("clip", ctx.inputs)
        return
    dtype = ctx.value(0).dtype
    bounds = [
        ctx.add_const(name, np.asarray(ctx.attrs[name], dtype)) if name in ctx.attrs else None
        for name in ("min", "max")
    ]
    ctx.emit("clip", [ctx.input(0), *bounds])


@rule("Pad", (2, 11, 13, 18, 19, 21, 23, 24, 25), ("mode", "pads", "value"))
def pad(ctx):
    """Constant padding only; Pad-2 carries pads and value as attributes."""
    mode = ctx.attrs.get("mode", "constant")
    if mode != "constant":
        raise ctx.unsupported(f"attribute mode={mode!r} is not supported; only 'constant' is")
    if ctx.since >= 11:
        ctx.emit("pad", ctx.inputs)
        return
    pads = ctx.add_const("pads", np.asarray(ctx.attrs["pads"], np.int64))
    value = ctx.add_const("value", np.asarray(ctx.attrs.get("value", 0.0), ctx.value(0).dtype))
    ctx.emit("pad", [ctx.input(0), pads, value])


def softmax(ir_op: str) -> Callable:
    def convert(ctx):
        axis = ctx.attrs.get("axis", -1 if ctx.since >= 13 else 1)
        rank = ctx.value(0).type.rank
        if ctx.since >= 13 or rank == 0 or axis % rank == rank - 1:
            ctx.emit(ir_op, ctx.inputs, {"axis": axis})
        else:
            legacy_softmax(ctx, ir_op, axis % rank)

    return convert


def legacy_softmax(ctx, ir_op: str, axis: int) -> None:
    """Softmax-1/11 over the joint trailing axes [axis:], as reshape -> softmax -> reshape."""
    shape = ctx.value(0).type.shape
    trailing = shape[axis:]
    symbolic = [i for i, d in enumerate(trailing) if not d.is_Integer]
    if len(symbolic) > 1:
        raise ctx.unsupported(
            f"axis={axis} coerces {ctx.value(0).type} to 2-D over more than one symbolic dim"
        )
    joint = ctx.add_const("joint_shape", np.array([0] * axis + [-1], np.int64))
    back = [-1 if i in symbolic else int(d) for i, d in enumerate(trailing)]
    restore = ctx.add_const("shape", np.array([0] * axis + back, np.int64))
    flat = ctx.emit_step("reshape", "joint", [ctx.input(0), joint])
    normalized = ctx.emit_step(ir_op, ir_op, [flat], {"axis": -1})
    ctx.emit("reshape", [normalized, restore])


for _op_type, _ir_op in (("Softmax", "softmax"), ("LogSoftmax", "log_softmax")):
    rule(_op_type, (1, 11, 13), ("axis",))(softmax(_ir_op))


@rule("HardSwish", (14, 22))
def hard_swish(ctx):
    gate = ctx.emit_step("hard_sigmoid", "gate", ctx.inputs, {"alpha": 1.0 / 6.0, "beta": 0.5})
    ctx.emit("mul", [ctx.input(0), gate])


@rule("Mish", (18, 22))
def mish(ctx):
    soft = ctx.emit_step("softplus", "softplus", ctx.inputs)
    gate = ctx.emit_step("tanh", "tanh", [soft])
    ctx.emit("mul", [ctx.input(0), gate])


CONSTANT_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints")


@rule("Constant", (1, 9, 11, 12, 13, 19, 21, 23, 24, 25), CONSTANT_ATTRS)
def constant(ctx):
    """Folded into an ir constant named as the ONNX output."""
    [(name, value)] = ctx.attrs.items()
    if name == "value":
        array = tensor_array(value, f"Constant node '{ctx.label}'")
    elif name.startswith("value_float"):
        array = np.asarray(value, np.float32)
    else:
        array = np.asarray(value, np.int64)
    ctx.graph.add_const(ctx.outputs[0], array)
