"""The `training` suite: one optimizer step (forward, backward, update) beside PyTorch.

Stage: benchmark cases and their execution, for steps rather than graphs. Input:
`TrainingCase`s (a convc model, its PyTorch twin, a batch). Output: the same
`CaseResult`s as the graph suites, so the tables are shared.

Peers: `convc` is the compiled `convc.train_step` (forward, backward and the
SGD update in one native call); `numpy` the same step interpreted, which is the
reference; `torch` eager PyTorch: forward, `loss.backward()`, `torch.optim.SGD`
step, gradients reset to None, from the same initial weights. ONNX Runtime has
no training step and gets a note.

A layer case (`TrainingCase.layer`) times forward + backward of one convolution
instead: `convc` the compiled `convc.gradient` graph (y, grad_x, grad_w in one
native call, weights as run-time inputs as in a training step), `numpy` the same
graph interpreted, `torch` `conv2d` then `backward` from the same upstream gradient.

Check: every peer runs one step from the initial weights on the case's batch;
its loss and updated parameters must match the reference's (the runner's
tolerance); max err is the largest deviation. Timing: each runner repeats the
step on that batch (the weights keep changing, the cost does not). MACs are
three times the forward's (forward, input gradients, weight gradients).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

import convc
import ir
from convc import nn

from .cases import SAMPLES, SEED
from .peers import PEERS
from .runner import CaseResult, PeerResult, count_macs, max_error, pin_threads
from .timing import time_interleaved

LR, MOMENTUM = 0.01, 0.9


@dataclass(frozen=True)
class TrainingCase:
    """One training step: `model()` builds the convc module, `torch_model(model)` its twin.

    With `layer` (a `ConvLayer`) the case is instead forward + backward of that one
    convolution: convc's compiled `convc.gradient` graph (weights as run-time inputs)
    against PyTorch's `conv2d` and `backward` with the same upstream gradient."""

    name: str
    batch: int
    model: Callable[[], nn.Module] | None
    torch_model: Callable[[nn.Module], object] | None
    input_shape: tuple
    classes: int = 0
    layer: ConvLayer | None = None

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((self.batch, *self.input_shape), dtype=np.float32)
        return x, rng.integers(0, self.classes, self.batch).astype(np.int64)


@dataclass(frozen=True)
class ConvLayer:
    """A 2-D convolution without bias: output channels, square kernel, stride and padding."""

    out_channels: int
    kernel: int
    stride: int = 1
    pad: int = 0

    def graph(self, batch: int, input_shape: tuple) -> ir.Graph:
        g = ir.Graph("layer")
        g.add_input("x", (batch, *input_shape), "float32")
        w_shape = (self.out_channels, input_shape[0], self.kernel, self.kernel)
        g.add_input("w", w_shape, "float32")
        attrs = {"kernel_shape": [self.kernel] * 2, "strides": [self.stride] * 2}
        g.add_node("conv", ["x", "w"], attrs | {"pads": [self.pad] * 4}, outputs=["y"])
        g.set_outputs("y")
        return g


