"""Graph passes: each rewrite keeps the graph's numbers (checked with the interpreter)
and makes the printed decision it should; passes are pure and verified."""

from __future__ import annotations

import numpy as np
import pytest

import convc
import ir
from convc.passes import (
    DCE,
    FOLD_BATCH_NORM,
    PIPELINE,
    REMOVE_NOOPS,
    REORDER_ACTIVATION_POOL,
    Pass,
    fused_text,
    plan_fusion,
    run_passes,
)

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def add_bn_params(g, stem, channels):
    names = [f"{stem}.{s}" for s in ("scale", "bias", "mean", "var")]
    for name in names[:3]:
        g.add_param(name, randn(channels), trainable=False)
    g.add_param(names[3], RNG.random(channels).astype(np.float32) + 0.5, trainable=False)
    return names


def assert_same_numbers(before, after, inputs):
    expected = convc.interpret(before, inputs)
    got = convc.interpret(after, inputs)
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5)


def ops_of(graph):
    return [n.op for n in graph.topological_nodes()]


def conv_bn_graph(bias=True, group=1, stats_as_inputs=False):
    g = ir.Graph("conv_bn")
    g.add_input("x", ("N", 4, 7, 7))
    g.add_param("w", randn(6, 4 // group, 3, 3))
    inputs = ["x", "w"]
    if bias:
        g.add_param("b", randn(6))
        inputs.append("b")
    g.add_node("conv", inputs, {"pads": [1, 0, 1, 2], "group": group}, name="conv")
    if stats_as_inputs:
        stats = [f"bn.{s}" for s in ("scale", "bias", "mean", "var")]
        for s in stats:
            g.add_input(s, (6,))
    else:
        stats = add_bn_params(g, "bn", 6)
    g.add_node("batch_norm", ["conv", *stats], {"epsilon": 1e-3}, name="bn")
    g.set_outputs("bn")
    return g


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_fold_batch_norm_into_conv(bias, group):
    g = conv_bn_graph(bias, group)
    folded = FOLD_BATCH_NORM.run(g)
    assert ops_of(folded) == ["conv"]
    assert folded.outputs == ["bn"]
    assert "batch_norm" not in folded.to_text()
    assert_same_numbers(g, folded, {"x": randn(3, 4, 7, 7)})


def test_batch_norm_with_run_time_statistics_is_not_folded():
    g = conv_bn_graph(stats_as_inputs=True)
    assert ops_of(FOLD_BATCH_NORM.run(g)) == ["conv", "batch_norm"]


def test_batch_norm_is_not_folded_when_the_conv_output_is_also_read():
    """The conv keeps its weights; the batch norm becomes a multiply-add of its own."""
    g = conv_bn_graph()
    g.add_node("relu", ["conv"], name="side")
    g.set_outputs("bn", "side")
    folded = FOLD_BATCH_NORM.run(g)
    assert sorted(ops_of(folded)) == ["add", "conv", "mul", "relu"]
    assert_same_numbers(g, folded, {"x": randn(2, 4, 7, 7)})


@pytest.mark.parametrize("shape", [(2, 6), (2, 6, 9), (2, 6, 5, 7), (1, 6, 2, 3, 4)])
def test_batch_norm_without_a_producer_becomes_a_multiply_add(shape):
    """On a graph input (no conv or gemm to fold into): y = x * s + t, with s and t per
    channel shaped to broadcast over the axes after it; the output keeps its name, and
    the compiled graph matches the interpreter on the original."""
    g = ir.Graph("bn_alone")
    g.add_input("x", ("N", *shape[1:]))
    g.add_node("batch_norm", ["x", *add_bn_params(g, "bn", 6)], {"epsilon": 1e-3}, name="bn")
    g.set_outputs("bn")
    folded = FOLD_BATCH_NORM.run(g)
    assert ops_of(folded) == ["mul", "add"] and folded.outputs == ["bn"]
    scale = folded.values[folded.nodes[folded.topological_nodes()[0].name].inputs[1]]
    assert scale.type.shape == (6,) + (1,) * (len(shape) - 2)
    x = {"x": randn(*shape)}
    assert_same_numbers(g, folded, x)
    np.testing.assert_allclose(
        convc.compile(g).run(x)["bn"], convc.interpret(g, x)["bn"], rtol=1e-5, atol=1e-5
    )


def test_batch_norm_after_an_add_fuses_into_its_kernel():
    """Pre-activation style, add -> batch norm -> relu: one kernel (the multiply-add and
    the relu are the add's epilogue), where a batch norm had been a kernel of its own."""
    g = ir.Graph("add_bn")
    g.add_input("a", (1, 32, 6, 6))
    g.add_input("b", (1, 32, 6, 6))
    g.add_node("add", ["a", "b"], name="sum")
    g.add_node("batch_norm", ["sum", *add_bn_params(g, "bn", 32)], name="bn")
    g.add_node("relu", ["bn"], name="act")
    g.set_outputs("act")
    m = convc.compile(g)
    assert len(m.program.kernels) == 1
    x = {"a": randn(1, 32, 6, 6), "b": randn(1, 32, 6, 6)}
    np.testing.assert_allclose(m.run(x)["act"], convc.interpret(g, x)["act"], rtol=1e-5, atol=1e-5)


def test_batch_norm_with_a_negative_variance_gives_nan_like_the_interpreter():
    g = ir.Graph("bn_nan")
    g.add_input("x", (2, 3, 4))
    names = add_bn_params(g, "bn", 3)
    g.values[names[3]].data[1] = -5.0
    g.add_node("batch_norm", ["x", *names], name="bn")
    g.set_outputs("bn")
    x = {"x": randn(2, 3, 4)}
    with np.errstate(invalid="ignore"):
        expected = convc.interpret(g, x)["bn"]
    got = convc.compile(g).run(x)["bn"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[:, [0, 2]], expected[:, [0, 2]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("with_c", [True, False])
def test_fold_batch_norm_into_gemm(trans_b, with_c):
    g = ir.Graph("gemm_bn")
    g.add_input("x", ("N", 5))
    g.add_param("w", randn(3, 5) if trans_b else randn(5, 3))
    inputs = ["x", "w"]
    if with_c:
        g.add_param("c", randn(3))
        inputs.append("c")
    attrs = {"transB": trans_b, "alpha": 0.5, "beta": 2.0}
    g.add_node("gemm", inputs, attrs, name="fc")
    g.add_node("batch_norm", ["fc", *add_bn_params(g, "bn", 3)], name="bn")
    g.set_outputs("bn")
    folded = FOLD_BATCH_NORM.run(g)
    assert ops_of(folded) == ["gemm"]
    assert_same_numbers(g, folded, {"x": randn(4, 5)})


def noop_graph():
    g = ir.Graph("noops")
    g.add_input("x", ("N", 3))
    g.add_node("dropout", ["x"], {"ratio": 0.3}, name="drop")
    g.add_node("relu", ["drop"], name="relu")
    g.add_node("identity", ["relu"], name="id")
    g.add_node("sigmoid", ["id"], name="sig")
    g.add_node("identity", ["sig"], name="out")
    g.set_outputs("out")
    return g


def test_remove_noops_forwards_inputs_and_keeps_output_names():
    g = noop_graph()
    cleaned = REMOVE_NOOPS.run(g)
    # the output identity's input has no other reader: sigmoid writes "out" directly
    assert ops_of(cleaned) == ["relu", "sigmoid"]
    assert cleaned.nodes["relu"].inputs == ("x",)
    assert cleaned.nodes["sig"].inputs == ("relu",) and cleaned.nodes["sig"].outputs == ("out",)
    assert cleaned.outputs == ["out"]
    assert_same_numbers(g, cleaned, {"x": randn(2, 3)})


def test_output_noops_stay_copies_when_their_input_is_used_elsewhere():
    g = noop_graph()
    g.add_node("identity", ["x"], name="echo")  # a graph input: nothing computes it
    g.add_node("tanh", ["sig"], name="other")  # "sig" has a second reader
    g.set_outputs("out", "echo", "other")
    cleaned = REMOVE_NOOPS.run(g)
    assert ops_of(cleaned).count("identity") == 2
    assert cleaned.nodes["out"].inputs == ("sig",) and cleaned.nodes["echo"].inputs == ("x",)
    assert cleaned.outputs == ["out", "echo", "other"]
    assert_same_numbers(g, cleaned, {"x": randn(2, 3)})


def test_training_dropout_is_kept():
    g = ir.Graph("train_drop")
    g.add_input("x", ("N", 3))
    g.add_node("dropout", ["x"], {"training_mode": 1, "seed": 3}, name="drop")
    g.set_outputs("drop")
    assert ops_of(REMOVE_NOOPS.run(g)) == ["dropout"]


def test_dce_removes_dead_nodes_and_their_parameters():
    g = ir.Graph("dead")
    g.add_input("x", ("N", 2))
    g.add_param("unused_w", randn(2, 2))
    g.add_node("matmul", ["x", "unused_w"], name="dead_mm")
    g.add_node("tanh", ["dead_mm"], name="dead_tanh")
    g.add_node("relu", ["x"], name="live")
    g.set_outputs("live")
    cleaned = DCE.run(g)
    assert ops_of(cleaned) == ["relu"]
    assert "unused_w" not in cleaned.values
    assert_same_numbers(g, cleaned, {"x": randn(3, 2)})


def relu_pool_graph(kernel=2, stride=2, extra_reader=False, act="relu"):
    g = ir.Graph("relu_pool")
    g.add_input("x", ("N", 3, 6, 6))
    g.add_node(act, ["x"], name="act")
    g.add_node(
        "max_pool",
        ["act"],
        {"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [1, 1, 0, 0]},
        name="pool",
    )
    outputs = ["pool", "act"] if extra_reader else ["pool"]
    g.set_outputs(*outputs)
    return g


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_activation_moves_after_a_shrinking_max_pool(act):
    g = relu_pool_graph(act=act)
    moved = REORDER_ACTIVATION_POOL.run(g)
    assert ops_of(moved) == ["max_pool", act]
    assert moved.nodes["pool"].inputs == ("x",)
    assert moved.producer("pool").op == act
    assert_same_numbers(g, moved, {"x": randn(2, 3, 6, 6)})


def test_activation_stays_when_the_pool_does_not_shrink_or_it_is_read_elsewhere():
    assert ops_of(REORDER_ACTIVATION_POOL.run(relu_pool_graph(2, 1))) == ["relu", "max_pool"]
    assert ops_of(REORDER_ACTIVATION_POOL.run(relu_pool_graph(extra_reader=True))) == [
        "relu",
        "max_pool",
    ]


def test_sigmoid_before_pool_is_not_moved():
    g = relu_pool_graph(act="sigmoid")
    assert ops_of(REORDER_ACTIVATION_POOL.run(g)) == ["sigmoid", "max_pool"]


def residual_block():
    """conv + bn + relu, conv + bn + residual add + relu: a ResNet basic block."""
    g = ir.Graph("block")
    g.add_input("x", ("N", 4, 5, 5))
    for k in (1, 2):
        g.add_param(f"conv{k}.weight", randn(4, 4, 3, 3))
    g.add_node("conv", ["x", "conv1.weight"], {"pads": [1, 1, 1, 1]}, name="conv1")
    g.add_node("batch_norm", ["conv1", *add_bn_params(g, "bn1", 4)], name="bn1")
    g.add_node("relu", ["bn1"], name="relu1")
    g.add_node("conv", ["relu1", "conv2.weight"], {"pads": [1, 1, 1, 1]}, name="conv2")
    g.add_node("batch_norm", ["conv2", *add_bn_params(g, "bn2", 4)], name="bn2")
    g.add_node("add", ["bn2", "x"], name="add")
    g.add_node("relu", ["add"], name="relu2")
    g.set_outputs("relu2")
    return g


def test_residual_block_fuses_into_two_kernels():
    g = residual_block()
    optimized = run_passes(g, PIPELINE)
    groups = plan_fusion(optimized)
    assert [(grp.anchor, grp.epilogue, grp.output) for grp in groups] == [
        ("conv1", ("relu1",), "relu1"),
        ("conv2", ("add", "relu2"), "relu2"),
    ]
    text = fused_text(optimized, groups)
    assert "kernel conv2__relu2 -> %relu2" in text
    assert "%add: f32[N,4,5,5] = add(%bn2, %x)  ; epilogue" in text
    assert_same_numbers(g, optimized, {"x": randn(3, 4, 5, 5)})


def test_elementwise_chain_is_one_group_and_broadcast_up_is_not_fused():
    g = ir.Graph("chain")
    g.add_input("x", ("N", 3))
    g.add_input("v", (1, 1))
    g.add_node("mul", ["x", "x"], name="sq")
    g.add_node("tanh", ["sq"], name="t")
    g.add_node("clip", ["t"], name="c")
    g.add_node("sigmoid", ["v"], name="s")
    g.add_node("add", ["s", "c"], name="up")
    g.set_outputs("up")
    groups = plan_fusion(g)
    assert [(grp.anchor, grp.epilogue) for grp in groups] == [
        ("s", ()),
        ("sq", ("t", "c", "up")),
    ]


def test_groups_run_after_every_operand_of_their_epilogue():
    g = ir.Graph("late_operand")
    g.add_input("x", ("N", 3))
    g.add_node("relu", ["x"], name="a")
    g.add_node("tanh", ["x"], name="late")
    g.add_node("add", ["a", "late"], name="sum")
    g.set_outputs("sum")
    groups = plan_fusion(g)
    order = [grp.anchor for grp in groups]
    assert order.index("late") < order.index("a")


def test_passes_are_pure():
    g = residual_block()
    text, fingerprint = g.to_text(), g.fingerprint()
    run_passes(g, PIPELINE)
    assert g.to_text() == text and g.fingerprint() == fingerprint


def test_a_pass_that_breaks_the_graph_is_named():
    def break_outputs(graph):
        broken = graph.copy()
        broken.inputs.append("nonexistent")
        return broken

    with pytest.raises(convc.GraphError, match="pass 'break' left an invalid graph"):
        Pass("break", break_outputs).run(noop_graph())


def test_convc_dump_prints_after_each_named_pass(monkeypatch, capsys):
    monkeypatch.setenv("CONVC_DUMP", "fold-batch-norm")
    run_passes(conv_bn_graph(), PIPELINE)
    err = capsys.readouterr().err
    assert err.count(";; after ") == 1
    assert ";; after fold-batch-norm\ngraph conv_bn(" in err
