"""The NumPy reference interpreter against hand-computed values and independent NumPy.

Expected values are worked out by hand (written out as literal arrays), by
direct nested loops written here, or by exact identities (the adjoint
identity between conv and conv_transpose); none reuse the interpreter's code.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import convc
import ir

F32 = np.float32


def run_op(op, x, *params, attrs=None, outputs=None, batch_symbol=True, dtype=None):
    """Run one op on input `x` (batch dim symbolic) with `params` as parameters."""
    g = ir.Graph(op)
    shape = ("N", *x.shape[1:]) if batch_symbol and x.ndim else x.shape
    g.add_input("x", shape, x.dtype.name)
    names = ["x"]
    for i, p in enumerate(params):
        if p is None:
            names.append(None)
        else:
            names.append(g.add_param(f"p{i}", p).name)
    values = g.add_node(op, names, attrs or {}, name="y", outputs=outputs)
    g.set_outputs(*values)
    result = convc.interpret(g, {"x": x}, dtype=dtype)
    return result if outputs else result["y"]


def arr(values, dtype=F32):
    return np.array(values, dtype=dtype)


# ----- hand-computed course examples ---------------------------------------------------------


def test_conv_3x3_input_2x2_kernel():
    x = np.arange(9, dtype=F32).reshape(1, 1, 3, 3)
    w = np.arange(4, dtype=F32).reshape(1, 1, 2, 2)
    # 0*0+1*1+3*2+4*3 = 19, 1*0+2*1+4*2+5*3 = 25, 3*0+4*1+6*2+7*3 = 37, 4*0+5*1+7*2+8*3 = 43
    np.testing.assert_array_equal(run_op("conv", x, w), arr([[[[19, 25], [37, 43]]]]))


def test_conv_two_input_channels_sum():
    x = np.stack([np.arange(9), np.arange(1, 10)]).astype(F32).reshape(1, 2, 3, 3)
    w = np.stack([np.arange(4), np.arange(1, 5)]).astype(F32).reshape(1, 2, 2, 2)
    # channel 0 gives [[19,25],[37,43]]; channel 1 gives [[37,47],[67,77]]
    np.testing.assert_array_equal(run_op("conv", x, w), arr([[[[56, 72], [104, 120]]]]))


def test_max_pool_2x2():
    x = arr([[[[0, 1], [3, 4]]]])
    np.testing.assert_array_equal(run_op("max_pool", x, attrs={"kernel_shape": [2, 2]}), [[[[4]]]])


def test_vertical_edge_detector():
    image = np.zeros((1, 1, 6, 8), dtype=F32)
    image[..., 2:6] = 1
    kernel = arr([[[[1, -1]]]])
    # y[i, j] = x[i, j] - x[i, j + 1] (cross-correlation, as ONNX and PyTorch): the
    # dark-to-bright edge between columns 1 and 2 gives -1, bright-to-dark between 5 and 6 +1.
    row = [0, -1, 0, 0, 0, 1, 0]
    np.testing.assert_array_equal(run_op("conv", image, kernel), arr([[[row] * 6]]))
    # the kernel flipped ([-1, 1], i.e. a true convolution with [1, -1]) swaps the signs
    flipped = [0, 1, 0, 0, 0, -1, 0]
    np.testing.assert_array_equal(run_op("conv", image, -kernel), arr([[[flipped] * 6]]))


def test_conv_1d_with_bias():
    x = arr([[[1, 2, 4, 8, 16]]])
    w = arr([[[1, 0, -1]]])
    # x[i] - x[i + 2] + 0.5
    np.testing.assert_array_equal(run_op("conv", x, w, arr([0.5])), [[[-2.5, -5.5, -11.5]]])


def test_conv_stride_2_pad_1():
    x = np.arange(1, 17, dtype=F32).reshape(1, 1, 4, 4)
    w = np.ones((1, 1, 3, 3), F32)
    y = run_op("conv", x, w, attrs={"strides": [2, 2], "pads": [1, 1, 1, 1]})
    # windows over rows/cols -1..1 and 1..3: 1+2+5+6, 2+3+4+6+7+8, 5+6+9+10+13+14, 6+...+16
    np.testing.assert_array_equal(y, [[[[14, 30], [57, 99]]]])


def test_conv_asymmetric_pads():
    x = arr([[[1, 2, 3]]])
    w = arr([[[1, 10]]])
    # padded [0, 1, 2, 3, 0, 0]: windows (0,1) (1,2) (2,3) (3,0) (0,0)
    y = run_op("conv", x, w, attrs={"pads": [1, 2]})
    np.testing.assert_array_equal(y, [[[10, 21, 32, 3, 0]]])


def test_conv_dilated():
    x = np.arange(7, dtype=F32).reshape(1, 1, 7)
    y = run_op("conv", x, arr([[[1, 1]]]), attrs={"dilations": [3]})
    np.testing.assert_array_equal(y, [[[3, 5, 7, 9]]])  # x[i] + x[i + 3]
    x2 = np.arange(25, dtype=F32).reshape(1, 1, 5, 5)
    y2 = run_op("conv", x2, np.ones((1, 1, 2, 2), F32), attrs={"dilations": [2, 2]})
    # x[i,j] + x[i,j+2] + x[i+2,j] + x[i+2,j+2] = 4*(5i+j) + 24
    np.testing.assert_array_equal(y2, [[[[24, 28, 32], [44, 48, 52], [64, 68, 72]]]])


def test_depthwise_conv():
    x = np.stack([np.arange(9), np.ones(9)]).astype(F32).reshape(1, 2, 3, 3)
    w = np.stack([np.ones(4), np.arange(1, 5)]).astype(F32).reshape(2, 1, 2, 2)
    y = run_op("conv", x, w, attrs={"group": 2})
    # channel 0: 2x2 sums of 0..8; channel 1: 1+2+3+4 everywhere
    np.testing.assert_array_equal(y, [[[[8, 12], [20, 24]], [[10, 10], [10, 10]]]])


def test_grouped_conv_keeps_groups_apart():
    x = np.stack([np.full(2, 1.0), np.full(2, 2.0), np.full(2, 3.0), np.full(2, 4.0)])
    x = x.astype(F32).reshape(1, 4, 2)
    w = np.ones((2, 2, 1), F32)  # two groups of two channels, one output each
    np.testing.assert_array_equal(run_op("conv", x, w, attrs={"group": 2}), [[[3, 3], [7, 7]]])


def test_1x1_conv_mixes_channels():
    x = arr([[[[1, 2]], [[10, 20]]]])  # (1, 2, 1, 2)
    w = arr([[1, 1], [1, -1], [2, 0]]).reshape(3, 2, 1, 1)
    y = run_op("conv", x, w)
    np.testing.assert_array_equal(y, [[[[11, 22]], [[-9, -18]], [[2, 4]]]])


def test_avg_pool_with_padding():
    x = arr([[[[1, 2], [3, 4]]]])
    attrs = {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]}
    excluded = run_op("avg_pool", x, attrs=attrs)
    np.testing.assert_allclose(excluded, [[[[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]]]])
    included = run_op("avg_pool", x, attrs={**attrs, "count_include_pad": 1})
    np.testing.assert_allclose(
        included, [[[[0.25, 0.75, 0.5], [1, 2.5, 1.5], [0.75, 1.75, 1]]]], rtol=1e-7
    )


def test_pool_ceil_mode():
    x = arr([[[1, 2, 3, 4, 5]]])
    attrs = {"kernel_shape": [2], "strides": [2]}
    np.testing.assert_array_equal(run_op("max_pool", x, attrs=attrs), [[[2, 4]]])
    np.testing.assert_array_equal(
        run_op("max_pool", x, attrs={**attrs, "ceil_mode": 1}), [[[2, 4, 5]]]
    )
    np.testing.assert_array_equal(
        run_op("avg_pool", x, attrs={**attrs, "ceil_mode": 1}), [[[1.5, 3.5, 5]]]
    )


def test_avg_pool_ceil_mode_count_include_pad_stops_at_right_padding():
    x = arr([[[1, 2, 3, 4]]])
    attrs = {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "ceil_mode": 1}
    # padded [p, 1, 2, 3, 4, p] + one position beyond: windows [p,1,2] [2,3,4] [4,p,beyond]
    np.testing.assert_array_equal(run_op("max_pool", x, attrs=attrs), [[[2, 4, 4]]])
    np.testing.assert_array_equal(run_op("avg_pool", x, attrs=attrs), [[[1.5, 3, 4]]])
    included = run_op("avg_pool", x, attrs={**attrs, "count_include_pad": 1})
    np.testing.assert_array_equal(included, [[[1, 3, 2]]])  # 3/3, 9/3, 4/2


def test_ceil_mode_drops_window_starting_in_right_padding():
    x = arr([[[1, 2, 3, 4]]])
    attrs = {"kernel_shape": [2], "strides": [2], "pads": [0, 1], "ceil_mode": 1}
    # a third window would start at index 4, inside the right padding: dropped
    np.testing.assert_array_equal(run_op("max_pool", x, attrs=attrs), [[[2, 4]]])


def test_max_pool_dilated_and_padding_never_wins():
    x = arr([[[-5, -1, -7, -3, -2]]])
    y = run_op("max_pool", x, attrs={"kernel_shape": [2], "dilations": [2], "pads": [1, 0]})
    # padded [p, -5, -1, -7, -3, -2]: windows (p,-1) (-5,-7) (-1,-3) (-7,-2)
    np.testing.assert_array_equal(y, [[[-1, -5, -1, -2]]])


def test_global_pools():
    x = np.arange(8, dtype=F32).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(run_op("global_avg_pool", x), [[[[1.5]], [[5.5]]]])
    np.testing.assert_array_equal(run_op("global_max_pool", x), [[[[3]], [[7]]]])


def test_softmax_and_log_softmax_by_hand():
    x = arr([[0, math.log(3)], [1, 1]])
    np.testing.assert_allclose(run_op("softmax", x), [[0.25, 0.75], [0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(
        run_op("log_softmax", x), np.log([[0.25, 0.75], [0.5, 0.5]]), rtol=1e-6
    )
    big = arr([[1000, 1000 + math.log(3)]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(run_op("softmax", big), [[0.25, 0.75]], rtol=1e-4)
        np.testing.assert_allclose(run_op("log_softmax", big), [np.log([0.25, 0.75])], rtol=1e-4)
    np.testing.assert_allclose(
        run_op("softmax", x, attrs={"axis": 0}),
        [[1 / (1 + math.e), 3 / (3 + math.e)], [math.e / (1 + math.e), math.e / (3 + math.e)]],
        rtol=1e-6,
    )


def cross_entropy(scores, labels, weights=None, **attrs):
    g = ir.Graph("ce")
    g.add_input("scores", ("N", *scores.shape[1:]))
    g.add_input("labels", ("N", *labels.shape[1:]), "int64")
    w = None if weights is None else g.add_param("w", weights)
    g.add_node(
        "softmax_cross_entropy",
        ["scores", "labels", w],
        attrs,
        name="ce",
        outputs=["loss", "log_prob"],
    )
    g.set_outputs("loss", "log_prob")
    return convc.interpret(g, {"scores": scores, "labels": labels})


def test_softmax_cross_entropy_by_hand():
    scores = arr([[0, math.log(3)], [1, 1]])  # probabilities [1/4, 3/4] and [1/2, 1/2]
    labels = np.array([1, 0])
    per_sample = [math.log(4 / 3), math.log(2)]
    out = cross_entropy(scores, labels, reduction="none")
    np.testing.assert_allclose(out["loss"], per_sample, rtol=1e-6)
    np.testing.assert_allclose(out["log_prob"], np.log([[0.25, 0.75], [0.5, 0.5]]), rtol=1e-6)
    mean = cross_entropy(scores, labels)["loss"]
    assert mean.shape == () and mean.dtype == F32
    np.testing.assert_allclose(mean, math.log(8 / 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(
        cross_entropy(scores, labels, reduction="sum")["loss"], math.log(8 / 3), rtol=1e-6
    )
    # class weights [2, 1]: sample 0 (label 1) weighs 1, sample 1 (label 0) weighs 2
    weighted = cross_entropy(scores, labels, arr([2, 1]))["loss"]
    np.testing.assert_allclose(weighted, (math.log(4 / 3) + 2 * math.log(2)) / 3, rtol=1e-6)
    weighted_sum = cross_entropy(scores, labels, arr([2, 1]), reduction="sum")["loss"]
    np.testing.assert_allclose(weighted_sum, math.log(4 / 3) + 2 * math.log(2), rtol=1e-6)


def test_softmax_cross_entropy_ignore_index_and_nd():
    scores = arr([[0, math.log(3)], [1, 1]])
    ignored = cross_entropy(scores, np.array([1, -100]), ignore_index=-100)
    np.testing.assert_allclose(ignored["loss"], math.log(4 / 3), rtol=1e-6)
    none = cross_entropy(scores, np.array([1, -100]), ignore_index=-100, reduction="none")
    np.testing.assert_allclose(none["loss"], [math.log(4 / 3), 0], rtol=1e-6)
    weighted = cross_entropy(scores, np.array([0, 0]), arr([2, 1]), ignore_index=1)
    np.testing.assert_allclose(weighted["loss"], (2 * math.log(4) + 2 * math.log(2)) / 4, rtol=1e-6)
    # (N=1, C=2, d=2): the two samples above laid along a spatial axis
    nd = cross_entropy(scores.T[None].copy(), np.array([[1, 0]]), reduction="none")
    np.testing.assert_allclose(nd["loss"], [[math.log(4 / 3), math.log(2)]], rtol=1e-6)


def test_softmax_cross_entropy_label_out_of_range():
    with pytest.raises(convc.InputError, match=r"softmax_cross_entropy 'ce'.*label 2"):
        cross_entropy(arr([[0, 1]]), np.array([2]))


def test_mse_loss():
    g = ir.Graph("mse")
    g.add_input("p", ("N", 2))
    g.add_input("t", ("N", 2))
    for reduction in ("mean", "sum", "none"):
        g.add_node("mse_loss", ["p", "t"], {"reduction": reduction}, name=reduction)
    g.set_outputs("mean", "sum", "none")
    out = convc.interpret(g, {"p": arr([[1, 2], [3, 4]]), "t": arr([[0, 0], [3, 6]])})
    np.testing.assert_array_equal(out["none"], [[1, 4], [0, 4]])
    assert out["sum"] == 9 and out["mean"] == 2.25 and out["mean"].shape == ()


# ----- dense and data movement ---------------------------------------------------------------


def test_gemm_alpha_beta_transpose_and_broadcast():
    a = arr([[1, 2], [3, 4]])
    b = arr([[1, 0, 2], [0, 1, 3]])  # (2, 3)
    c = arr([10, 20, 30])
    y = run_op("gemm", a, b, c, attrs={"alpha": 2.0, "beta": 0.5})
    # A @ B = [[1, 2, 8], [3, 4, 18]]
    np.testing.assert_array_equal(y, [[7, 14, 31], [11, 18, 51]])
    yt = run_op(
        "gemm", a.T.copy(), b.T.copy(), attrs={"transA": 1, "transB": 1}, batch_symbol=False
    )
    np.testing.assert_array_equal(yt, [[1, 2, 8], [3, 4, 18]])


def test_matmul_batched_and_vector():
    a = np.arange(12, dtype=F32).reshape(2, 2, 3)
    b = np.arange(3, dtype=F32)
    y = run_op("matmul", a, b)
    np.testing.assert_array_equal(y, [[5, 14], [23, 32]])


def test_flatten_reshape_concat_identity():
    x = np.arange(24, dtype=F32).reshape(2, 3, 4)
    assert run_op("flatten", x).shape == (2, 12)
    assert run_op("flatten", x, attrs={"axis": 0}).shape == (1, 24)
    y = run_op("reshape", x, np.array([0, -1, 2]))
    np.testing.assert_array_equal(y, x.reshape(2, 6, 2))
    g = ir.Graph("cat")
    g.add_input("a", ("N", 1))
    g.add_input("b", ("N", 2))
    g.add_node("concat", ["a", "b"], {"axis": 1}, name="c")
    g.add_node("identity", ["c"], name="i")
    g.set_outputs("i")
    out = convc.interpret(g, {"a": arr([[1], [2]]), "b": arr([[3, 4], [5, 6]])})
    np.testing.assert_array_equal(out["i"], [[1, 3, 4], [2, 5, 6]])


def test_reshape_allowzero_and_runtime_shape():
    g = ir.Graph("r")
    g.add_input("x", (2, 3))
    g.add_input("shape", (2,), "int64")
    g.add_node("reshape", ["x", "shape"], name="r")
    g.set_outputs("r")
    x = np.arange(6, dtype=F32).reshape(2, 3)
    out = convc.interpret(g, {"x": x, "shape": np.array([3, -1])})
    np.testing.assert_array_equal(out["r"], x.reshape(3, 2))
    with pytest.raises(
        convc.InputError, match=r"while executing reshape 'r'.*\(2, 3\) to \[4, -1\]"
    ):
        convc.interpret(g, {"x": x, "shape": np.array([4, -1])})
    empty = run_op(
        "reshape",
        np.zeros((0, 3), F32),
        np.array([0, 3]),
        attrs={"allowzero": 1},
        batch_symbol=False,
    )
    assert empty.shape == (0, 3)


def test_pad_constant_and_negative():
    x = arr([[1, 2], [3, 4]])
    y = run_op("pad", x, np.array([1, 0, 0, 2]), arr(9))
    np.testing.assert_array_equal(y, [[9, 9, 9, 9], [1, 2, 9, 9], [3, 4, 9, 9]])
    cropped = run_op("pad", x, np.array([-1, 1]), None, np.array([1]))
    np.testing.assert_array_equal(cropped, [[2, 0], [4, 0]])


# ----- activations and normalisation -----------------------------------------------------------

GELU_1 = 0.8413447460685429  # 1 * Phi(1), Phi the standard normal CDF
SELU_ALPHA = 1.67326319217681884765625  # the ONNX defaults (float32 roundings of the paper's)
SELU_GAMMA = 1.05070102214813232421875


@pytest.mark.parametrize(
    "op, attrs, x, expected",
    [
        ("relu", {}, [-2, 0, 3], [0, 0, 3]),
        ("leaky_relu", {}, [-2, 3], [-0.02, 3]),
        ("leaky_relu", {"alpha": 0.5}, [-2, 3], [-1, 3]),
        ("elu", {}, [-1, 2], [math.exp(-1) - 1, 2]),
        ("selu", {}, [-1, 2], [SELU_GAMMA * SELU_ALPHA * (math.exp(-1) - 1), 2 * SELU_GAMMA]),
        ("sigmoid", {}, [0, math.log(3), -1000, 1000], [0.5, 0.75, 0, 1]),
        ("hard_sigmoid", {}, [-10, 0, 1, 10], [0, 0.5, 0.7, 1]),
        ("tanh", {}, [0, math.log(2)], [0, 0.6]),
        ("softplus", {}, [0, math.log(3), -1000, 1000], [math.log(2), math.log(4), 0, 1000]),
        ("silu", {}, [0, math.log(3)], [0, 0.75 * math.log(3)]),
        ("gelu", {}, [0, 1, -1], [0, GELU_1, GELU_1 - 1]),
        (
            "gelu",
            {"approximate": "tanh"},
            [0, 1],
            [0, 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))],
        ),
    ],
)
def test_activation_values(op, attrs, x, expected):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = run_op(op, np.array([x], dtype=np.float64), attrs=attrs)
    np.testing.assert_allclose(y[0], expected, rtol=1e-12, atol=1e-300)


def test_gelu_float32_stays_float32():
    y = run_op("gelu", arr([[1, -1]]))
    assert y.dtype == F32
    np.testing.assert_allclose(y, [[GELU_1, GELU_1 - 1]], rtol=1e-6)


def test_prelu_and_clip():
    x = arr([[-2, 3], [-4, 5]])
    np.testing.assert_array_equal(run_op("prelu", x, arr([0.5, 0.25])), [[-1, 3], [-2, 5]])
    np.testing.assert_array_equal(run_op("clip", x, arr(-3), arr(4)), [[-2, 3], [-3, 4]])
    np.testing.assert_array_equal(run_op("clip", x, None, arr(0)), [[-2, 0], [-4, 0]])
    np.testing.assert_array_equal(run_op("clip", x, arr(0)), [[0, 3], [0, 5]])
    np.testing.assert_array_equal(run_op("clip", x), x)
    np.testing.assert_array_equal(run_op("clip", x, arr(2), arr(1)), [[1, 1], [1, 1]])


def test_binary_broadcast():
    g = ir.Graph("bin")
    g.add_input("a", ("N", 2))
    g.add_param("b", arr([10, 20]))
    for op in ("add", "sub", "mul", "div"):
        g.add_node(op, ["a", "b"], name=op)
    g.set_outputs("add", "sub", "mul", "div")
    out = convc.interpret(g, {"a": arr([[1, 2], [5, 10]])})
    np.testing.assert_array_equal(out["add"], [[11, 22], [15, 30]])
    np.testing.assert_array_equal(out["sub"], [[-9, -18], [-5, -10]])
    np.testing.assert_array_equal(out["mul"], [[10, 40], [50, 200]])
    np.testing.assert_array_equal(out["div"], arr([[0.1, 0.1], [0.5, 0.5]]))


def test_batch_norm_inference():
    x = arr([[[1, 3]], [[5, 7]]])  # (2, 1, 2)
    y = run_op("batch_norm", x, arr([2]), arr([1]), arr([4]), arr([3]), attrs={"epsilon": 1.0})
    np.testing.assert_allclose(y, [[[-2, 0]], [[2, 4]]])  # 2 * (x - 4) / 2 + 1


def test_batch_norm_training_mode_onnx_semantics():
    x = arr([[[1, 3]], [[5, 7]]])  # channel mean 4, biased variance (9+1+1+9)/4 = 5
    out = run_op(
        "batch_norm",
        x,
        arr([1]),
        arr([0]),
        arr([0]),
        arr([1]),
        attrs={"training_mode": 1, "epsilon": 0.0},
        outputs=["y", "mean", "var"],
    )
    np.testing.assert_allclose(out["y"], (x - 4) / math.sqrt(5), rtol=1e-6)
    np.testing.assert_allclose(out["mean"], [0.9 * 0 + 0.1 * 4], rtol=1e-6)
    np.testing.assert_allclose(out["var"], [0.9 * 1 + 0.1 * 5], rtol=1e-6)


def test_dropout():
    x = np.ones((4, 1000), F32)
    out = run_op("dropout", x, outputs=["y", "mask"])
    np.testing.assert_array_equal(out["y"], x)
    assert out["mask"].dtype == bool and out["mask"].all()
    attrs = {"training_mode": 1, "ratio": 0.25, "seed": 7}
    first = run_op("dropout", x, attrs=attrs, outputs=["y", "mask"])
    again = run_op("dropout", x, attrs=attrs, outputs=["y", "mask"])
    mask = first["mask"]
    np.testing.assert_array_equal(mask, np.random.default_rng(7).random(x.shape) >= 0.25)
    np.testing.assert_array_equal(first["y"], np.where(mask, F32(1 / 0.75), 0))
    np.testing.assert_array_equal(again["y"], first["y"])
    assert 0.70 < mask.mean() < 0.80


# ----- independent cross-checks --------------------------------------------------------------


def conv_loops(x, w, strides, dilations, pads, group):
    """Direct N-d cross-correlation by nested loops over every output and kernel element."""
    rank = x.ndim - 2
    batch = x.shape[0]
    out_channels, group_channels = w.shape[:2]
    kernel = w.shape[2:]
    out = [
        (x.shape[2 + i] + pads[i] + pads[rank + i] - dilations[i] * (kernel[i] - 1) - 1)
        // strides[i]
        + 1
        for i in range(rank)
    ]
    y = np.zeros((batch, out_channels, *out))
    per_group = out_channels // group
    for n, m in itertools.product(range(batch), range(out_channels)):
        g = m // per_group
        for pos in itertools.product(*map(range, out)):
            total = 0.0
            for c in range(group_channels):
                for k in itertools.product(*map(range, kernel)):
                    src = [pos[i] * strides[i] + k[i] * dilations[i] - pads[i] for i in range(rank)]
                    if all(0 <= src[i] < x.shape[2 + i] for i in range(rank)):
                        total += x[(n, g * group_channels + c, *src)] * w[(m, c, *k)]
            y[(n, m, *pos)] = total
    return y


CONV_CASES = [
    # spatial, channels, out_channels, kernel, strides, dilations, pads, group
    ((7,), 2, 3, (3,), (2,), (1,), (1, 0), 1),
    ((9,), 4, 4, (2,), (1,), (3,), (2, 2), 4),
    ((5, 6), 2, 4, (3, 2), (1, 2), (1, 1), (1, 0, 2, 1), 2),
    ((6, 5), 3, 2, (2, 3), (2, 1), (2, 1), (0, 1, 1, 0), 1),
    ((4, 4), 3, 3, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 3),
    ((4, 3, 5), 2, 2, (2, 1, 3), (1, 2, 2), (1, 1, 2), (0, 1, 1, 1, 0, 2), 1),
]


@pytest.mark.parametrize(
    "spatial, channels, out_channels, kernel, strides, dilations, pads, group", CONV_CASES
)
def test_conv_matches_nested_loops(
    spatial, channels, out_channels, kernel, strides, dilations, pads, group
):
    rng = np.random.default_rng(len(spatial) * 10 + channels)
    x = rng.standard_normal((2, channels, *spatial))
    w = rng.standard_normal((out_channels, channels // group, *kernel))
    b = rng.standard_normal(out_channels)
    attrs = {"strides": strides, "dilations": dilations, "pads": pads, "group": group}
    y = run_op("conv", x, w, b, attrs=attrs)
    expected = conv_loops(x, w, strides, dilations, pads, group)
    expected += b.reshape(-1, *(1,) * len(spatial))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "spatial, channels, out_channels, kernel, strides, dilations, pads, group", CONV_CASES
)
def test_conv_transpose_is_the_adjoint_of_conv(
    spatial, channels, out_channels, kernel, strides, dilations, pads, group
):
    """<conv(x), y> == <x, conv_transpose(y)> with the same weight, exactly up to rounding."""
    rank = len(spatial)
    rng = np.random.default_rng(7 + channels)
    x = rng.standard_normal((2, channels, *spatial))
    w = rng.standard_normal((out_channels, channels // group, *kernel))
    attrs = {"strides": strides, "dilations": dilations, "pads": pads, "group": group}
    conv_x = run_op("conv", x, w, attrs=attrs)
    y = rng.standard_normal(conv_x.shape)
    # the output padding that makes conv_transpose's output the size of x again
    output_padding = [
        (spatial[i] + pads[i] + pads[rank + i] - dilations[i] * (kernel[i] - 1) - 1) % strides[i]
        for i in range(rank)
    ]
    back = run_op("conv_transpose", y, w, attrs={**attrs, "output_padding": output_padding})
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(conv_x, y), np.vdot(x, back), rtol=1e-12)


def test_conv_transpose_by_hand():
    x = arr([[[1, 2]]])
    w = arr([[[1, 10, 100]]])
    # stride 2: x[0]*w at 0..2, x[1]*w at 2..4 -> [1, 10, 102, 20, 200]
    np.testing.assert_array_equal(
        run_op("conv_transpose", x, w, attrs={"strides": [2]}), [[[1, 10, 102, 20, 200]]]
    )
    cropped = run_op(
        "conv_transpose",
        x,
        w,
        arr([0.5]),
        attrs={"strides": [2], "pads": [1, 2], "output_padding": [1]},
    )
    np.testing.assert_array_equal(cropped, [[[10.5, 102.5, 20.5]]])  # [1,10,102,20,200,0][1:-2]
    grouped = run_op(
        "conv_transpose", arr([[[1], [2]]]), arr([[[1, 1]], [[3, 3]]]), attrs={"group": 2}
    )
    np.testing.assert_array_equal(grouped, [[[1, 1], [6, 6]]])


def test_conv_transpose_output_shape_and_same_pads():
    x = np.ones((1, 1, 3), F32)
    w = np.ones((1, 1, 3), F32)
    # full output (stride 2): 2*(3-1) + 3 = 7 -> [1, 1, 2, 1, 2, 1, 1]; SAME gives 6 positions
    upper = run_op("conv_transpose", x, w, attrs={"strides": [2], "auto_pad": "SAME_UPPER"})
    np.testing.assert_array_equal(upper, [[[1, 1, 2, 1, 2, 1]]])
    lower = run_op("conv_transpose", x, w, attrs={"strides": [2], "auto_pad": "SAME_LOWER"})
    np.testing.assert_array_equal(lower, [[[1, 2, 1, 2, 1, 1]]])
    shaped = run_op("conv_transpose", x, w, attrs={"strides": [2], "output_shape": [5]})
    np.testing.assert_array_equal(shaped, [[[1, 2, 1, 2, 1]]])


def pool_loops(x, kernel, strides, dilations, pads, ceil_mode, kind, count_include_pad=0):
    """Direct pooling by loops, with PyTorch's output count and divisor rules."""
    rank = x.ndim - 2
    size = x.shape[2:]
    out = []
    for i in range(rank):
        span = size[i] + pads[i] + pads[rank + i] - dilations[i] * (kernel[i] - 1) - 1
        count = (span + (strides[i] - 1 if ceil_mode else 0)) // strides[i] + 1
        if ceil_mode and (count - 1) * strides[i] >= size[i] + pads[i]:
            count -= 1
        out.append(count)
    y = np.zeros((*x.shape[:2], *out))
    for n, c in itertools.product(*map(range, x.shape[:2])):
        for pos in itertools.product(*map(range, out)):
            samples, divisor = [], 0
            for k in itertools.product(*map(range, kernel)):
                src = [pos[i] * strides[i] + k[i] * dilations[i] - pads[i] for i in range(rank)]
                inside = all(0 <= src[i] < size[i] for i in range(rank))
                declared = all(-pads[i] <= src[i] < size[i] + pads[rank + i] for i in range(rank))
                if inside:
                    samples.append(x[(n, c, *src)])
                divisor += inside or (count_include_pad and declared)
            y[(n, c, *pos)] = max(samples) if kind == "max" else sum(samples) / divisor
    return y


