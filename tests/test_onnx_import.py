"""Unit tests of the ONNX importer: small models built with onnx.helper, run through
from_onnx + interpret, compared with NumPy written here independently; and every
error path with the error class and the node it names."""

from __future__ import annotations

import io
import math
import sys
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference

import convc
from convc.onnx import require_onnx
from ir import dim

RNG = np.random.default_rng(7)
FLOAT = TensorProto.FLOAT


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def info(name, shape, elem=FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs=("y",), inits=None, opset=17):
    """A model of `nodes`; outputs given by name are float tensors typed by ONNX shape inference."""
    outputs = [o if not isinstance(o, str) else info(o, None) for o in outputs]
    initializer = [numpy_helper.from_array(a, n) for n, a in (inits or {}).items()]
    graph = helper.make_graph(nodes, "m", inputs, outputs, initializer=initializer)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return shape_inference.infer_shapes(onnx_model)


def run(onnx_model, **feeds):
    return convc.interpret(convc.from_onnx(onnx_model), feeds)


def run_one(onnx_model, **feeds):
    [result] = run(onnx_model, **feeds).values()
    return result


def close(actual, expected, rtol=1e-5, atol=1e-6):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ----- NumPy references ----------------------------------------------------------------------
def conv_ref(x, w, b=None, strides=None, pads=None, dilations=None, group=1):
    """Cross-correlation by explicit windows: y[n, o, p] = sum_{c, k} xp[n, c, s*p + d*k] w[o, c, k]."""
    rank = x.ndim - 2
    strides, dilations = strides or [1] * rank, dilations or [1] * rank
    pads = pads or [0] * 2 * rank
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + rank]) for i in range(rank)])
    kernel = w.shape[2:]
    extent = [dilations[i] * (kernel[i] - 1) + 1 for i in range(rank)]
    out = [(xp.shape[2 + i] - extent[i]) // strides[i] + 1 for i in range(rank)]
    per_in, per_out = x.shape[1] // group, w.shape[0] // group
    y = np.zeros((x.shape[0], w.shape[0], *out), x.dtype)
    for pos in np.ndindex(*out):
        window = tuple(
            slice(pos[i] * strides[i], pos[i] * strides[i] + extent[i], dilations[i])
            for i in range(rank)
        )
        for g in range(group):
            patch = xp[(slice(None), slice(g * per_in, (g + 1) * per_in), *window)]
            weights = w[g * per_out : (g + 1) * per_out]
            axes = list(range(1, rank + 2))
            y[(slice(None), slice(g * per_out, (g + 1) * per_out), *pos)] = np.tensordot(
                patch, weights, axes=(axes, axes)
            )
    return y if b is None else y + b.reshape(-1, *[1] * rank)


def conv_transpose_ref(x, w, strides, pads, output_padding):
    """Scatter each input pixel times the kernel into the output, then crop the pads (group 1)."""
    rank = x.ndim - 2
    kernel = w.shape[2:]
    full = [strides[i] * (x.shape[2 + i] - 1) + kernel[i] + output_padding[i] for i in range(rank)]
    y = np.zeros((x.shape[0], w.shape[1], *full), x.dtype)
    for pos in np.ndindex(*x.shape[2:]):
        for k in np.ndindex(*kernel):
            at = tuple(pos[i] * strides[i] + k[i] for i in range(rank))
            y[(slice(None), slice(None), *at)] += (
                x[(slice(None), slice(None), *pos)] @ w[(slice(None), slice(None), *k)]
            )
    crop = tuple(slice(pads[i], full[i] - pads[i + rank]) for i in range(rank))
    return y[(slice(None), slice(None), *crop)]


def pool_ref(x, kind, kernel, strides, pads, ceil_mode=False, count_include_pad=False):
    """Max/average over windows; a ceil-mode window may not start in the right padding."""
    rank = x.ndim - 2
    out = []
    for i in range(rank):
        span = x.shape[2 + i] + pads[i] + pads[i + rank] - kernel[i]
        count = (math.ceil if ceil_mode else math.floor)(span / strides[i]) + 1
        if ceil_mode and (count - 1) * strides[i] >= x.shape[2 + i] + pads[i]:
            count -= 1
        out.append(count)
    declared = [(pads[i], pads[i + rank]) for i in range(rank)]
    fill = 0.0 if count_include_pad else np.nan
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *declared], constant_values=fill)
    xp = np.pad(xp, [(0, 0), (0, 0)] + [(0, max(kernel))] * rank, constant_values=np.nan)
    y = np.zeros((*x.shape[:2], *out))
    for pos in np.ndindex(*out):
        window = tuple(slice(p * s, p * s + k) for p, s, k in zip(pos, strides, kernel))
        patch = xp[(slice(None), slice(None), *window)].reshape(*x.shape[:2], -1)
        y[(slice(None), slice(None), *pos)] = (
            np.nanmax(patch, -1) if kind == "max" else np.nanmean(patch, -1)
        )
    return y.astype(x.dtype)


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def legacy_softmax_ref(x, axis):
    """Softmax-11: flatten to 2-D at axis, softmax each row, restore the shape."""
    rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return softmax_ref(rows, 1).reshape(x.shape)


