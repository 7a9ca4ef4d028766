"""Parameter initialisation with PyTorch's default distributions, from a seed.

Stage: DSL. Layers draw their initial weights here when they are built. The
distributions and bounds are PyTorch's (the bits are not: NumPy's generator
is used):

- conv / linear weight: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
- conv / linear bias:   U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the weight's fan_in

where fan_in = weight.shape[1] * prod(kernel) (for a transposed convolution,
whose weight is (in, out/groups, *k), that is out/groups * prod(k), as in
PyTorch). Arrays are float32. The generator starts from seed 0, so building
the same model twice gives the same weights; `manual_seed` restarts it.
"""

from __future__ import annotations

import math

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Restart the generator that layers draw their initial weights from."""
    global _generator
    _generator = np.random.default_rng(seed)


def fan_in(shape: tuple) -> int:
    """PyTorch's fan_in of a weight: dim 1 times the receptive field (the trailing dims)."""
    return int(shape[1]) * math.prod(int(k) for k in shape[2:])


def uniform(shape: tuple, bound: float) -> np.ndarray:
    """U(-bound, bound) as a float32 array."""
    unit = _generator.random(shape, dtype=np.float32)  # float32 draws: no float64 temporaries
    return (unit * np.float32(2.0) - np.float32(1.0)) * np.float32(bound)


def weight_and_bias(weight_shape: tuple, bias_size: int | None):
    """A conv/linear layer's weight and bias (None when bias_size is None), U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in(weight_shape))
    weight = uniform(weight_shape, bound)
    return weight, None if bias_size is None else uniform((bias_size,), bound)
