"""Constant padding modules: one `_ConstantPadNd` base for every rank.

Stage: DSL. `padding` is an int or PyTorch's tuple (left, right, top,
bottom, front, back), last dim first; negative entries crop, as in
PyTorch. It records a `pad` node.
"""

from __future__ import annotations

from . import functional as F
from . import windows
from .module import Module


class _ConstantPadNd(Module):
    rank = 0

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        where = f"{type(self).__name__}({padding!r})"
        self.padding = windows.as_tuple(padding, 2 * self.rank, "padding", where, None)
        self.value = float(value)

    def forward(self, x):
        return F.pad(x, self.padding, "constant", self.value)

    def describe(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    rank = 1


class ConstantPad2d(_ConstantPadNd):
    rank = 2


class ConstantPad3d(_ConstantPadNd):
    rank = 3


class ZeroPad1d(ConstantPad1d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad2d(ConstantPad2d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad3d(ConstantPad3d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)
