"""Activation modules (and Softmax / LogSoftmax), thin wrappers of `functional`.

Stage: DSL. Each module records one node named by its path; the constructor
arguments are PyTorch's (`inplace` is accepted and has no effect).
"""

from __future__ import annotations

import numpy as np

from . import functional as F
from .module import Module, Parameter


class _Activation(Module):
    """An activation applying `functional.<function>` with the module's keyword arguments."""

    function = ""

    def __init__(self, inplace: bool = False, **options):
        super().__init__()
        self.options = options

    def forward(self, x):
        return getattr(F, self.function)(x, **self.options)

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class ReLU(_Activation):
    function = "relu"


class ReLU6(_Activation):
    function = "relu6"


class SELU(_Activation):
    function = "selu"


class Sigmoid(_Activation):
    function = "sigmoid"


class Hardsigmoid(_Activation):
    function = "hardsigmoid"


class Tanh(_Activation):
    function = "tanh"


class SiLU(_Activation):
    function = "silu"


class LeakyReLU(_Activation):
    function = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(negative_slope=negative_slope)


class ELU(_Activation):
    function = "elu"

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(alpha=alpha)


class Hardtanh(_Activation):
    function = "hardtanh"

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__(min_val=min_val, max_val=max_val)


class Softplus(_Activation):
    function = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__(beta=beta, threshold=threshold)


class GELU(_Activation):
    function = "gelu"

    def __init__(self, approximate: str = "none"):
        super().__init__(approximate=approximate)


class Softmax(_Activation):
    function = "softmax"

    def __init__(self, dim: int):
        super().__init__(dim=dim)


class LogSoftmax(_Activation):
    function = "log_softmax"

    def __init__(self, dim: int):
        super().__init__(dim=dim)


class PReLU(Module):
    """Leaky ReLU with a learned slope: one shared (num_parameters=1) or one a channel."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(np.full(num_parameters, init, np.float32))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def describe(self) -> str:
        return f"num_parameters={self.num_parameters}"
