"""Softmax and losses in NumPy.

softmax / log_softmax  shift by the maximum along the axis before exp, so no
                       exponential overflows.
softmax_cross_entropy  as ONNX SoftmaxCrossEntropyLoss: scores (N, C, *D),
                       labels (N, *D); loss = -weight[label] * log_prob[label];
                       ignored labels weigh 0; 'mean' divides by the summed
                       weight of the labels that count (their number without
                       weights), 'sum' adds, 'none' keeps (N, *D). A label
                       outside [0, C) that is not ignore_index is an InputError.
mse_loss               (prediction - target)**2, reduced by mean, sum or none.
"""

from __future__ import annotations

import numpy as np

from ir import InputError

from .core import implements


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@implements("softmax")
def softmax(node, args):
    (x,) = args
    axis = node.attrs["axis"]
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@implements("log_softmax")
def log_softmax_op(node, args):
    (x,) = args
    return log_softmax(x, node.attrs["axis"])


def _reduce(values: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "sum":
        return values.sum()
    return values.mean() if reduction == "mean" else values


def check_labels(labels: np.ndarray, classes: int, ignored: int | None, source: str = "") -> None:
    """Raise InputError at the first label outside [0, classes) that is not `ignored`.

    The compiled training step checks its label inputs here too (native code cannot
    raise); `source` opens the message with where the labels come from.
    """
    bad = (labels < 0) | (labels >= classes)
    if ignored is not None:
        bad &= labels != ignored
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{source}label {int(labels[where])} at index {where} is not a class in "
            f"[0, {classes})" + ("" if ignored is None else f" nor ignore_index={ignored}")
        )


@implements("softmax_cross_entropy")
def softmax_cross_entropy(node, args):
    scores, labels, weights = (*args, None)[:3]
    ignored, reduction = node.attrs["ignore_index"], node.attrs["reduction"]
    classes = scores.shape[1]
    check_labels(labels, classes, ignored)
    log_prob = log_softmax(scores, axis=1)
    counts = np.ones(labels.shape, dtype=scores.dtype) if ignored is None else labels != ignored
    safe = np.where(counts, labels, 0)  # an ignored label may lie outside [0, C)
    weight = counts * (1 if weights is None else weights[safe])
    picked = np.take_along_axis(log_prob, np.expand_dims(safe, 1), axis=1).squeeze(1)
    loss = -picked * weight
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = loss.sum() / weight.sum()
    else:
        loss = _reduce(loss, reduction)
    return loss.astype(scores.dtype), log_prob


@implements("mse_loss")
def mse_loss(node, args):
    prediction, target = args
    return _reduce((prediction - target) ** 2, node.attrs["reduction"])