POOL_CASES = [
    # spatial, kernel, strides, dilations, pads, ceil_mode
    ((7,), (3,), (2,), (1,), (1, 1), 1),
    ((8,), (2,), (3,), (2,), (0, 1), 1),
    ((5, 6), (3, 2), (2, 2), (1, 1), (1, 0, 1, 1), 0),
    ((5, 6), (3, 3), (2, 3), (1, 1), (1, 1, 2, 2), 1),
    ((6, 5), (2, 2), (2, 2), (2, 1), (1, 0, 0, 1), 1),
    ((4, 5, 3), (2, 3, 2), (2, 2, 1), (1, 1, 1), (1, 1, 0, 0, 1, 1), 1),
]


@pytest.mark.parametrize("spatial, kernel, strides, dilations, pads, ceil_mode", POOL_CASES)
def test_pooling_matches_loops(spatial, kernel, strides, dilations, pads, ceil_mode):
    x = np.random.default_rng(len(spatial)).standard_normal((2, 3, *spatial))
    attrs = {
        "kernel_shape": kernel,
        "strides": strides,
        "dilations": dilations,
        "pads": pads,
        "ceil_mode": ceil_mode,
    }
    expected = pool_loops(x, kernel, strides, dilations, pads, ceil_mode, "max")
    np.testing.assert_array_equal(run_op("max_pool", x, attrs=attrs), expected)
    for include in (0, 1):
        y = run_op("avg_pool", x, attrs={**attrs, "count_include_pad": include})
        expected = pool_loops(x, kernel, strides, dilations, pads, ceil_mode, "avg", include)
        np.testing.assert_allclose(y, expected, rtol=1e-12)


