"""Softmax and losses.

softmax / log_softmax  along `axis` (default -1, as ONNX opset 13+).
softmax_cross_entropy  scores: (N, C, *D) float, labels: (N, *D) int64,
                       optional class weights (C,). loss = -weight[label] *
                       log_softmax(scores)[label], reduced by 'mean' (divided
                       by the sum of the weights that count), 'sum' or 'none';
                       labels equal to ignore_index count for nothing. The
                       optional second output is log_softmax(scores).
mse_loss               mean (or sum, or none) of (prediction - target)**2.
"""

from __future__ import annotations

from ..types import TensorType
from .registry import Attr, define, normalize_axis

REDUCTIONS = ("mean", "sum", "none")


def infer_softmax(ctx):
    x = ctx.inputs[0]
    ctx.require_float(0, "input x")
    ctx.attrs["axis"] = normalize_axis(ctx, ctx.attrs["axis"], x.rank)
    return [x]


def infer_softmax_cross_entropy(ctx):
    scores, labels = ctx.inputs[0], ctx.inputs[1]
    ctx.require_float(0, "scores")
    if scores.rank < 2:
        raise ctx.error(f"scores have shape {scores}; expected (N, C, ...)")
    if labels.dtype not in ("int64", "int32"):
        raise ctx.error(f"labels have dtype {labels.dtype}; expected int64 class indices")
    expected = (scores.shape[0], *scores.shape[2:])
    if labels.rank != len(expected) or any((a - b) != 0 for a, b in zip(labels.shape, expected)):
        raise ctx.error(
            f"labels have shape {labels}; expected {TensorType(expected, labels.dtype)} for scores {scores}"
        )
    if ctx.has_input(2):
        weights = ctx.inputs[2]
        if weights.rank != 1 or (weights.shape[0] - scores.shape[1]) != 0:
            raise ctx.error(f"weights have shape {weights}; expected [{scores.shape[1]}]")
    loss_shape = expected if ctx.attrs["reduction"] == "none" else ()
    return [TensorType(loss_shape, scores.dtype), scores]


def infer_mse(ctx):
    prediction, target = ctx.inputs
    ctx.require_float(0, "prediction")
    if prediction.shape != target.shape or prediction.dtype != target.dtype:
        raise ctx.error(f"prediction {prediction} and target {target} differ")
    shape = prediction.shape if ctx.attrs["reduction"] == "none" else ()
    return [TensorType(shape, prediction.dtype)]


for _name in ("softmax", "log_softmax"):
    define(
        _name,
        ("x",),
        infer_softmax,
        attrs={"axis": Attr("int", -1)},
        family="reduce",
        doc=f"{_name} along an axis.",
    )
define(
    "softmax_cross_entropy",
    ("scores", "labels", "weights"),
    infer_softmax_cross_entropy,
    attrs={"reduction": Attr("str", "mean", REDUCTIONS), "ignore_index": Attr("int")},
    num_required=2,
    outputs=("loss", "log_prob"),
    family="loss",
    doc="Softmax cross-entropy with integer labels.",
)
define(
    "mse_loss",
    ("prediction", "target"),
    infer_mse,
    attrs={"reduction": Attr("str", "mean", REDUCTIONS)},
    family="loss",
    doc="Mean squared error.",
)
