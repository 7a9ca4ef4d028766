"""A dense layer of one row (a GEMV) with large weights, read as several streams.

Stage: part of lowering (`group`), before scheduling. Input: a tensor expression.
Output: the expressions to lower in its place (`split_streams`).

At batch 1 a dense layer reads each weight once, and the weights of one vector of
outputs are one contiguous panel (`packing`). Read front to back, a panel is one stream,
and one stream from memory arrives no faster than the lines one hardware prefetch stream
keeps in flight. Weights of STREAMS_MIN_BYTES or more are therefore read as STREAMS
streams: the reduction is cut into that many equal parts, each a row of a dense
partial-sum expression

    part[s, j] = Σ_{k < K/S} x[0, s*K/S + k] * W[j, s*K/S + k]
    y[0, j]    = Σ_s part[s, j]     (then the layer's bias and the fused chain)

whose register block over rows (`registers.ROW_BLOCK`) reads the S parts of each panel
side by side. Measured (one process per variant, one thread, median ms, one stream -> four):
AlexNet at batch 1 25.3 -> 23.0 (fc6, 9216->4096, 151 MB: 10.8 -> 9.5; fc7, 4096->4096:
5.3 -> 4.3), on two threads 12.7 -> 11.7; VGG-11 123.7 -> 118.7 (fc6, 25088->4096,
411 MB: 30.1 -> 25.5). Two streams gained less, eight no more. Smaller weights gain
where they come from memory, as inside a model, whose other layers stream through the
caches between two runs of it: MobileNetV2's classifier (1280->1000, 5 MB) 0.30-0.39 ->
0.26-0.31 ms, ResNet-18's fc (2 MB) 0.17-0.19 -> 0.15-0.18 ms, a 4096->1000 layer after
256 MB of other writes 1.44 -> 1.09 ms. Repeated alone, its weights found in the
last-level cache, a 16 MB layer measured the same either way (0.636 ms, 4096->1000).
Below STREAMS_MIN_BYTES (a small layer, from cache) the parts would only add work.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc.texpr import TensorExpr, access, index

#: Weight streams of a split GEMV, and the weight bytes from which it is split.
STREAMS, STREAMS_MIN_BYTES = 4, 1 << 20


def split_streams(te: TensorExpr) -> list[TensorExpr]:
    """The expressions to lower for `te`, in order: [the partial sums of STREAMS parts of the
    reduction, their sum] for a 2-D dense layer of one known row whose weights pass
    STREAMS_MIN_BYTES (module doc); for a batch known only at run time, those two
    specialised to one row and then `te` itself, each with attrs["rows_test"] = (comparison,
    batch) against 1, so the batch decides which run (`group`); else [te]."""
    if te.attrs.get("family") != "dense" or te.reduction != "sum" or len(te.indices) != 2:
        return [te]
    (rows, features), (depth,) = te.shape, te.reduce_shape
    if not (features.is_number and depth.is_number) or depth % STREAMS:
        return [te]
    if int(features * depth) * 4 < STREAMS_MIN_BYTES or not (rows == 1 or rows.is_Symbol):
        return [te]
    parts = _streams(te, features, depth)
    if rows == 1:
        return parts
    one = [replace(p, attrs={**p.attrs, "rows_test": ("eq", rows)}) for p in parts]
    return [*one, replace(te, attrs={**te.attrs, "rows_test": ("ne", rows)})]


def _streams(te: TensorExpr, features, depth) -> list[TensorExpr]:
    """[part, total] of the module doc for `te` at one row. The part records the layer's
    reduction depth (attrs["streams_of"]): its panels take the layer's width, so a layer
    compiled for any batch packs its weights once, and its rows are not tuned."""
    i, j = te.indices
    (k,) = te.reduce_indices
    s, part_depth = index(f"{k}_stream"), depth // STREAMS
    place = {i: sympy.Integer(0), k: s * part_depth + k}
    part = replace(
        te,
        name=f"{te.name}:streams",
        indices=(s, j),
        shape=(STREAMS, features),
        body=te.body.xreplace(place),
        reduce_shape=(part_depth,),
        condition=te.condition.xreplace(place),
        epilogue=None,
        role="temp",
        attrs={**te.attrs, "streams_of": depth},
    )
    total = replace(
        te,
        shape=(1, features),
        body=access(part.name, (s, j), te.dtype),
        reduce_indices=(s,),
        reduce_shape=(STREAMS,),
        condition=sympy.true,
        attrs={**te.attrs, "family": "reduce"},
    )
    return [part, total]