# ----- run-time behaviour: symbolic dims, dtypes, outputs, errors ---------------------------


def test_symbolic_spatial_same_padding_matches_explicit_pads():
    g = ir.Graph("same")
    g.add_input("x", ("N", 2, "H", "W"))
    g.add_param("w", np.random.default_rng(0).standard_normal((3, 2, 3, 2)).astype(F32))
    attrs = {"strides": [2, 1], "auto_pad": "SAME_LOWER"}
    g.add_node("conv", ["x", "w"], attrs, name="c")
    g.add_node(
        "max_pool",
        ["c"],
        {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        name="p",
    )
    g.set_outputs("p")
    assert g.nodes["c"].attrs["auto_pad"] == "SAME_LOWER"  # still symbolic
    for shape in [(1, 2, 5, 4), (3, 2, 8, 7)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(F32)
        concrete = ir.Graph("concrete")
        concrete.add_input("x", shape)
        concrete.add_param("w", g.values["w"].data)
        concrete.add_node("conv", ["x", "w"], attrs, name="c")
        concrete.add_node(
            "max_pool", ["c"], g.nodes["p"].attrs | {"auto_pad": "SAME_UPPER"}, name="p"
        )
        concrete.set_outputs("p")
        assert concrete.nodes["c"].attrs["auto_pad"] == "NOTSET"  # resolved at build time
        np.testing.assert_array_equal(
            convc.interpret(g, {"x": x})["p"], convc.interpret(concrete, {"x": x})["p"]
        )


def test_symbolic_spatial_input_too_small():
    g = ir.Graph("small")
    g.add_input("x", ("N", 1, "L"))
    g.add_param("w", np.ones((1, 1, 3), F32))
    g.add_node("conv", ["x", "w"], name="c")
    g.set_outputs("c")
    with pytest.raises(convc.InputError, match=r"L=2.*value 'c'"):
        convc.interpret(g, {"x": np.ones((1, 1, 2), F32)})


def test_dtype_float64_runs_everything_in_float64():
    g = ir.Graph("f64")
    g.add_input("x", ("N", 1, 3))
    g.add_param("w", arr([[[1, 2, 3]]]))
    g.add_node("conv", ["x", "w"], name="c")
    g.add_node("sigmoid", ["c"], name="s")
    g.set_outputs("c", "s")
    x32 = arr([[[0.1, 0.2, 0.3]]])
    out32 = convc.interpret(g, {"x": x32})
    assert out32["s"].dtype == F32
    x64 = np.array([[[0.1, 0.2, 0.3]]])
    out64 = convc.interpret(g, {"x": x64}, dtype="float64")
    assert out64["c"].dtype == np.float64 and out64["s"].dtype == np.float64
    np.testing.assert_allclose(out64["c"], [[[0.1 * 1 + 0.2 * 2 + 0.3 * 3]]], rtol=1e-15)
    assert convc.interpret(g, {"x": x32}, dtype=np.float64)["c"].dtype == np.float64
    assert g.values["w"].data.dtype == F32  # the graph's parameters are untouched
    np.testing.assert_allclose(out32["s"], out64["s"], rtol=1e-6)
    with pytest.raises(convc.InputError, match="dtype='int32'"):
        convc.interpret(g, {"x": x32}, dtype="int32")


def test_outputs_are_fresh_c_contiguous_arrays():
    g = ir.Graph("fresh")
    g.add_input("x", (2, 3))
    g.add_param("p", np.arange(6, dtype=F32).reshape(3, 2))
    g.add_node("identity", ["x"], name="i")
    g.set_outputs("i", "p", "x")
    x = np.asfortranarray(np.ones((2, 3), F32))
    out = convc.interpret(g, {"x": x})
    for name in ("i", "p", "x"):
        assert out[name].flags.c_contiguous and out[name].flags.owndata
    out["p"][:] = -1
    out["i"][:] = -1
    assert g.values["p"].data[0, 0] == 0 and x[0, 0] == 1


def test_batch_1_and_3_from_one_graph():
    g = ir.Graph("batch")
    g.add_input("x", ("N", 1, 4, 4))
    g.add_param("w", np.ones((2, 1, 3, 3), F32))
    g.add_node("conv", ["x", "w"], {"pads": [1, 1, 1, 1]}, name="c")
    g.add_node("flatten", ["c"], name="f")
    g.set_outputs("f")
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 4, 4)).astype(F32)
        out = convc.interpret(g, {"x": x})["f"]
        assert out.shape == (batch, 32)
        single = [convc.interpret(g, {"x": x[i : i + 1]})["f"][0] for i in range(batch)]
        np.testing.assert_array_equal(out, np.stack(single))


