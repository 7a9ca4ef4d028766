"""Compiled == interpreted (float32, rtol 1e-4 / atol 1e-5 per element).

A workload table (LeNet layers, ResNet-18 layer shapes at small spatial sizes,
MobileNet depthwise/pointwise, with fused bias/activation/residual epilogues),
hypothesis-generated configurations of every op and attribute, the model API
(run/__call__, symbolic batch, input validation, cache, sources, CONVC_DUMP) and
1 vs 2 threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from compile_check import assert_compiled_matches
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convc
import ir
from convc import cli as convc_cli

#: more examples for a deeper search: CONVC_HYPOTHESIS_EXAMPLES=200 pytest tests/test_compile.py
SETTINGS = settings(
    max_examples=int(os.environ.get("CONVC_HYPOTHESIS_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize="CONVC_HYPOTHESIS_EXAMPLES" not in os.environ,
)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def conv_layer(
    cin,
    cout,
    kernel,
    size,
    stride=1,
    pad=0,
    groups=1,
    act="relu",
    residual=False,
    bias=True,
    seed=0,
):
    """conv (+ bias) (+ residual add) (+ activation) on an (N, cin, size, size) input."""
    rng = np.random.default_rng(seed)
    g = ir.Graph("layer")
    g.add_input("x", ("N", cin, size, size))
    fan_in = cin // groups * kernel * kernel
    g.add_param("w", rand(rng, cout, cin // groups, kernel, kernel) / np.float32(fan_in**0.5))
    inputs = ["x", "w"]
    if bias:
        g.add_param("b", rand(rng, cout))
        inputs.append("b")
    attrs = {"strides": [stride] * 2, "pads": [pad] * 4, "group": groups}
    (out,) = g.add_node("conv", inputs, attrs, name="conv")
    if residual:
        g.add_input("skip", out.shape)
        (out,) = g.add_node("add", [out.name, "skip"], name="add")
    if act:
        (out,) = g.add_node(act, [out.name], name="act")
    g.set_outputs(out.name)
    return g


def layer_inputs(graph, batch, seed=1):
    rng = np.random.default_rng(seed)
    result = {}
    for name in graph.inputs:
        shape = graph.values[name].type.subs({ir.symbol("N"): batch}).concrete_shape()
        result[name] = rand(rng, *shape)
    return result


WORKLOADS = {
    # name: (cin, cout, kernel, size, stride, pad, groups, epilogue options)
    "lenet.conv1 5x5 1->6 @32": (1, 6, 5, 32, 1, 0, 1, {}),
    "lenet.conv2 5x5 6->16 @14": (6, 16, 5, 14, 1, 0, 1, {"act": "tanh"}),
    "resnet.stem 7x7 s2 3->64 @20": (3, 64, 7, 20, 2, 3, 1, {}),
    "resnet 3x3 64->64 @8 +residual": (64, 64, 3, 8, 1, 1, 1, {"residual": True}),
    "resnet 3x3 s2 64->128 @8": (64, 128, 3, 8, 2, 1, 1, {}),
    "resnet 1x1 s2 64->128 @8": (64, 128, 1, 8, 2, 0, 1, {"act": None}),
    "resnet 3x3 256->256 @4": (256, 256, 3, 4, 1, 1, 1, {"bias": False}),
    "resnet 3x3 512->512 @3": (512, 512, 3, 3, 1, 1, 1, {"act": None}),
    "mobilenet depthwise 3x3 32 @12": (32, 32, 3, 12, 1, 1, 32, {}),
    "mobilenet depthwise 3x3 s2 96 @9": (96, 96, 3, 9, 2, 1, 96, {"act": "clip"}),
    "mobilenet pointwise 1x1 32->64 @12": (32, 64, 1, 12, 1, 0, 1, {"act": None}),
}


def workload_layer(name, size=None):
    cin, cout, kernel, default_size, stride, pad, groups, options = WORKLOADS[name]
    return conv_layer(cin, cout, kernel, size or default_size, stride, pad, groups, **options)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_layers(workload, batch):
    graph = workload_layer(workload)
    assert_compiled_matches(graph, layer_inputs(graph, batch))


def test_lenet_dense_layers_and_pooling():
    rng = np.random.default_rng(2)
    g = ir.Graph("head")
    g.add_input("x", ("N", 16, 10, 10))
    g.add_node("relu", ["x"], name="relu")
    g.add_node("max_pool", ["relu"], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="pool")
    g.add_node("flatten", ["pool"], name="flat")
    for k, (fan_in, fan_out) in enumerate([(400, 120), (120, 84), (84, 10)]):
        g.add_param(f"fc{k}.w", rand(rng, fan_out, fan_in) / 10)
        g.add_param(f"fc{k}.b", rand(rng, fan_out))
        source = "flat" if k == 0 else f"act{k - 1}"
        g.add_node("gemm", [source, f"fc{k}.w", f"fc{k}.b"], {"transB": 1}, name=f"fc{k}")
        g.add_node("relu", [f"fc{k}"], name=f"act{k}")
    g.add_node("softmax", ["act2"], name="probs")
    g.set_outputs("probs")
    for batch in (1, 3):
        assert_compiled_matches(g, layer_inputs(g, batch))


# ----- hypothesis: every op and attribute ------------------------------------------------------


@st.composite
def conv_configs(draw):
    rank = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    groups = {"plain": 1, "grouped": 2, "depthwise": draw(st.integers(1, 5))}[kind]
    cin = groups * (1 if kind == "depthwise" else draw(st.integers(1, 3)))
    per_group = [1, 2, 3] if rank == 3 else [1, 2, 3, 5, 16, 19, 32]  # 16k: channel vectors
    cout = groups * draw(st.sampled_from(per_group))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilations = [draw(st.integers(1, 2)) for _ in range(rank)]
    extents = [d * (k - 1) + 1 for d, k in zip(dilations, kernel)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)]
    largest = 20 if rank == 1 else 11 if rank == 2 else 6
    sizes = [
        draw(st.integers(max(1, e - pads[i] - pads[i + rank]), largest))
        for i, e in enumerate(extents)
    ]
    if auto_pad in ("NOTSET", "VALID"):
        sizes = [max(s, e if auto_pad == "VALID" else s) for s, e in zip(sizes, extents)]
    attrs = {"kernel_shape": kernel, "strides": strides, "dilations": dilations, "group": groups}
    attrs.update({"pads": pads} if auto_pad == "NOTSET" else {"auto_pad": auto_pad})
    return {
        "rank": rank,
        "cin": cin,
        "cout": cout,
        "groups": groups,
        "attrs": attrs,
        "sizes": sizes,
        "bias": draw(st.booleans()),
        "act": draw(st.sampled_from([None, "relu", "sigmoid", "leaky_relu", "gelu"])),
        "batch": draw(st.sampled_from([1, 2, 3])),
        "transpose": draw(st.booleans()) and kind != "depthwise",
    }


def _graph_or_reject(build):
    try:
        return build()
    except convc.ShapeError:
        assume(False)


@SETTINGS
@given(conv_configs())
def test_conv_and_conv_transpose_configurations(config):
    rng = np.random.default_rng(0)
    attrs = dict(config["attrs"])
    op = "conv_transpose" if config["transpose"] else "conv"
    cin, cout, groups = config["cin"], config["cout"], config["groups"]
    kernel = attrs["kernel_shape"]
    if op == "conv_transpose":
        attrs.pop("auto_pad", None)
        attrs["pads"] = attrs.get("pads") or [0] * (2 * config["rank"])

    def build():
        g = ir.Graph("conv_config")
        g.add_input("x", ("N", cin, *config["sizes"]))
        shape = (cout, cin // groups, *kernel) if op == "conv" else (cin, cout // groups, *kernel)
        g.add_param("w", rand(rng, *shape))
        inputs = ["x", "w"]
        if config["bias"]:
            g.add_param("b", rand(rng, cout))
            inputs.append("b")
        (out,) = g.add_node(op, inputs, attrs, name="conv")
        if config["act"]:
            (out,) = g.add_node(config["act"], [out.name], name="act")
        g.set_outputs(out.name)
        return g

    g = _graph_or_reject(build)
    assert_compiled_matches(g, layer_inputs(g, config["batch"]))


@st.composite
def pool_configs(draw):
    rank = draw(st.integers(1, 3))
    op = draw(st.sampled_from(["max_pool", "avg_pool", "global_max_pool", "global_avg_pool"]))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    sizes = [draw(st.integers(1, 9 if rank < 3 else 5)) for _ in range(rank)]
    if draw(st.booleans()):
        kernel = list(sizes)  # kernel equal to the input size
    attrs = {"kernel_shape": kernel, "strides": [draw(st.integers(1, 3)) for _ in range(rank)]}
    attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    attrs["ceil_mode"] = int(draw(st.booleans()))
    if op == "avg_pool":
        attrs["count_include_pad"] = int(draw(st.booleans()))
    elif op == "max_pool" and draw(st.booleans()):
        attrs["dilations"] = [draw(st.integers(1, 2)) for _ in range(rank)]
    if op.startswith("global"):
        attrs = {}
    channels = draw(st.integers(1, 5))
    return op, attrs, channels, sizes, draw(st.sampled_from([1, 3]))


@SETTINGS
@given(pool_configs())
def test_pool_configurations(config):
    op, attrs, channels, sizes, batch = config

    def build():
        g = ir.Graph("pool_config")
        g.add_input("x", ("N", channels, *sizes))
        g.add_node(op, ["x"], attrs, name="pool")
        g.set_outputs("pool")
        return g

    g = _graph_or_reject(build)
    assert_compiled_matches(g, layer_inputs(g, batch))


UNARY = sorted(ir.ops.elementwise.UNARY)
SHAPES = [(1,), (7,), (3, 17), (2, 3, 5), (2, 1, 4, 33)]


@SETTINGS
@given(
    st.lists(st.sampled_from(UNARY), min_size=1, max_size=4),
    st.sampled_from(SHAPES),
    st.sampled_from(["add", "sub", "mul", "div", "prelu", "clip"]),
    st.integers(0, 3),
)
def test_elementwise_chains_with_broadcasting(activations, shape, binary, drop):
    rng = np.random.default_rng(3)
    g = ir.Graph("chain")
    g.add_input("x", ("N", *shape[1:]))
    other_shape = tuple(1 if k < drop else d for k, d in enumerate(shape[1:]))[
        -max(1, len(shape) - 1 - drop // 2) :
    ]
    g.add_param("other", np.abs(rand(rng, *other_shape)) + 0.5)
    previous = "x"
    for k, act in enumerate(activations):
        g.add_node(act, [previous], name=f"a{k}")
        previous = f"a{k}"
    if binary == "clip":
        g.add_const("lo", np.float32(-0.5))
        g.add_const("hi", np.float32(0.75))
        g.add_node("clip", [previous, "lo", "hi"], name="last")
    elif binary == "prelu":
        g.add_node("prelu", [previous, "other"], name="last")
    else:
        g.add_node(binary, ["other", previous] if drop % 2 else [previous, "other"], name="last")
    g.set_outputs("last")
    assert_compiled_matches(g, layer_inputs(g, shape[0]))


@pytest.mark.parametrize("threads", [1, 2])
def test_elementwise_kernels_over_whole_nchw_planes(threads):
    # every value read element for element at the output's index: each plane runs as one
    # row of H*W (only its end masked); a broadcast operand keeps the rows
    rng = np.random.default_rng(5)
    g = ir.Graph(f"planes{threads}")
    g.add_input("x", ("N", 3, 5, 7))
    g.add_input("y", ("N", 3, 5, 7))
    g.add_node("sigmoid", ["x"], name="s")
    g.add_node("mul", ["s", "y"], name="m")
    g.add_node("tanh", ["m"], name="t")
    g.set_outputs("t")
    text = convc.compile(g, threads=threads).source("loops")
    assert "merge-rows 5" in text and "for j in 0..35:" in text
    feeds = {n: rand(rng, 2, 3, 5, 7) for n in ("x", "y")}
    got = convc.compile(g, threads=threads).run(feeds)["t"]
    np.testing.assert_allclose(got, convc.interpret(g, feeds)["t"], rtol=1e-5, atol=1e-6)
    broadcast = ir.Graph(f"rows{threads}")
    broadcast.add_input("x", ("N", 3, 5, 7))
    broadcast.add_param("bias", rand(rng, 3, 1, 1))
    broadcast.add_node("add", ["x", "bias"], name="a")
    broadcast.add_node("sigmoid", ["a"], name="s")
    broadcast.set_outputs("s")
    assert "merge-rows" not in convc.compile(broadcast, threads=threads).source("loops")
    assert_compiled_matches(broadcast, {"x": rand(rng, 2, 3, 5, 7)}, threads=threads)


@pytest.mark.parametrize("op", ["sigmoid", "silu"])
def test_logistic_activations_lower_to_the_sigmoid_math_op(op):
    # 1/(1 + exp(-x)) is one sigmoid op in the loops (its exp needs less care for the ends
    # of the range), also as SiLU's factor; results match the interpreter at the extremes
    # down to x = -88.72, past which the sigmoid is 0 (as exp(-x) is inf): SiLU's true
    # x * sigmoid(x) is still a normal float down to -90.4, and PyTorch's is -0 there too
    g = ir.Graph(op)
    g.add_input("x", ("N", 40))
    g.add_node(op, ["x"], name="y")
    g.set_outputs("y")
    text = convc.compile(g).source("loops")
    assert "sigmoid(x[" in text and "exp(" not in text
    x = np.linspace(-88.7, 120, 80, dtype=np.float32).reshape(2, 40)
    x[0, :8] = [-np.inf, np.inf, np.nan, -88.5, -88.0, -87.5, 87.5, 0.0]
    got = convc.compile(g).run({"x": x})["y"]
    with np.errstate(invalid="ignore"):  # SiLU(-inf) = -inf * 0: NaN, as convc's
        expected = convc.interpret(g, {"x": x}, dtype="float64")["y"]
    np.testing.assert_allclose(got, expected, rtol=5e-7, atol=1.2e-38)


@SETTINGS
@given(
    st.integers(0, 1),
    st.integers(0, 1),
    st.sampled_from([None, (), (1,), (9,), (1, 9), ("N", 1), ("N", 9)]),
    st.floats(-2, 2),
    st.floats(-2, 2),
    st.sampled_from([1, 2, 5]),
)
def test_gemm_configurations(trans_a, trans_b, c_shape, alpha, beta, batch):
    rng = np.random.default_rng(4)
    g = ir.Graph("gemm")
    g.add_input("a", (13, "N") if trans_a else ("N", 13))
    g.add_param("b", rand(rng, 9, 13) if trans_b else rand(rng, 13, 9))
    inputs = ["a", "b"]
    if c_shape is not None:
        if "N" in c_shape:
            g.add_input("c", c_shape)
        else:
            g.add_param("c", rand(rng, *c_shape))
        inputs.append("c")
    attrs = {"transA": trans_a, "transB": trans_b, "alpha": alpha, "beta": beta}
    g.add_node("gemm", inputs, attrs, name="fc")
    g.set_outputs("fc")
    assert_compiled_matches(g, layer_inputs(g, batch))


@SETTINGS
@given(
    st.sampled_from([((3,), (3,)), ((4, 3), (3,)), ((2, 4, 3), (3, 5)), ((2, 1, 4, 3), (3, 3, 5))])
)
def test_matmul_configurations(shapes):
    rng = np.random.default_rng(5)
    g = ir.Graph("matmul")
    g.add_input("a", shapes[0])
    g.add_input("b", shapes[1])
    g.add_node("matmul", ["a", "b"], name="mm")
    g.set_outputs("mm")
    assert_compiled_matches(g, {"a": rand(rng, *shapes[0]), "b": rand(rng, *shapes[1])})


@SETTINGS
@given(st.sampled_from(["softmax", "log_softmax"]), st.integers(-3, 2), st.sampled_from([1, 3]))
def test_softmax_along_every_axis(op, axis, batch):
    g = ir.Graph("softmax")
    g.add_input("x", ("N", 4, 19))
    g.add_node(op, ["x"], {"axis": axis}, name="s")
    g.set_outputs("s")
    assert_compiled_matches(g, layer_inputs(g, batch))


def test_batch_norm_with_run_time_statistics_and_data_movement_ops():
    rng = np.random.default_rng(6)
    g = ir.Graph("movement")
    g.add_input("x", ("N", 3, 5, 4))
    stats = ["scale", "bias", "mean", "var"]
    for name in stats:
        g.add_input(name, (3,))
    g.add_node("batch_norm", ["x", *stats], name="bn")
    g.add_const("pads", np.array([0, 1, 2, 0, 0, 0, 1, 3], dtype=np.int64))
    g.add_node("pad", ["bn", "pads"], name="padded")
    g.add_node("concat", ["padded", "padded"], {"axis": 3}, name="cat")
    g.add_const("shape", np.array([0, -1, 7], dtype=np.int64))
    g.add_node("reshape", ["cat", "shape"], name="reshaped")
    g.add_node("flatten", ["reshaped"], name="flat")
    g.set_outputs("flat", "cat")
    inputs = layer_inputs(g, 3)
    inputs["var"] = np.abs(inputs["var"]) + 0.1
    assert_compiled_matches(g, inputs)
    del rng


# ----- the model API --------------------------------------------------------------------------


def small_model():
    return conv_layer(cin=3, cout=5, kernel=3, size=6, pad=1, seed=7)


def test_symbolic_batch_is_bound_per_run_and_outputs_are_fresh():
    model = convc.compile(small_model(), threads=1)
    first = model.run(layer_inputs(model.graph, 1))
    again = model(layer_inputs(model.graph, 1))
    assert first["act"] is not again["act"]
    np.testing.assert_array_equal(first["act"], again["act"])
    assert model.run(layer_inputs(model.graph, 5))["act"].shape == (5, 5, 6, 6)
    strided = np.asfortranarray(layer_inputs(model.graph, 2)["x"])
    expected = convc.interpret(model.graph, {"x": strided})["act"]
    np.testing.assert_allclose(model.run({"x": strided})["act"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "inputs, match",
    [
        ({}, "missing input"),
        ({"x": np.zeros((1, 3, 6, 6), np.float32), "y": np.zeros(1)}, "unknown input"),
        ({"x": np.zeros((1, 3, 6, 6), np.float64)}, "dtype float64"),
        ({"x": np.zeros((1, 4, 6, 6), np.float32)}, "dim 1 is 4"),
        ({"x": np.zeros((3, 6, 6), np.float32)}, "rank 3"),
        ({"x": [[1.0]]}, "is a list"),
    ],
)
def test_bad_inputs_raise_input_error(inputs, match):
    model = convc.compile(small_model(), threads=1)
    model.run(layer_inputs(model.graph, 1))  # a cached signature must not mask later mistakes
    with pytest.raises(convc.InputError, match=match):
        model.run(inputs)


def test_same_graph_compiles_once_per_thread_count():
    graph = small_model()
    assert convc.compile(graph, threads=1) is convc.compile(graph, threads=1)
    assert convc.compile(small_model(), threads=1) is convc.compile(graph, threads=1)
    assert convc.compile(graph, threads=2) is not convc.compile(graph, threads=1)


def test_thread_count_validation(monkeypatch):
    with pytest.raises(convc.InputError, match="threads=0"):
        convc.compile(small_model(), threads=0)
    monkeypatch.setenv("CONVC_NUM_THREADS", "two")
    with pytest.raises(convc.InputError, match="CONVC_NUM_THREADS"):
        convc.compile(small_model())
    monkeypatch.setenv("CONVC_NUM_THREADS", "1")
    assert convc.compile(small_model()).threads == 1


def test_sources_of_every_stage():
    model = convc.compile(small_model(), threads=1)
    assert model.source("graph").startswith("graph layer(")
    assert "kernel conv__act -> %act" in model.source("fused")
    assert "conv" in model.source("texpr")
    assert "vector(16, tail=masked) for j" in model.source("loops")
    assert "<16 x float>" in model.source("llvm")
    assert "define" in model.source("llvm-opt")
    assert "zmm" in model.source("asm") or "ymm" in model.source("asm")
    with pytest.raises(convc.GraphError, match="unknown stage 'bogus'"):
        model.source("bogus")


def test_convc_dump_prints_stages_while_compiling(monkeypatch, capsys):
    monkeypatch.setenv("CONVC_DUMP", "fused,loops")
    convc.compile(conv_layer(cin=2, cout=3, kernel=3, size=5, seed=11), threads=1)
    err = capsys.readouterr().err
    assert ";; after fused\nfused layer(" in err
    assert ";; after loops\nprogram layer(N)" in err
    assert ";; after llvm" not in err


def test_compile_rejects_what_is_not_a_graph():
    with pytest.raises(convc.GraphError, match="expects an ir.Graph"):
        convc.compile("model.onnx")
    g = ir.Graph("empty")
    g.add_input("x", (2,))
    with pytest.raises(convc.GraphError, match="no outputs"):
        convc.compile(g)


def test_outputs_that_are_inputs_or_constants():
    g = ir.Graph("passthrough")
    g.add_input("x", ("N", 3))
    g.add_const("k", np.arange(4, dtype=np.float32))
    g.add_node("relu", ["x"], name="r")
    g.set_outputs("r", "x", "k")
    assert_compiled_matches(g, layer_inputs(g, 2))


@pytest.mark.parametrize(
    "workload", ["resnet 3x3 64->64 @8 +residual", "mobilenet depthwise 3x3 32 @12"]
)
def test_one_and_two_threads_agree_exactly(workload):
    graph = workload_layer(workload, size=64 if "depthwise" in workload else 24)
    inputs = layer_inputs(graph, 3)
    one = assert_compiled_matches(graph, inputs, threads=1)
    two = assert_compiled_matches(graph, inputs, threads=2)
    assert "parallel for" in convc.compile(graph, threads=2).source("loops")
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])


# ----- the command line -------------------------------------------------------------------------

CLI_SAMPLE = str(Path(__file__).resolve().parent / "cli_sample.py")


def cli(capsys, *argv):
    status = convc_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "stage, marker",
    [
        ("passes", ";; after fold-batch-norm\ngraph tiny("),
        ("fused", "kernel "),
        ("loops", "vector(16, tail=masked)"),
        ("llvm", 'define void @"convc_main"('),
        ("llvm-opt", "define void @convc_main("),
        ("asm", "convc_main:"),
    ],
)
def test_cli_shows_compiler_stages(capsys, stage, marker):
    status, out, _ = cli(capsys, "show", CLI_SAMPLE, "--stage", stage)
    assert status == 0 and marker in out


def test_cli_runs_native_code_by_default(capsys, tmp_path):
    out_file = tmp_path / "out.npz"
    status, out, _ = cli(capsys, "run", CLI_SAMPLE, "--batch", "3", "--output", out_file)
    assert status == 0 and "native code" in out
    status, out, _ = cli(capsys, "run", CLI_SAMPLE, "--batch", "3", "--interpret")
    assert "reference interpreter" in out
    graph = convc_cli.load_model(CLI_SAMPLE)
    reference = convc.interpret(graph.graph, graph.example_inputs(batch=3, seed=0))
    for name, want in reference.items():
        np.testing.assert_allclose(np.load(out_file)[name], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kind, magic", [("obj", b"\x7fELF"), ("llvm", b"; ModuleID"), ("asm", b"\t")]
)
def test_cli_compile_emits_code(capsys, tmp_path, kind, magic):
    target = tmp_path / f"model.{kind}"
    status, out, _ = cli(capsys, "compile", CLI_SAMPLE, "--emit", kind, "-o", target)
    assert status == 0 and f"written to {target}" in out
    data = target.read_bytes()
    assert data.startswith(magic) and (kind == "obj" or b"convc_main" in data)


def test_cli_compile_needs_an_output(capsys):
    status, _, err = cli(capsys, "compile", CLI_SAMPLE)
    assert status == 1 and "-o/--output" in err


def test_inputs_at_numpys_alignment_are_read_in_place():
    # NumPy's large arrays start 16-48 bytes past a 64-byte boundary: a model declares its
    # inputs 16-aligned, so such an array is read where it is (no scratch copy is made)
    g = ir.Graph("in_place")
    g.add_input("x", ("N", 4, 9, 9))
    g.add_param("w", np.random.default_rng(3).standard_normal((16, 4, 3, 3)).astype(np.float32))
    g.add_node("conv", ["x", "w"], {"pads": [1, 1, 1, 1]}, name="conv")
    g.add_node("relu", ["conv"], name="relu")
    g.set_outputs("relu")
    model = convc.compile(g, threads=1)
    assert model.program.buffer("x").align == 16
    raw = np.random.default_rng(4).standard_normal(2 * 4 * 9 * 9 + 16).astype(np.float32)
    start = next(k for k in range(16) if (raw.ctypes.data + 4 * k) % 64 == 16)
    x = raw[start : start + 2 * 4 * 9 * 9].reshape(2, 4, 9, 9)
    got = model.run({"x": x})["relu"]
    np.testing.assert_allclose(got, convc.interpret(g, {"x": x})["relu"], rtol=1e-5, atol=1e-5)
    assert model.memory_report(N=2).scratch == 0
