"""Sliding-window arithmetic shared by convolution and pooling.

Pads are held in ONNX order: all begins, then all ends (`[top, left, bottom,
right]` in 2-D). `auto_pad` SAME_UPPER/SAME_LOWER pads are computed from the
input size; when that size is symbolic they stay sympy expressions and are
resolved with concrete sizes at run time through the same function.
"""

from __future__ import annotations

import sympy

from ..types import is_known

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def floor_div(a, b):
    """a // b for ints and sympy expressions alike."""
    if is_known(sympy.sympify(a)) and is_known(sympy.sympify(b)):
        return sympy.Integer(int(a) // int(b))
    return sympy.floor(sympy.sympify(a) / b)


def ceil_div(a, b):
    if is_known(sympy.sympify(a)) and is_known(sympy.sympify(b)):
        return sympy.Integer(-(-int(a) // int(b)))
    return sympy.ceiling(sympy.sympify(a) / b)


def same_pads(size, kernel, stride, dilation, auto_pad):
    """(begin, end) pads that make out = ceil(size / stride), extra pad at the end (UPPER) or begin."""
    out = ceil_div(size, stride)
    total = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    total = sympy.Max(total, 0) if not is_known(sympy.sympify(total)) else max(int(total), 0)
    small = floor_div(total, 2)
    large = total - small
    return (small, large) if auto_pad == "SAME_UPPER" else (large, small)


def resolve_pads(spatial, kernel, strides, dilations, pads, auto_pad):
    """The explicit pads [begins..., ends...] for an input of spatial size `spatial`."""
    rank = len(spatial)
    if auto_pad == "VALID":
        return (0,) * (2 * rank)
    if auto_pad == "NOTSET":
        return tuple(pads)
    pairs = [
        same_pads(spatial[i], kernel[i], strides[i], dilations[i], auto_pad) for i in range(rank)
    ]
    return tuple(p[0] for p in pairs) + tuple(p[1] for p in pairs)


def window_count(size, kernel, stride, dilation, pad_begin, pad_end, ceil_mode=False):
    """Number of window positions along one axis.

    With ceil_mode a last window that would start inside the right padding is
    dropped (the rule PyTorch and ONNX Runtime apply).
    """
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return floor_div(span, stride) + 1
    out = ceil_div(span, stride) + 1
    starts_in_padding = (out - 1) * stride >= size + pad_begin
    if isinstance(starts_in_padding, bool) or starts_in_padding in (sympy.true, sympy.false):
        return out - 1 if starts_in_padding else out
    return sympy.Piecewise((out - 1, starts_in_padding), (out, True))


def check_window(ctx, spatial, kernel, strides, dilations, pads, what="input"):
    """Raise when a concrete padded input is smaller than the dilated kernel or a count is < 1."""
    rank = len(spatial)
    for i in range(rank):
        if strides[i] < 1 or dilations[i] < 1 or kernel[i] < 1:
            raise ctx.error(
                f"kernel {list(kernel)}, strides {list(strides)} and dilations {list(dilations)} "
                "must all be positive"
            )
        padded = sympy.sympify(spatial[i] + pads[i] + pads[i + rank])
        extent = dilations[i] * (kernel[i] - 1) + 1
        if is_known(padded) and int(padded) < extent:
            raise ctx.error(
                f"dilated kernel extent {extent} along spatial axis {i} is larger than the "
                f"padded {what} size {padded} (size {spatial[i]}, pads {pads[i]}+{pads[i + rank]})"
            )
    if any(p < 0 for p in pads if is_known(sympy.sympify(p))):
        raise ctx.error(f"pads {list(pads)} must not be negative")


def spatial_attrs(ctx, rank: int, kernel):
    """Fill per-rank defaults of strides, dilations and pads, and validate their lengths."""
    attrs = ctx.attrs
    for name, default in (("strides", 1), ("dilations", 1)):
        if name not in attrs:
            continue
        if attrs[name] is None:
            attrs[name] = (default,) * rank
        elif len(attrs[name]) != rank:
            raise ctx.error(f"{name}={list(attrs[name])} should have {rank} entries")
    if attrs.get("pads") is None:
        attrs["pads"] = (0,) * (2 * rank)
    elif len(attrs["pads"]) != 2 * rank:
        raise ctx.error(f"pads={list(attrs['pads'])} should have {2 * rank} entries (begins, ends)")
    attrs["kernel_shape"] = tuple(int(k) for k in kernel)


def output_sizes(ctx, spatial, kernel, pads, ceil_mode=False):
    """Window counts along every spatial axis; SAME padding gives ceil(size / stride) directly."""
    attrs = ctx.attrs
    rank = len(spatial)
    if attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER") and not ceil_mode:
        return [ceil_div(spatial[i], attrs["strides"][i]) for i in range(rank)]
    return [
        window_count(
            spatial[i],
            kernel[i],
            attrs["strides"][i],
            attrs["dilations"][i],
            pads[i],
            pads[i + rank],
            ceil_mode,
        )
        for i in range(rank)
    ]
