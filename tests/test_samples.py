"""The sample models: they build with a symbolic batch, verify, have the published
parameter counts (torchvision's for the ImageNet models), and run through the
NumPy interpreter with finite outputs of the right shape.

Samples are files, not a package, so they are loaded by path.
"""

from __future__ import annotations

import importlib.util
import pathlib
import runpy

import numpy as np
import pytest
import sympy

import convc

SAMPLES = pathlib.Path(__file__).resolve().parent.parent / "samples"
N = sympy.Symbol("N", integer=True, positive=True)

# name: (input shape without the batch, classes, trainable parameters)
EXPECTED = {
    "lenet5": ((1, 32, 32), 10, 61_706),
    "alexnet": ((3, 224, 224), 1000, 61_100_840),
    "vgg11": ((3, 224, 224), 1000, 132_863_336),
    "inception": ((3, 32, 32), 10, None),
    "resnet18": ((3, 224, 224), 1000, 11_689_512),
    "mobilenet_v2": ((3, 224, 224), 1000, 3_504_872),
    "conv1d_sequence": ((1, 128), 5, None),
    "conv3d_volume": ((1, 16, 16, 16), 4, None),
}
LARGE = ("alexnet", "vgg11", "resnet18", "mobilenet_v2")  # 224x224: batches 1 and 2 only


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"sample_{name}", SAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graphs():
    """Each sample's symbolic-batch graph, built once (VGG-11 alone holds 0.5 GB of weights)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load(name).build()
        return cache[name]

    yield get
    cache.clear()


def trainable_count(graph) -> int:
    return sum(int(a.size) for a in graph.params(trainable_only=True).values())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sample_builds_with_a_symbolic_batch(graphs, name):
    shape, classes, params = EXPECTED[name]
    graph = graphs(name)
    graph.verify()
    assert graph.name == name
    assert graph.inputs == ["x"] and graph.values["x"].shape == (N, *shape)
    assert len(graph.outputs) == 1
    assert graph.values[graph.outputs[0]].shape == (N, classes)
    assert all(a.dtype == np.float32 for a in graph.params().values())
    if params is not None:
        assert trainable_count(graph) == params


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sample_runs_in_the_interpreter(graphs, name):
    module = load(name)
    graph = graphs(name)
    _, classes, _ = EXPECTED[name]
    for batch in (1, 2) if name in LARGE else (1, 3):
        inputs = module.example_inputs(batch=batch, seed=batch)
        assert inputs["x"].dtype == np.float32 and inputs["x"].shape[0] == batch
        (out,) = convc.interpret(graph, inputs).values()
        assert out.shape == (batch, classes) and out.dtype == np.float32
        assert np.isfinite(out).all() and np.abs(out).max() > 0


def test_batch_rows_are_independent(graphs):
    """Row 0 of a batch-2 run equals the batch-1 run of that row (the batch dim is a true batch)."""
    graph = graphs("resnet18")
    x = load("resnet18").example_inputs(batch=2)["x"]
    (both,) = convc.interpret(graph, {"x": x}).values()
    (first,) = convc.interpret(graph, {"x": x[:1]}).values()
    np.testing.assert_allclose(both[:1], first, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "conv1d_sequence", "conv3d_volume", "inception"])
def test_concrete_batch_and_determinism(name):
    module = load(name)
    graph = module.build(batch=2)
    assert graph.values["x"].type.is_concrete and graph.values["x"].shape[0] == 2
    assert module.build(seed=3).fingerprint() == module.build(seed=3).fingerprint()
    assert module.build(seed=3).fingerprint() != module.build(seed=4).fingerprint()


def test_architectural_features(graphs):
    resnet = graphs("resnet18")
    assert sum(n.op == "add" for n in resnet.nodes.values()) == 8
    assert "layer2.0.downsample.0.weight" in resnet.values
    mobilenet = graphs("mobilenet_v2")
    depthwise = [n for n in mobilenet.nodes.values() if n.op == "conv" and n.attrs["group"] > 1]
    assert len(depthwise) == 17
    assert sum(n.op == "add" for n in mobilenet.nodes.values()) == 10
    assert sum(n.op == "clip" for n in mobilenet.nodes.values()) == 35
    inception = graphs("inception")
    concats = [n for n in inception.nodes.values() if n.op == "concat"]
    assert len(concats) == 3 and all(len(n.inputs) == 4 for n in concats)
    kernels = {n.attrs["kernel_shape"] for n in inception.nodes.values() if n.op == "conv"}
    assert {(1, 1), (3, 3), (5, 5)} <= kernels
    assert {n.op for n in graphs("conv3d_volume").nodes.values()} >= {
        "conv",
        "max_pool",
        "avg_pool",
    }


@pytest.mark.parametrize("name", ["lenet5", "conv1d_sequence", "conv3d_volume"])
def test_running_a_sample_prints_its_graph(name, capsys):
    runpy.run_path(str(SAMPLES / f"{name}.py"), run_name="__main__")
    text = capsys.readouterr().out
    assert text.startswith(f"graph {name}(%x: f32[N,")
    assert "return %" in text


LENET5_TEXT = """\
graph lenet5(%x: f32[N,1,32,32]) {
  @conv1.weight: f32[6,1,5,5] param
  @conv1.bias: f32[6] param
  @conv2.weight: f32[16,6,5,5] param
  @conv2.bias: f32[16] param
  @fc1.weight: f32[120,400] param
  @fc1.bias: f32[120] param
  @fc2.weight: f32[84,120] param
  @fc2.bias: f32[84] param
  @fc3.weight: f32[10,84] param
  @fc3.bias: f32[10] param
  %conv1: f32[N,6,28,28] = conv2d(%x, @conv1.weight, @conv1.bias)
  %relu1: f32[N,6,28,28] = relu(%conv1)
  %pool1: f32[N,6,14,14] = max_pool2d(%relu1) kernel_shape=[2,2] strides=[2,2]
  %conv2: f32[N,16,10,10] = conv2d(%pool1, @conv2.weight, @conv2.bias)
  %relu2: f32[N,16,10,10] = relu(%conv2)
  %pool2: f32[N,16,5,5] = max_pool2d(%relu2) kernel_shape=[2,2] strides=[2,2]
  %flatten: f32[N,400] = flatten(%pool2)
  %fc1: f32[N,120] = gemm(%flatten, @fc1.weight, @fc1.bias) transB=1
  %relu3: f32[N,120] = relu(%fc1)
  %fc2: f32[N,84] = gemm(%relu3, @fc2.weight, @fc2.bias) transB=1
  %relu4: f32[N,84] = relu(%fc2)
  %fc3: f32[N,10] = gemm(%relu4, @fc3.weight, @fc3.bias) transB=1
  return %fc3
}"""


def test_lenet5_golden_text(graphs):
    """The printed graph of the DSL's flagship sample, names and shapes included."""
    assert graphs("lenet5").to_text() == LENET5_TEXT