def make_classifier():
    g = ir.Graph("clf")
    g.add_input("x", ("N", 1, 4))
    g.add_input("labels", ("N",), "int64")
    g.add_param("w", np.ones((3, 1, 4), F32))
    g.add_node("conv", ["x", "w"], name="logits3")
    g.add_node("flatten", ["logits3"], name="logits")
    g.add_node("softmax_cross_entropy", ["logits", "labels"], name="loss")
    g.set_outputs("loss")
    return g


@pytest.mark.parametrize(
    "inputs, pattern",
    [
        ({"x": np.ones((2, 1, 4), F32)}, r"missing input\(s\) \['labels'\]"),
        (
            {"x": np.ones((2, 1, 4), F32), "labels": np.zeros(2, np.int64), "y": 1},
            r"unknown input\(s\) \['y'\]",
        ),
        (
            {"x": np.ones((2, 1, 5), F32), "labels": np.zeros(2, np.int64)},
            r"input 'x' has shape \(2, 1, 5\): dim 2 is 5 but the graph expects 4",
        ),
        (
            {"x": np.ones((2, 4), F32), "labels": np.zeros(2, np.int64)},
            r"input 'x' has rank 2 \(shape \(2, 4\)\); expected rank 3",
        ),
        (
            {"x": np.ones((2, 1, 4)), "labels": np.zeros(2, np.int64)},
            r"input 'x' has dtype float64; expected float32",
        ),
        (
            {"x": np.ones((2, 1, 4), F32), "labels": np.zeros(2, np.int32)},
            r"input 'labels' has dtype int32; expected int64",
        ),
        (
            {"x": np.ones((2, 1, 4), F32), "labels": np.zeros(3, np.int64)},
            r"input 'labels' has shape \(3,\): dim 0 gives N=3, but input 'x' dim 0 gave N=2",
        ),
        (
            {"x": [[[1.0, 2.0, 3.0, 4.0]]], "labels": np.zeros(1, np.int64)},
            r"input 'x' is a list; expected a numpy.ndarray",
        ),
    ],
)
def test_bad_inputs_raise_input_error(inputs, pattern):
    with pytest.raises(convc.InputError, match=pattern):
        convc.interpret(make_classifier(), inputs)


