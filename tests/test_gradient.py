"""convc.gradient: every derived gradient equals central finite differences of the interpreter.

For a graph with output y and a random upstream gradient dy, the loss is
L = sum(y * dy); each `grad_<name>` output of the gradient graph (run by the
interpreter in float64) must equal (L(v + eps) - L(v - eps)) / (2 eps) element by
element, with eps = 1e-6 and L computed by the float64 interpreter on the
original graph. Tolerance: |got - fd| <= 1e-6 + 1e-6 * |fd| (central differences
in float64 are accurate to ~1e-9 here; inputs are drawn away from kinks and ties).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convc
import ir
from convc.texpr import index, texpr_of

EPS, RTOL, ATOL = 1e-6, 1e-6, 1e-6
FAST = settings(max_examples=6, deadline=None)


def loss(graph, output, inputs, upstream, name=None, value=None):
    """sum(output * upstream) in float64, with `name` (an input or parameter) set to `value`."""
    feed = dict(inputs)
    if name is not None:
        if name in feed:
            feed[name] = value
        else:
            graph = graph.copy()
            graph.values[name].data = value
    out = convc.interpret(graph, feed, dtype="float64")[output]
    return float(np.sum(out * upstream))


def finite_difference(graph, output, inputs, upstream, name):
    base = inputs[name] if name in inputs else graph.values[name].data
    base = np.asarray(base, dtype=np.float64)
    fd = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += EPS
        minus[idx] -= EPS
        fd[idx] = loss(graph, output, inputs, upstream, name, plus)
        fd[idx] -= loss(graph, output, inputs, upstream, name, minus)
    return fd / (2 * EPS)


def check_gradient(graph, inputs, wrt, output=None, seed=0):
    """grad_<w> of the gradient graph == finite differences, for every w in wrt."""
    output = output or graph.outputs[0]
    expected = convc.interpret(graph, inputs, dtype="float64")
    rng = np.random.default_rng(seed)
    upstream = rng.standard_normal(np.shape(expected[output]))
    gg = convc.gradient(graph, wrt=wrt, output=output)
    gg.verify()
    got = convc.interpret(gg, {**inputs, f"grad_{output}": upstream}, dtype="float64")
    assert list(got) == [*graph.outputs, *(f"grad_{w}" for w in wrt)]
    for w in wrt:
        fd = finite_difference(graph, output, inputs, upstream, w)
        assert got[f"grad_{w}"].shape == fd.shape
        np.testing.assert_allclose(got[f"grad_{w}"], fd, rtol=RTOL, atol=ATOL, err_msg=w)
    return gg


def rand(rng, shape, positive=False):
    data = rng.standard_normal(shape).astype(np.float32)
    return np.abs(data) + 0.5 if positive else data


def single(op, x_shape, attrs=None, params=(), consts=(), extra_inputs=(), outputs=None):
    """A one-node float32 graph over input x (and extra inputs), with params and consts."""
    g = ir.Graph(op)
    g.add_input("x", x_shape)
    names = ["x"]
    for name, shape, dtype in extra_inputs:
        g.add_input(name, shape, dtype)
        names.append(name)
    for name, array in params:
        g.add_param(name, array)
        names.append(name)
    for name, array in consts:
        g.add_const(name, array)
        names.append(name)
    (y, *_) = g.add_node(op, names, attrs or {}, name="y", outputs=outputs)
    g.set_outputs(y.name)
    return g


# ----- convolution and pooling -------------------------------------------------------------


@st.composite
def conv_cases(draw):
    rank = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3 if rank < 3 else 2)) for _ in range(rank)]
    strides = [draw(st.integers(1, 2)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 2 if rank < 3 else 1)) for _ in range(rank)]
    pads = [draw(st.integers(0, 1)) for _ in range(2 * rank)]
    spatial = [d * (k - 1) + 1 + draw(st.integers(0, 2)) for k, d in zip(kernel, dilations)]
    group = draw(st.sampled_from([1, 2]))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER"]))
    return rank, kernel, strides, dilations, pads, spatial, group, auto_pad


@FAST
@given(conv_cases(), st.sampled_from(["conv", "conv_transpose"]))
def test_convolution_gradients(case, op):
    rank, kernel, strides, dilations, pads, spatial, group, auto_pad = case
    rng = np.random.default_rng(rank)
    channels = 2 * group if rank < 3 else group
    if op == "conv":
        w_shape = (2 * group, channels // group, *kernel)
    else:
        w_shape = (channels, 1, *kernel)
        pads = [min(p, k - 1) for p, k in zip(pads, kernel * 2)]
    attrs = {"strides": strides, "dilations": dilations, "group": group}
    attrs |= {"pads": pads} if auto_pad == "NOTSET" or op != "conv" else {"auto_pad": auto_pad}
    if op == "conv_transpose":  # an extra output row/column that no input reaches
        attrs["output_padding"] = [max(s, d) - 1 for s, d in zip(strides, dilations)]
    out_channels = w_shape[0] if op == "conv" else group
    params = [("w", rand(rng, w_shape)), ("b", rand(rng, out_channels))]
    g = single(op, (2, channels, *spatial), attrs, params)
    inputs = {"x": rand(rng, (2, channels, *spatial))}
    check_gradient(g, inputs, ["x", "w", "b"])


@st.composite
def pool_cases(draw):
    rank = draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [draw(st.integers(1, 2)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 2)) for _ in range(rank)]
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    pads = [draw(st.integers(0, e - 1)) for e in extents * 2]
    spatial = [e + draw(st.integers(0, 3)) for e in extents]
    return rank, kernel, strides, dilations, pads, spatial


@FAST
@given(pool_cases(), st.sampled_from(["max_pool", "avg_pool"]), st.booleans(), st.booleans())
def test_pool_gradients(case, op, ceil_mode, include_pad):
    _, kernel, strides, dilations, pads, spatial = case
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dilations, "pads": pads}
    attrs["ceil_mode"] = int(ceil_mode)
    if op == "avg_pool":
        attrs["count_include_pad"] = int(include_pad)
    g = single(op, (1, 2, *spatial), attrs)
    check_gradient(g, {"x": rand(np.random.default_rng(1), (1, 2, *spatial))}, ["x"])


def test_max_pool_routes_ties_to_the_first_maximum():
    g = single("max_pool", (1, 1, 4), {"kernel_shape": [2], "strides": [1]})
    gg = convc.gradient(g, wrt=["x"])
    x = np.array([[[1.0, 1.0, 0.0, 0.0]]], np.float32)
    dy = np.array([[[1.0, 10.0, 100.0]]], np.float32)
    got = convc.interpret(gg, {"x": x, "grad_y": dy})["grad_x"]
    # windows (2, 2), (2, 0), (0, 0): the tie in the first goes to x[0]; last-max would give x[1]
    np.testing.assert_array_equal(got, [[[1.0, 10.0, 100.0, 0.0]]])


@pytest.mark.parametrize("op", ["global_avg_pool", "global_max_pool"])
def test_global_pool_gradients(op):
    g = single(op, (2, 2, 3, 2))
    check_gradient(g, {"x": rand(np.random.default_rng(2), (2, 2, 3, 2))}, ["x"])


# ----- dense, elementwise ------------------------------------------------------------------


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 1)])
@pytest.mark.parametrize("c_shape", [(4,), (3, 1)])
def test_gemm_gradients(trans_a, trans_b, c_shape):
    rng = np.random.default_rng(3)
    params = [("B", rand(rng, (4, 5) if trans_b else (5, 4))), ("C", rand(rng, c_shape))]
    attrs = {"alpha": 0.5, "beta": 2.0, "transA": trans_a, "transB": trans_b}
    g = single("gemm", (5, 3) if trans_a else (3, 5), attrs, params)
    check_gradient(g, {"x": rand(rng, (5, 3) if trans_a else (3, 5))}, ["x", "B", "C"])


def test_matmul_gradients_with_broadcast_batch():
    rng = np.random.default_rng(4)
    g = single("matmul", (2, 1, 3, 4), params=[("B", rand(rng, (3, 4, 2)))])
    check_gradient(g, {"x": rand(rng, (2, 1, 3, 4))}, ["x", "B"])


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("b_shape", [(2, 3, 4), (3, 1), (4,)])
def test_binary_gradients_reduce_over_broadcast_axes(op, b_shape):
    rng = np.random.default_rng(5)
    b = rand(rng, b_shape, positive=(op == "div"))
    g = single(op, (2, 3, 4), params=[("b", b)])
    check_gradient(g, {"x": rand(rng, (2, 3, 4))}, ["x", "b"])


ACTIVATIONS = [
    ("relu", {}),
    ("leaky_relu", {"alpha": 0.2}),
    ("elu", {}),
    ("selu", {}),
    ("sigmoid", {}),
    ("hard_sigmoid", {}),
    ("tanh", {}),
    ("softplus", {}),
    ("silu", {}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
]


@pytest.mark.parametrize("op, attrs", ACTIVATIONS)
def test_activation_gradients(op, attrs):
    x = rand(np.random.default_rng(6), (2, 5)) * 2
    check_gradient(single(op, (2, 5), attrs), {"x": x}, ["x"])


def test_clip_and_prelu_gradients():
    rng = np.random.default_rng(7)
    consts = [("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.6, np.float32))]
    check_gradient(single("clip", (3, 4), consts=consts), {"x": rand(rng, (3, 4))}, ["x"])
    g = single("prelu", (2, 3, 2), params=[("slope", rand(rng, (3, 1)))])
    check_gradient(g, {"x": rand(rng, (2, 3, 2))}, ["x", "slope"])


# ----- normalisation, softmax, losses ------------------------------------------------------


@pytest.mark.parametrize("training", [0, 1])
def test_batch_norm_gradients(training):
    rng = np.random.default_rng(8)
    params = [(s, rand(rng, 3)) for s in ("scale", "bias", "mean")]
    params.append(("var", rand(rng, 3, positive=True)))
    g = single("batch_norm", (2, 3, 2), {"training_mode": training}, params)
    wrt = ["x", "scale", "bias"] + ([] if training else ["mean", "var"])
    check_gradient(g, {"x": rand(rng, (2, 3, 2))}, wrt)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_gradients(op, axis):
    g = single(op, (3, 4), {"axis": axis})
    check_gradient(g, {"x": rand(np.random.default_rng(9), (3, 4))}, ["x"])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [None, 2])
def test_softmax_cross_entropy_gradients(reduction, ignore):
    rng = np.random.default_rng(10)
    g = single(
        "softmax_cross_entropy",
        (3, 4, 2),
        {"reduction": reduction, "ignore_index": ignore},
        params=[("weights", rand(rng, 4, positive=True))],
        extra_inputs=[("labels", (3, 2), "int64")],
    )
    labels = np.array([[0, 2], [3, 1], [2, 2]])
    check_gradient(g, {"x": rand(rng, (3, 4, 2)), "labels": labels}, ["x", "weights"])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_gradients(reduction):
    rng = np.random.default_rng(11)
    g = single(
        "mse_loss", (2, 3), {"reduction": reduction}, extra_inputs=[("t", (2, 3), "float32")]
    )
    check_gradient(g, {"x": rand(rng, (2, 3)), "t": rand(rng, (2, 3))}, ["x", "t"])


# ----- data movement -----------------------------------------------------------------------


def test_data_movement_gradients():
    rng = np.random.default_rng(12)
    x = {"x": rand(rng, (2, 3, 2))}
    check_gradient(single("flatten", (2, 3, 2)), x, ["x"])
    shape = ("shape", np.array([3, -1], np.int64))
    check_gradient(single("reshape", (2, 3, 2), consts=[shape]), x, ["x"])
    check_gradient(single("identity", (2, 3, 2)), x, ["x"])
    check_gradient(single("dropout", (2, 3, 2), {"ratio": 0.4}), x, ["x"])
    g = single("concat", (2, 3, 2), {"axis": 1}, params=[("z", rand(rng, (2, 1, 2)))])
    check_gradient(g, x, ["x", "z"])
    pads = ("pads", np.array([0, 1, -1, 1, 0, 2], np.int64))
    g = ir.Graph("pad")
    g.add_input("x", (2, 3, 2))
    g.add_const("pads", pads[1])
    g.add_param("value", np.array(0.5, np.float32))
    g.add_node("pad", ["x", "pads", "value"], name="y")
    g.set_outputs("y")
    check_gradient(g, x, ["x", "value"])


# ----- whole graphs and the API ------------------------------------------------------------


def small_cnn():
    rng = np.random.default_rng(13)
    g = ir.Graph("cnn")
    g.add_input("x", ("N", 1, 6, 6))
    g.add_param("conv.weight", rand(rng, (2, 1, 3, 3)))
    g.add_param("conv.bias", rand(rng, 2))
    g.add_node("conv", ["x", "conv.weight", "conv.bias"], {"pads": [1, 1, 1, 1]}, name="conv")
    g.add_node("relu", ["conv"], name="relu")
    g.add_node("max_pool", ["relu"], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="pool")
    g.add_node("add", ["pool", "pool"], name="twice")
    g.add_node("flatten", ["twice"], name="flat")
    g.add_param("fc.weight", rand(rng, (3, 18)))
    g.add_node("gemm", ["flat", "fc.weight"], {"transB": 1}, name="fc")
    g.set_outputs("fc")
    return g


def test_small_cnn_gradients_with_symbolic_batch_and_fan_out():
    g = small_cnn()
    x = rand(np.random.default_rng(14), (2, 1, 6, 6))
    gg = check_gradient(g, {"x": x}, ["x", "conv.weight", "conv.bias", "fc.weight"])
    assert gg.values["grad_fc"].type.shape == g.values["fc"].type.shape
    assert gg.values["conv.weight"].kind == "param"


def test_default_wrt_and_unaffected_names_get_zeros():
    g = small_cnn()
    g.add_param("unused", np.ones(3, np.float32), trainable=False)
    gg = convc.gradient(g)
    assert gg.outputs == ["fc", "grad_x", "grad_conv.weight", "grad_conv.bias", "grad_fc.weight"]
    gg = convc.gradient(g, wrt=["unused"])
    x = rand(np.random.default_rng(15), (1, 1, 6, 6))
    out = convc.interpret(gg, {"x": x, "grad_fc": np.ones((1, 3), np.float32)})
    np.testing.assert_array_equal(out["grad_unused"], np.zeros(3))


def test_gradient_errors_name_the_value():
    g = small_cnn()
    with pytest.raises(convc.ConvcError, match="wrt name 'nope'"):
        convc.gradient(g, wrt=["nope"])
    with pytest.raises(convc.ConvcError, match="wrt name 'relu' is not an input"):
        convc.gradient(g, wrt=["relu"])
    with pytest.raises(convc.ConvcError, match="output='relu'"):
        convc.gradient(g, output="relu")
    g.add_param("grad_x", np.zeros(1, np.float32))
    with pytest.raises(convc.ConvcError, match="'grad_x' is already used"):
        convc.gradient(g, wrt=["x"])
    g = small_cnn()
    g.set_outputs("fc", "relu")
    with pytest.raises(convc.ConvcError, match="name the one to differentiate"):
        convc.gradient(g)
    g = single("softmax_cross_entropy", (2, 3), extra_inputs=[("labels", (2,), "int64")])
    with pytest.raises(convc.ConvcError, match="wrt name 'labels' has dtype int64"):
        convc.gradient(g, wrt=["labels"])


def test_gradient_graph_text_shows_formulas_not_the_serialised_program():
    text = convc.gradient(small_cnn(), wrt=["conv.bias"]).to_text()
    assert "formula=d_conv.conv.bias[o] = Σ_{n<N, i<6, j<6} d_relu.conv[n, o, i, j]" in text
    assert "program=" not in text and "srepr" not in text


# ----- showing the derivation --------------------------------------------------------------


def test_grad_text_shows_the_strided_input_gradient_with_its_divisibility_condition():
    rng = np.random.default_rng(16)
    g = single("conv", (1, 1, 5), {"strides": [2], "pads": [1, 1]}, [("w", rand(rng, (1, 1, 3)))])
    text = convc.autodiff.grad_text(g)
    assert "# d_y.x: d/d(x) through conv 'y'" in text
    assert "d_y.x[n, c, u2] = Σ_{o<1, a<3} grad_y[n, o, (-a + u2 + 1)/2]*w[o, c, a]" in text
    assert "(-a + u2 + 1) mod 2 == 0" in text
    # the program that runs visits only the taps that pass: a = 2*a_2 + (u2 + 1) mod 2
    assert "split by residue" in text
    formula = convc.gradient(g, wrt=["x"]).nodes["d_y.x"].attrs["formula"]
    assert "mod" not in formula and "Σ_{o<1, a_2<2}" in formula
    assert r"\sum_{o < 1, a < 3}" in convc.autodiff.grad_text(g, latex=True)


@pytest.mark.parametrize("stage", ["texpr", "grad"])
def test_cli_shows_texpr_and_grad_stages(stage, capsys):
    from convc.cli import main

    sample = str(__import__("pathlib").Path(__file__).with_name("cli_sample.py"))
    assert main(["show", sample, "--stage", stage]) == 0
    assert "conv.weight[o, c, a, b]" in capsys.readouterr().out
    assert main(["show", sample, "--stage", stage, "--latex"]) == 0
    assert r"\sum_{" in capsys.readouterr().out


# ----- against torch.autograd (optional) ---------------------------------------------------


def torch_gradients(fn, arrays: dict, upstream):
    """d sum(fn(**tensors) * upstream) / d tensor for every array, by torch.autograd (float64)."""
    torch = pytest.importorskip("torch")
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in arrays.items()
    }
    out = fn(**tensors)
    (out * torch.tensor(upstream)).sum().backward()
    return {k: t.grad.numpy() for k, t in tensors.items()}


def ours(graph, inputs, wrt):
    out = convc.interpret(graph, inputs, dtype="float64")[graph.outputs[0]]
    upstream = np.random.default_rng(17).standard_normal(out.shape)
    gg = convc.gradient(graph, wrt=wrt)
    got = convc.interpret(gg, {**inputs, f"grad_{graph.outputs[0]}": upstream}, dtype="float64")
    return {w: got[f"grad_{w}"] for w in wrt}, upstream


@pytest.mark.parametrize("case", ["conv", "conv_transpose", "max_pool", "avg_pool", "dense", "bn"])
def test_gradients_match_torch_autograd(case):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(18)
    x = rand(rng, (2, 4, 7, 6))
    if case == "conv":
        w, b = rand(rng, (6, 2, 3, 2)), rand(rng, 6)
        attrs = {"strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1], "group": 2}
        g = single("conv", x.shape, attrs, [("w", w), ("b", b)])

        def fn(x, w, b):
            padded = functional.pad(x, (0, 1, 1, 2))
            return functional.conv2d(padded, w, b, stride=(2, 1), dilation=(1, 2), groups=2)

        arrays = {"x": x, "w": w, "b": b}
    elif case == "conv_transpose":
        w, b = rand(rng, (4, 3, 3, 3)), rand(rng, 3)
        g = single(
            "conv_transpose",
            x.shape,
            {"strides": [2, 2], "pads": [1, 1, 1, 1]},
            [("w", w), ("b", b)],
        )

        def fn(x, w, b):
            return functional.conv_transpose2d(x, w, b, stride=2, padding=1)

        arrays = {"x": x, "w": w, "b": b}
    elif case == "max_pool":
        attrs = {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}
        g = single("max_pool", x.shape, attrs)

        def fn(x):
            return functional.max_pool2d(x, (3, 2), 2, padding=1, ceil_mode=True)

        arrays = {"x": x}
    elif case == "avg_pool":
        attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}
        g = single("avg_pool", x.shape, attrs | {"count_include_pad": 1})

        def fn(x):
            return functional.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=True)

        arrays = {"x": x}
    elif case == "dense":
        x = x.reshape(2, -1)
        w, b = rand(rng, (5, x.shape[1])), rand(rng, 5)
        g = single("gemm", x.shape, {"transB": 1}, [("w", w), ("b", b)])

        def fn(x, w, b):
            return functional.linear(x, w, b)

        arrays = {"x": x, "w": w, "b": b}
    else:
        scale, bias = rand(rng, 4), rand(rng, 4)
        params = [("scale", scale), ("bias", bias), ("mean", rand(rng, 4))]
        params.append(("var", rand(rng, 4, positive=True)))
        g = single("batch_norm", x.shape, {"training_mode": 1}, params)

        def fn(x, scale, bias):
            return functional.batch_norm(x, None, None, scale, bias, training=True, eps=1e-5)

        arrays = {"x": x, "scale": scale, "bias": bias}
    got, upstream = ours(g, {"x": x}, list(arrays))
    expected = torch_gradients(fn, arrays, upstream)
    for name in arrays:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-9, atol=1e-10, err_msg=name)


@pytest.mark.parametrize(
    "op, attrs, w_shape",
    [
        ("avg_pool", {"kernel_shape": [3, 2], "strides": [2, 1], "auto_pad": "SAME_LOWER"}, None),
        ("max_pool", {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, None),
        ("conv", {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (2, 2, 3, 2)),
        ("conv_transpose", {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (2, 3, 3, 2)),
    ],
)
def test_gradients_over_symbolic_spatial_sizes(op, attrs, w_shape):
    """SAME pads over symbolic H, W: a derived program that needs H (inside ceil(H/2)) also
    takes the graph input that binds it."""
    rng = np.random.default_rng(19)
    params = [] if w_shape is None else [("w", rand(rng, w_shape))]
    g = single(op, ("N", 2, "H", "W"), attrs, params)
    wrt = ["x"] + [name for name, _ in params]
    for shape in [(1, 2, 5, 7), (2, 2, 4, 3)]:
        check_gradient(g, {"x": rand(rng, shape)}, wrt)


@pytest.mark.parametrize(
    "channels, out_channels, group", [(4, 6, 2), (2, 4, 2), (3, 3, 3), (6, 4, 2)]
)
@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_grouped_gradients_loop_over_one_group(channels, out_channels, group, op):
    """The grouped channel index floor(o/(M/G))*(C/G) + c is solved for both c and o, so the
    input gradient sums over the M/G channels of one group, not over all M."""
    rng = np.random.default_rng(20)
    if op == "conv":
        w_shape = (out_channels, channels // group, 3, 2)
    else:
        w_shape = (channels, out_channels // group, 3, 2)
    g = single(
        op, (2, channels, 4, 3), {"group": group, "strides": [2, 1]}, [("w", rand(rng, w_shape))]
    )
    gg = check_gradient(g, {"x": rand(rng, (2, channels, 4, 3))}, ["x", "w"])
    (part,) = texpr_of(gg, gg.nodes["d_y.x"])
    extents = dict(zip(part.reduce_indices, part.reduce_shape))
    assert index("o") not in extents
    if out_channels // group > 1:
        assert extents[index("o_in_group")] == out_channels // group


@st.composite
def broadcast_shapes(draw):
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    other = [d if draw(st.booleans()) else 1 for d in shape]
    return shape, other[draw(st.integers(0, len(other) - 1)) :]


@FAST
@given(broadcast_shapes(), st.sampled_from(["add", "sub", "mul", "div"]), st.booleans())
def test_binary_gradients_over_generated_broadcasts(shapes, op, swap):
    """Both operands' gradients, the broadcast one summed over the axes it was broadcast along."""
    rng = np.random.default_rng(21)
    x_shape, b_shape = shapes[::-1] if swap else shapes
    b = rand(rng, b_shape, positive=(op == "div"))
    g = single(op, tuple(x_shape), params=[("b", b)])
    check_gradient(g, {"x": rand(rng, tuple(x_shape))}, ["x", "b"])


