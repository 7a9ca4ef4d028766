"""Tests of the DSL (convc.nn): the graphs it builds, names, initialisation, state, errors.

Numerical checks run the traced graphs through `convc.interpret` and compare
them with NumPy written here independently (and with PyTorch, when it is
installed, in the last section).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import convc
from convc import nn
from convc.nn import functional as F

N = sympy.Symbol("N", integer=True, positive=True)
RNG = np.random.default_rng(1234)


def randn(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def run_module(module, x: np.ndarray, name: str = "x") -> np.ndarray:
    """Trace `module` on an input shaped like x (symbolic batch) and interpret it."""
    graph = nn.trace(module, convc.Input(name, ("N", *x.shape[1:])))
    (out,) = convc.interpret(graph, {name: x}).values()
    return out


def node_ops(graph) -> list[str]:
    return [n.op for n in graph.topological_nodes()]


# ----- independent NumPy references -----------------------------------------------------------


def ref_conv2d(x, w, b=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct 2-D cross-correlation; pads are (top, left, bottom, right)."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, _, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, m, oh, ow), np.float64)
    per_group = m // groups
    for o in range(m):
        g = o // per_group
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (oh - 1) + 1, stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (ow - 1) + 1, stride[1])
                patch = x[:, g * cg : (g + 1) * cg, rows, cols]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def ref_pool2d(x, k, s, p, reduce, include_pad=True):
    """Max or average pooling with symmetric padding p (floor mode)."""
    fill = -np.inf if reduce == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    ones = np.pad(np.ones(x.shape[2:]), p)
    oh, ow = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    out = np.zeros((*x.shape[:2], oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s : i * s + k, j * s : j * s + k]
            if reduce == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                count = k * k if include_pad else ones[i * s : i * s + k, j * s : j * s + k].sum()
                out[:, :, i, j] = win.sum(axis=(2, 3)) / count
    return out


# ----- tensors and operators ------------------------------------------------------------------


def test_input_is_a_symbolic_tensor():
    x = convc.Input("x", ("N", 1, 32, 32))
    assert x.shape == (N, 1, 32, 32)
    assert all(isinstance(d, sympy.Expr) for d in x.shape)
    assert x.dtype == "float32" and x.ndim == 4 and x.name == "x"
    assert x.graph.inputs == ["x"]
    labels = convc.Input("y", ("N",), "int64")
    assert labels.dtype == "int64"


def test_tensor_operators_with_tensors_and_scalars():
    def fn(a, b):
        return {
            "out": ((a + b) * 2.0 - b / a) / 4 + 1 - a * b,
            "neg": -a,
            "rev": 3 - a,
            "rd": 1 / b,
        }

    g = nn.trace(fn, convc.Input("a", ("N", 3)), convc.Input("b", ("N", 3)))
    assert {"add", "sub", "mul", "div", "identity"} <= set(node_ops(g))
    assert g.values["const_2"].kind == "const" and g.values["const_2"].dtype == "float32"
    a, b = randn(2, 3) + 3, randn(2, 3) + 3
    out = convc.interpret(g, {"a": a, "b": b})
    np.testing.assert_allclose(out["out"], ((a + b) * 2 - b / a) / 4 + 1 - a * b, rtol=1e-5)
    np.testing.assert_allclose(out["neg"], -a)
    np.testing.assert_allclose(out["rev"], 3 - a, rtol=1e-6)
    np.testing.assert_allclose(out["rd"], 1 / b, rtol=1e-6)


def test_tensor_methods_match_numpy():
    def fn(x):
        return (x.relu(), x.sigmoid(), x.tanh(), x.softmax(1), x.log_softmax(-1))

    g = nn.trace(fn, convc.Input("x", ("N", 5)))
    x = randn(3, 5)
    relu, sig, tanh, soft, logsoft = convc.interpret(g, {"x": x}).values()
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(relu, np.maximum(x, 0))
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(tanh, np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(soft, e / e.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(logsoft, np.log(e / e.sum(1, keepdims=True)), rtol=1e-5, atol=1e-6)


def test_flatten_reshape_and_view_keep_a_symbolic_batch():
    def fn(x):
        return (x.flatten(), x.flatten(2), x.view(x.shape[0], -1, 4), x.reshape(-1, 4, 4))

    g = nn.trace(fn, convc.Input("x", ("N", 2, 4, 4)))
    shapes = [g.values[o].shape for o in g.outputs]
    assert shapes == [(N, 32), (N, 2, 16), (N, 8, 4), (2 * N, 4, 4)]
    assert node_ops(g)[0] == "flatten"
    x = randn(3, 2, 4, 4)
    outs = list(convc.interpret(g, {"x": x}).values())
    for out, expected in zip(outs, [(3, 32), (3, 2, 16), (3, 8, 4), (6, 4, 4)]):
        np.testing.assert_array_equal(out, x.reshape(expected))


def test_reshape_errors_name_the_tensor():
    x = convc.Input("x", ("N", "M", 4))
    with pytest.raises(convc.UnsupportedError, match="'x'"):
        x.reshape(-1, -1)
    with pytest.raises(convc.ShapeError):
        convc.Input("z", (2, 3)).reshape(4, 2)
    with pytest.raises(convc.GraphError, match="'x'"):
        x.flatten(2, 1)
    with pytest.raises(convc.GraphError, match="start_dim=3"):
        x.flatten(3)


def test_operands_must_be_tensors_or_numbers_of_one_graph():
    a, b = convc.Input("a", (2,)), convc.Input("b", (2,))
    with pytest.raises(convc.GraphError, match="'b'"):
        a + b  # two inputs not traced together
    with pytest.raises(convc.GraphError, match="str"):
        a * "2"
    with pytest.raises(convc.GraphError, match="ndarray"):
        np.ones(2) * a
    assert (np.float32(2) * a).graph is a.graph  # NumPy scalars act as Python numbers
    c = a * 0.1666667 + a * 0.1666668  # equal when printed with %g, still two constants
    assert sorted(
        c.graph.values[n].data.item() for n in ("const_0.166667", "const_0.166667_1")
    ) == [
        np.float32(0.1666667),
        np.float32(0.1666668),
    ]


def test_modules_build_eagerly_on_an_input_tensor():
    x = convc.Input("x", ("N", 3))
    y = nn.Sequential(nn.Linear(3, 2), nn.ReLU())(x)
    assert [n.name for n in y.graph.topological_nodes()] == ["0", "1"]
    assert list(y.graph.params()) == ["0.weight", "0.bias"]
    with pytest.raises(convc.ShapeError, match="add"):
        nn.trace(lambda p, q: p + q, convc.Input("p", (2, 3)), convc.Input("q", (4,)))


# ----- tracing and names ----------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.relu(self.bn1(self.conv1(x))) + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.layer1 = nn.Sequential(Block())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.layer1(self.features(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.relu(self.fc(x))


def test_params_and_nodes_are_named_by_module_path():
    model = Net().eval()
    g = nn.trace(model, convc.Input("x", ("N", 3, 8, 8)))
    assert g.name == "net"
    assert list(g.params()) == [
        "features.0.weight",
        "features.0.bias",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",
        "layer1.0.bn1.running_mean",
        "layer1.0.bn1.running_var",
        "fc.weight",
        "fc.bias",
    ]
    assert list(g.params(trainable_only=True)) == [k for k, _ in model.named_parameters()]
    assert not g.values["layer1.0.bn1.running_mean"].trainable
    names = [n.name for n in g.topological_nodes()]
    assert names == [
        "features.0",
        "features.1",
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.0.relu",
        "layer1.0.add",
        "layer1.0.relu_1",
        "adaptive_avg_pool",
        "flatten",
        "fc",
        "relu",
    ]
    assert g.outputs == ["relu"]
    assert "%layer1.0.add: f32[N,4,8,8] = add(%layer1.0.relu, %features.1)" in g.to_text()


def test_state_dict_names_match_pytorch_conventions():
    keys = list(Net().state_dict())
    assert keys == [
        "features.0.weight",
        "features.0.bias",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",
        "layer1.0.bn1.running_mean",
        "layer1.0.bn1.running_var",
        "layer1.0.bn1.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ]
    assert Net().state_dict()["layer1.0.bn1.num_batches_tracked"].dtype == np.int64


def test_shared_module_params_once_and_repeated_nodes_numbered():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.fc(x))

    g = nn.trace(Twice(), convc.Input("x", ("N", 3)))
    assert list(g.params()) == ["fc.weight", "fc.bias"]
    assert [n.name for n in g.topological_nodes()] == ["fc", "fc_1"]


def test_trace_outputs_tuple_dict_and_functions():
    def two(x):
        return x.relu(), x.sigmoid()

    g = nn.trace(two, convc.Input("x", (2, 3)))
    assert g.name == "two" and g.outputs == ["relu", "sigmoid"]
    g = nn.trace(lambda x: {"y": x.relu(), "tanh": x.tanh()}, convc.Input("x", (2,)), name="d")
    assert g.name == "d" and g.outputs == ["y", "tanh"]
    assert g.nodes["y"].op == "identity"


def test_trace_rejects_non_inputs_and_non_tensor_outputs():
    x = convc.Input("x", (2, 3))
    with pytest.raises(convc.GraphError, match="argument 0"):
        nn.trace(nn.ReLU(), np.zeros((2, 3)))
    with pytest.raises(convc.GraphError, match="argument 0"):
        nn.trace(nn.ReLU(), x.relu())
    with pytest.raises(convc.GraphError, match="output 0"):
        nn.trace(lambda t: 3.0, x)
    with pytest.raises(convc.GraphError, match="neither"):
        nn.trace("model", x)


def test_module_called_on_non_tensor_names_the_module():
    with pytest.raises(convc.GraphError, match="Conv2d called on ndarray"):
        nn.Conv2d(1, 1, 3)(np.zeros((1, 1, 5, 5)))


def test_module_without_super_init_is_reported():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(convc.GraphError, match="super"):
        Broken()


def test_module_without_forward_is_reported():
    with pytest.raises(convc.GraphError, match="forward"):
        nn.trace(nn.Module(), convc.Input("x", (2,)))


def test_sequential_and_module_list():
    seq = nn.Sequential(nn.ReLU(), nn.Linear(2, 3), nn.Tanh())
    assert len(seq) == 3 and isinstance(seq[1], nn.Linear)
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    assert [k for k, _ in seq.named_parameters()] == ["1.weight", "1.bias"]
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and [k for k, _ in layers.named_parameters()][-1] == "3.bias"
    g = nn.trace(seq, convc.Input("x", ("N", 2)))
    assert [n.name for n in g.topological_nodes()] == ["0", "1", "2"]


def test_train_and_eval_are_recursive():
    model = Net()
    assert all(m.training for m in model.modules())
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


# ----- convolution ----------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_modules_for_every_rank(rank):
    conv = getattr(nn, f"Conv{rank}d")(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    assert conv.weight.shape == (6, 2, *(3,) * rank) and conv.bias.shape == (6,)
    g = nn.trace(conv, convc.Input("x", ("N", 4, *(9,) * rank)))
    node = g.nodes["conv"]
    assert node.op == "conv"
    assert node.attrs["strides"] == (2,) * rank and node.attrs["pads"] == (1,) * (2 * rank)
    assert node.attrs["group"] == 2
    assert g.values[g.outputs[0]].shape == (N, 6, *(5,) * rank)


def test_conv2d_matches_numpy_with_stride_padding_dilation_groups():
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = randn(2, 4, 7, 6)
    expected = ref_conv2d(
        x, conv.weight.data, conv.bias.data, (2, 1), (1, 2, 1, 2), (1, 2), groups=2
    )
    np.testing.assert_allclose(run_module(conv, x), expected, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    groups=st.sampled_from([1, 2]),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
)
def test_conv2d_configurations_match_numpy(groups, kernel, stride, dilation, padding):
    conv = nn.Conv2d(2, 4, kernel, stride, padding, dilation, groups)
    x = randn(1, 2, 7, 6)
    pads = (*padding, *padding)
    expected = ref_conv2d(x, conv.weight.data, conv.bias.data, stride, pads, dilation, groups)
    np.testing.assert_allclose(run_module(conv, x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel,dilation,pads", [(3, 1, (1, 1)), (4, 1, (1, 2)), (4, 2, (3, 3))])
def test_same_padding_follows_pytorch(kernel, dilation, pads):
    conv = nn.Conv1d(2, 3, kernel, padding="same", dilation=dilation)
    g = nn.trace(conv, convc.Input("x", ("N", 2, 10)))
    assert g.topological_nodes()[0].attrs["pads"] == pads
    assert g.values[g.outputs[0]].shape == (N, 3, 10)
    conv2 = nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
    x = randn(1, 2, 9, 9)
    expected = ref_conv2d(
        x,
        conv2.weight.data,
        conv2.bias.data,
        pads=(pads[0], pads[0], pads[1], pads[1]),
        dilation=(dilation,) * 2,
    )
    np.testing.assert_allclose(run_module(conv2, x), expected, rtol=1e-4, atol=1e-5)


def test_valid_padding_is_zero():
    g = nn.trace(nn.Conv2d(1, 1, 3, padding="valid"), convc.Input("x", (1, 1, 5, 5)))
    assert g.values[g.outputs[0]].shape == (1, 1, 3, 3)


def test_conv_construction_errors_name_the_module():
    with pytest.raises(convc.UnsupportedError, match=r"Conv2d.*'same'.*stride"):
        nn.Conv2d(1, 2, 3, stride=2, padding="same")
    with pytest.raises(convc.UnsupportedError, match=r"Conv2d.*padding_mode='reflect'"):
        nn.Conv2d(1, 2, 3, padding_mode="reflect")
    with pytest.raises(convc.ShapeError, match=r"Conv2d.*kernel_size='3'"):
        nn.Conv2d(1, 2, "3")
    with pytest.raises(convc.ShapeError, match=r"Conv3d.*kernel_size=\(3, 3\)"):
        nn.Conv3d(1, 2, (3, 3))
    with pytest.raises(convc.ShapeError, match=r"Conv1d.*groups=2"):
        nn.Conv1d(3, 4, 3, groups=2)
    with pytest.raises(convc.UnsupportedError, match="padding='full'"):
        nn.Conv2d(1, 1, 3, padding="full")
    with pytest.raises(convc.UnsupportedError, match="ConvTranspose2d"):
        nn.ConvTranspose2d(1, 1, 3, padding="same")


def test_channel_mismatch_is_reported_by_the_shape_rule_with_the_module_path():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(6, 4, 3))
    with pytest.raises(convc.ShapeError, match=r"conv '1'.*8 channels.*expects 6"):
        nn.trace(model, convc.Input("x", ("N", 3, 16, 16)))
    with pytest.raises(convc.ShapeError, match=r"conv2d 'conv'.*rank 4"):
        nn.trace(nn.Conv2d(3, 8, 3), convc.Input("x", ("N", 3, 16)))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_transpose_shapes(rank):
    layer = getattr(nn, f"ConvTranspose{rank}d")(
        4, 6, 3, stride=2, padding=1, output_padding=1, groups=2
    )
    assert layer.weight.shape == (4, 3, *(3,) * rank)
    g = nn.trace(layer, convc.Input("x", ("N", 4, *(5,) * rank)))
    node = g.topological_nodes()[0]
    assert node.op == "conv_transpose" and node.attrs["output_padding"] == (1,) * rank
    # PyTorch: (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1 = 10
    assert g.values[g.outputs[0]].shape == (N, 6, *(10,) * rank)


def test_conv_transpose_matches_numpy_scatter():
    layer = nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1)
    x = randn(1, 2, 4)
    full = np.zeros((1, 3, (4 - 1) * 2 + 3))
    for i in range(4):
        full[:, :, 2 * i : 2 * i + 3] += np.einsum("nc,cok->nok", x[:, :, i], layer.weight.data)
    expected = full[:, :, 1:-1] + layer.bias.data.reshape(1, -1, 1)
    np.testing.assert_allclose(run_module(layer, x), expected, rtol=1e-5, atol=1e-6)


# ----- pooling --------------------------------------------------------------------------------


def test_max_pool_defaults_stride_to_kernel_and_matches_numpy():
    g = nn.trace(nn.MaxPool2d(3), convc.Input("x", ("N", 2, 9, 9)))
    node = g.topological_nodes()[0]
    assert node.op == "max_pool" and node.attrs["strides"] == (3, 3)
    x = randn(2, 2, 9, 9)
    np.testing.assert_allclose(run_module(nn.MaxPool2d(3, 2, 1), x), ref_pool2d(x, 3, 2, 1, "max"))


def test_avg_pool_counts_padding_by_default_as_pytorch():
    layer = nn.AvgPool2d(3, stride=2, padding=1)
    g = nn.trace(layer, convc.Input("x", ("N", 2, 8, 8)))
    assert g.topological_nodes()[0].attrs["count_include_pad"] == 1
    x = randn(2, 2, 8, 8)
    np.testing.assert_allclose(run_module(layer, x), ref_pool2d(x, 3, 2, 1, "avg"), rtol=1e-5)
    excl = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
    np.testing.assert_allclose(
        run_module(excl, x), ref_pool2d(x, 3, 2, 1, "avg", include_pad=False), rtol=1e-5
    )


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_pools_for_every_rank_and_ceil_mode(rank):
    g = nn.trace(
        nn.Sequential(
            getattr(nn, f"MaxPool{rank}d")(2, ceil_mode=True),
            getattr(nn, f"AvgPool{rank}d")(2),
            getattr(nn, f"AdaptiveAvgPool{rank}d")(1),
        ),
        convc.Input("x", ("N", 3, *(7,) * rank)),
    )
    assert node_ops(g) == ["max_pool", "avg_pool", "global_avg_pool"]
    assert g.values["0"].shape == (N, 3, *(4,) * rank)
    assert g.values["2"].shape == (N, 3, *(1,) * rank)


def test_adaptive_avg_pool_supports_only_one_or_the_same_size():
    g = nn.trace(nn.AdaptiveAvgPool2d((1, 1)), convc.Input("x", ("N", 3, 5, 5)))
    assert node_ops(g) == ["global_avg_pool"]
    g = nn.trace(nn.AdaptiveAvgPool2d((5, None)), convc.Input("x", ("N", 3, 5, 5)))
    assert node_ops(g) == ["identity"]
    with pytest.raises(convc.UnsupportedError, match=r"adaptive_avg_pool2d '.*'.*output_size=2"):
        nn.trace(nn.AdaptiveAvgPool2d(2), convc.Input("x", ("N", 3, 8, 8)))
    x = randn(2, 3, 5, 5)
    np.testing.assert_allclose(
        run_module(nn.AdaptiveAvgPool2d(1), x), x.mean(axis=(2, 3), keepdims=True), rtol=1e-5
    )


def test_pool_construction_errors_name_the_module():
    with pytest.raises(convc.ShapeError, match=r"MaxPool2d.*padding=2.*half"):
        nn.MaxPool2d(3, padding=2)
    with pytest.raises(convc.ShapeError, match=r"AvgPool1d.*kernel_size=0"):
        nn.AvgPool1d(0)
    with pytest.raises(convc.ShapeError, match=r"MaxPool3d.*stride=\(1, 2\)"):
        nn.MaxPool3d(2, stride=(1, 2))


# ----- dense, normalisation, dropout ----------------------------------------------------------


def test_linear_is_gemm_with_transposed_weight():
    fc = nn.Linear(5, 3)
    assert fc.weight.shape == (3, 5) and fc.bias.shape == (3,)
    g = nn.trace(fc, convc.Input("x", ("N", 5)))
    node = g.topological_nodes()[0]
    assert node.op == "gemm" and node.attrs["transB"] == 1 and node.name == "gemm"
    x = randn(4, 5)
    np.testing.assert_allclose(
        run_module(fc, x), x @ fc.weight.data.T + fc.bias.data, rtol=1e-5, atol=1e-6
    )
    no_bias = nn.Linear(5, 3, bias=False)
    assert len(nn.trace(no_bias, convc.Input("x", (2, 5))).topological_nodes()[0].inputs) == 2
    with pytest.raises(convc.UnsupportedError, match="linear 'gemm'.*2-D"):
        nn.trace(fc, convc.Input("x", ("N", 2, 5)))


def test_batch_norm_eval_is_the_inference_form():
    bn = nn.BatchNorm2d(3, eps=1e-3, momentum=0.2).eval()
    bn.running_mean.data = randn(3)
    bn.running_var.data = np.abs(randn(3)) + 0.5
    bn.weight.data, bn.bias.data = randn(3), randn(3)
    g = nn.trace(bn, convc.Input("x", ("N", 3, 4, 4)))
    node = g.topological_nodes()[0]
    assert node.attrs["training_mode"] == 0 and node.attrs["epsilon"] == pytest.approx(1e-3)
    assert node.attrs["momentum"] == pytest.approx(0.8)  # ONNX momentum = 1 - PyTorch's
    assert g.outputs == ["batch_norm"]
    x = randn(2, 3, 4, 4)
    shape = (1, 3, 1, 1)
    expected = (x - bn.running_mean.data.reshape(shape)) / np.sqrt(
        bn.running_var.data.reshape(shape) + 1e-3
    ) * bn.weight.data.reshape(shape) + bn.bias.data.reshape(shape)
    np.testing.assert_allclose(run_module(bn, x), expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_train_mode_outputs_updated_running_stats():
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=0.1))
    g = nn.trace(model, convc.Input("x", ("N", 2, 4, 4)))
    assert g.nodes["1"].attrs["training_mode"] == 1
    assert g.outputs == ["1", "1.running_mean:updated", "1.running_var:updated"]
    x = randn(4, 2, 4, 4)
    out = convc.interpret(g, {"x": x})
    h = ref_conv2d(x, model[0].weight.data, model[0].bias.data)
    mean, var = h.mean(axis=(0, 2, 3)), h.var(axis=(0, 2, 3))
    expected = (h - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(out["1"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["1.running_mean:updated"], 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["1.running_var:updated"], 0.9 + 0.1 * var, rtol=1e-4)


def test_batch_norm_train_updates_load_back_and_repeat_calls_stay_unique():
    bn = nn.BatchNorm1d(2)
    g = nn.trace(lambda x: bn(bn(x)), convc.Input("x", ("N", 2)))
    assert g.outputs[1:] == [
        "running_mean:updated",
        "running_var:updated",
        "running_mean:updated_1",
        "running_var:updated_1",
    ]
    x = randn(5, 2)
    out = convc.interpret(g, {"x": x})
    updates = nn.running_stat_updates(out)
    assert sorted(updates) == ["running_mean", "running_var"]
    bn.load_state_dict(updates, strict=False)
    np.testing.assert_allclose(bn.running_mean.data, 0.1 * x.mean(0), rtol=1e-5)
    g.set_param("running_var", updates["running_var"])


def test_batch_norm_state_and_rank_check():
    bn = nn.BatchNorm1d(4)
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(sd["weight"], 1)
    np.testing.assert_array_equal(sd["bias"], 0)
    np.testing.assert_array_equal(sd["running_mean"], 0)
    np.testing.assert_array_equal(sd["running_var"], 1)
    assert [k for k, _ in bn.named_parameters()] == ["weight", "bias"]
    nn.trace(bn.eval(), convc.Input("x", ("N", 4)))
    nn.trace(bn, convc.Input("x", ("N", 4, 7)))
    with pytest.raises(convc.ShapeError, match=r"BatchNorm2d 'bn'.*rank 4"):
        nn.trace(nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(4))), convc.Input("x", (2, 4, 7)))
    with pytest.raises(convc.UnsupportedError, match="BatchNorm2d"):
        nn.BatchNorm2d(3, momentum=None)


def test_dropout_is_absent_in_eval_and_seeded_in_train():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3))
    g = nn.trace(model.eval(), convc.Input("x", ("N", 4)))
    assert node_ops(g) == ["gemm"]
    g = nn.trace(model.train(), convc.Input("x", ("N", 4)))
    assert node_ops(g) == ["gemm", "dropout"]
    assert g.nodes["1"].attrs["ratio"] == pytest.approx(0.3) and g.nodes["1"].attrs["training_mode"]
    with pytest.raises(convc.ShapeError, match="Dropout"):
        nn.Dropout(1.5)


# ----- activations ----------------------------------------------------------------------------

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
ACTIVATIONS = [
    (nn.ReLU(), "relu", lambda x: np.maximum(x, 0)),
    (nn.ReLU6(), "clip", lambda x: np.clip(x, 0, 6)),
    (nn.Hardtanh(-0.5, 0.5), "clip", lambda x: np.clip(x, -0.5, 0.5)),
    (nn.LeakyReLU(0.2), "leaky_relu", lambda x: np.where(x >= 0, x, 0.2 * x)),
    (nn.ELU(0.7), "elu", lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    (nn.SELU(), "selu", lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))),
    (nn.Sigmoid(), "sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    (nn.Hardsigmoid(), "hard_sigmoid", lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    (nn.Tanh(), "tanh", np.tanh),
    (nn.Softplus(), "softplus", lambda x: np.log1p(np.exp(x))),
    (nn.Softplus(beta=2.0), "mul", lambda x: np.log1p(np.exp(2 * x)) / 2),
    (nn.SiLU(), "silu", lambda x: x / (1 + np.exp(-x))),
    (nn.GELU(), "gelu", lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    (
        nn.GELU("tanh"),
        "gelu",
        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    ),
    (nn.Softmax(dim=1), "softmax", lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (nn.LogSoftmax(dim=1), "log_softmax", lambda x: x - np.log(np.exp(x).sum(1, keepdims=True))),
    (nn.Identity(), None, lambda x: x),
]


@pytest.mark.parametrize(
    "module,op,reference",
    ACTIVATIONS,
    ids=[f"{type(m).__name__}-{i}" for i, (m, _, _) in enumerate(ACTIVATIONS)],
)
def test_activation_modules(module, op, reference):
    g = nn.trace(module, convc.Input("x", ("N", 4, 3)))
    if op is not None:
        assert g.nodes[g.outputs[0]].op == op
    x = randn(2, 4, 3) * 3
    (out,) = convc.interpret(g, {"x": x}).values()
    np.testing.assert_allclose(out, reference(x.astype(np.float64)), rtol=2e-5, atol=2e-6)


def test_activation_attrs():
    g = nn.trace(nn.Hardsigmoid(), convc.Input("x", (2,)))
    attrs = g.topological_nodes()[0].attrs
    assert attrs["alpha"] == pytest.approx(1 / 6) and attrs["beta"] == 0.5
    g = nn.trace(nn.LeakyReLU(0.3), convc.Input("x", (2,)))
    assert g.topological_nodes()[0].attrs["alpha"] == pytest.approx(0.3)


def test_prelu_shared_and_per_channel():
    shared = nn.PReLU()
    np.testing.assert_array_equal(shared.weight.data, np.float32(0.25))
    x = randn(2, 3, 4)
    np.testing.assert_allclose(run_module(shared, x), np.where(x >= 0, x, 0.25 * x))
    per_channel = nn.PReLU(3, init=0.1)
    per_channel.weight.data = np.asarray([0.1, 0.2, 0.3], np.float32)
    g = nn.trace(per_channel, convc.Input("x", ("N", 3, 4)))
    assert list(g.params()) == ["weight"]
    slope = np.asarray([0.1, 0.2, 0.3]).reshape(1, 3, 1)
    (out,) = convc.interpret(g, {"x": x}).values()
    np.testing.assert_allclose(out, np.where(x >= 0, x, slope * x), rtol=1e-6)


# ----- padding, concatenation, losses ---------------------------------------------------------


def test_zero_and_constant_padding_match_numpy():
    x = randn(2, 3, 4, 5)
    out = run_module(nn.ZeroPad2d((1, 2, 3, 0)), x)
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (0, 0), (3, 0), (1, 2))))
    out = run_module(nn.ConstantPad2d(1, 2.5), x)
    np.testing.assert_array_equal(
        out, np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=2.5)
    )
    out = run_module(nn.ConstantPad1d((2, 0), -1.0), x[:, :, 0])
    np.testing.assert_array_equal(
        out, np.pad(x[:, :, 0], ((0, 0), (0, 0), (2, 0)), constant_values=-1)
    )
    out = run_module(nn.ZeroPad2d((-1, 1, 0, -2)), x)  # negative pads crop, as in PyTorch
    np.testing.assert_array_equal(out, np.pad(x[:, :, :-2, 1:], ((0, 0), (0, 0), (0, 0), (0, 1))))
    with pytest.raises(convc.ShapeError, match="ZeroPad2d"):
        nn.ZeroPad2d((1, 2, 3))
    with pytest.raises(convc.UnsupportedError, match="reflect"):
        nn.trace(lambda t: F.pad(t, (1, 1), mode="reflect"), convc.Input("x", (2, 3)))


def test_cat_matches_numpy_and_checks_shapes():
    g = nn.trace(
        lambda a, b: F.cat([a, b.relu(), a], dim=1),
        convc.Input("a", ("N", 2, 3)),
        convc.Input("b", ("N", 4, 3)),
    )
    assert g.values[g.outputs[0]].shape == (N, 8, 3)
    a, b = randn(2, 2, 3), randn(2, 4, 3)
    (out,) = convc.interpret(g, {"a": a, "b": b}).values()
    np.testing.assert_array_equal(out, np.concatenate([a, np.maximum(b, 0), a], axis=1))
    with pytest.raises(convc.ShapeError, match="concat"):
        nn.trace(lambda a, b: F.cat([a, b], 1), convc.Input("a", (2, 2)), convc.Input("b", (3, 2)))


def test_cross_entropy_loss_matches_numpy():
    scores, labels = randn(5, 4), np.asarray([0, 3, 1, 1, 2])
    for reduction in ("mean", "sum", "none"):
        g = nn.trace(
            nn.CrossEntropyLoss(reduction=reduction),
            convc.Input("scores", ("N", 4)),
            convc.Input("labels", ("N",), "int64"),
        )
        assert node_ops(g) == ["softmax_cross_entropy"]
        (loss,) = convc.interpret(g, {"scores": scores, "labels": labels}).values()
        log_p = scores - np.log(np.exp(scores).sum(1, keepdims=True))
        per_sample = -log_p[np.arange(5), labels]
        expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}
        np.testing.assert_allclose(loss, expected[reduction], rtol=1e-5)
    with pytest.raises(convc.UnsupportedError, match="cross_entropy"):
        nn.trace(nn.CrossEntropyLoss(), convc.Input("s", (2, 3)), convc.Input("t", (2, 3)))


def test_mse_loss_matches_numpy():
    a, b = randn(3, 4), randn(3, 4)
    for reduction, expected in (("mean", ((a - b) ** 2).mean()), ("sum", ((a - b) ** 2).sum())):
        g = nn.trace(nn.MSELoss(reduction), convc.Input("a", ("N", 4)), convc.Input("b", ("N", 4)))
        (loss,) = convc.interpret(g, {"a": a, "b": b}).values()
        np.testing.assert_allclose(loss, expected, rtol=1e-5)


# ----- functional forms -----------------------------------------------------------------------


def test_functional_conv_with_arrays_and_parameters():
    w, b = randn(3, 2, 3, 3), randn(3)
    g = nn.trace(lambda x: F.conv2d(x, w, b, stride=2, padding=1), convc.Input("x", ("N", 2, 6, 6)))
    assert g.values["conv.weight"].kind == "const" and g.values["conv.bias"].kind == "const"
    x = randn(2, 2, 6, 6)
    (out,) = convc.interpret(g, {"x": x}).values()
    np.testing.assert_allclose(out, ref_conv2d(x, w, b, (2, 2), (1, 1, 1, 1)), rtol=1e-4, atol=1e-5)
    g = nn.trace(
        lambda x, weight: F.conv2d(x, weight, groups=2),
        convc.Input("x", ("N", 4, 5, 5)),
        convc.Input("weight", (6, 2, 3, 3)),
    )
    x, w_in = randn(2, 4, 5, 5), randn(6, 2, 3, 3)
    (out,) = convc.interpret(g, {"x": x, "weight": w_in}).values()
    np.testing.assert_allclose(out, ref_conv2d(x, w_in, groups=2), rtol=1e-4, atol=1e-5)
    param = nn.Parameter(w)
    g = nn.trace(lambda x: F.conv2d(x, param, padding="same"), convc.Input("x", ("N", 2, 6, 6)))
    assert g.values["conv.weight"].kind == "param" and g.values["conv.weight"].trainable


def test_functional_forms_of_every_layer_family():
    def fn(x, labels):
        h = F.conv1d(x, randn(4, 2, 3), padding=1)
        h = F.batch_norm(h, np.zeros(4), np.ones(4), training=False)
        h = F.max_pool1d(F.relu6(h), 2)
        h = F.avg_pool1d(F.leaky_relu(h, 0.1), 2, ceil_mode=True)
        h = F.adaptive_avg_pool1d(F.dropout(h, 0.5, training=False), 1).flatten(1)
        scores = F.linear(F.gelu(h), randn(3, 4), randn(3))
        return F.cross_entropy(scores, labels), F.mse_loss(F.softmax(scores, 1), F.sigmoid(scores))

    g = nn.trace(fn, convc.Input("x", ("N", 2, 8)), convc.Input("labels", ("N",), "int64"))
    assert node_ops(g) == [
        "conv",
        "batch_norm",
        "clip",
        "max_pool",
        "leaky_relu",
        "avg_pool",
        "global_avg_pool",
        "flatten",
        "gelu",
        "gemm",
        "softmax_cross_entropy",
        "softmax",
        "sigmoid",
        "mse_loss",
    ]
    out = convc.interpret(g, {"x": randn(2, 2, 8), "labels": np.asarray([0, 2])})
    assert all(np.isfinite(v).all() for v in out.values())


def test_functional_names_nodes_and_weights_as_asked():
    g = nn.trace(
        lambda x: F.relu(F.linear(x, randn(3, 2), name="dense"), name="act"),
        convc.Input("x", ("N", 2)),
    )
    assert [n.name for n in g.topological_nodes()] == ["dense", "act"]
    assert "dense.weight" in g.values


def test_functional_rejects_non_tensors():
    with pytest.raises(convc.GraphError, match="relu.*list"):
        F.relu([1.0])
    with pytest.raises(convc.GraphError, match="cat"):
        F.cat([])


# ----- initialisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,fan_in",
    [
        (lambda: nn.Conv2d(16, 32, 3), 16 * 9),
        (lambda: nn.Conv1d(8, 4, 5, groups=4), 2 * 5),
        (lambda: nn.Conv3d(2, 4, 3), 2 * 27),
        (lambda: nn.ConvTranspose2d(16, 8, 4), 8 * 16),
        (lambda: nn.Linear(300, 200), 300),
    ],
)
def test_default_initialisation_bounds(make, fan_in):
    # seeded: the draws otherwise depend on which tests ran before in this process, and
    # the largest of 40 draws stays under 0.9 of the bound one time in 70
    nn.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    for array in (layer.weight.data, layer.bias.data):
        assert array.dtype == np.float32
        assert np.abs(array).max() <= np.float32(bound)
    weight = layer.weight.data
    assert np.abs(weight).max() > 0.9 * bound
    if weight.size > 1000:  # U(-b, b) has standard deviation b / sqrt(3)
        assert weight.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert abs(weight.mean()) < 0.05 * bound


def test_manual_seed_makes_initialisation_reproducible():
    nn.manual_seed(7)
    a = nn.Linear(10, 10).weight.data
    nn.manual_seed(7)
    b = nn.Linear(10, 10).weight.data
    c = nn.Linear(10, 10).weight.data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


# ----- state_dict -----------------------------------------------------------------------------


def test_load_state_dict_round_trip_changes_the_traced_outputs():
    nn.manual_seed(1)
    a = Net().eval()
    nn.manual_seed(2)
    b = Net().eval()
    x = randn(2, 3, 8, 8)
    graph_before = nn.trace(b, convc.Input("x", ("N", 3, 8, 8)))
    assert not np.allclose(run_module(a, x), run_module(b, x))
    result = b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(run_module(a, x), run_module(b, x))
    # a graph traced before the load keeps the values it was traced with
    (old,) = convc.interpret(graph_before, {"x": x}).values()
    assert not np.allclose(old, run_module(b, x))


def test_load_state_dict_errors_name_the_keys():
    model = Net()
    sd = dict(model.state_dict())
    missing = {k: v for k, v in sd.items() if k != "fc.bias"}
    with pytest.raises(convc.InputError, match=r"missing keys \['fc.bias'\]"):
        model.load_state_dict(missing)
    with pytest.raises(convc.InputError, match=r"unexpected keys \['fc.extra'\]"):
        model.load_state_dict({**sd, "fc.extra": np.zeros(2)})
    before = model.state_dict()["features.0.weight"]
    bad_shape = {**sd, "features.0.weight": np.ones((4, 3, 3, 3)), "fc.weight": np.zeros((4, 2))}
    with pytest.raises(
        convc.InputError, match=r"'fc.weight' is an array of shape \(4, 2\).*\(2, 4\)"
    ):
        model.load_state_dict(bad_shape)
    assert model.state_dict()["features.0.weight"] is before  # nothing was loaded
    with pytest.raises(convc.InputError, match="'fc.bias'.*dtype <U1"):
        model.load_state_dict({**sd, "fc.bias": np.asarray(["a", "b"])})
    result = model.load_state_dict({**missing, "other": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["fc.bias"] and result.unexpected_keys == ["other"]


def test_load_state_dict_casts_to_the_parameter_dtype():
    fc = nn.Linear(2, 2)
    fc.load_state_dict({"weight": np.eye(2), "bias": np.zeros(2)})
    assert fc.weight.data.dtype == np.float32
    np.testing.assert_array_equal(fc.weight.data, np.eye(2))


# ----- against PyTorch (skipped when it is not installed) ----------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def load_sample(name: str):
    """A samples/<name>.py file as a module (samples are files, not a package)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "samples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sample_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare_with_torch(torch, ours, theirs, x: np.ndarray, rtol=1e-4, atol=1e-5):
    """Load theirs' state_dict into ours (strictly) and compare the two forward passes."""
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_module(ours, x), expected, rtol=rtol, atol=atol)


