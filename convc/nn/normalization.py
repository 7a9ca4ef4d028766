"""Batch normalisation and dropout modules.

Stage: DSL. `BatchNorm{1,2,3}d` share `_BatchNormNd`; their state_dict holds
PyTorch's five entries (weight, bias, running_mean, running_var,
num_batches_tracked). In eval mode they record inference batch_norm; in
train mode batch_norm with training_mode=1, whose updated running statistics
become extra graph outputs `<path>.running_mean:updated` and
`<path>.running_var:updated` (see `functional.batch_norm`); they are not
written back into the module: `running_stat_updates` picks them out of a
run's outputs for `load_state_dict` or `Graph.set_param`. `Dropout` records nothing in eval mode.
"""

from __future__ import annotations

import numpy as np

from ir import ShapeError, UnsupportedError

from . import functional as F
from . import windows
from .module import Buffer, Module, Parameter

UPDATED = ":updated"


def running_stat_updates(outputs: dict) -> dict:
    """The updated running statistics in a train-mode run's outputs, by parameter name.

    `model.load_state_dict(updates, strict=False)` or `graph.set_param(name,
    array)` for each entry carries them into the next step.
    """
    return {k[: -len(UPDATED)]: v for k, v in outputs.items() if k.endswith(UPDATED)}


class _BatchNormNd(Module):
    """Normalise over axis 1 of an input whose rank is one of `ranks`."""

    ranks: tuple = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        where = f"{type(self).__name__}({num_features!r})"
        windows.as_tuple(num_features, 1, "num_features", where, 1)
        if not track_running_stats or momentum is None:
            raise UnsupportedError(
                f"{where}: track_running_stats={track_running_stats}, momentum={momentum}; "
                "only running statistics with a momentum are supported"
            )
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        self.running_mean = Buffer(np.zeros(num_features, np.float32))
        self.running_var = Buffer(np.ones(num_features, np.float32))
        self.num_batches_tracked = Buffer(np.zeros((), np.int64))

    def forward(self, x):
        if x.ndim not in self.ranks:
            raise ShapeError(
                f"{type(self).__name__} '{x.builder.module_path(self)}': input {x!r} should have rank "
                f"{' or '.join(map(str, self.ranks))}"
            )
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )

    def describe(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNormNd):
    ranks = (2, 3)


class BatchNorm2d(_BatchNormNd):
    ranks = (4,)


class BatchNorm3d(_BatchNormNd):
    ranks = (5,)


class Dropout(Module):
    """Zero elements with probability p while training; identity in eval mode."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ShapeError(f"Dropout(p={p!r}): p must lie in [0, 1]")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def describe(self) -> str:
        return f"p={self.p}"