# ----- convolution and pooling ----------------------------------------------------------------
CONV_CASES = [
    ({}, (1, 2, 5, 5), (3, 2, 3, 3)),
    ({"pads": [1, 1, 1, 1]}, (2, 2, 5, 6), (3, 2, 3, 3)),
    ({"strides": [2, 1], "pads": [1, 0, 0, 2]}, (1, 3, 7, 6), (4, 3, 3, 2)),
    ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, (1, 2, 6, 6), (2, 2, 3, 3)),
    ({"group": 2}, (1, 4, 5, 5), (6, 2, 3, 3)),
    ({"group": 4}, (2, 4, 5, 5), (4, 1, 3, 3)),
    ({"strides": [2]}, (1, 2, 9), (3, 2, 3)),
    ({"pads": [1, 0, 1, 0, 1, 1]}, (1, 1, 3, 4, 4), (2, 1, 2, 2, 2)),
]


@pytest.mark.parametrize("attrs, x_shape, w_shape", CONV_CASES)
def test_conv_with_initializer_weights(attrs, x_shape, w_shape):
    x, w, b = rand(*x_shape), rand(*w_shape), rand(w_shape[0])
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv1", **attrs)
    graph = convc.from_onnx(model([node], [info("x", x_shape)], inits={"w": w, "b": b}))
    assert graph.values["w"].kind == "param" and graph.values["w"].trainable
    expected = conv_ref(x, w, b, **attrs)
    close(convc.interpret(graph, {"x": x})["y"], expected, rtol=1e-4, atol=1e-5)


def test_conv_weights_and_bias_as_run_time_inputs():
    x, w, b = rand(1, 2, 6, 6), rand(3, 2, 3, 3), rand(3)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])
    m = model([node], [info("x", x.shape), info("w", w.shape), info("b", b.shape)])
    expected = conv_ref(x, w, b, strides=[2, 2], pads=[0, 0, 1, 1])  # SAME_UPPER: extra at end
    close(run_one(m, x=x, w=w, b=b), expected, rtol=1e-4, atol=1e-5)


def test_conv_transpose():
    x, w = rand(1, 2, 3, 4), rand(2, 3, 3, 3)
    attrs = {"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 0]}
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    m = model([node], [info("x", x.shape)], inits={"w": w})
    close(run_one(m, x=x), conv_transpose_ref(x, w, **attrs), rtol=1e-4, atol=1e-5)


POOL_CASES = [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [2, 2], "storage_order": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}),
]


@pytest.mark.parametrize("op, attrs", POOL_CASES)
def test_pooling(op, attrs):
    x = rand(2, 3, 6, 7)
    m = model([helper.make_node(op, ["x"], ["y"], **attrs)], [info("x", x.shape)])
    expected = pool_ref(
        x,
        "max" if op == "MaxPool" else "avg",
        attrs["kernel_shape"],
        attrs.get("strides", [1, 1]),
        attrs.get("pads", [0, 0, 0, 0]),
        bool(attrs.get("ceil_mode")),
        bool(attrs.get("count_include_pad")),
    )
    close(run_one(m, x=x), expected)


@pytest.mark.parametrize("op, reduce", [("GlobalAveragePool", np.mean), ("GlobalMaxPool", np.max)])
def test_global_pooling(op, reduce):
    x = rand(2, 3, 4, 5)
    m = model([helper.make_node(op, ["x"], ["y"])], [info("x", x.shape)])
    close(run_one(m, x=x), reduce(x, axis=(2, 3), keepdims=True))


