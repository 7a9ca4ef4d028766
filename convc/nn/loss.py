"""Loss modules: CrossEntropyLoss and MSELoss (called as `loss(prediction, target)`).

Stage: DSL. They record `softmax_cross_entropy` and `mse_loss`; PyTorch's
`reduction` ('mean', 'sum', 'none'), class `weight` (a buffer, as in
PyTorch) and `ignore_index` (default -100) carry over.
"""

from __future__ import annotations

from . import functional as F
from .module import Buffer, Module


class CrossEntropyLoss(Module):
    def __init__(
        self,
        weight=None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.weight = None if weight is None else Buffer(weight)
        self.ignore_index, self.reduction = ignore_index, reduction
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(
            input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing
        )

    def describe(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)

    def describe(self) -> str:
        return f"reduction={self.reduction!r}"
