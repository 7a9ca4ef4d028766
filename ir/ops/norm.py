"""Normalisation and regularisation ops.

batch_norm  x: (N, C, *S), scale/bias/mean/var: (C,)
            inference: y = scale * (x - mean) / sqrt(var + epsilon) + bias
            training_mode=1 normalises with the batch statistics instead and
            also returns the updated running mean and variance
            (running = momentum * running + (1 - momentum) * batch).
dropout     identity at inference; in training mode zeroes with probability
            `ratio` from a seeded mask and scales the rest by 1/(1 - ratio).
"""

from __future__ import annotations

from ..types import TensorType
from .registry import Attr, define


def infer_batch_norm(ctx):
    x = ctx.inputs[0]
    ctx.require_float(0, "input x")
    if x.rank < 2:
        raise ctx.error(f"input x has rank {x.rank} ({x}); expected rank >= 2")
    channels = x.shape[1]
    for index, name in enumerate(("scale", "bias", "mean", "var"), start=1):
        t = ctx.inputs[index]
        if t.rank != 1 or (t.shape[0] - channels) != 0:
            raise ctx.error(f"{name} has shape {t}; expected [{channels}] for input {x}")
    if ctx.attrs["training_mode"]:
        stats = TensorType((channels,), x.dtype)
        return [x, stats, stats]
    return [x]


def infer_dropout(ctx):
    ctx.require_float(0, "input x")
    ratio = ctx.attrs["ratio"]
    if not 0.0 <= ratio < 1.0:
        raise ctx.error(f"ratio={ratio} must lie in [0, 1)")
    x = ctx.inputs[0]
    return [x, TensorType(x.shape, "bool")]


define(
    "batch_norm",
    ("x", "scale", "bias", "mean", "var"),
    infer_batch_norm,
    attrs={
        "epsilon": Attr("float", 1e-5),
        "momentum": Attr("float", 0.9),
        "training_mode": Attr("int", 0, (0, 1)),
    },
    outputs=("y", "running_mean", "running_var"),
    family="norm",
    doc="Batch normalisation over the channel axis 1.",
)
define(
    "dropout",
    ("x",),
    infer_dropout,
    attrs={
        "ratio": Attr("float", 0.5),
        "training_mode": Attr("int", 0, (0, 1)),
        "seed": Attr("int", 0),
    },
    outputs=("y", "mask"),
    family="norm",
    doc="Dropout: identity at inference.",
)
