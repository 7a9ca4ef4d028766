"""Shape inference (ir, sympy) against the shapes the NumPy interpreter actually computes.

Hypothesis draws conv, conv_transpose and pooling configurations (rank 1-3,
kernel, stride, dilation, groups, asymmetric pads, auto_pad, ceil_mode,
count_include_pad, output_padding, output_shape; inputs as small as 1 and
kernels as large as the input). For each one:

- a configuration that this file's own validity rule rejects must raise
  ShapeError when the node is built (never another exception), and every
  other configuration must build;
- the type inferred with a symbolic batch N, with N substituted, equals the
  interpreter's output shape at batch 1 and 3;
- the type inferred with symbolic spatial sizes too, substituted afterwards,
  equals the output shape of running that symbolic graph; an input too small
  for such a graph is an InputError at run time.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import convc
import ir

N = ir.symbol("N")
AUTO_PADS = ("NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def windows(draw, op):
    """A configuration: op, channel counts, spatial sizes and attributes."""
    rank = draw(st.integers(1, 3))
    per_axis = st.lists(st.integers(1, 3), min_size=rank, max_size=rank)
    kernel = draw(per_axis)
    spatial = draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank))
    attrs = {
        "strides": draw(per_axis),
        "dilations": draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank)),
        "auto_pad": draw(st.sampled_from(AUTO_PADS)),
    }
    if attrs["auto_pad"] == "NOTSET":
        attrs["pads"] = draw(st.lists(st.integers(0, 2), min_size=2 * rank, max_size=2 * rank))
    config = {"op": op, "kernel": kernel, "spatial": spatial, "attrs": attrs, "channels": 2}
    if op in ("conv", "conv_transpose"):
        group = config["group"] = attrs["group"] = draw(st.integers(1, 3))
        # mostly multiples of the group, sometimes any count (an invalid configuration)
        counts = st.one_of(st.integers(1, 2).map(lambda k: k * group), st.integers(1, 4))
        config["channels"], config["out_channels"] = draw(counts), draw(counts)
    else:
        attrs["kernel_shape"] = kernel
        attrs["ceil_mode"] = draw(st.integers(0, 1))
        if op == "avg_pool":
            attrs["count_include_pad"] = draw(st.integers(0, 1))
    if op == "conv_transpose":
        # below max(stride, dilation) is valid; equal to it is not
        limits = [max(s, d) for s, d in zip(attrs["strides"], attrs["dilations"])]
        attrs["output_padding"] = [draw(st.integers(0, limit)) for limit in limits]
        if draw(st.booleans()):
            attrs["output_shape"] = draw(per_axis.map(lambda v: [s + 2 for s in v]))
    return config


def weight_shape(config):
    group = config.get("group", 1)
    if config["op"] == "conv":
        return (config["out_channels"], max(config["channels"] // group, 1), *config["kernel"])
    return (config["channels"], config["out_channels"], *config["kernel"])


def expected_valid(config) -> bool:
    """This file's statement of when a configuration is valid (ONNX rules, written separately)."""
    attrs, kernel, spatial = config["attrs"], config["kernel"], config["spatial"]
    rank = len(kernel)
    pads = attrs.get("pads", (0,) * (2 * rank))
    extents = [attrs["dilations"][i] * (kernel[i] - 1) + 1 for i in range(rank)]
    if config["op"] == "conv_transpose":
        return config["channels"] % config["group"] == 0 and _transpose_valid(config, extents)
    if config["op"] == "conv" and (
        config["channels"] % config["group"] or config["out_channels"] % config["group"]
    ):
        return False
    if attrs["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        return True  # SAME pads always leave room for one window
    if config["op"] != "conv" and any(p >= extents[i % rank] for i, p in enumerate(pads)):
        return False  # a pooling pad as wide as the window
    return all(spatial[i] + pads[i] + pads[rank + i] >= extents[i] for i in range(rank))


def _transpose_valid(config, extents) -> bool:
    attrs, spatial = config["attrs"], config["spatial"]
    rank = len(spatial)
    strides, dilations = attrs["strides"], attrs["dilations"]
    if any(attrs["output_padding"][i] >= max(strides[i], dilations[i]) for i in range(rank)):
        return False
    if "output_shape" in attrs or attrs["auto_pad"] != "NOTSET":
        return True
    pads = attrs["pads"]
    full = [
        strides[i] * (spatial[i] - 1) + attrs["output_padding"][i] + extents[i] for i in range(rank)
    ]
    return all(full[i] - pads[i] - pads[rank + i] >= 1 for i in range(rank))


def build(config, spatial_dims):
    """A graph applying the configured op to an input of shape (N, C, *spatial_dims)."""
    g = ir.Graph(config["op"])
    g.add_input("x", ("N", config["channels"], *spatial_dims))
    inputs = ["x"]
    if config["op"] in ("conv", "conv_transpose"):
        w = np.random.default_rng(0).standard_normal(weight_shape(config)).astype(np.float32)
        inputs.append(g.add_param("w", w))
    g.add_node(config["op"], inputs, dict(config["attrs"]), name="y")
    g.set_outputs("y")
    return g


def run(g, config, batch, spatial):
    x = np.random.default_rng(batch).standard_normal((batch, config["channels"], *spatial))
    return convc.interpret(g, {"x": x.astype(np.float32)})["y"]


def check_configuration(config):
    spatial = config["spatial"]
    valid = expected_valid(config)
    try:
        g = build(config, spatial)
    except ir.ShapeError:
        assert not valid, "a valid configuration was rejected"
        check_symbolic_spatial(config, valid)
        return
    assert valid, f"an invalid configuration was accepted: {g.values['y'].type}"
    inferred = g.values["y"].type
    assert inferred.shape[0] == N
    for batch in (1, 3):
        assert run(g, config, batch, spatial).shape == inferred.subs({N: batch}).concrete_shape()
    check_symbolic_spatial(config, valid)


def check_symbolic_spatial(config, valid):
    """Symbolic spatial sizes: the substituted type equals the run's shape, or the run refuses."""
    symbols = [ir.symbol(f"S{i}") for i in range(len(config["spatial"]))]
    try:
        g = build(config, symbols)
    except ir.ShapeError:
        return  # rejected whatever the size (e.g. a bad group or output_padding)
    sizes = dict(zip(symbols, config["spatial"]))
    if not valid:
        with pytest.raises(ir.InputError, match="too small"):
            run(g, config, 1, config["spatial"])
        return
    for batch in (1, 3):
        expected = g.values["y"].type.subs({N: batch, **sizes}).concrete_shape()
        assert run(g, config, batch, config["spatial"]).shape == expected


KERNEL_IS_INPUT = {"strides": [1, 1], "dilations": [1, 1], "auto_pad": "VALID"}


@SETTINGS
@given(windows("conv"))
@example(
    {
        "op": "conv",
        "kernel": [3, 3],
        "spatial": [3, 3],
        "channels": 2,
        "out_channels": 2,
        "group": 1,
        "attrs": {**KERNEL_IS_INPUT, "group": 1},
    }
)
@example(
    {
        "op": "conv",
        "kernel": [1],
        "spatial": [1],
        "channels": 3,
        "out_channels": 3,
        "group": 3,
        "attrs": {"strides": [2], "dilations": [1], "auto_pad": "SAME_UPPER", "group": 3},
    }
)
def test_conv_shapes(config):
    check_configuration(config)


@SETTINGS
@given(windows("conv_transpose"))
@example(
    {
        "op": "conv_transpose",
        "kernel": [1, 1],
        "spatial": [1, 1],
        "channels": 2,
        "out_channels": 1,
        "group": 2,
        "attrs": {
            "strides": [3, 1],
            "dilations": [1, 1],
            "auto_pad": "SAME_LOWER",
            "group": 2,
            "output_padding": [2, 0],
        },
    }
)
def test_conv_transpose_shapes(config):
    check_configuration(config)


@SETTINGS
@given(windows("max_pool"))
@example(
    {
        "op": "max_pool",
        "kernel": [2, 2, 2],
        "spatial": [2, 2, 2],
        "channels": 2,
        "attrs": {
            "strides": [1, 1, 1],
            "dilations": [1, 1, 1],
            "auto_pad": "VALID",
            "kernel_shape": [2, 2, 2],
            "ceil_mode": 1,
        },
    }
)
def test_max_pool_shapes(config):
    check_configuration(config)


@SETTINGS
@given(windows("avg_pool"))
@example(
    {
        "op": "avg_pool",
        "kernel": [3],
        "spatial": [4],
        "channels": 2,
        "attrs": {
            "strides": [2],
            "dilations": [1],
            "auto_pad": "NOTSET",
            "pads": [1, 1],
            "kernel_shape": [3],
            "ceil_mode": 1,
            "count_include_pad": 1,
        },
    }
)
def test_avg_pool_shapes(config):
    check_configuration(config)


@pytest.mark.parametrize("op", ["global_avg_pool", "global_max_pool"])
@pytest.mark.parametrize("spatial", [(1,), (3, 1), (2, 3, 4)])
def test_global_pool_shapes(op, spatial):
    g = ir.Graph(op)
    g.add_input("x", ("N", 2, *spatial))
    g.add_node(op, ["x"], name="y")
    g.set_outputs("y")
    for batch in (1, 3):
        x = np.ones((batch, 2, *spatial), np.float32)
        expected = g.values["y"].type.subs({N: batch}).concrete_shape()
        assert (
            convc.interpret(g, {"x": x})["y"].shape == expected == (batch, 2, *[1] * len(spatial))
        )