def test_classifier_runs():
    loss = convc.interpret(
        make_classifier(), {"x": np.ones((2, 1, 4), F32), "labels": np.array([0, 2])}
    )["loss"]
    np.testing.assert_allclose(loss, math.log(3), rtol=1e-6)  # equal logits


def test_graph_without_outputs_or_not_a_graph():
    g = ir.Graph("empty")
    g.add_input("x", (1,))
    with pytest.raises(convc.GraphError, match="no outputs"):
        convc.interpret(g, {"x": np.ones(1, F32)})
    with pytest.raises(convc.GraphError, match="expects an ir.Graph"):
        convc.interpret("model.onnx", {})


def test_every_registered_op_has_an_implementation():
    """Every op of ir/ops has a NumPy implementation here.

    The generic `texpr` op (derived programs of tensor expressions) is the exception by
    design: its evaluator belongs to convc.texpr, which registers it through `implements`.
    """
    from convc.interpret import IMPLS

    ops = {name for name, op in ir.OPS.items() if op.family != "texpr"}
    assert sorted(ops - set(IMPLS)) == []


def test_dilated_window_of_padding_only():
    """Size 1, kernel 2, dilation 2, SAME pads 1+1: the only window samples positions -1 and 1."""
    x = arr([[[5]]])
    attrs = {"kernel_shape": [2], "dilations": [2], "auto_pad": "SAME_UPPER"}
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(run_op("max_pool", x, attrs=attrs), [[[-np.inf]]])
        np.testing.assert_array_equal(run_op("avg_pool", x, attrs=attrs), [[[np.nan]]])
        included = run_op("avg_pool", x, attrs={**attrs, "count_include_pad": 1})
    np.testing.assert_array_equal(included, [[[0]]])