LAYER_PAIRS = [
    ("Conv1d", (3, 4, 5), {"stride": 2, "padding": 2, "dilation": 2}, (2, 3, 17)),
    ("Conv2d", (4, 6, 3), {"padding": "same", "groups": 2, "bias": False}, (2, 4, 7, 9)),
    ("Conv2d", (4, 6, (2, 4)), {"padding": "same", "dilation": (2, 1)}, (2, 4, 7, 9)),
    ("Conv3d", (2, 3, 3), {"stride": (1, 2, 2), "padding": 1}, (1, 2, 5, 6, 7)),
    ("ConvTranspose1d", (3, 4, 4), {"stride": 3, "padding": 1, "output_padding": 2}, (2, 3, 5)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "groups": 2, "dilation": 2}, (1, 4, 5, 4)),
    ("ConvTranspose3d", (2, 2, 2), {"stride": 2}, (1, 2, 3, 3, 3)),
    ("MaxPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 8, 8)),
    ("MaxPool1d", (3,), {"dilation": 2}, (2, 3, 11)),
    ("AvgPool2d", (3,), {"stride": 2, "padding": 1}, (2, 3, 7, 7)),
    ("AvgPool3d", (2,), {"stride": 2, "count_include_pad": False, "padding": 1}, (1, 2, 5, 5, 5)),
    ("AvgPool1d", (3,), {"stride": 2, "ceil_mode": True}, (2, 3, 8)),
    ("AdaptiveAvgPool2d", ((1, 1),), {}, (2, 3, 5, 4)),
    ("Linear", (6, 4), {}, (3, 6)),
    ("PReLU", (3,), {}, (2, 3, 4, 4)),
    ("Hardsigmoid", (), {}, (2, 3, 4)),
    ("GELU", (), {"approximate": "tanh"}, (2, 3, 4)),
    ("Softplus", (2.0,), {}, (2, 3, 4)),
    ("ZeroPad2d", ((1, 2, 0, 3),), {}, (1, 2, 3, 3)),
    ("Flatten", (), {}, (2, 3, 2, 2)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("layer,args,kwargs,shape", LAYER_PAIRS)
def test_layers_match_torch(torch, layer, args, kwargs, shape):
    torch.manual_seed(0)
    x = randn(*shape) * 2
    compare_with_torch(
        torch, getattr(nn, layer)(*args, **kwargs), getattr(torch.nn, layer)(*args, **kwargs), x
    )


def test_batch_norm_eval_and_train_match_torch(torch):
    theirs = torch.nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        theirs.running_mean.copy_(torch.randn(3))
        theirs.running_var.copy_(torch.rand(3) + 0.5)
        theirs.weight.copy_(torch.randn(3))
        theirs.bias.copy_(torch.randn(3))
    ours = nn.BatchNorm2d(3, momentum=0.3)
    x = randn(4, 3, 5, 5)
    compare_with_torch(torch, ours.eval(), theirs.eval(), x)
    g = nn.trace(ours.train(), convc.Input("x", ("N", 3, 5, 5)))
    out = convc.interpret(g, {"x": x})
    with torch.no_grad():
        expected = theirs.train()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out["batch_norm"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        out["running_mean:updated"], theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6
    )
    # PyTorch updates the running variance with the unbiased batch variance, ir with the biased.
    count = x.size // 3
    batch_var = x.var(axis=(0, 2, 3))
    old_var = ours.running_var.data
    np.testing.assert_allclose(
        theirs.running_var.numpy(), 0.7 * old_var + 0.3 * batch_var * count / (count - 1), rtol=1e-5
    )
    np.testing.assert_allclose(
        out["running_var:updated"], 0.7 * old_var + 0.3 * batch_var, rtol=1e-5
    )


def test_lenet5_matches_torch(torch):
    tnn = torch.nn
    theirs = tnn.Sequential(
        OrderedDict(
            conv1=tnn.Conv2d(1, 6, 5),
            relu1=tnn.ReLU(),
            pool1=tnn.MaxPool2d(2),
            conv2=tnn.Conv2d(6, 16, 5),
            relu2=tnn.ReLU(),
            pool2=tnn.MaxPool2d(2),
            flatten=tnn.Flatten(),
            fc1=tnn.Linear(400, 120),
            relu3=tnn.ReLU(),
            fc2=tnn.Linear(120, 84),
            relu4=tnn.ReLU(),
            fc3=tnn.Linear(84, 10),
        )
    )
    assert sum(p.numel() for p in theirs.parameters()) == 61706
    compare_with_torch(torch, load_sample("lenet5").LeNet5(), theirs, randn(3, 1, 32, 32))


def test_resnet_basic_block_with_batch_norm_matches_torch(torch):
    tnn = torch.nn

    class TorchBasicBlock(tnn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = tnn.Sequential(
                tnn.Conv2d(in_planes, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes)
            )

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + self.downsample(x))

    theirs = TorchBasicBlock(8, 16, 2)
    with torch.no_grad():
        for module in theirs.modules():
            if isinstance(module, tnn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(16) * 0.1)
                module.running_var.copy_(torch.rand(16) + 0.5)
                module.weight.copy_(torch.rand(16) + 0.5)
                module.bias.copy_(torch.randn(16) * 0.1)
    ours = load_sample("resnet18").BasicBlock(8, 16, 2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    compare_with_torch(torch, ours.eval(), theirs.eval(), randn(2, 8, 10, 10))


def test_sample_inputs_draw_standard_normal_float32_in_order():
    got = nn.sample_inputs({"x": (2, 3), "y": (4,)}, seed=5)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 3)), rng.standard_normal(4)
    assert list(got) == ["x", "y"]
    assert got["x"].dtype == np.float32 and got["y"].dtype == np.float32
    np.testing.assert_array_equal(got["x"], x.astype(np.float32))
    np.testing.assert_array_equal(got["y"], y.astype(np.float32))
