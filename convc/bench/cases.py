"""Benchmark cases: the single layers and whole models of shared/BENCHMARKS.md, convs of
unusual shapes, or a file.

Stage: benchmark input. Output: `Case` objects, each a name, a batch size and
a `build()` that returns an `ir.Graph` with float32 weights plus a dict of
input arrays for that batch. Graphs are built lazily, so listing a suite is
cheap and only the cases that run pay for their weights.

Weights and inputs come from seeded generators (He-scaled normal weights,
standard normal inputs), so every run and every peer sees the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ir import Graph

SEED = 0
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@dataclass(frozen=True)
class Case:
    """One benchmark: `build()` returns (graph, inputs) at this case's batch size."""

    name: str
    batch: int
    build: Callable[[], tuple[Graph, dict[str, np.ndarray]]]


def _weights(rng, shape, fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _conv_layer(cin, cout, size, kernel, stride=1, pad=0, group=1, bias=False):
    """A builder of one 2-D convolution on a (batch, cin, size, size) input."""

    def build(batch: int):
        rng = np.random.default_rng(SEED)
        g = Graph("conv")
        g.add_input("x", (batch, cin, size, size))
        fan_in = cin // group * kernel * kernel
        g.add_param("w", _weights(rng, (cout, cin // group, kernel, kernel), fan_in))
        inputs = ["x", "w"]
        if bias:
            inputs.append(g.add_param("b", _weights(rng, (cout,), fan_in)).name)
        attrs = {"strides": [stride] * 2, "pads": [pad] * 4, "group": group}
        g.add_node("conv", inputs, attrs, name="conv")
        g.set_outputs("conv")
        return g, {"x": rng.standard_normal((batch, cin, size, size), dtype=np.float32)}

    return build


def _max_pool_layer(channels, size, kernel, stride, pad):
    def build(batch: int):
        rng = np.random.default_rng(SEED)
        g = Graph("max_pool")
        g.add_input("x", (batch, channels, size, size))
        attrs = {"kernel_shape": [kernel] * 2, "strides": [stride] * 2, "pads": [pad] * 4}
        g.add_node("max_pool", ["x"], attrs, name="pool")
        g.set_outputs("pool")
        return g, {"x": rng.standard_normal((batch, channels, size, size), dtype=np.float32)}

    return build


def _dense_layer(features_in, features_out):
    """A Linear layer: gemm(x, weight, bias, transB=1)."""

    def build(batch: int):
        rng = np.random.default_rng(SEED)
        g = Graph("dense")
        g.add_input("x", (batch, features_in))
        g.add_param("w", _weights(rng, (features_out, features_in), features_in))
        g.add_param("b", _weights(rng, (features_out,), features_in))
        g.add_node("gemm", ["x", "w", "b"], {"transB": 1}, name="dense")
        g.set_outputs("dense")
        return g, {"x": rng.standard_normal((batch, features_in), dtype=np.float32)}

    return build


#: (name, batch sizes, builder) of every single layer in shared/BENCHMARKS.md.
LAYERS = (
    ("ResNet stem 7x7 s2, 3->64 @224", (1,), _conv_layer(3, 64, 224, 7, stride=2, pad=3)),
    ("3x3 64->64 @56", (1, 8), _conv_layer(64, 64, 56, 3, pad=1)),
    ("3x3 128->128 @28", (1,), _conv_layer(128, 128, 28, 3, pad=1)),
    ("3x3 256->256 @14", (1,), _conv_layer(256, 256, 14, 3, pad=1)),
    ("3x3 512->512 @7", (1,), _conv_layer(512, 512, 7, 3, pad=1)),
    ("1x1 s2 64->128 @56", (1,), _conv_layer(64, 128, 56, 1, stride=2)),
    ("depthwise 3x3, 32 ch @112", (1, 8), _conv_layer(32, 32, 112, 3, pad=1, group=32)),
    ("pointwise 1x1 32->64 @112", (1,), _conv_layer(32, 64, 112, 1)),
    ("LeNet conv1 5x5 1->6 @32", (1,), _conv_layer(1, 6, 32, 5, bias=True)),
    ("max-pool 3x3 s2, 64 ch @112", (1,), _max_pool_layer(64, 112, 3, 2, 1)),
    ("dense 4096->1000", (1, 8), _dense_layer(4096, 1000)),
)


def _op_chain(name: str, shape: tuple, nodes: tuple, params: tuple = ()):
    """A builder of a chain of ops on one input of `shape` (after the batch): `nodes` are
    (op, inputs, attrs), "_" naming the value before; `params` are (name, shape), drawn
    from N(0, 0.1), or from U(0.5, 1.5) for a name ending in ".var" (a variance)."""

    def build(batch: int):
        rng = np.random.default_rng(SEED)
        g = Graph(name)
        g.add_input("x", (batch, *shape))
        for param, param_shape in params:
            if param.endswith(".var"):
                data = rng.random(param_shape) + 0.5
            else:
                data = rng.standard_normal(param_shape) / 10
            g.add_param(param, data.astype(np.float32))
        last = "x"
        for k, (op, inputs, attrs) in enumerate(nodes):
            inputs = [last if v == "_" else v for v in inputs]
            last = g.add_node(op, inputs, attrs, name=f"op{k}")[0].name
        g.set_outputs(last)
        return g, {"x": rng.standard_normal((batch, *shape), dtype=np.float32)}

    return build


_POOL3 = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}
_POOL2 = {"kernel_shape": [2, 2], "strides": [2, 2]}
_STATS = tuple((f"bn.{s}", (64,)) for s in ("scale", "bias", "mean", "var"))
#: (name, batch sizes, builder) of ops that models usually fuse into a conv, run alone:
#: here the per-call cost, the vector math and memory decide.
OPS = (
    ("softmax 1000", (1, 64), _op_chain("softmax", (1000,), (("softmax", ["_"], {}),))),
    (
        "dense 512->10",
        (1,),
        _op_chain(
            "dense",
            (512,),
            (("gemm", ["_", "w", "b"], {"transB": 1}),),
            (("w", (10, 512)), ("b", (10,))),
        ),
    ),
    (
        "dense 784->128 + relu",
        (64,),
        _op_chain(
            "dense_relu",
            (784,),
            (("gemm", ["_", "w", "b"], {"transB": 1}), ("relu", ["_"], {})),
            (("w", (128, 784)), ("b", (128,))),
        ),
    ),
    ("sigmoid 64@56", (1,), _op_chain("sigmoid", (64, 56, 56), (("sigmoid", ["_"], {}),))),
    ("tanh 64@56", (1,), _op_chain("tanh", (64, 56, 56), (("tanh", ["_"], {}),))),
    ("GELU 64@56", (1,), _op_chain("gelu", (64, 56, 56), (("gelu", ["_"], {}),))),
    (
        "batch norm 64@56",
        (1,),
        _op_chain(
            "batch_norm",
            (64, 56, 56),
            (("batch_norm", ["_", "bn.scale", "bn.bias", "bn.mean", "bn.var"], {}),),
            _STATS,
        ),
    ),
    (
        "avg pool 3x3 s1, 192@28",
        (1,),
        _op_chain("avg_pool", (192, 28, 28), (("avg_pool", ["_"], _POOL3),)),
    ),
    (
        "max pool 2x2 s2, 128@56",
        (1,),
        _op_chain("max_pool", (128, 56, 56), (("max_pool", ["_"], _POOL2),)),
    ),
    (
        "global max pool 64@112",
        (1,),
        _op_chain("global_max", (64, 112, 112), (("global_max_pool", ["_"], {}),)),
    ),
    (
        "add + relu 256@14",
        (8,),
        _op_chain("add_relu", (256, 14, 14), (("add", ["_", "_"], {}), ("relu", ["_"], {}))),
    ),
)

#: (name, batch sizes, builder) of convs off the usual grid: output channels that are not a
#: multiple of 16, odd sizes, 5x5 windows, strides, and groups of channels that split a
#: channel vector. The default schedules were measured mostly on ResNet and MobileNet shapes;
#: this suite shows where an unusual one is left on a slow default (`compile(..., tune=True)`
#: searches tile sizes, not the choice between channel and width vectors).
SHAPES = (
    ("3x3 48->80 @37", (1,), _conv_layer(48, 80, 37, 3, pad=1)),
    ("5x5 24->40 @19", (1,), _conv_layer(24, 40, 19, 5, pad=2)),
    ("3x3 48->24 @56", (1,), _conv_layer(48, 24, 56, 3, pad=1)),
    ("3x3 s2 16->24 @112", (1,), _conv_layer(16, 24, 112, 3, stride=2, pad=1)),
    ("3x3 s2 96->96 @30", (1,), _conv_layer(96, 96, 30, 3, stride=2, pad=1)),
    ("3x3 160->160 @9", (1,), _conv_layer(160, 160, 9, 3, pad=1)),
    ("3x3 in 4 groups, 40->120 @50", (1,), _conv_layer(40, 120, 50, 3, pad=1, group=4)),
    ("3x3 in 14 groups of 40, 560 @14", (1,), _conv_layer(560, 560, 14, 3, pad=1, group=14)),
    ("1x1 200->72 @23", (1,), _conv_layer(200, 72, 23, 1)),
    ("1x1 128->64 @32", (1, 8), _conv_layer(128, 64, 32, 1)),
)

#: whole models: display name and the sample file defining build(batch) and example_inputs.
MODELS = (
    ("LeNet-5", "lenet5.py"),
    ("ResNet-18", "resnet18.py"),
    ("MobileNetV2", "mobilenet_v2.py"),
)
MODEL_BATCHES = (1, 8)


def layer_cases(batches=None) -> list[Case]:
    """Every layer of the table at its listed batch sizes (only those in `batches` if given)."""
    return _listed(LAYERS, batches)


def _listed(table, batches) -> list[Case]:
    return [
        Case(name, batch, lambda build=build, batch=batch: build(batch))
        for name, listed, build in table
        for batch in listed
        if batches is None or batch in batches
    ]


def shape_cases(batches=None) -> list[Case]:
    """Every conv of `SHAPES` at its listed batch sizes (only those in `batches` if given)."""
    return _listed(SHAPES, batches)


def op_cases(batches=None) -> list[Case]:
    """Every op chain of `OPS` at its listed batch sizes (only those in `batches` if given)."""
    return _listed(OPS, batches)


def model_cases(batches=None) -> list[Case]:
    """LeNet-5, ResNet-18 and MobileNetV2 from samples/, at batch 1 and 8 by default."""
    return [
        case
        for name, filename in MODELS
        for case in file_cases(SAMPLES / filename, batches or MODEL_BATCHES, name)
    ]


def file_cases(path, batches, name: str | None = None) -> list[Case]:
    """Cases for a model file (a sample .py or an .onnx model, loaded as `convc run` does)."""
    from convc.cli import load_model

    model = load_model(str(path))
    return [
        Case(
            name or Path(path).stem, batch, lambda batch=batch: (model.graph, _inputs(model, batch))
        )
        for batch in batches
    ]


def _inputs(model, batch: int) -> dict[str, np.ndarray]:
    """The sample's example inputs at this batch size, else seeded random ones."""
    from convc.cli import batch_bindings
    from convc.nn.examples import random_inputs

    if model.example_inputs is not None:
        return dict(model.example_inputs(batch=batch, seed=SEED))
    graph = model.graph
    return random_inputs(graph, graph.inputs, batch_bindings(graph, batch), SEED)