# ----- dense and data movement ----------------------------------------------------------------
def test_gemm_attributes():
    a, b, c = rand(4, 3), rand(5, 4), rand(5)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0, transA=1, transB=1)
    m = model([node], [info("a", a.shape)], inits={"b": b, "c": c})
    close(run_one(m, a=a), 0.5 * a.T @ b.T + 2.0 * c)


def test_gemm_without_bias_and_matmul_broadcast():
    a, b, w = rand(2, 3), rand(3, 4), rand(2, 4, 5)
    nodes = [
        helper.make_node("Gemm", ["a", "b"], ["h"]),
        helper.make_node("MatMul", ["h", "w"], ["y"]),
    ]
    m = model(nodes, [info("a", a.shape), info("b", b.shape)], inits={"w": w})
    close(run_one(m, a=a, b=b), (a @ b) @ w, rtol=1e-4)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_flatten(axis):
    x = rand(2, 3, 4)
    m = model([helper.make_node("Flatten", ["x"], ["y"], axis=axis)], [info("x", x.shape)])
    split = axis % (x.ndim + 1) if axis >= 0 else axis + x.ndim
    close(run_one(m, x=x), x.reshape(int(np.prod(x.shape[:split])), -1))


def test_reshape_with_initializer_shape_keeps_symbolic_batch():
    x = rand(3, 2, 6)
    shape = np.array([0, -1, 3], np.int64)
    m = model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [info("x", ["N", 2, 6])],
        inits={"shape": shape},
    )
    graph = convc.from_onnx(m)
    assert graph.values["y"].shape == (dim("N"), 4, 3)
    assert not graph.values["shape"].trainable
    close(convc.interpret(graph, {"x": x})["y"], x.reshape(3, 4, 3))


def test_reshape_with_run_time_shape():
    x = rand(2, 6)
    m = model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [info("x", x.shape), info("shape", [2], TensorProto.INT64)],
        [info("y", ["a", "b"])],
    )
    y = run_one(m, x=x, shape=np.array([3, 4], np.int64))
    close(y, x.reshape(3, 4))


def test_concat_identity_and_constant_nodes():
    x = rand(2, 3)
    extra = np.arange(4, dtype=np.float32).reshape(2, 2)
    nodes = [
        helper.make_node("Constant", [], ["extra"], value=numpy_helper.from_array(extra)),
        helper.make_node("Constant", [], ["shape"], value_ints=[5, 2]),
        helper.make_node("Constant", [], ["half"], value_float=0.5),
        helper.make_node("Identity", ["x"], ["x_copy"]),
        helper.make_node("Concat", ["x_copy", "extra"], ["joined"], axis=-1),
        helper.make_node("Reshape", ["joined", "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "half"], ["y"]),
    ]
    graph = convc.from_onnx(model(nodes, [info("x", x.shape)]))
    assert graph.values["extra"].kind == "const"
    y = convc.interpret(graph, {"x": x})["y"]
    close(y, 0.5 * np.concatenate([x, extra], axis=1).reshape(5, 2))


@pytest.mark.parametrize(
    "op, fn", [("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Div", np.divide)]
)
def test_binary_broadcast(op, fn):
    a, b = rand(2, 3, 4), rand(3, 1)
    m = model([helper.make_node(op, ["a", "b"], ["y"])], [info("a", a.shape)], inits={"b": b})
    close(run_one(m, a=a), fn(a, b))


def test_binary_float64():
    a, b = rand(2, 3, dtype=np.float64), rand(3, dtype=np.float64)
    elem = TensorProto.DOUBLE
    m = model(
        [helper.make_node("Sub", ["a", "b"], ["y"])],
        [info("a", a.shape, elem), info("b", b.shape, elem)],
        [info("y", None, elem)],
    )
    y = run_one(m, a=a, b=b)
    assert y.dtype == np.float64
    close(y, a - b, rtol=1e-12)


# ----- activations ----------------------------------------------------------------------------
def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _softplus(x):
    return np.log1p(np.exp(x))


SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805
ACTIVATIONS = [
    ("Relu", {}, lambda x: np.maximum(x, 0), 17),
    ("LeakyRelu", {}, lambda x: np.where(x >= 0, x, 0.01 * x), 17),
    ("LeakyRelu", {"alpha": 0.2}, lambda x: np.where(x >= 0, x, 0.2 * x), 17),
    ("Elu", {"alpha": 0.5}, lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1)), 17),
    ("Selu", {}, lambda x: SELU_GAMMA * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)), 17),
    ("Sigmoid", {}, lambda x: 1 / (1 + np.exp(-x)), 17),
    ("HardSigmoid", {}, lambda x: np.clip(0.2 * x + 0.5, 0, 1), 17),
    ("HardSigmoid", {"alpha": 0.4, "beta": 0.3}, lambda x: np.clip(0.4 * x + 0.3, 0, 1), 17),
    ("Tanh", {}, np.tanh, 17),
    ("Softplus", {}, _softplus, 17),
    ("Gelu", {}, _gelu, 20),
    ("Gelu", {"approximate": "tanh"}, _gelu_tanh, 20),
    ("HardSwish", {}, lambda x: x * np.clip(x / 6 + 0.5, 0, 1), 17),
    ("Mish", {}, lambda x: x * np.tanh(_softplus(x)), 18),
]