# ----- ONNX's shipped backend test cases ------------------------------------------------------
#
# The onnx package ships the node test cases (inputs and expected outputs) as Python modules
# under onnx.backend.test.case.node; importing a module records its cases. Each case is one
# ONNX node, translated here to the ir op by name, its attributes passed through unchanged.

ONNX_OPS = {
    "Conv": "conv",
    "ConvTranspose": "conv_transpose",
    "MaxPool": "max_pool",
    "AveragePool": "avg_pool",
    "GlobalAveragePool": "global_avg_pool",
    "GlobalMaxPool": "global_max_pool",
    "Gemm": "gemm",
    "MatMul": "matmul",
    "Flatten": "flatten",
    "Reshape": "reshape",
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "PRelu": "prelu",
    "Elu": "elu",
    "Selu": "selu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Gelu": "gelu",
    "Clip": "clip",
    "BatchNormalization": "batch_norm",
    "Dropout": "dropout",
    "Concat": "concat",
    "Identity": "identity",
    "Pad": "pad",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
    "SoftmaxCrossEntropyLoss": "softmax_cross_entropy",
}
ONNX_CASE_MODULES = [
    "conv",
    "convtranspose",
    "maxpool",
    "averagepool",
    "globalaveragepool",
    "globalmaxpool",
    "gemm",
    "matmul",
    "flatten",
    "reshape",
    "add",
    "sub",
    "mul",
    "div",
    "relu",
    "leakyrelu",
    "prelu",
    "elu",
    "selu",
    "sigmoid",
    "hardsigmoid",
    "tanh",
    "softplus",
    "gelu",
    "clip",
    "batch_normalization",
    "dropout",
    "concat",
    "identity",
    "pad",
    "softmax",
    "logsoftmax",
    "softmax_cross_entropy_loss",
]
ONNX_NOT_SUPPORTED = {
    "test_edge_pad": "pad mode 'edge'",
    "test_reflect_pad": "pad mode 'reflect'",
    "test_wrap_pad": "pad mode 'wrap'",
    "test_maxpool_with_argmax_2d_precomputed_pads": "max_pool's Indices output",
    "test_maxpool_with_argmax_2d_precomputed_strides": "max_pool's Indices output",
    "test_training_dropout": "ONNX's expected mask comes from another random generator",
    "test_training_dropout_default": "ONNX's expected mask comes from another random generator",
    "test_training_dropout_mask": "ONNX's expected mask comes from another random generator",
    "test_training_dropout_default_mask": "ONNX's expected mask comes from another random generator",
}
# The case's inputs and outputs are printed to 4 decimals in its source: 4 inputs off by up to
# 5e-5 each, averaged over 9, plus 5e-5 on the output, allow 7.3e-5.
ONNX_ATOL = {"test_averagepool_2d_ceil_last_window_starts_on_pad": 7.3e-5}


