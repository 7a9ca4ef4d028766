"""The `training` suite: one optimizer step (forward, backward, update) beside PyTorch.

Stage: benchmark cases and their execution, for steps rather than graphs. Input:
`TrainingCase`s (a convc model, its PyTorch twin, a batch). Output: the same
`CaseResult`s as the graph suites, so the tables are shared.

Peers: `convc` is the compiled `convc.train_step` (forward, backward and the
SGD update in one native call); `numpy` the same step interpreted, which is the
reference; `torch` eager PyTorch: forward, `loss.backward()`, `torch.optim.SGD`
step, gradients reset to None, from the same initial weights. ONNX Runtime has
no training step and gets a note.

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
from dataclasses import dataclass

import numpy as np

import convc
from convc import nn

from .cases import SAMPLES, SEED
from .peers import PEERS
from .runner import CaseResult, PeerResult, count_macs, max_error, pin_threads
from .timing import time_interleaved

LR, MOMENTUM = 0.01, 0.9


@dataclass(frozen=True)
class TrainingCase:
    """One training step: `model()` builds the convc module, `torch_model(model)` its twin."""

    name: str
    batch: int
    model: Callable[[], nn.Module]
    torch_model: Callable[[nn.Module], object]
    input_shape: tuple
    classes: int

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((self.batch, *self.input_shape), dtype=np.float32)
        return x, rng.integers(0, self.classes, self.batch).astype(np.int64)


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


TRAINING = (TrainingCase("LeNet-5 training step", 64, _lenet5, _torch_lenet5, (1, 32, 32), 10),)


def training_cases(batches=None) -> list[TrainingCase]:
    """The training cases (at another batch size when `batches` is given)."""
    if batches is None:
        return list(TRAINING)
    return [
        TrainingCase(c.name, b, c.model, c.torch_model, c.input_shape, c.classes)
        for c in TRAINING
        for b in batches
    ]


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


def _prepare(name: str, case: TrainingCase, threads: int):
    if name == "torch":
        return _torch_step(case, threads)
    return _convc_step(case, threads, interpret=name == "numpy")


def run_training_case(
    case: TrainingCase, peers: list[str], threads: int, repeat: int, block_s: float = 0.05
) -> CaseResult:
    """Check every peer's first step against the interpreter's, then time the steps."""
    pin_threads(threads)
    forward = nn.trace(case.model().eval(), convc.Input("x", (case.batch, *case.input_shape)))
    result = CaseResult(case.name, case.batch, threads, 3 * count_macs(forward, case.batch))
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
        outputs = {"loss": np.asarray(run(), np.float32), **state()}
        reference = reference or outputs
        peer_result.max_err, ok = max_error(outputs, reference)
        if not ok:
            peer_result.note = f"wrong step (max error {peer_result.max_err:.3g})"
            continue
        runners[name] = run
    for name, timing in time_interleaved(runners, repeat, block_s).items():
        result.peers[name].median_s = timing.median
        result.peers[name].min_s = timing.min
    return result
