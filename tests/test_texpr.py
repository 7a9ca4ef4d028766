"""Tensor expressions: every op's definition, evaluated by brute force, equals the interpreter.

Each case builds a one-node float64 graph, evaluates the node's tensor expressions
with `convc.texpr.evaluate` (a NumPy loop over the whole output x reduction index
space) and compares every output with `convc.interpret`, the independent NumPy
reference. Configurations are drawn by hypothesis (1-D/2-D/3-D, strides,
dilations, groups, asymmetric and SAME pads, ceil_mode, count_include_pad).
Both sides compute in float64, so the tolerance is tight (rtol 1e-10, atol 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import convc
import ir
from convc.texpr import RULES, texpr_latex, texpr_of, texpr_str, texpr_text
from convc.texpr.evaluate import evaluate_all
from ir.binding import bind_inputs

RTOL, ATOL = 1e-10, 1e-12
F64 = "float64"
FAST = settings(max_examples=25, deadline=None)


def rand(rng, shape, positive=False):
    data = rng.standard_normal(shape)
    return np.abs(data) + 0.5 if positive else data


def check_node(graph, node_name, inputs):
    """Every output of the node: tensor-expression evaluation == interpreter (float64)."""
    node = graph.nodes[node_name]
    graph.set_outputs(*node.outputs)
    expected = convc.interpret(graph, inputs)
    bindings = bind_inputs(graph, inputs)
    env = dict(inputs)
    env.update({v.name: v.data for v in graph.values.values() if v.data is not None})
    exprs = texpr_of(graph, node)
    assert sorted(e.name for e in exprs if e.role == "output") == sorted(node.outputs)
    got = evaluate_all(exprs, env, bindings)
    for name in node.outputs:
        assert got[name].shape == expected[name].shape, name
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)
    return exprs


def one_node(op, input_shapes, attrs=None, params=(), consts=(), outputs=None, seed=0):
    """A graph with inputs x0, x1, ... (float64), params/consts given as (name, array)."""
    rng = np.random.default_rng(seed)
    g = ir.Graph(op)
    inputs = {}
    names = []
    for k, shape in enumerate(input_shapes):
        name = f"x{k}"
        g.add_input(name, shape, F64)
        names.append(name)
        inputs[name] = rand(rng, tuple(2 if isinstance(d, str) else d for d in shape))
    for name, array in params:
        g.add_param(name, array)
        names.append(name)
    for name, array in consts:
        g.add_const(name, array)
        names.append(name)
    g.add_node(op, names, attrs or {}, name="node", outputs=outputs)
    return g, inputs


# ----- convolution -------------------------------------------------------------------------


@st.composite
def windows(draw, max_rank=3, pool=False):
    """rank, kernel, strides, dilations, pads, auto_pad and a spatial size that fits."""
    rank = draw(st.integers(1, max_rank))
    small = rank == 3
    kernel = [draw(st.integers(1, 2 if small else 3)) for _ in range(rank)]
    strides = [draw(st.integers(1, 2 if small else 3)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 1 if small else 2)) for _ in range(rank)]
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    limit = [e - 1 if pool else 2 for e in extents]
    pads = [draw(st.integers(0, lim)) for lim in limit] * 2
    pads = [draw(st.integers(0, lim)) for lim in limit] + pads[rank:]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    spatial = [max(e, 1) + draw(st.integers(0, 2 if small else 4)) for e in extents]
    return rank, kernel, strides, dilations, pads, auto_pad, spatial


def window_attrs(kernel, strides, dilations, pads, auto_pad):
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dilations}
    if auto_pad == "NOTSET":
        return attrs | {"pads": pads}
    return attrs | {"auto_pad": auto_pad}


@FAST
@given(windows(), st.integers(1, 2), st.sampled_from([1, 2, "depthwise"]), st.booleans())
def test_conv_matches_interpreter(window, batch, groups, bias):
    rank, kernel, strides, dilations, pads, auto_pad, spatial = window
    group = 3 if groups == "depthwise" else groups
    channels, out_channels = (3, 3) if groups == "depthwise" else (2 * group, 3 * group)
    if rank == 3:
        channels, out_channels, group = (2, 2, 2) if groups != 1 else (2, 2, 1)
    rng = np.random.default_rng(rank)
    w = rand(rng, (out_channels, channels // group, *kernel))
    params = [("w", w)] + ([("b", rand(rng, out_channels))] if bias else [])
    attrs = window_attrs(kernel, strides, dilations, pads, auto_pad) | {"group": group}
    g, inputs = one_node("conv", [(batch, channels, *spatial)], attrs, params)
    check_node(g, "node", inputs)


@FAST
@given(windows(max_rank=2), st.sampled_from([1, 2]), st.integers(0, 1), st.booleans())
def test_conv_transpose_matches_interpreter(window, group, extra, bias):
    _rank, kernel, strides, dilations, pads, auto_pad, spatial = window
    rng = np.random.default_rng(0)
    w = rand(rng, (2 * group, 2, *kernel))
    params = [("w", w)] + ([("b", rand(rng, 2 * group))] if bias else [])
    output_padding = [min(extra, max(s, d) - 1) for s, d in zip(strides, dilations)]
    attrs = {
        "kernel_shape": kernel,
        "strides": strides,
        "dilations": dilations,
        "group": group,
        "output_padding": output_padding,
    }
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = [min(p, k - 1) for p, k in zip(pads, kernel * 2)]
    g, inputs = one_node("conv_transpose", [(1, 2 * group, *spatial)], attrs, params)
    exprs = check_node(g, "node", inputs)
    if any(s > 1 for s in strides):
        assert "Mod" in str(exprs[0].condition)  # the divisibility condition is explicit


def test_conv_with_symbolic_batch_and_same_pads_over_symbolic_sizes():
    """SAME pads over symbolic H, W stay sympy expressions and evaluate once bound."""
    rng = np.random.default_rng(1)
    g = ir.Graph("same")
    g.add_input("x", ("N", 2, "H", "W"), F64)
    g.add_param("w", rand(rng, (3, 2, 3, 2)))
    g.add_node("conv", ["x", "w"], {"strides": [2, 3], "auto_pad": "SAME_LOWER"}, name="node")
    (e,) = texpr_of(g, "node")
    assert ir.symbol("H") in e.condition.free_symbols
    for shape in [(1, 2, 5, 7), (3, 2, 6, 4)]:
        check_node(g, "node", {"x": rand(rng, shape)})


# ----- pooling -----------------------------------------------------------------------------


@FAST
@given(windows(pool=True), st.sampled_from(["max_pool", "avg_pool"]), st.booleans(), st.booleans())
def test_pool_matches_interpreter(window, op, ceil_mode, include_pad):
    _rank, kernel, strides, dilations, pads, auto_pad, spatial = window
    attrs = window_attrs(kernel, strides, dilations, pads, auto_pad)
    attrs["ceil_mode"] = int(ceil_mode)
    if op == "avg_pool":
        attrs["count_include_pad"] = int(include_pad)
    g, inputs = one_node(op, [(2, 2, *spatial)], attrs)
    check_node(g, "node", inputs)


def test_max_pool_padding_never_wins():
    g, _ = one_node("max_pool", [(1, 1, 3)], {"kernel_shape": [3], "pads": [2, 2]})
    inputs = {"x0": -np.ones((1, 1, 3))}
    exprs = check_node(g, "node", inputs)
    assert exprs[0].identity == -sympy.oo


@pytest.mark.parametrize("op", ["global_avg_pool", "global_max_pool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 2, 3, 4), (1, 2, 2, 3, 2)])
def test_global_pool_matches_interpreter(op, shape):
    g, inputs = one_node(op, [shape])
    check_node(g, "node", inputs)


# ----- dense -------------------------------------------------------------------------------


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (4,), (3, 1), (3, 4), ()])
def test_gemm_matches_interpreter(trans_a, trans_b, c_shape):
    rng = np.random.default_rng(2)
    a_shape = (5, 3) if trans_a else (3, 5)
    params = [("B", rand(rng, (4, 5) if trans_b else (5, 4)))]
    if c_shape is not None:
        params.append(("C", rand(rng, c_shape)))
    attrs = {"alpha": 0.5, "beta": 2.0, "transA": trans_a, "transB": trans_b}
    g, inputs = one_node("gemm", [a_shape], attrs, params)
    check_node(g, "node", inputs)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,))],
)
def test_matmul_matches_interpreter(a_shape, b_shape):
    g, inputs = one_node("matmul", [a_shape, b_shape])
    check_node(g, "node", inputs)


# ----- elementwise -------------------------------------------------------------------------


@st.composite
def broadcast_pair(draw):
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    other = [d if draw(st.booleans()) else 1 for d in shape]
    other = other[draw(st.integers(0, len(other) - 1)) :]
    return (shape, other) if draw(st.booleans()) else (other, shape)


@FAST
@given(broadcast_pair(), st.sampled_from(["add", "sub", "mul", "div"]))
def test_binary_broadcasting_matches_interpreter(shapes, op):
    g, inputs = one_node(op, list(shapes))
    check_node(g, "node", inputs)


ACTIVATION_CASES = [
    ("relu", {}),
    ("leaky_relu", {"alpha": 0.2}),
    ("elu", {"alpha": 0.7}),
    ("selu", {}),
    ("sigmoid", {}),
    ("hard_sigmoid", {"alpha": 0.3, "beta": 0.4}),
    ("tanh", {}),
    ("softplus", {}),
    ("silu", {}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
]


@pytest.mark.parametrize("op, attrs", ACTIVATION_CASES)
def test_activation_matches_interpreter(op, attrs):
    g, inputs = one_node(op, [(2, 3, 4)], attrs)
    inputs["x0"] = inputs["x0"] * 3
    check_node(g, "node", inputs)


@pytest.mark.parametrize("bounds", [(), (-0.5,), (-0.5, 0.7), (None, 0.3)])
def test_clip_matches_interpreter(bounds):
    consts = [(f"bound{k}", np.array(v)) for k, v in enumerate(bounds) if v is not None]
    g = ir.Graph("clip")
    g.add_input("x", (3, 4), F64)
    for name, value in consts:
        g.add_const(name, value)
    names = [None if v is None else f"bound{k}" for k, v in enumerate(bounds)]
    g.add_node("clip", ["x", *names], name="node")
    check_node(g, "node", {"x": np.random.default_rng(3).standard_normal((3, 4))})


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (3, 4, 5)])
def test_prelu_matches_interpreter(slope_shape):
    rng = np.random.default_rng(4)
    g, inputs = one_node("prelu", [(2, 3, 4, 5)], params=[("slope", rand(rng, slope_shape))])
    check_node(g, "node", inputs)


# ----- normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize("training", [0, 1])
@pytest.mark.parametrize("shape", [(3, 2), (2, 3, 4), (2, 2, 3, 2)])
def test_batch_norm_matches_interpreter(training, shape):
    rng = np.random.default_rng(5)
    c = shape[1]
    params = [(s, rand(rng, c)) for s in ("scale", "bias", "mean")]
    params.append(("var", rand(rng, c, positive=True)))
    outputs = ["y", "rm", "rv"] if training else None
    attrs = {"training_mode": training, "epsilon": 1e-3, "momentum": 0.8}
    g, inputs = one_node("batch_norm", [shape], attrs, params, outputs=outputs)
    check_node(g, "node", inputs)


def test_dropout_inference_is_a_view_and_training_is_unsupported():
    g, inputs = one_node("dropout", [(2, 3)], {"ratio": 0.3}, outputs=["y", "mask"])
    exprs = check_node(g, "node", inputs)
    assert exprs[0].attrs["view"]
    g, _ = one_node("dropout", [(2, 3)], {"ratio": 0.3, "training_mode": 1})
    with pytest.raises(convc.UnsupportedError, match="dropout 'node'.*ratio=0.3"):
        texpr_of(g, "node")


# ----- data movement -----------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_flatten_matches_interpreter(axis):
    g, inputs = one_node("flatten", [(2, 3, 2, 2)], {"axis": axis})
    (e,) = check_node(g, "node", inputs)
    assert e.attrs["view"]


@pytest.mark.parametrize(
    "shape, target", [((2, 3, 4), [6, -1]), ((2, 6), [0, 3, 2]), ((4, 3), [2, 2, 3]), ((6,), [6])]
)
def test_reshape_matches_interpreter(shape, target):
    g, inputs = one_node("reshape", [shape], consts=[("shape", np.array(target, np.int64))])
    check_node(g, "node", inputs)


def test_reshape_with_symbolic_batch():
    g, _ = one_node("reshape", [("N", 3, 2)], consts=[("shape", np.array([0, -1], np.int64))])
    check_node(g, "node", {"x0": np.arange(18.0).reshape(3, 3, 2)})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_matches_interpreter(axis):
    shapes = [[2, 3, 2], [2, 3, 2], [2, 3, 2]]
    for k, shape in enumerate(shapes):
        shape[axis] = k + 1
    g, inputs = one_node("concat", shapes, {"axis": axis})
    check_node(g, "node", inputs)


def test_identity_matches_interpreter():
    g, inputs = one_node("identity", [(2, 3)])
    check_node(g, "node", inputs)


@pytest.mark.parametrize(
    "pads, axes, value",
    [([1, 0, 2, 1], None, None), ([1, 2], [1], 1.5), ([0, -1, 2, 1], None, -2.0)],
)
def test_pad_matches_interpreter(pads, axes, value):
    consts = [("pads", np.array(pads, np.int64))]
    consts.append(("value", np.array(value if value is not None else 0.0)))
    if axes is not None:
        consts.append(("axes", np.array(axes, np.int64)))
    g, inputs = one_node("pad", [(3, 4)], consts=consts)
    check_node(g, "node", inputs)


def test_pad_with_runtime_amounts_is_unsupported():
    g = ir.Graph("pad")
    g.add_input("x", (3, 4), F64)
    g.add_input("amounts", (4,), "int64")
    g.add_node("pad", ["x", "amounts"], name="node")
    with pytest.raises(convc.UnsupportedError, match="pad 'node': pads 'amounts'"):
        texpr_of(g, "node")


# ----- softmax and losses ------------------------------------------------------------------


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_matches_interpreter(op, axis):
    g, inputs = one_node(op, [(2, 3, 4)], {"axis": axis})
    check_node(g, "node", inputs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, 1])
@pytest.mark.parametrize("extra", [(), (2,), (1, 2, 1, 1, 2)])
def test_softmax_cross_entropy_matches_interpreter(reduction, weighted, ignore, extra):
    rng = np.random.default_rng(6)
    g = ir.Graph("sce")
    g.add_input("scores", (3, 4, *extra), F64)
    g.add_input("labels", (3, *extra), "int64")
    names = ["scores", "labels"]
    if weighted:
        g.add_param("weights", rand(rng, 4, positive=True))
        names.append("weights")
    attrs = {"reduction": reduction, "ignore_index": ignore}
    g.add_node("softmax_cross_entropy", names, attrs, name="node", outputs=["loss", "log_prob"])
    labels = rng.integers(0, 4, (3, *extra))
    labels.reshape(-1)[0] = 1
    check_node(g, "node", {"scores": rand(rng, (3, 4, *extra)), "labels": labels})


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_interpreter(reduction):
    g, inputs = one_node("mse_loss", [(2, 3), (2, 3)], {"reduction": reduction})
    check_node(g, "node", inputs)


# ----- coverage, printing ------------------------------------------------------------------


def test_every_op_has_a_rule():
    assert sorted(ir.OPS) == sorted(RULES)


def conv_example():
    g = ir.Graph("example")
    g.add_input("x", ("N", 3, 32, 32))
    g.add_param("w", np.zeros((8, 3, 5, 5), np.float32))
    g.add_node("conv", ["x", "w"], {"strides": [2, 2], "pads": [1, 1, 2, 2]}, name="y")
    g.add_node("relu", ["y"], name="r")
    g.set_outputs("r")
    return g


def test_printer_is_readable_index_notation():
    assert texpr_text(conv_example()) == (
        "texpr example\n\n"
        "# y (conv)\n"
        "y[n, o, i, j] = Σ_{c<3, a<5, b<5} w[o, c, a, b]*x[n, c, a + 2*i - 1, b + 2*j - 1]"
        "  where 0 <= a + 2*i - 1 < 32 and 0 <= b + 2*j - 1 < 32\n\n"
        "# r (relu)\n"
        "r[n, c, i, j] = max(0, y[n, c, i, j])\n"
    )


def test_printer_latex_and_epilogue():
    g, _ = one_node("avg_pool", [(1, 1, 5)], {"kernel_shape": [3], "pads": [1, 1]})
    _count, y = texpr_of(g, "node")
    assert texpr_str(y).splitlines()[0] == "node[n, c, i] = acc/node.count[i]"
    latex = texpr_latex(y)
    assert r"\sum_{a < 3}" in latex and r"\frac{acc}" in latex
    assert texpr_text(g, latex=True) == texpr_text(g, latex=True)


def test_evaluation_in_blocks_matches(monkeypatch):
    """Large index spaces are evaluated in blocks along the first output axis."""
    from convc.texpr import evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "BLOCK_ELEMENTS", 40)
    rng = np.random.default_rng(9)
    params = [("w", rand(rng, (3, 2, 3, 3))), ("b", rand(rng, 3))]
    g, inputs = one_node("conv", [(5, 2, 6, 5)], {"pads": [1, 0, 1, 2]}, params)
    check_node(g, "node", inputs)
    attrs = {"kernel_shape": [2, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1, "strides": [2, 2]}
    g, inputs = one_node("avg_pool", [(4, 2, 5, 5)], attrs)
    check_node(g, "node", inputs)


def test_temporaries_never_take_a_graph_value_name():
    """A cross-entropy node 'loss' with class weights named 'loss.weight' (as a DSL names them)
    keeps its own `loss.weight` temporary apart from the parameter."""
    rng = np.random.default_rng(10)
    g = ir.Graph("named")
    g.add_input("scores", (3, 4), F64)
    g.add_input("labels", (3,), "int64")
    g.add_param("loss.weight", rand(rng, 4, positive=True))
    g.add_node("softmax_cross_entropy", ["scores", "labels", "loss.weight"], name="loss")
    exprs = check_node(g, "loss", {"scores": rand(rng, (3, 4)), "labels": np.array([0, 3, 1])})
    assert "loss.weight_1" in [e.name for e in exprs]