def onnx_cases():
    """The cases of ONNX_OPS, unsupported ones marked skip with the reason."""
    import importlib
    import warnings

    try:
        from onnx.backend.test.case import node as case_node
    except ImportError:  # onnx is a test dependency; without it these cases are absent
        return []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in ONNX_CASE_MODULES:
            importlib.import_module(f"onnx.backend.test.case.node.{module}")
    cases = {}
    for case in case_node._NodeTestCases:
        node = case.model.graph.node[0]
        if node.op_type in ONNX_OPS and len(case.model.graph.node) == 1:
            cases[case.name] = (node, *case.data_sets[0])
    params = []
    for name, case in sorted(cases.items()):
        dtypes = {np.asarray(a).dtype.name for a in (*case[1], *case[2])}
        reason = ONNX_NOT_SUPPORTED.get(name)
        if not dtypes <= set(ir.DTYPES):
            reason = f"dtype {sorted(dtypes - set(ir.DTYPES))} is not in ir"
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, case, marks=marks, id=name))
    return params


def onnx_node_graph(node, arrays):
    """An ir graph of one ONNX node; integer operands other than labels become constants."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    op = ONNX_OPS[node.op_type]
    names = list(node.input)
    values = iter(arrays)
    if op == "dropout":  # ratio and training_mode are inputs in ONNX, attributes in ir
        given = [next(values) for name in names if name]
        if len(given) > 1:
            attrs["ratio"] = float(given[1])
        if len(given) > 2:
            attrs["training_mode"] = int(bool(given[2]))
        names, values = names[:1], iter(given[:1])
    g = ir.Graph(node.op_type)
    feed = {}
    for i, name in enumerate(names):
        if not name:
            continue
        array = np.asarray(next(values))
        if i > 0 and array.dtype.kind == "i" and op != "softmax_cross_entropy":
            g.add_const(name, array)
        else:
            g.add_input(name, array.shape, array.dtype.name)
            feed[name] = array
    outputs = [name for name in node.output if name]
    g.add_node(op, [name or None for name in names], attrs, name="node", outputs=outputs)
    g.set_outputs(*outputs)
    return g, feed


@pytest.mark.parametrize("name, case", onnx_cases())
def test_onnx_backend_case(name, case):
    node, inputs, expected = case
    g, feed = onnx_node_graph(node, inputs)
    got = convc.interpret(g, feed)
    for output, want in zip(g.outputs, expected):
        assert got[output].dtype == np.asarray(want).dtype
        np.testing.assert_allclose(got[output], want, rtol=1e-5, atol=ONNX_ATOL.get(name, 1e-6))
