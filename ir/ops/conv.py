"""Convolution ops (1-D, 2-D, 3-D by the input's rank), with ONNX semantics.

conv            x: (N, C, *S), w: (M, C/group, *K), b: (M,)  ->  (N, M, *S_out)
                S_out = floor((S + pad_begin + pad_end - d*(K-1) - 1) / s) + 1
conv_transpose  x: (N, C, *S), w: (C, M/group, *K), b: (M,)  ->  (N, M, *S_out)
                S_out = s*(S-1) + output_padding + d*(K-1) + 1 - pad_begin - pad_end

Depthwise convolution is `conv` with group == C; PyTorch's padding='same' is
auto_pad SAME_UPPER at stride 1.
"""

from __future__ import annotations

import sympy

from ..types import TensorType, is_known
from .registry import Attr, define
from .window import AUTO_PADS, check_window, output_sizes, resolve_pads, spatial_attrs

CONV_ATTRS = {
    "kernel_shape": Attr("ints"),
    "strides": Attr("ints"),
    "dilations": Attr("ints"),
    "pads": Attr("ints"),
    "auto_pad": Attr("str", "NOTSET", AUTO_PADS),
    "group": Attr("int", 1),
}


def _check_operands(ctx):
    """Validate rank, dtype, kernel shape and bias of a (transposed) convolution; return the kernel."""
    x, w = ctx.inputs[0], ctx.inputs[1]
    ctx.require_rank(0, (3, 4, 5), "input x")
    ctx.require_float(0, "input x")
    if w.rank != x.rank:
        raise ctx.error(f"weight has rank {w.rank} ({w}) but input x has rank {x.rank} ({x})")
    if w.dtype != x.dtype:
        raise ctx.error(f"weight dtype {w.dtype} differs from input dtype {x.dtype}")
    kernel = w.shape[2:]
    if not all(is_known(k) for k in kernel):
        raise ctx.error(f"kernel shape {w} must be concrete")
    given = ctx.attrs.get("kernel_shape")
    if given is not None and tuple(given) != tuple(int(k) for k in kernel):
        raise ctx.error(f"kernel_shape={list(given)} does not match weight shape {w}")
    group = ctx.attrs["group"]
    if group < 1:
        raise ctx.error(f"group={group} must be positive")
    return kernel


def _check_bias(ctx, out_channels):
    if ctx.has_input(2):
        b = ctx.inputs[2]
        if b.rank != 1 or (b.shape[0] - out_channels) != 0:
            raise ctx.error(f"bias has shape {b}; expected [{out_channels}]")


def _resolve_static_pads(ctx, spatial, kernel):
    """Turn auto_pad into explicit pads when the spatial size is known."""
    attrs = ctx.attrs
    if attrs["auto_pad"] == "VALID" or all(is_known(sympy.sympify(s)) for s in spatial):
        pads = resolve_pads(
            spatial, kernel, attrs["strides"], attrs["dilations"], attrs["pads"], attrs["auto_pad"]
        )
        attrs["pads"] = tuple(int(p) for p in pads)
        attrs["auto_pad"] = "NOTSET"


def infer_conv(ctx):
    x, w = ctx.inputs[0], ctx.inputs[1]
    kernel = _check_operands(ctx)
    rank = x.rank - 2
    spatial_attrs(ctx, rank, kernel)
    group = ctx.attrs["group"]
    channels, out_channels = x.shape[1], w.shape[0]
    if is_known(channels) and int(channels) % group:
        raise ctx.error(f"group={group} does not divide the {channels} input channels")
    if is_known(out_channels) and int(out_channels) % group:
        raise ctx.error(f"group={group} does not divide the {out_channels} output channels")
    if (w.shape[1] * group - channels) != 0:
        raise ctx.error(
            f"input x has {channels} channels but weight {w} expects {w.shape[1] * group} "
            f"(group={group})"
        )
    _check_bias(ctx, out_channels)
    spatial = x.shape[2:]
    _resolve_static_pads(ctx, spatial, kernel)
    attrs = ctx.attrs
    pads = resolve_pads(
        spatial, kernel, attrs["strides"], attrs["dilations"], attrs["pads"], attrs["auto_pad"]
    )
    check_window(ctx, spatial, kernel, attrs["strides"], attrs["dilations"], pads)
    out = output_sizes(ctx, spatial, kernel, pads)
    return [TensorType((x.shape[0], out_channels, *out), x.dtype)]