def _lenet5() -> nn.Module:
    spec = importlib.util.spec_from_file_location("bench_lenet5", SAMPLES / "lenet5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nn.manual_seed(SEED)
    return module.LeNet5()


def _torch_lenet5(model: nn.Module):
    """PyTorch's LeNet-5 with the same layer names, loaded with `model`'s weights."""
    import torch

    layers = torch.nn.Sequential()
    for name, child in model.named_children():
        layers.add_module(name, _torch_layer(torch, child))
    layers.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return layers


def _torch_layer(torch, layer):
    if isinstance(layer, nn.Conv2d):
        return torch.nn.Conv2d(*layer.weight.shape[1::-1], layer.weight.shape[2])
    if isinstance(layer, nn.Linear):
        return torch.nn.Linear(layer.weight.shape[1], layer.weight.shape[0])
    if isinstance(layer, nn.MaxPool2d):
        return torch.nn.MaxPool2d(2)
    return {"ReLU": torch.nn.ReLU, "Flatten": torch.nn.Flatten}[type(layer).__name__]()


TRAINING = (
    TrainingCase("LeNet-5 training step", 64, _lenet5, _torch_lenet5, (1, 32, 32), 10),
    TrainingCase(
        "3x3 64->64 @56 forward+backward", 8, None, None, (64, 56, 56), layer=ConvLayer(64, 3, 1, 1)
    ),
    TrainingCase(
        "3x3 s2 64->128 @56 forward+backward",
        8,
        None,
        None,
        (64, 56, 56),
        layer=ConvLayer(128, 3, 2, 1),
    ),
)


def training_cases(batches=None) -> list[TrainingCase]:
    """The training cases (at another batch size when `batches` is given)."""
    if batches is None:
        return list(TRAINING)
    return [replace(c, batch=b) for c in TRAINING for b in batches]


def _convc_step(case: TrainingCase, threads: int, interpret: bool):
    """(run one step, the model's state) for convc, compiled or interpreted."""
    model = case.model()
    optimizer = convc.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    step = convc.train_step(
        model,
        nn.CrossEntropyLoss(),
        optimizer,
        inputs=convc.Input("x", ("N", *case.input_shape)),
        interpret=interpret,
        threads=threads,
    )
    x, y = case.data()
    return lambda: step(x, y), lambda: dict(model.state_dict())


def _torch_step(case: TrainingCase, threads: int):
    import torch

    torch.set_num_threads(threads)
    model = case.torch_model(case.model())
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = (torch.from_numpy(a) for a in case.data())

    def run():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return run, lambda: {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _layer_feeds(case: TrainingCase) -> tuple[ir.Graph, dict]:
    """The layer's gradient graph and its feeds: x, w and the upstream gradient grad_y."""
    graph = convc.gradient(case.layer.graph(case.batch, case.input_shape), wrt=["x", "w"])
    rng = np.random.default_rng(SEED)
    shapes = {n: graph.values[n].type.shape for n in ("x", "w", "grad_y")}
    return graph, {
        n: rng.standard_normal(tuple(map(int, s)), np.float32) for n, s in shapes.items()
    }


def _convc_layer(case: TrainingCase, threads: int, interpret: bool):
    graph, feeds = _layer_feeds(case)
    if interpret:
        return lambda: convc.interpret(graph, feeds)
    model = convc.compile(graph, threads)
    return lambda: model.run(feeds)


def _torch_layer_pass(case: TrainingCase, threads: int):
    import torch

    torch.set_num_threads(threads)
    _, feeds = _layer_feeds(case)
    x, w, dy = (torch.from_numpy(feeds[n]) for n in ("x", "w", "grad_y"))
    layer = case.layer

    def run():
        xg, wg = x.detach().requires_grad_(), w.detach().requires_grad_()
        y = torch.nn.functional.conv2d(xg, wg, stride=layer.stride, padding=layer.pad)
        y.backward(dy)
        return {"y": y.detach().numpy(), "grad_x": xg.grad.numpy(), "grad_w": wg.grad.numpy()}

    return run


def _prepare(name: str, case: TrainingCase, threads: int):
    """(run, state): `run()` performs the case once; `state()` (or run's result) is checked."""
    if case.layer is not None:
        run = _torch_layer_pass(case, threads) if name == "torch" else None
        run = run or _convc_layer(case, threads, interpret=name == "numpy")
        return run, None
    if name == "torch":
        return _torch_step(case, threads)
    return _convc_step(case, threads, interpret=name == "numpy")


def _macs(case: TrainingCase) -> int:
    """Forward, input-gradient and weight-gradient multiply-adds (three forwards)."""
    if case.layer is not None:
        return 3 * count_macs(case.layer.graph(case.batch, case.input_shape), case.batch)
    forward = nn.trace(case.model().eval(), convc.Input("x", (case.batch, *case.input_shape)))
    return 3 * count_macs(forward, case.batch)


def run_training_case(
    case: TrainingCase, peers: list[str], threads: int, repeat: int, block_s: float = 0.05
) -> CaseResult:
    """Check every peer's first step against the interpreter's, then time the steps."""
    pin_threads(threads)
    result = CaseResult(case.name, case.batch, threads, _macs(case))
    reference = None
    runners = {}
    for name in sorted(peers, key=lambda p: p != "numpy"):  # the reference first
        peer_result = result.peers[name] = PeerResult()
        if name not in ("convc", "numpy", "torch"):
            peer_result.note = "no training step"
            continue
        if not PEERS[name].available():
            peer_result.note = "not installed"
            continue
        start = time.perf_counter()
        run, state = _prepare(name, case, threads)
        peer_result.setup_s = time.perf_counter() - start
        first = run()
        outputs = first if state is None else {"loss": np.asarray(first, np.float32), **state()}
        reference = reference or outputs
        peer_result.max_err, ok = max_error(outputs, reference)
        if not ok:
            peer_result.note = f"wrong step (max error {peer_result.max_err:.3g})"
            continue
        if name == "numpy" and case.layer is not None:
            peer_result.note = "the reference: checked against, not timed (seconds a pass)"
            continue
        runners[name] = run
    for name, timing in time_interleaved(runners, repeat, block_s).items():
        result.peers[name].median_s = timing.median
        result.peers[name].min_s = timing.min
    return result
