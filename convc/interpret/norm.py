"""Normalisation and regularisation in NumPy: batch_norm and dropout.

batch_norm, training_mode=0: y = scale * (x - mean) / sqrt(var + epsilon) + bias
    with the given running statistics.
batch_norm, training_mode=1 (ONNX BatchNormalization-15 and its reference
    implementation): normalise with the batch mean and the biased batch
    variance (divided by the element count, not count - 1) over every axis
    but the channel axis 1, and also return
    running_mean = momentum * mean + (1 - momentum) * batch_mean and
    running_var  = momentum * var  + (1 - momentum) * batch_var (biased too;
    PyTorch uses the unbiased variance here, ONNX does not).
dropout, training_mode=0: y = x and an all-true mask.
dropout, training_mode=1: keep = np.random.default_rng(seed).random(x.shape) >= ratio,
    y = x * keep / (1 - ratio), mask = keep. The mask is drawn afresh from
    `seed` on every run, so runs are reproducible; a compiled model need not
    draw the same mask, so compare it through the returned mask.
"""

from __future__ import annotations

import numpy as np

from .core import implements


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast along axis 1 of an ndim-array."""
    return v.reshape(-1, *(1,) * (ndim - 2))


@implements("batch_norm")
def batch_norm(node, args):
    x, scale, bias, mean, var = args
    attrs = node.attrs
    if attrs["training_mode"]:
        axes = (0, *range(2, x.ndim))
        batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
        momentum = attrs["momentum"]
        running_mean = momentum * mean + (1 - momentum) * batch_mean
        running_var = momentum * var + (1 - momentum) * batch_var
        mean, var = batch_mean, batch_var
    inv_std = 1 / np.sqrt(var + attrs["epsilon"])
    y = (x - _per_channel(mean, x.ndim)) * _per_channel(scale * inv_std, x.ndim)
    y = y + _per_channel(bias, x.ndim)
    return (y, running_mean, running_var) if attrs["training_mode"] else y


@implements("dropout")
def dropout(node, args):
    (x,) = args
    attrs = node.attrs
    if not attrs["training_mode"]:
        return x, np.ones(x.shape, dtype=bool)
    keep = np.random.default_rng(attrs["seed"]).random(x.shape) >= attrs["ratio"]
    return x * keep / (1 - attrs["ratio"]), keep