def _unpadded_size(attrs, spatial, kernel, i):
    """Output length of a transposed convolution along spatial axis i before pads are cut."""
    return (
        attrs["strides"][i] * (spatial[i] - 1)
        + attrs["output_padding"][i]
        + (kernel[i] - 1) * attrs["dilations"][i]
        + 1
    )


def transpose_pads(ctx, spatial, kernel):
    """Explicit pads of a transposed convolution from output_shape / auto_pad, per ONNX."""
    attrs = ctx.attrs
    rank = len(spatial)
    output_shape = attrs["output_shape"]
    if output_shape is None and attrs["auto_pad"] in ("NOTSET", "VALID"):
        return tuple(attrs["pads"]) if attrs["auto_pad"] == "NOTSET" else (0,) * (2 * rank)
    if output_shape is None:
        output_shape = tuple(spatial[i] * attrs["strides"][i] for i in range(rank))
    if len(output_shape) != rank:
        raise ctx.error(f"output_shape={list(output_shape)} should have {rank} entries")
    begins, ends = [], []
    for i in range(rank):
        total = _unpadded_size(attrs, spatial, kernel, i) - output_shape[i]
        half = total // 2 if isinstance(total, int) else sympy.floor(total / 2)
        if attrs["auto_pad"] == "SAME_UPPER":
            begins.append(half)
            ends.append(total - half)
        else:
            begins.append(total - half)
            ends.append(half)
    return tuple(begins) + tuple(ends)


def infer_conv_transpose(ctx):
    x, w = ctx.inputs[0], ctx.inputs[1]
    kernel = _check_operands(ctx)
    rank = x.rank - 2
    spatial_attrs(ctx, rank, kernel)
    attrs = ctx.attrs
    group = attrs["group"]
    if attrs["output_padding"] is None:
        attrs["output_padding"] = (0,) * rank
    if len(attrs["output_padding"]) != rank:
        raise ctx.error(
            f"output_padding={list(attrs['output_padding'])} should have {rank} entries"
        )
    for i, op in enumerate(attrs["output_padding"]):
        if op >= max(attrs["strides"][i], attrs["dilations"][i]) or op < 0:
            raise ctx.error(
                f"output_padding={list(attrs['output_padding'])} must be smaller than the stride "
                f"or dilation along axis {i}"
            )
    channels = x.shape[1]
    if (w.shape[0] - channels) != 0:
        raise ctx.error(f"input x has {channels} channels but weight {w} expects {w.shape[0]}")
    if is_known(channels) and int(channels) % group:
        raise ctx.error(f"group={group} does not divide the {channels} input channels")
    out_channels = w.shape[1] * group
    _check_bias(ctx, out_channels)
    spatial = x.shape[2:]
    pads = transpose_pads(ctx, spatial, kernel)
    if all(is_known(sympy.sympify(p)) for p in pads):
        attrs["pads"] = tuple(int(p) for p in pads)
        attrs["auto_pad"] = "NOTSET"
        attrs["output_shape"] = None
    out = []
    for i in range(rank):
        size = _unpadded_size(attrs, spatial, kernel, i) - pads[i] - pads[i + rank]
        size = sympy.sympify(size)
        if is_known(size) and size < 1:
            raise ctx.error(f"output size {size} along spatial axis {i} is not positive")
        out.append(size)
    return [TensorType((x.shape[0], out_channels, *out), x.dtype)]


define(
    "conv",
    ("x", "w", "b"),
    infer_conv,
    attrs=CONV_ATTRS,
    num_required=2,
    family="conv",
    doc="N-d cross-correlation with stride, dilation, padding and groups.",
)
define(
    "conv_transpose",
    ("x", "w", "b"),
    infer_conv_transpose,
    attrs={
        **CONV_ATTRS,
        "output_padding": Attr("ints"),
        "output_shape": Attr("ints"),
    },
    num_required=2,
    family="conv",
    doc="Transposed convolution: the gradient of conv with respect to its input.",
)