@pytest.mark.parametrize("op, attrs, fn, opset", ACTIVATIONS, ids=lambda v: str(v)[:20])
def test_activation(op, attrs, fn, opset):
    x = rand(2, 3, 4) * 3
    m = model([helper.make_node(op, ["x"], ["y"], **attrs)], [info("x", x.shape)], opset=opset)
    close(run_one(m, x=x), fn(x.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("as_input", [False, True])
def test_prelu_slope_initializer_or_run_time(as_input):
    x, slope = rand(2, 3, 4, 4), rand(3, 1, 1)
    node = helper.make_node("PRelu", ["x", "slope"], ["y"])
    if as_input:
        y = run_one(
            model([node], [info("x", x.shape), info("slope", slope.shape)]), x=x, slope=slope
        )
    else:
        y = run_one(model([node], [info("x", x.shape)], inits={"slope": slope}), x=x)
    close(y, np.where(x >= 0, x, slope * x))


CLIP_BOUNDS = [(-0.5, 0.7), (None, 0.7), (-0.5, None), (None, None)]


@pytest.mark.parametrize("low, high", CLIP_BOUNDS)
@pytest.mark.parametrize("where", ["initializer", "run-time", "attribute"])
def test_clip(low, high, where):
    x = rand(3, 4)
    names = ["min" if low is not None else "", "max" if high is not None else ""]
    bounds = {n: np.array(v, np.float32) for n, v in zip(names, (low, high)) if n}
    if where == "attribute":  # Clip-6
        attrs = {"min": low, "max": high}
        node = helper.make_node(
            "Clip", ["x"], ["y"], **{k: v for k, v in attrs.items() if v is not None}
        )
        y = run_one(model([node], [info("x", x.shape)], opset=7), x=x)
    elif where == "initializer":
        node = helper.make_node("Clip", ["x", *names], ["y"])
        y = run_one(model([node], [info("x", x.shape)], inits=bounds), x=x)
    else:
        node = helper.make_node("Clip", ["x", *names], ["y"])
        inputs = [info("x", x.shape)] + [info(n, []) for n in bounds]
        y = run_one(model([node], inputs), x=x, **bounds)
    close(y, np.clip(x, -np.inf if low is None else low, np.inf if high is None else high))


# ----- normalisation and dropout --------------------------------------------------------------
def _bn_params(channels=3):
    return {
        "scale": rand(channels),
        "bias": rand(channels),
        "mean": rand(channels),
        "var": np.abs(rand(channels)) + 0.5,
    }


def _bn_ref(x, scale, bias, mean, var, epsilon):
    def per_channel(v):
        return v.reshape(1, -1, 1, 1)

    normalized = (x - per_channel(mean)) / np.sqrt(per_channel(var) + epsilon)
    return per_channel(scale) * normalized + per_channel(bias)


@pytest.mark.parametrize("as_input", [False, True])
def test_batch_norm_inference(as_input):
    x, params = rand(2, 3, 4, 4), _bn_params()
    node = helper.make_node(
        "BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=1e-3
    )
    if as_input:
        inputs = [info("x", x.shape)] + [info(n, [3]) for n in params]
        graph = convc.from_onnx(model([node], inputs))
        y = convc.interpret(graph, {"x": x, **params})["y"]
    else:
        graph = convc.from_onnx(model([node], [info("x", x.shape)], inits=params))
        assert graph.values["scale"].trainable and not graph.values["mean"].trainable
        assert not graph.values["var"].trainable
        y = convc.interpret(graph, {"x": x})["y"]
    close(y, _bn_ref(x, **params, epsilon=1e-3), rtol=1e-4, atol=1e-5)


def test_batch_norm_training_mode():
    x, params = rand(4, 3, 2, 2), _bn_params()
    node = helper.make_node(
        "BatchNormalization",
        ["x", "scale", "bias", "mean", "var"],
        ["y", "running_mean", "running_var"],
        training_mode=1,
        momentum=0.8,
    )
    graph = convc.from_onnx(
        model([node], [info("x", x.shape)], ["y", "running_mean", "running_var"], params, opset=15)
    )
    assert graph.nodes["y"].attrs["training_mode"] == 1
    out = convc.interpret(graph, {"x": x})
    batch_mean, batch_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    stats = {**params, "mean": batch_mean, "var": batch_var}
    close(out["y"], _bn_ref(x, **stats, epsilon=1e-5), rtol=1e-4, atol=1e-5)
    close(out["running_mean"], 0.8 * params["mean"] + 0.2 * batch_mean)
    close(out["running_var"], 0.8 * params["var"] + 0.2 * batch_var)


@pytest.mark.parametrize("opset", [10, 13])
def test_dropout_inference_is_identity_with_all_true_mask(opset):
    x = rand(3, 4)
    attrs = {"ratio": 0.3} if opset < 12 else {}
    node = helper.make_node("Dropout", ["x"], ["y", "mask"], **attrs)
    mask_info = info("mask", None, TensorProto.BOOL)
    out = run(model([node], [info("x", x.shape)], ["y", mask_info], opset=opset), x=x)
    close(out["y"], x)
    assert out["mask"].dtype == np.bool_ and out["mask"].all()


def test_dropout_run_time_ratio_is_ignored_at_inference():
    x = rand(3, 4)
    node = helper.make_node("Dropout", ["x", "ratio"], ["y"])
    y = run_one(
        model([node], [info("x", x.shape), info("ratio", [])], opset=13),
        x=x,
        ratio=np.array(0.5, np.float32),
    )
    close(y, x)


def test_dropout_training_mode_with_constant_ratio():
    x = rand(40, 50) + 5.0
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y", "mask"], seed=3)
    inits = {"ratio": np.array(0.25, np.float32), "training": np.array(True)}
    mask_info = info("mask", None, TensorProto.BOOL)
    graph = convc.from_onnx(model([node], [info("x", x.shape)], ["y", mask_info], inits, opset=13))
    attrs = graph.nodes["y"].attrs
    assert (attrs["training_mode"], attrs["ratio"], attrs["seed"]) == (1, 0.25, 3)
    out = convc.interpret(graph, {"x": x})
    close(out["y"], np.where(out["mask"], x / 0.75, 0))
    assert 0.6 < out["mask"].mean() < 0.9


# ----- pad, softmax, loss ---------------------------------------------------------------------
def test_pad_2_attributes():
    x = rand(2, 3)
    node = helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 1, 2], value=1.5)
    y = run_one(model([node], [info("x", x.shape)], opset=10), x=x)
    close(y, np.pad(x, [(0, 1), (1, 2)], constant_values=1.5))


