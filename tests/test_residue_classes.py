"""Strided input gradients and transposed convolutions split by output residue class.

`convc.lower.residue_classes` writes each strided output axis as `u = s*q + r`, so each
class is a stride-1 correlation with affine indices; the lowering pads its operand once
for all classes and runs the classes without bound checks. Compiled results are checked
against the interpreter in float64 (rtol 1e-4, atol 1e-4: float32 sums of up to a few
hundred products; the interpreter's gradients are checked against finite differences in
test_gradient.py, its transposed convolution against ONNX's cases in
test_onnx_backend.py). The loop-IR tests check that the classes' interior loops hold no
check at all, and no divisibility (Mod) test anywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import convc
import ir
from convc import loops
from convc.compiler import lower_graph
from convc.lower.residue_classes import residue_classes
from convc.texpr import texpr_of

RTOL = ATOL = 1e-4

# (batch, channels, out channels, spatial, kernel, strides, pads, dilations, group)
CONV_CASES = {
    "stride 2, 16k channels": (2, 16, 8, (12, 15), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    "stride 3, odd widths": (1, 3, 5, (13, 11), (3, 3), (3, 3), (1, 0, 2, 1), (1, 1), 1),
    "stride 2, asymmetric pads": (3, 5, 7, (9, 17), (4, 3), (2, 2), (0, 2, 1, 0), (1, 1), 1),
    "stride 3, dilation 2": (1, 4, 6, (16, 16), (3, 3), (3, 3), (2, 2, 2, 2), (2, 2), 1),
    "stride 2, groups 2": (3, 4, 6, (10, 11), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2),
    "stride 1, groups 4": (2, 32, 32, (9, 20), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4),
    "stride 2, 1x1 kernel": (1, 32, 16, (7, 7), (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    "stride 2, 1-D": (3, 6, 16, (21,), (5,), (2,), (2, 1), (1,), 1),
}

# (batch, in channels, out channels, spatial, kernel, strides, pads, dilations, group,
#  output_padding, bias, weights as a parameter)
TRANSPOSE_CASES = {
    "4x4 s2, 32 channels": (
        1,
        16,
        32,
        (7, 7),
        (4, 4),
        (2, 2),
        (1, 1, 1, 1),
        (1, 1),
        1,
        (0, 0),
        True,
        True,
    ),
    "3x3 s2, output padding": (
        3,
        5,
        7,
        (6, 9),
        (3, 3),
        (2, 2),
        (1, 1, 1, 1),
        (1, 1),
        1,
        (1, 1),
        True,
        False,
    ),
    "3x3 s3, asymmetric pads": (
        1,
        3,
        16,
        (5, 7),
        (3, 3),
        (3, 3),
        (0, 1, 2, 0),
        (1, 1),
        1,
        (0, 2),
        False,
        True,
    ),
    "3x3 s2, dilation 3": (
        3,
        4,
        5,
        (6, 6),
        (3, 3),
        (2, 2),
        (2, 2, 2, 2),
        (3, 3),
        1,
        (0, 0),
        False,
        False,
    ),
    "4x4 s2, groups 2": (
        1,
        4,
        6,
        (5, 8),
        (4, 4),
        (2, 2),
        (1, 2, 1, 0),
        (1, 1),
        2,
        (0, 0),
        True,
        True,
    ),
    "2x2 s2, stride 1 other": (
        3,
        17,
        3,
        (9, 4),
        (2, 3),
        (2, 1),
        (0, 0, 0, 1),
        (1, 1),
        1,
        (1, 0),
        True,
        False,
    ),
    "5 s3, 1-D": (1, 6, 16, (11,), (5,), (3,), (1, 2), (1,), 1, (2,), False, True),
}


def _attrs(kernel, strides, pads, dilations, group):
    return {
        "kernel_shape": list(kernel),
        "strides": list(strides),
        "pads": list(pads),
        "dilations": list(dilations),
        "group": group,
    }


def conv_graph(batch, channels, out_channels, spatial, kernel, strides, pads, dilations, group):
    g = ir.Graph("layer")
    g.add_input("x", (batch, channels, *spatial), "float32")
    g.add_input("w", (out_channels, channels // group, *kernel), "float32")
    g.add_node("conv", ["x", "w"], _attrs(kernel, strides, pads, dilations, group), outputs=["y"])
    g.set_outputs("y")
    return g


def transpose_graph(case, seed=0):
    batch, channels, out_channels, spatial, kernel, *window, output_padding, bias, param = case
    rng = np.random.default_rng(seed)
    g = ir.Graph("decoder")
    g.add_input("x", (batch, channels, *spatial), "float32")
    w_shape = (channels, out_channels // window[-1], *kernel)
    if param:
        g.add_param("w", rng.standard_normal(w_shape).astype(np.float32))
    else:
        g.add_input("w", w_shape, "float32")
    inputs = ["x", "w"]
    if bias:
        g.add_param("b", rng.standard_normal(out_channels).astype(np.float32))
        inputs.append("b")
    attrs = _attrs(kernel, *window) | {"output_padding": list(output_padding)}
    g.add_node("conv_transpose", inputs, attrs, outputs=["y"])
    g.set_outputs("y")
    return g


def _feeds(graph, rng, names):
    shapes = {n: tuple(int(d) for d in graph.values[n].type.shape) for n in names}
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}


def _assert_close(graph, feeds, outputs):
    expected = convc.interpret(graph, feeds, dtype="float64")
    got = convc.compile(graph, threads=1).run(feeds)
    for out in outputs:
        np.testing.assert_allclose(got[out], expected[out], rtol=RTOL, atol=ATOL, err_msg=out)


@pytest.mark.parametrize("name", list(CONV_CASES))
def test_strided_input_gradient_equals_interpreted(name):
    gg = convc.gradient(conv_graph(*CONV_CASES[name]), wrt=["x", "w"])
    rng = np.random.default_rng(len(name))
    _assert_close(gg, _feeds(gg, rng, ("x", "w", "grad_y")), ("y", "grad_x", "grad_w"))


@pytest.mark.parametrize("name", list(TRANSPOSE_CASES))
def test_transposed_convolution_equals_interpreted(name):
    graph = transpose_graph(TRANSPOSE_CASES[name])
    inputs = [v for v in graph.inputs if v in ("x", "w")]
    _assert_close(graph, _feeds(graph, np.random.default_rng(len(name)), inputs), ("y",))


def test_classes_have_affine_indices_and_tight_taps():
    """Stride 2, kernel 3, pad 1: four classes (two per axis), whose taps number 1 or 2 per
    axis (not ceil(3/2) = 2 everywhere) and whose bodies hold no floor and no mod."""
    gg = convc.gradient(conv_graph(*CONV_CASES["stride 2, 16k channels"]), wrt=["x"])
    (te,) = texpr_of(gg, next(n for n in gg.topological_nodes() if n.op == "texpr"))
    classes = residue_classes(te)
    assert [c.attrs["residue"] for c in classes] == ["@0_0", "@0_1", "@1_0", "@1_1"]
    assert [tuple(int(e) for e in c.reduce_shape[1:]) for c in classes] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    assert [tuple(int(e) for e in c.shape[2:]) for c in classes] == [(6, 8), (6, 7), (6, 8), (6, 7)]
    for c, residues in zip(classes, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert not c.body.atoms(sympy.floor) and not c.body.atoms(sympy.Mod)
        assert c.attrs["store_index"][2:] == tuple(
            2 * q + r for q, r in zip(c.indices[2:], residues)
        )


def _walk(stmt):
    yield stmt
    children = ()
    if isinstance(stmt, loops.Block):
        children = stmt.stmts
    elif isinstance(stmt, loops.For):
        children = (stmt.body,)
    elif isinstance(stmt, loops.If):
        children = tuple(s for s in (stmt.then, stmt.orelse) if s is not None)
    for child in children:
        yield from _walk(child)


def _class_vectors(graph, kernel_name):
    """The vectorized loops of `kernel_name` that accumulate (the classes' interiors)."""
    program = lower_graph(graph)[2]
    kernel = next(k for k in program.kernels if k.name == kernel_name)
    return kernel, [
        s
        for s in _walk(kernel.body)
        if isinstance(s, loops.For)
        and s.width > 1
        and any(isinstance(a, loops.Alloc) for a in _walk(s.body))
    ]


@pytest.mark.parametrize(
    "graph, kernel_name, count",
    [
        (
            convc.gradient(conv_graph(*CONV_CASES["stride 2, 16k channels"]), wrt=["x"]),
            "d_conv_x",
            4,
        ),
        (convc.gradient(conv_graph(*CONV_CASES["stride 3, odd widths"]), wrt=["x"]), "d_conv_x", 9),
        (convc.gradient(conv_graph(*CONV_CASES["stride 2, groups 2"]), wrt=["x"]), "d_conv_x", 4),
        (convc.gradient(conv_graph(*CONV_CASES["stride 1, groups 4"]), wrt=["x"]), "d_conv_x", 1),
        (transpose_graph(TRANSPOSE_CASES["4x4 s2, 32 channels"]), "conv_transpose", 4),
        (transpose_graph(TRANSPOSE_CASES["3x3 s2, output padding"]), "conv_transpose", 4),
    ],
    ids=[
        "grad s2",
        "grad s3",
        "grad s2 groups",
        "grad groups",
        "transpose s2",
        "transpose output padding",
    ],
)
def test_class_interiors_hold_no_check(graph, kernel_name, count):
    """One vectorized accumulating loop per class, none holding an If; no Mod test in the
    kernel at all (the padded copy's bounds are its only checks)."""
    kernel, vectors = _class_vectors(graph, kernel_name)
    assert len(vectors) >= count
    for vector in vectors:
        assert not [s for s in _walk(vector) if isinstance(s, loops.If)]
    conditions = [loops.format_expr(s.cond) for s in _walk(kernel.body) if isinstance(s, loops.If)]
    assert not any("mod" in c.lower() or "%" in c for c in conditions)


def _scatter_input_gradient(dy, w, shape, strides, pads):
    """dx of a 2-D conv (dilation 1, one group) by scattering each dy element through its
    window, written independently of the tensor expressions."""
    kh, kw = w.shape[2:]
    height, width = shape[2] + pads[0] + pads[2] + kh, shape[3] + pads[1] + pads[3] + kw
    padded = np.zeros((shape[0], shape[1], height, width))
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            top, left = i * strides[0], j * strides[1]
            window = np.einsum("no,ocab->ncab", dy[:, :, i, j], w)
            padded[:, :, top : top + kh, left : left + kw] += window
    return padded[:, :, pads[0] : pads[0] + shape[2], pads[1] : pads[1] + shape[3]]


def test_stride_3_input_gradient_equals_an_independent_scatter():
    """Stride 3 hits floor((u + p)/3) exactly at integers, where a float quotient rounds
    down (5/3 + 1/3 < 2): interpreter and compiled code both match a NumPy scatter."""
    case = CONV_CASES["stride 3, odd widths"]
    graph = conv_graph(*case)
    gg = convc.gradient(graph, wrt=["x"])
    feeds = _feeds(gg, np.random.default_rng(3), ("x", "w", "grad_y"))
    expected = _scatter_input_gradient(
        feeds["grad_y"].astype(np.float64),
        feeds["w"].astype(np.float64),
        feeds["x"].shape,
        case[5],
        case[6],
    )
    interpreted = convc.interpret(gg, feeds, dtype="float64")["grad_x"]
    np.testing.assert_allclose(interpreted, expected, rtol=1e-12, atol=1e-12)
    got = convc.compile(gg, threads=1).run(feeds)["grad_x"]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_classes_share_their_parallel_loop():
    """The four classes of a stride-2 gradient with channel vectors run inside one parallel
    loop over batch x channel blocks, so each block finishes all classes in cache."""
    gg = convc.gradient(conv_graph(*CONV_CASES["stride 2, 16k channels"]), wrt=["x"])
    program = lower_graph(gg)[2]
    kernel = next(k for k in program.kernels if k.name == "d_conv_x")
    outer = [s for s in kernel.body.stmts if isinstance(s, loops.For)]
    holding = [s for s in outer if any(isinstance(a, loops.Alloc) for a in _walk(s))]
    assert len(holding) == 1
    assert sum(isinstance(a, loops.Alloc) for a in _walk(holding[0])) == 4
