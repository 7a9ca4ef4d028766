"""Pooling ops (1-D, 2-D, 3-D by the input's rank), with ONNX semantics.

max_pool / avg_pool  x: (N, C, *S) -> (N, C, *S_out), windows as in conv
                     (strides default to 1 here as in ONNX; the DSL defaults
                     them to the kernel as PyTorch does). ceil_mode keeps a
                     partial last window unless it would start in the right
                     padding. avg_pool divides by the window's size including
                     padding when count_include_pad, else by the in-bounds count.
global_*_pool        x: (N, C, *S) -> (N, C, 1, ...)
"""

from __future__ import annotations

import sympy

from ..types import TensorType, is_known
from .registry import REQUIRED, Attr, define
from .window import AUTO_PADS, check_window, output_sizes, resolve_pads, spatial_attrs

POOL_ATTRS = {
    "kernel_shape": Attr("ints", REQUIRED),
    "strides": Attr("ints"),
    "dilations": Attr("ints"),
    "pads": Attr("ints"),
    "auto_pad": Attr("str", "NOTSET", AUTO_PADS),
    "ceil_mode": Attr("int", 0, (0, 1)),
}


def infer_pool(ctx):
    x = ctx.inputs[0]
    ctx.require_rank(0, (3, 4, 5), "input x")
    ctx.require_float(0, "input x")
    rank = x.rank - 2
    kernel = ctx.attrs["kernel_shape"]
    if len(kernel) != rank:
        raise ctx.error(f"kernel_shape={list(kernel)} should have {rank} entries for input {x}")
    spatial_attrs(ctx, rank, kernel)
    attrs = ctx.attrs
    spatial = x.shape[2:]
    pads = resolve_pads(
        spatial, kernel, attrs["strides"], attrs["dilations"], attrs["pads"], attrs["auto_pad"]
    )
    if all(is_known(sympy.sympify(p)) for p in pads):
        attrs["pads"] = tuple(int(p) for p in pads)
        attrs["auto_pad"] = "NOTSET"
    for i in range(rank):
        extent = attrs["dilations"][i] * (kernel[i] - 1) + 1
        known = [int(p) for p in (pads[i], pads[i + rank]) if is_known(sympy.sympify(p))]
        if any(p >= extent for p in known):
            raise ctx.error(
                f"pads={list(pads)} must be smaller than the window extent {extent} along axis {i}"
            )
    check_window(ctx, spatial, kernel, attrs["strides"], attrs["dilations"], pads)
    out = output_sizes(ctx, spatial, kernel, pads, bool(attrs["ceil_mode"]))
    return [TensorType((*x.shape[:2], *out), x.dtype)]


def infer_global_pool(ctx):
    x = ctx.inputs[0]
    ctx.require_rank(0, (3, 4, 5), "input x")
    ctx.require_float(0, "input x")
    return [TensorType((*x.shape[:2], *(1,) * (x.rank - 2)), x.dtype)]


define(
    "max_pool",
    ("x",),
    infer_pool,
    attrs={**POOL_ATTRS, "storage_order": Attr("int", 0, (0,))},
    family="pool",
    doc="Maximum over each (dilated) window; padding never wins.",
)
define(
    "avg_pool",
    ("x",),
    infer_pool,
    attrs={**POOL_ATTRS, "count_include_pad": Attr("int", 0, (0, 1))},
    family="pool",
    doc="Mean over each window.",
)
define(
    "global_avg_pool",
    ("x",),
    infer_global_pool,
    family="pool",
    doc="Mean over all spatial positions.",
)
define(
    "global_max_pool",
    ("x",),
    infer_global_pool,
    family="pool",
    doc="Maximum over all spatial positions.",
)