def test_pad_initializer_pads_value_and_axes():
    x = rand(2, 3, 4)
    node = helper.make_node("Pad", ["x", "pads", "value", "axes"], ["y"], mode="constant")
    inits = {
        "pads": np.array([1, 0, 2, 3], np.int64),
        "value": np.array(-2.0, np.float32),
        "axes": np.array([-1, 0], np.int64),
    }
    y = run_one(model([node], [info("x", x.shape)], inits=inits, opset=18), x=x)
    close(y, np.pad(x, [(0, 3), (0, 0), (1, 2)], constant_values=-2.0))


def test_pad_run_time_pads_give_symbolic_shape():
    x = rand(2, 3)
    node = helper.make_node("Pad", ["x", "pads"], ["y"])
    graph = convc.from_onnx(
        model([node], [info("x", x.shape), info("pads", [4], TensorProto.INT64)], opset=13)
    )
    assert all(not d.is_Integer for d in graph.values["y"].shape)
    y = convc.interpret(graph, {"x": x, "pads": np.array([1, 0, 0, 2], np.int64)})["y"]
    close(y, np.pad(x, [(1, 0), (0, 2)]))


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_opset_13_normalizes_one_axis(op, axis):
    x = rand(2, 3, 4)
    m = model([helper.make_node(op, ["x"], ["y"], axis=axis)], [info("x", x.shape)], opset=13)
    expected = softmax_ref(x, axis)
    close(run_one(m, x=x), expected if op == "Softmax" else np.log(expected), atol=1e-5)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -2])
