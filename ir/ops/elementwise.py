"""Elementwise ops: broadcasting binary arithmetic and the activations.

Binary ops follow NumPy broadcasting. Every activation maps x to y of the
same shape; their formulas (the reference for every stage) are:

relu        max(x, 0)
leaky_relu  x if x >= 0 else alpha*x                       (alpha=0.01)
prelu       x if x >= 0 else slope*x   (slope broadcasts to x, one per channel)
elu         x if x > 0 else alpha*(exp(x) - 1)             (alpha=1)
selu        gamma*(x if x > 0 else alpha*(exp(x) - 1))
sigmoid     1 / (1 + exp(-x))
hard_sigmoid max(0, min(1, alpha*x + beta))               (ONNX: 0.2, 0.5)
tanh, softplus = log(1 + exp(x)), silu = x*sigmoid(x)
gelu        x*Phi(x) exactly, or the tanh approximation (approximate='tanh')
clip        min(max(x, min), max); min and max are optional scalar inputs
"""

from __future__ import annotations

from ..types import TensorType
from .registry import Attr, broadcast_shapes, define

SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875


def infer_binary(ctx):
    a, b = ctx.inputs
    if a.dtype != b.dtype:
        raise ctx.error(f"operands have different dtypes: {a} and {b}")
    return [TensorType(broadcast_shapes(ctx, a, b), a.dtype)]


def infer_unary(ctx):
    ctx.require_float(0, "input x")
    return [ctx.inputs[0]]


def infer_prelu(ctx):
    x, slope = ctx.inputs
    ctx.require_float(0, "input x")
    if broadcast_shapes(ctx, x, slope) != x.shape:
        raise ctx.error(f"slope {slope} does not broadcast to input {x}")
    return [x]


def infer_clip(ctx):
    ctx.require_float(0, "input x")
    for index, name in ((1, "min"), (2, "max")):
        if ctx.has_input(index) and ctx.inputs[index].rank != 0:
            raise ctx.error(f"{name} bound has shape {ctx.inputs[index]}; expected a scalar")
    return [ctx.inputs[0]]


for _name in ("add", "sub", "mul", "div"):
    define(_name, ("a", "b"), infer_binary, doc=f"Elementwise {_name} with NumPy broadcasting.")

UNARY = {
    "relu": {},
    "leaky_relu": {"alpha": Attr("float", 0.01)},
    "elu": {"alpha": Attr("float", 1.0)},
    "selu": {"alpha": Attr("float", SELU_ALPHA), "gamma": Attr("float", SELU_GAMMA)},
    "sigmoid": {},
    "hard_sigmoid": {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)},
    "tanh": {},
    "softplus": {},
    "silu": {},
    "gelu": {"approximate": Attr("str", "none", ("none", "tanh"))},
}
for _name, _attrs in UNARY.items():
    define(_name, ("x",), infer_unary, attrs=_attrs, doc=f"The {_name} activation.")

define("prelu", ("x", "slope"), infer_prelu, doc="Leaky ReLU with a learned slope.")
define("clip", ("x", "min", "max"), infer_clip, num_required=1, doc="Clamp to [min, max].")
