"""Convolution modules: one `_ConvNd` base for every rank, plain and transposed.

Stage: DSL. `Conv{1,2,3}d` and `ConvTranspose{1,2,3}d` differ only in their
rank and in PyTorch's argument order; both check their arguments when built
(so a bad kernel_size or padding='same' with a stride is reported at the
line that made the layer) and record a `conv` / `conv_transpose` node when
called. Weights follow PyTorch: (out, in/groups, *kernel) for a convolution,
(in, out/groups, *kernel) for a transposed one, initialised as in `init.py`.
"""

from __future__ import annotations

from ir import ShapeError, UnsupportedError

from . import functional as F
from . import init, windows
from .module import Module, Parameter


def _check_channels(where: str, in_channels, out_channels, groups) -> None:
    for what, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        windows.as_tuple(count, 1, what, where, 1)
    windows.as_tuple(groups, 1, "groups", where, 1)
    if in_channels % groups or out_channels % groups:
        raise ShapeError(
            f"{where}: groups={groups} must divide in_channels={in_channels} and "
            f"out_channels={out_channels}"
        )


class _ConvNd(Module):
    """Shared construction and call of every convolution module."""

    rank = 0
    transposed = False

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        *,
        output_padding=0,
    ):
        super().__init__()
        where = f"{type(self).__name__}({in_channels!r}, {out_channels!r})"
        _check_channels(where, in_channels, out_channels, groups)
        if padding_mode != "zeros":
            raise UnsupportedError(
                f"{where}: padding_mode={padding_mode!r}; only 'zeros' is supported"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = windows.as_tuple(kernel_size, self.rank, "kernel_size", where, 1)
        output_padding = output_padding if self.transposed else None
        attrs = windows.conv_attrs(
            self.kernel_size, where, stride, padding, dilation, groups, output_padding
        )
        self.stride, self.dilation, self.padding = attrs["strides"], attrs["dilations"], padding
        self.output_padding = attrs.get("output_padding", (0,) * self.rank)
        if self.transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        weight, bias_data = init.weight_and_bias(shape, out_channels if bias else None)
        self.weight = Parameter(weight)
        self.bias = None if bias_data is None else Parameter(bias_data)

    def forward(self, x):
        window = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
        window["groups"] = self.groups
        if self.transposed:
            function = getattr(F, f"conv_transpose{self.rank}d")
            return function(x, self.weight, self.bias, output_padding=self.output_padding, **window)
        return getattr(F, f"conv{self.rank}d")(x, self.weight, self.bias, **window)

    def describe(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in (0, (0,) * self.rank):
            text += f", padding={self.padding!r}"
        if self.dilation != (1,) * self.rank:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class _ConvTransposeNd(_ConvNd):
    """PyTorch's ConvTranspose argument order over the shared base."""

    transposed = True

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups=1,
        bias=True,
        dilation=1,
        padding_mode="zeros",
    ):
        if isinstance(padding, str):
            raise UnsupportedError(
                f"{type(self).__name__}({in_channels}, {out_channels}): padding={padding!r} "
                "is not supported for a transposed convolution"
            )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            output_padding=output_padding,
        )


class Conv1d(_ConvNd):
    rank = 1


class Conv2d(_ConvNd):
    rank = 2


class Conv3d(_ConvNd):
    rank = 3


class ConvTranspose1d(_ConvTransposeNd):
    rank = 1


class ConvTranspose2d(_ConvTransposeNd):
    rank = 2


class ConvTranspose3d(_ConvTransposeNd):
    rank = 3