def test_legacy_softmax_coerces_to_2d(op, axis):
    x = rand(2, 3, 4)
    attrs = {} if axis is None else {"axis": axis}
    m = model([helper.make_node(op, ["x"], ["y"], **attrs)], [info("x", x.shape)], opset=11)
    expected = legacy_softmax_ref(x, 1 if axis is None else axis % 3)
    close(run_one(m, x=x), expected if op == "Softmax" else np.log(expected), atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1])
def test_legacy_softmax_with_symbolic_batch(axis):
    m = model(
        [helper.make_node("Softmax", ["x"], ["y"], axis=axis)], [info("x", ["N", 3, 4])], opset=11
    )
    graph = convc.from_onnx(m)
    assert graph.values["y"].shape == (dim("N"), 3, 4)
    for batch in (1, 3):
        x = rand(batch, 3, 4)
        close(convc.interpret(graph, {"x": x})["y"], legacy_softmax_ref(x, axis), atol=1e-6)


def test_softmax_cross_entropy_with_weights_and_ignore_index():
    scores, labels, weights = rand(4, 5), np.array([0, 2, 4, 2], np.int64), rand(5) ** 2
    node = helper.make_node(
        "SoftmaxCrossEntropyLoss", ["s", "l", "w"], ["loss", "log_prob"], ignore_index=4
    )
    inputs = [info("s", scores.shape), info("l", labels.shape, TensorProto.INT64)]
    out = run(
        model([node], inputs, ["loss", "log_prob"], {"w": weights}, opset=13), s=scores, l=labels
    )
    log_prob = np.log(softmax_ref(scores.astype(np.float64), 1))
    counted = labels != 4
    picked = -weights[labels] * log_prob[np.arange(4), labels] * counted
    close(out["loss"], np.array(picked.sum() / (weights[labels] * counted).sum(), np.float32))
    close(out["log_prob"], log_prob.astype(np.float32), atol=1e-5)


