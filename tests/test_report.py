"""The layer report against parameters, MACs, FLOPs and receptive fields computed by hand."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy

import ir
from ir.report import _COSTS, _FAMILY_COSTS, format_count, summarize

N = ir.symbol("N")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _param(g, name, *shape, trainable=True):
    return g.add_param(name, np.ones(shape, np.float32), trainable=trainable)


def _small_net():
    """conv 3x3 s1 p1 (bias) -> conv 3x3 s2 p1 -> max_pool 2 s2 -> global avg -> flatten -> gemm."""
    g = ir.Graph("small")
    g.add_input("x", ("N", 3, 16, 16))
    _param(g, "a.w", 8, 3, 3, 3)
    _param(g, "a.b", 8)
    g.add_node("conv", ["x", "a.w", "a.b"], {"pads": [1, 1, 1, 1]}, name="a")
    _param(g, "b.w", 16, 8, 3, 3)
    g.add_node("conv", ["a", "b.w"], {"strides": [2, 2], "pads": [1, 1, 1, 1]}, name="b")
    g.add_node("max_pool", ["b"], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="pool")
    g.add_node("global_avg_pool", ["pool"], name="gap")
    g.add_node("flatten", ["gap"], name="flat")
    _param(g, "fc.w", 10, 16)
    _param(g, "fc.b", 10)
    g.add_node("gemm", ["flat", "fc.w", "fc.b"], {"transB": 1}, name="fc")
    g.set_outputs("fc")
    return g


def test_small_net_rows_by_hand():
    rows = {r.name: r for r in summarize(_small_net()).rows}
    # a: out N x 8 x 16 x 16; MACs = N*8*256*3*9; FLOPs = 2*MACs + 8*256 (bias)
    assert rows["a"].shape == (N, 8, 16, 16)
    assert rows["a"].params == 8 * 3 * 9 + 8 == 224
    assert rows["a"].macs == 55296 * N
    assert rows["a"].flops == 112640 * N
    assert (rows["a"].receptive_field, rows["a"].stride) == ((3, 3), (1, 1))
    # b: out floor((16+2-3)/2)+1 = 8; MACs = N*16*64*8*9; rf = 3 + 2*1, jump 2
    assert rows["b"].shape == (N, 16, 8, 8)
    assert rows["b"].params == 1152
    assert rows["b"].macs == 73728 * N
    assert rows["b"].flops == 147456 * N
    assert (rows["b"].receptive_field, rows["b"].stride) == ((5, 5), (2, 2))
    # pool: out 4x4; 4 FLOPs per output; rf = 5 + 1*2, jump 4
    assert rows["pool"].flops == 16 * 16 * 4 * N
    assert (rows["pool"].receptive_field, rows["pool"].stride) == ((7, 7), (4, 4))
    # global pool: one FLOP per input element; the whole 16x16 input
    assert rows["gap"].flops == 16 * 16 * N
    assert rows["gap"].receptive_field == (16, 16)
    assert rows["flat"].flops == 0
    # gemm 16 -> 10 with bias
    assert rows["fc"].params == 170
    assert rows["fc"].macs == 160 * N
    assert rows["fc"].flops == 330 * N
    assert rows["fc"].receptive_field == (16, 16)


def test_small_net_totals_symbolic_and_bound():
    report = summarize(_small_net())
    assert report.total_params == 1546
    assert report.total_macs == 129184 * N
    assert report.total_flops == 261706 * N
    bound = summarize(_small_net(), {"N": 4})
    assert bound.total_macs == 4 * 129184
    assert isinstance(bound.total_macs, int)
    assert bound.rows[0].shape == (4, 8, 16, 16)
    assert summarize(_small_net(), {N: np.int64(2)}).total_flops == 2 * 261706
    assert summarize(_small_net(), {sympy.Symbol("N"): 2}).total_flops == 2 * 261706


def test_text_table():
    text = str(summarize(_small_net()))
    assert text.splitlines()[0] == "model small: inputs x[N,3,16,16]"
    assert "[N,8,16,16]" in text
    assert "129,184*N" in text and "261,706*N" in text
    assert "params: 1,546 (trainable 1,546)" in text
    header = text.splitlines()[1]
    assert header.split() == ["layer", "op", "output", "params", "MACs", "FLOPs", "RF", "stride"]
    assert "conv2d" in text and "max_pool2d" in text


def test_format_count():
    assert format_count(61706) == "61,706"
    assert format_count(416520 * N) == "416,520*N"


def test_shared_parameter_counts_once():
    g = ir.Graph("shared")
    g.add_input("x", (1, 4, 5, 5))
    _param(g, "w", 4, 4, 1, 1)
    g.add_node("conv", ["x", "w"], name="c1")
    g.add_node("conv", ["c1", "w"], name="c2")
    g.set_outputs("c2")
    report = summarize(g)
    assert [r.params for r in report.rows] == [16, 0]
    assert report.total_params == 16


def test_branches_take_max_of_rf_and_jump():
    g = ir.Graph("branches")
    g.add_input("x", (1, 2, 8, 8))
    _param(g, "w", 2, 2, 3, 3)
    # branch a: conv 3x3 s2 p1 -> 4x4, rf 3, jump 2
    g.add_node("conv", ["x", "w"], {"strides": [2, 2], "pads": [1, 1, 1, 1]}, name="a")
    # branch b: avg_pool 5x5 s1 -> 4x4, rf 5, jump 1
    g.add_node("avg_pool", ["x"], {"kernel_shape": [5, 5]}, name="b")
    g.add_node("add", ["a", "b"], name="sum")
    g.set_outputs("sum")
    rows = {r.name: r for r in summarize(g).rows}
    assert (rows["sum"].receptive_field, rows["sum"].stride) == ((5, 5), (2, 2))
    assert rows["b"].flops == 2 * 16 * 25
    assert rows["sum"].flops == 2 * 16


def test_dilation_and_depthwise():
    g = ir.Graph("dw")
    g.add_input("x", (1, 8, 9, 9))
    _param(g, "w", 8, 1, 3, 3)
    g.add_node("conv", ["x", "w"], {"group": 8, "dilations": [2, 2]}, name="dw")
    g.set_outputs("dw")
    (row,) = summarize(g).rows
    # out: 9 - 2*2 = 5; MACs = 8*25 * (8/8)*9; rf = 1 + 2*2*1
    assert row.shape == (1, 8, 5, 5)
    assert row.macs == 1800
    assert row.receptive_field == (5, 5)


def test_conv_transpose_and_1d():
    g = ir.Graph("up")
    g.add_input("x", (1, 2, 4))
    _param(g, "w", 2, 3, 3)
    g.add_node("conv_transpose", ["x", "w"], {"strides": [2]}, name="up")
    g.add_node("conv", ["up", _param(g, "w2", 1, 3, 3)], name="c")
    g.set_outputs("c")
    up, conv = summarize(g).rows
    # out = 2*(4-1) + 2 + 1 = 9; MACs = N*C*L_in * (M/group)*k = 2*4 * 3*3
    assert up.shape == (1, 3, 9)
    assert up.macs == 72
    # rf = 1 + floor(2/2)*1 = 2, jump 1/2; then 3-tap conv: 2 + 2*(1/2) = 3, jump 1/2
    assert (up.receptive_field, up.stride) == ((2,), (Fraction(1, 2),))
    assert (conv.receptive_field, conv.stride) == ((3,), (Fraction(1, 2),))
    assert conv.op == "conv1d"
    assert "1/2" in str(summarize(g))


def test_matmul_batch_norm_and_frozen_params():
    g = ir.Graph("mixed")
    g.add_input("x", (2, 3, 4, 4))
    for name in ("scale", "bias"):
        _param(g, name, 3)
    for name in ("mean", "var"):
        _param(g, name, 3, trainable=False)
    g.add_node("batch_norm", ["x", "scale", "bias", "mean", "var"], name="bn")
    _param(g, "m", 4, 5)
    g.add_node("matmul", ["bn", "m"], name="mm")
    g.set_outputs("mm")
    report = summarize(g)
    bn, mm = report.rows
    assert (bn.params, bn.macs, bn.flops) == (12, 0, 2 * 96)
    # (2,3,4,4) @ (4,5) -> (2,3,4,5): 120 outputs of a 4-term dot product
    assert (mm.macs, mm.flops) == (480, 960)
    assert (report.total_params, report.trainable_params) == (32, 26)
    assert bn.receptive_field == (1, 1) and mm.receptive_field == (4, 4)


def test_flat_input_has_no_spatial_field():
    g = ir.Graph("mlp")
    g.add_input("x", ("N", 4))
    _param(g, "w", 3, 4)
    g.add_node("gemm", ["x", "w"], {"transB": 1}, name="fc")
    g.set_outputs("fc")
    (row,) = summarize(g).rows
    assert row.receptive_field == () and row.macs == 12 * N
    assert "fc" in str(summarize(g))


def test_every_op_has_a_cost_rule():
    missing = [
        op for op, opdef in ir.OPS.items() if op not in _COSTS and opdef.family not in _FAMILY_COSTS
    ]
    assert missing == []


@pytest.mark.parametrize(
    "bindings, message",
    [({"M": 1}, "names no symbol"), ({"N": 0}, "positive integer"), ({"N": 1.5}, "positive")],
)
def test_bad_bindings_raise(bindings, message):
    with pytest.raises(ir.ShapeError, match=message):
        summarize(_small_net(), bindings)


def test_graph_summary_reflects_later_edits():
    g = _small_net()
    before = g.summary()
    g.add_node("relu", ["fc"], name="act")
    after = g.summary()
    assert len(after.rows) == len(before.rows) + 1
    assert after.total_flops - before.total_flops == 10 * N


def _load_sample(name):
    path = SAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sample_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (SAMPLES / "lenet5.py").exists(), reason="samples/lenet5.py not yet there")
def test_lenet5_sample():
    report = _load_sample("lenet5").build().summary()
    assert report.total_params == 61706
    # conv1 6*1*25*28*28 + conv2 16*6*25*10*10 + fc 400*120 + 120*84 + 84*10 (per sample)
    macs = 117600 + 240000 + 48000 + 10080 + 840
    assert sympy.expand(report.total_macs - macs * N) == 0


def test_softmax_and_loss_fields():
    g = ir.Graph("heads")
    g.add_input("x", ("N", 3, 9, 9))
    g.add_input("labels", ("N", 9, 9), "int64")
    _param(g, "w", 4, 3, 3, 3)
    g.add_node("conv", ["x", "w"], {"pads": [1, 1, 1, 1]}, name="c")
    g.add_node("softmax", ["c"], {"axis": 1}, name="over_channels")
    g.add_node("softmax", ["c"], {"axis": -1}, name="over_width")
    g.add_node("softmax_cross_entropy", ["c", "labels"], name="loss")
    g.set_outputs("over_channels", "over_width", "loss")
    rows = {r.name: r for r in summarize(g).rows}
    assert rows["over_channels"].receptive_field == (3, 3)
    assert rows["over_width"].receptive_field == (3, 9)
    assert rows["over_width"].flops == 5 * 4 * 81 * N
    # labels carry no spatial field of their own; the mean loss sees the whole image
    assert rows["loss"].receptive_field == (9, 9)
    assert rows["loss"].flops == (5 * 4 * 81 + 81) * N
    assert rows["loss"].shape == ()


def test_symbolic_spatial_size():
    g = ir.Graph("sym")
    g.add_input("x", ("N", 3, "H", "H"))
    _param(g, "w", 4, 3, 3, 3)
    g.add_node("conv", ["x", "w"], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, name="c")
    g.add_node("global_max_pool", ["c"], name="gmp")
    g.set_outputs("gmp")
    H = ir.symbol("H")
    conv, pool = summarize(g).rows
    assert conv.macs == 108 * N * sympy.ceiling(H / 2) ** 2
    assert pool.receptive_field == (sympy.Max(3, H),) * 2
    conv, pool = summarize(g, {"N": 1, "H": 9}).rows
    assert (conv.macs, pool.flops, pool.receptive_field) == (108 * 25, 100, (9, 9))