def test_compiled_gradients_equal_interpreted():
    """The gradient graph compiles like any graph (its texpr nodes go through the lowering)."""
    g = small_cnn()
    gg = convc.gradient(g)
    rng = np.random.default_rng(22)
    inputs = {"x": rand(rng, (3, 1, 6, 6)), "grad_fc": rand(rng, (3, 3))}
    expected = convc.interpret(gg, inputs)
    got = convc.compile(gg).run(inputs)
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_gradient_of_a_loss_whose_weights_share_a_temporary_name():
    rng = np.random.default_rng(23)
    g = ir.Graph("named")
    g.add_input("x", (3, 4))
    g.add_input("labels", (3,), "int64")
    g.add_param("loss.weight", rand(rng, 4, positive=True))
    g.add_node("softmax_cross_entropy", ["x", "labels", "loss.weight"], name="loss")
    g.set_outputs("loss")
    inputs = {"x": rand(rng, (3, 4)), "labels": np.array([0, 3, 1])}
    check_gradient(g, inputs, ["x", "loss.weight"])


def test_derived_temporaries_never_take_a_graph_value_name():
    g = single("max_pool", (1, 1, 4), {"kernel_shape": [2]}, params=[])
    g.add_param("y.first", np.zeros(1, np.float32))
    gg = check_gradient(g, {"x": rand(np.random.default_rng(24), (1, 1, 4))}, ["x"])
    names = [e.name for e in texpr_of(gg, gg.nodes["d_y.x"])]
    assert "y.first" not in names and "y.first_1" in names