# ----- whole models, names and symbols --------------------------------------------------------
def small_cnn(batch_dim):
    nodes = [
        helper.make_node("Conv", ["image", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    params = {
        "conv.weight": rand(4, 1, 3, 3),
        "conv.bias": rand(4),
        "fc.weight": rand(5, 4 * 3 * 3),
        "fc.bias": rand(5),
    }
    return model(nodes, [info("image", [batch_dim, 1, 6, 6])], ["logits"], params), params


def small_cnn_ref(x, params):
    h = np.maximum(conv_ref(x, params["conv.weight"], params["conv.bias"], pads=[1, 1, 1, 1]), 0)
    pooled = h.reshape(x.shape[0], 4, 3, 2, 3, 2).max(axis=(3, 5))
    return pooled.reshape(x.shape[0], -1) @ params["fc.weight"].T + params["fc.bias"]


@pytest.mark.parametrize(
    "dim_param, symbol", [("batch", "batch"), ("batch size", "batch_size"), ("2b", "d_2b")]
)
def test_dim_param_batch_is_symbolic(dim_param, symbol):
    onnx_model, params = small_cnn(dim_param)
    graph = convc.from_onnx(onnx_model, name="cnn")
    assert graph.name == "cnn"
    assert graph.values["image"].shape[0] == dim(symbol)
    assert graph.values["logits"].shape == (dim(symbol), 5)
    assert list(graph.params()) == list(params)
    for batch in (1, 3):
        x = rand(batch, 1, 6, 6)
        close(
            convc.interpret(graph, {"image": x})["logits"],
            small_cnn_ref(x, params),
            rtol=1e-4,
            atol=1e-4,
        )


def test_unknown_dim_gets_a_fresh_symbol():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [info("x", [None, "x_1", 4])])
    graph = convc.from_onnx(m)
    first, second, _ = graph.values["x"].shape
    assert not first.is_Integer and first != second  # 'x_1' is a dim_param: no clash
    x = rand(2, 3, 4)
    close(convc.interpret(graph, {"x": x})["y"], np.maximum(x, 0))


def test_initializer_that_is_also_an_input_is_a_parameter(tmp_path):
    onnx_model, _ = small_cnn(2)
    onnx_model.graph.input.append(info("fc.bias", [5]))
    path = tmp_path / "cnn.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    for source in (path, str(path), onnx_model.SerializeToString()):
        graph = convc.from_onnx(source)
        assert graph.inputs == ["image"] and graph.values["fc.bias"].kind == "param"
        assert graph.name == "m"


# ----- errors ---------------------------------------------------------------------------------
def _relu_then(node, inputs=None, opset=17, outputs=("y",)):
    relu = helper.make_node("Relu", ["x"], ["h"], name="first")
    return model([relu, node], inputs or [info("x", [2, 3, 4, 4])], outputs, opset=opset)


Y_INFO = info("y", [2, 3, 4, 4])
UNSUPPORTED = [
    (helper.make_node("Exp", ["x"], ["y"], name="exp1"), 17, "exp1.*op Exp", Y_INFO),
    (helper.make_node("Relu", ["x"], ["y"], name="old_relu"), 5, "old_relu.*Relu-1", Y_INFO),
    (
        helper.make_node("Pad", ["x", "p"], ["y"], name="pad1", mode="reflect"),
        17,
        "pad1.*mode='reflect'",
        info("y", [3, 4, 5, 6]),
    ),
    (
        helper.make_node("Gelu", ["x"], ["y"], name="gelu1", approximate="erf"),
        20,
        "gelu1.*approximate='erf'",
        Y_INFO,
    ),
    (
        helper.make_node("Constant", [], ["y"], name="c1", value_string="hi"),
        17,
        "c1.*attribute value_string",
        info("y", [], TensorProto.STRING),
    ),
]


@pytest.mark.parametrize(
    "node, opset, match, output", UNSUPPORTED, ids=lambda v: getattr(v, "name", "")
)
def test_unsupported_op_version_or_attribute(node, opset, match, output):
    inputs = [info("x", [2, 3, 4, 4]), info("p", [8], TensorProto.INT64)]
    with pytest.raises(convc.UnsupportedError, match=match):
        convc.from_onnx(model([node], inputs, [output], opset=opset))


def test_unsupported_maxpool_indices_output():
    node = helper.make_node("MaxPool", ["h"], ["y", "idx"], name="pool1", kernel_shape=[2, 2])
    m = _relu_then(node, outputs=("y", info("idx", None, TensorProto.INT64)))
    with pytest.raises(convc.UnsupportedError, match="pool1.*output Indices \\('idx'\\)"):
        convc.from_onnx(m)


@pytest.mark.parametrize("run_time", ["ratio", "training"])
def test_unsupported_run_time_dropout_flags(run_time):
    inits = {"ratio": np.array(0.5, np.float32), "training": np.array(True)}
    del inits[run_time]
    elem = TensorProto.FLOAT if run_time == "ratio" else TensorProto.BOOL
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y"], name="drop1")
    m = model([node], [info("x", [3]), info(run_time, [], elem)], inits=inits, opset=13)
    with pytest.raises(convc.UnsupportedError, match=f"drop1.*{run_time}.*must be a constant"):
        convc.from_onnx(m)


def test_unsupported_dtypes():
    int32 = [info("x", [3], TensorProto.INT32)]
    m = model([helper.make_node("Relu", ["x"], ["y"])], int32, [info("y", [3], TensorProto.INT32)])
    with pytest.raises(convc.UnsupportedError, match="input 'x'.*int32"):
        convc.from_onnx(m)
    m = model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [info("x", [2], TensorProto.FLOAT16)],
        [info("y", [2], TensorProto.FLOAT16)],
        inits={"w": np.ones(2, np.float16)},
    )
    with pytest.raises(convc.UnsupportedError, match="initializer 'w'.*float16"):
        convc.from_onnx(m)
    ints = [info("a", [2], TensorProto.INT64), info("b", [2], TensorProto.INT64)]
    int_out = [info("y", [2], TensorProto.INT64)]
    m = model([helper.make_node("Add", ["a", "b"], ["y"], name="add1")], ints, int_out)
    with pytest.raises(convc.UnsupportedError, match="add1.*int64"):
        convc.from_onnx(m)


def test_unsupported_legacy_softmax_over_two_symbolic_dims():
    node = helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)
    with pytest.raises(convc.UnsupportedError, match="sm.*more than one symbolic"):
        convc.from_onnx(model([node], [info("x", [2, "H", "W"])], opset=11))


def test_shape_error_names_the_node():
    node = helper.make_node("Conv", ["h", "w"], ["y"], name="conv7")
    m = model(
        [helper.make_node("Relu", ["x"], ["h"]), node],
        [info("x", [1, 3, 5, 5])],
        inits={"w": rand(2, 4, 3, 3)},
    )
    with pytest.raises(convc.ShapeError, match="conv7.*3 channels"):
        convc.from_onnx(m)


