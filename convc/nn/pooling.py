"""Pooling modules: one `_PoolNd` base parametrised by rank and kind.

Stage: DSL. Max and average pooling follow PyTorch's defaults: stride None
means the kernel size, average pooling counts the padding in the mean
(count_include_pad=True), ceil_mode keeps a last partial window. Adaptive
average pooling supports output size 1 (global average pooling) and the
input's own size (an identity, as in torchvision's AlexNet/VGG at 224x224).
"""

from __future__ import annotations

from . import functional as F
from . import windows
from .module import Module


class _PoolNd(Module):
    """A window pooling layer of a fixed rank; `kind` is 'max' or 'avg'.

    `options` are the keyword arguments particular to the kind (dilation for
    max, count_include_pad for avg); both are passed on to the functional form.
    """

    rank = 0
    kind = ""

    def __init__(self, kernel_size, stride, padding, ceil_mode, **options):
        super().__init__()
        where = f"{type(self).__name__}(kernel_size={kernel_size!r})"
        windows.pool_attrs(
            self.rank, where, kernel_size, stride, padding, options.get("dilation", 1)
        )
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.options = ceil_mode, options

    def forward(self, x):
        function = getattr(F, f"{self.kind}_pool{self.rank}d")
        return function(
            x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode, **self.options
        )

    def describe(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return f"kernel_size={self.kernel_size!r}, stride={stride!r}, padding={self.padding!r}"


class _MaxPoolNd(_PoolNd):
    kind = "max"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode, dilation=dilation)


class _AvgPoolNd(_PoolNd):
    kind = "avg"

    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        super().__init__(
            kernel_size, stride, padding, ceil_mode, count_include_pad=count_include_pad
        )


class _AdaptiveAvgPoolNd(Module):
    rank = 0

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return getattr(F, f"adaptive_avg_pool{self.rank}d")(x, self.output_size)

    def describe(self) -> str:
        return f"output_size={self.output_size!r}"


class MaxPool1d(_MaxPoolNd):
    rank = 1


class MaxPool2d(_MaxPoolNd):
    rank = 2


class MaxPool3d(_MaxPoolNd):
    rank = 3


class AvgPool1d(_AvgPoolNd):
    rank = 1


class AvgPool2d(_AvgPoolNd):
    rank = 2


class AvgPool3d(_AvgPoolNd):
    rank = 3


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    rank = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    rank = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    rank = 3
