"""Weights repacked once at compile time into the layout a kernel reads best.

Stage: part of lowering. Input: a tensor expression, its schedule and the graph's
constant arrays. Output: the expression rewritten to read packed parameters,
and the packed arrays (new `param` buffers named after the layout:
`<weight>.oc<B>`, `<weight>.T`; weights shared by several kernels are packed once).

- conv with output channels blocked by B: OIHW -> [ceil(O/B)][I][H][W][B] (a partial
  last block zero-filled), so the B weights an input vector is multiplied with sit in
  one cache line (24 output channels gathered their weights with stride I*H*W: 3.4x
  slower than 32)
  (`w[o, c, a, b]` becomes `w.oc8[o // 8, c, a, b, o % 8]`, which the nest's
  block substitution `o = o_o*B + o_i` reduces to `[o_o, c, a, b, o_i]`); a tile of
  one group's B channels (`schedule.group_tile`) gets blocks of the vector's lanes, zero
  past B, so each block starts a line: one block a tile where the vector holds it
  (`w.oc30in32`), else several (`w.oc40in16`: 16 + 16 + 8, `schedule.tile_block`);
- 2-D dense with the output features tiled by P0 (the schedule's tile, 32): weights (either
  orientation, e.g. Linear's `w[j, k]` with transB=1) as [P/P0][K][P0] panels, streamed
  contiguously by each vector of outputs instead of gathered with stride K.
  (Batched matmuls read `w[.., k, j]`, already contiguous along j.)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import sympy

from convc.texpr import TensorExpr, access
from ir import Graph

from .schedule import tile_block


def _constant(graph: Graph, name: str) -> np.ndarray | None:
    value = graph.values.get(name)
    return value.data if value is not None and value.is_constant else None


def _rewrite(te: TensorExpr, source: str, packed: str, index_fn) -> TensorExpr:
    def swap(a):
        return access(packed, index_fn(a.indices), te.dtype)

    body = te.body.replace(lambda e: isinstance(e, sympy.Indexed) and str(e.base) == source, swap)
    return replace(te, body=body)


def _conv_block(graph, te, schedule, packs):
    size = schedule.tiles.get(str(te.indices[1])) if len(te.indices) > 1 else None
    weights = [a for a in te.body.atoms(sympy.Indexed) if a.indices[0] == te.indices[1]]
    if not size or len(weights) != 1:
        return te
    source = str(weights[0].base)
    data = _constant(graph, source)
    if data is None:
        return te
    lanes = size if schedule.vector_axis != f"{te.indices[1]}.i" else schedule.vector_width
    count, per = -(-data.shape[0] // size), -(-size // lanes)  # tiles, vectors a tile
    whole = np.zeros((count * size, *data.shape[1:]), dtype=data.dtype)
    whole[: data.shape[0]] = data  # a partial last tile is zero-filled
    tiles = np.zeros((count, per * lanes, *data.shape[1:]), dtype=data.dtype)
    tiles[:, :size] = whole.reshape(count, size, *data.shape[1:])
    blocks = tiles.reshape(count * per, lanes, *data.shape[1:])
    packed = f"{source}.oc{size}" + (f"in{lanes}" if lanes != size else "")
    packs[packed] = np.ascontiguousarray(np.moveaxis(blocks, 1, -1))

    def index(idx):
        block, lane = tile_block(idx[0], size, lanes)
        return (block, *idx[1:], lane)

    return _rewrite(te, source, packed, index)


def _dense_panels(graph, te, schedule, packs):
    """Constant 2-D weights read along the tiled output axis j -> [ceil(P/P0)][K][P0] panels
    (zero padded), so a vector of P0 outputs streams its weights contiguously over k."""
    axis = next(v for v in te.indices if str(v) == schedule.vector_axis[:-2])
    size = schedule.tiles[str(axis)]
    for a in te.body.atoms(sympy.Indexed):
        data = _constant(graph, str(a.base))
        if data is None or data.ndim != 2 or axis not in a.indices:
            continue
        where = a.indices.index(axis)
        matrix = data if where == 1 else data.T  # (K, P)
        padded = -(-matrix.shape[1] // size) * size
        panels = np.zeros((matrix.shape[0], padded), dtype=data.dtype)
        panels[:, : matrix.shape[1]] = matrix
        name = f"{a.base}.p{size}"
        packs[name] = np.ascontiguousarray(panels.reshape(matrix.shape[0], -1, size).swapaxes(0, 1))

        def index(idx, where=where):
            j, k = idx[where], idx[1 - where]
            return (sympy.floor(j / size), k, sympy.Mod(j, size))

        te = _rewrite(te, str(a.base), name, index)
    return te


def pack_weights(graph: Graph, te: TensorExpr, schedule) -> tuple[TensorExpr, dict]:
    """(`te` reading packed weights, {packed name: array}) for conv and dense reductions."""
    packs: dict = {}
    family = te.attrs.get("family")
    if te.reduction == "sum" and family == "conv" and te.op == "conv":
        te = _conv_block(graph, te, schedule, packs)
    elif te.reduction == "sum" and family == "dense" and ".i" in (schedule.vector_axis or ""):
        te = _dense_panels(graph, te, schedule, packs)
    return te, packs