def test_malformed_models():
    dangling = model([helper.make_node("Relu", ["nowhere"], ["y"], name="r1")], [info("x", [2])])
    with pytest.raises(convc.OnnxError, match="r1.*'nowhere'"):
        convc.from_onnx(dangling)
    no_output = model([helper.make_node("Relu", ["x"], ["h"], name="r1")], [info("x", [2])])
    with pytest.raises(convc.OnnxError, match="output 'y'"):
        convc.from_onnx(no_output)
    missing_input = model(
        [helper.make_node("Conv", ["x"], ["y"], name="c1")],
        [info("x", [1, 1, 3, 3])],
        [info("y", [1, 1, 1, 1])],
    )
    with pytest.raises(convc.OnnxError, match="onnx.checker.*c1"):
        convc.from_onnx(missing_input)
    bn = helper.make_node(
        "BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], name="bn1"
    )
    stats = {n: np.ones(3, np.float32) for n in "sbmv"}
    with pytest.raises(convc.OnnxError, match="bn1.*training_mode=1"):
        outputs = [info("y", [1, 3, 2, 2]), info("rm", [3]), info("rv", [3])]
        convc.from_onnx(model([bn], [info("x", [1, 3, 2, 2])], outputs, stats, opset=15))


def test_unreadable_sources(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\x00 not a protobuf \x13\x37" * 10)
    for source, match in [
        (tmp_path / "missing.onnx", "missing.onnx"),
        (tmp_path, "cannot read"),
        (garbage, "garbage.onnx|onnx.checker"),
        (42, "got int"),
    ]:
        with pytest.raises(convc.OnnxError, match=match):
            convc.from_onnx(source)


def test_missing_onnx_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(convc.OnnxError, match=r"pip install convc\[onnx\]"):
        require_onnx()


def test_dropout_7_float_mask_is_unsupported():
    node = helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop7")
    m = model([node], [info("x", [3])], [info("y", [3]), info("mask", [3])], opset=7)
    with pytest.raises(convc.UnsupportedError, match="drop7.*mask"):
        convc.from_onnx(m)


def test_names_made_up_for_helper_values_avoid_onnx_names():
    """Legacy softmax adds constants named after its node; an ONNX value may already hold that name."""
    x = rand(2, 3, 4)
    nodes = [
        helper.make_node("Softmax", ["x"], ["sm/shape"], name="sm", axis=1),
        helper.make_node("Relu", ["sm/shape"], ["y"]),
    ]
    graph = convc.from_onnx(model(nodes, [info("x", x.shape)], opset=11))
    close(convc.interpret(graph, {"x": x})["y"], legacy_softmax_ref(x, 1), atol=1e-6)


def test_declared_output_type_must_match_the_computed_one():
    node = helper.make_node("Flatten", ["x"], ["y"], axis=2)
    for declared, match in [
        (info("y", [6, 5]), r"shape \[6, 5\]"),
        (info("y", [24]), "rank 1"),
        (info("y", [6, 4], TensorProto.DOUBLE), "dtype float64"),
    ]:
        with pytest.raises(convc.OnnxError, match=f"output 'y' is declared with {match}"):
            convc.from_onnx(model([node], [info("x", [2, 3, 4])], [declared]))


@pytest.mark.parametrize("training", [False, True])
def test_pytorch_export_matches_pytorch(training):
    """A model exported by torch.onnx (its naming, dynamic batch, and in training mode its
    batch norm with batch statistics and its Dropout with constant flags) runs as in PyTorch."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.drop = torch.nn.Dropout(0.0)
            self.fc = torch.nn.Linear(4 * 4 * 4, 5)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
            return torch.log_softmax(self.fc(self.drop(torch.flatten(x, 1))), dim=1)

    torch.manual_seed(0)
    net = Net().train(training)
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            torch.randn(2, 1, 8, 8),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
            training=mode,
            do_constant_folding=not training,
        )
    graph = convc.from_onnx(buffer.getvalue())
    assert graph.values["x"].shape[0] == dim("batch")
    for batch in (1, 3):
        x = rand(batch, 1, 8, 8)
        expected = net(torch.from_numpy(x)).detach().numpy()
        close(convc.interpret(graph, {"x": x})["y"], expected, rtol=1e-4, atol=1e-5)
