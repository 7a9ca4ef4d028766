"""Dense and shape modules: Linear, Flatten, Identity.

Stage: DSL. `Linear(in, out)` holds PyTorch's (out, in) weight and records
`gemm(x, weight, bias, transB=1)` on a (batch, in) input.
"""

from __future__ import annotations

from . import functional as F
from . import init, windows
from .module import Module, Parameter


class Linear(Module):
    """y = x @ weight.T + bias."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        where = f"Linear({in_features!r}, {out_features!r})"
        windows.as_tuple(in_features, 1, "in_features", where, 1)
        windows.as_tuple(out_features, 1, "out_features", where, 1)
        self.in_features, self.out_features = in_features, out_features
        weight, bias_data = init.weight_and_bias(
            (out_features, in_features), out_features if bias else None
        )
        self.weight = Parameter(weight)
        self.bias = None if bias_data is None else Parameter(bias_data)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def describe(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}" + (
            "" if self.bias is not None else ", bias=False"
        )


class Flatten(Module):
    """Merge dims start_dim..end_dim (PyTorch's defaults: 1 and -1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)


class Identity(Module):
    """Returns its input; records no node."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x
