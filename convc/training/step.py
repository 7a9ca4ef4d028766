"""Running training steps: `train_step(...)` -> `TrainStep`, called once per batch.

Stage: public API over the step graph (`graph.py`), the interpreter and the
compiler. A `TrainStep` owns the step graph and one engine: the native code of
`convc.compile` (default) or `convc.interpret`. Each call

1. checks the batch against the loss graph's inputs (`ir.binding.bind_inputs`:
   a wrong label dtype or shape raises InputError naming the input) and the
   cross-entropy labels against the number of classes;
2. feeds the batch, the variables (optimized parameters, running statistics),
   the optimizer's state and scalars for step t and fresh dropout masks;
3. runs forward, backward and update in ONE call of the engine;
4. copies every output `<name>:updated` back into the array fed as `<name>`, so
   the model's parameter arrays (and the optimizer's state) are updated in
   place: a graph or module traced earlier sees the new values. The copy (the
   parameters' bytes: under 0.1 ms of a 20 ms LeNet-5 step) is deliberate: letting the
   native call write into its own input arrays would alias buffers that the
   generated code declares noalias, and would depend on every reader of a
   parameter being scheduled before its update.

Dropout masks are drawn with NumPy's generator seeded by (seed, t, mask
number): deterministic from the base seed, different at every step, and the
same for both engines.

`predict(x)` (for steps built from a module) runs the module's eval-mode graph
with the same live arrays as inputs, so evaluation between epochs needs no
recompilation.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np

from ir import Graph, GraphError, InputError
from ir.binding import bind_inputs

from .. import nn
from ..compiler import compile as compile_graph
from ..interpret import interpret as interpret_graph
from ..interpret.loss import check_labels
from ..optim import UPDATED, Optimizer
from .graph import bessel_inputs, masked_dropout, rebuild, running_statistics, step_graph


class Engine:
    """Runs one graph: natively compiled (once) or with the NumPy interpreter."""

    def __init__(self, graph: Graph, interpret: bool = False, threads: int | None = None):
        self.graph = graph
        self.interpret = interpret
        self.compiled = None if interpret else compile_graph(graph, threads)

    def __call__(self, feeds: Mapping) -> dict[str, np.ndarray]:
        if self.compiled is None:
            return interpret_graph(self.graph, feeds)
        return self.compiled.run(feeds)


class TrainStep:
    """One optimizer step of a scalar loss graph per call; see the module docstring."""

    def __init__(
        self,
        graph: Graph,
        optimizer: Optimizer,
        loss: str | None = None,
        *,
        interpret: bool = False,
        threads: int | None = None,
        seed: int = 0,
    ):
        if not isinstance(optimizer, Optimizer):
            raise InputError(
                f"train_step: optimizer must be a convc.optim optimizer (SGD, Adam), "
                f"got {type(optimizer).__name__}"
            )
        self.loss_graph, self.optimizer, self.seed = graph, optimizer, int(seed)
        self.loss = _loss_name(graph, loss)
        params = optimizer.bind(graph)
        self.params = list(params)
        masked, self.masks = masked_dropout(graph)
        self.graph = step_graph(masked, self.loss, optimizer, self.params)
        stats = {n: graph.values[n].data for n in running_statistics(graph)}
        self.variables: dict[str, np.ndarray] = {**params, **stats}
        self.engine = Engine(self.graph, interpret, threads)
        self.predictor: Predictor | None = None
        self.bessel = bessel_inputs(self.graph)
        self.labels = _label_inputs(graph)
        self._batches: dict[tuple, tuple] = {}

    @property
    def step_count(self) -> int:
        return self.optimizer.step_count

    def run(self, inputs: Mapping) -> dict[str, np.ndarray]:
        """One step on a batch given by input name; returns every output of the step graph."""
        shapes, unbias = self._per_batch(inputs)
        for name, classes, ignored in self.labels:
            check_labels(inputs[name], classes, ignored, f"input '{name}': ")
        step = self.optimizer.step_count + 1
        feeds = dict(inputs)
        feeds.update(self.variables)
        feeds.update(self.optimizer.state_inputs(self.params))
        feeds.update(self.optimizer.scalars(step))
        feeds.update(unbias)
        feeds.update(self._masks(shapes, step))
        outputs = self.engine(feeds)
        for name, array in outputs.items():
            if name.endswith(UPDATED):
                np.copyto(feeds[name[: -len(UPDATED)]], array)
        self.optimizer.step_count = step
        return outputs

    def __call__(self, *arrays: np.ndarray) -> float:
        """One step on the batch `arrays` (in the order of the loss graph's inputs); the loss."""
        names = list(self.loss_graph.inputs)
        if len(arrays) != len(names):
            raise InputError(
                f"training step of '{self.loss_graph.name}': got {len(arrays)} arrays for "
                f"the inputs {names}"
            )
        return float(self.run(dict(zip(names, arrays)))[self.loss])

    def predict(self, *arrays: np.ndarray) -> np.ndarray:
        """The eval-mode output of the module this step trains, with the current weights."""
        if self.predictor is None:
            raise GraphError(
                f"training step of '{self.loss_graph.name}': predict needs a step built from a "
                "module (train_step(model, loss=..., inputs=...))"
            )
        return self.predictor(*arrays)

    def _per_batch(self, inputs: Mapping) -> tuple[dict[str, tuple], dict[str, np.ndarray]]:
        """(dropout mask shapes, batch-norm `:unbias` scalars) for this batch, after checking it.

        The check (`bind_inputs`, symbolic) depends only on the arrays' names, shapes
        and dtypes, so its result is cached by them.
        """
        signature = _signature(inputs)
        hit = self._batches.get(signature) if signature is not None else None
        if hit is None:
            bindings = bind_inputs(self.loss_graph, inputs)

            def shape(value: str) -> tuple:
                return tuple(int(d) for d in self.graph.values[value].type.subs(bindings).shape)

            masks = {name: shape(name) for name in self.masks}
            hit = (masks, {k: _unbias(k, shape(v)) for k, v in self.bessel.items()})
            if signature is not None:
                self._batches[signature] = hit
        return hit

    def dropout_masks(self, inputs: Mapping, step: int) -> dict[str, np.ndarray]:
        """The dropout masks (keep / (1 - ratio), by mask input name) of step `step` on `inputs`."""
        return self._masks(self._per_batch(inputs)[0], step)

    def _masks(self, shapes: dict, step: int) -> dict[str, np.ndarray]:
        masks = {}
        for number, (name, ratio) in enumerate(self.masks.items()):
            shape = shapes[name]
            draws = np.random.default_rng([self.seed, step, number]).random(shape, np.float32)
            masks[name] = (draws >= ratio).astype(np.float32) * np.float32(1.0 / (1.0 - ratio))
        return masks

    def __repr__(self) -> str:
        engine = "interpreted" if self.engine.interpret else "compiled"
        return f"<TrainStep {self.loss_graph.name}: {self.optimizer!r}, {engine}>"


def _label_inputs(graph: Graph) -> list[tuple[str, int, int]]:
    """(input, classes, ignore_index) for each cross-entropy reading its labels from an input.

    Native code cannot raise, and a label outside the classes would silently
    count for nothing there, so the step checks labels before running.
    """
    found = []
    for node in graph.topological_nodes():
        labels = node.inputs[1] if node.op == "softmax_cross_entropy" else None
        if labels in graph.inputs:
            classes = int(graph.values[node.inputs[0]].type.shape[1])
            found.append((labels, classes, node.attrs["ignore_index"]))
    return found


def _unbias(name: str, shape: tuple) -> np.ndarray:
    """1 / (n - 1) for n values per channel of a batch-norm input of `shape`."""
    count = int(np.prod(shape)) // shape[1]
    if count < 2:
        raise InputError(
            f"batch norm '{name[: -len(':unbias')]}' in training mode: the batch gives {count} "
            f"value per channel (input shape {shape}); it needs at least 2"
        )
    return np.asarray(1.0 / (count - 1), np.float32)


def _signature(inputs: Mapping) -> tuple | None:
    """(name, shape, dtype) of every array, or None when some input is not an array."""
    if not isinstance(inputs, Mapping) or not all(type(a) is np.ndarray for a in inputs.values()):
        return None
    return tuple(sorted((str(n), a.shape, a.dtype.str) for n, a in inputs.items()))


class Predictor:
    """An inference graph whose variables are inputs fed from live arrays at every call.

    It is compiled at its first call, so a training run that never evaluates
    does not pay for it.
    """

    def __init__(self, graph: Graph, variables: Mapping[str, np.ndarray], engine_options: dict):
        present = [n for n in variables if n in graph.values and graph.values[n].kind == "param"]
        self.graph = rebuild(graph, as_inputs=present)
        self.variables = {n: variables[n] for n in present}
        self.data_inputs = list(graph.inputs)
        self.engine_options = engine_options
        self.engine: Engine | None = None

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        if self.engine is None:
            self.engine = Engine(self.graph, **self.engine_options)
        feeds = dict(zip(self.data_inputs, arrays), **self.variables)
        return self.engine(feeds)[self.graph.outputs[0]]


def train_step(
    model_or_graph,
    loss=None,
    optimizer: Optimizer | None = None,
    *,
    inputs=None,
    target: nn.Tensor | None = None,
    interpret: bool = False,
    threads: int | None = None,
    seed: int = 0,
) -> TrainStep:
    """A `TrainStep` for a module and a loss module, or for a graph with a scalar loss output.

    Module: `train_step(model, loss=nn.CrossEntropyLoss(), optimizer=opt,
    inputs=convc.Input("x", ("N", 1, 8, 8)))` traces `model` in train mode with
    the loss (outputs "loss" and "output"); the target input "target" defaults
    to int64 class indices for CrossEntropyLoss and to the output's type
    otherwise. Graph: `loss` names its scalar output (default: its only output
    besides running statistics, or "loss"). The step is compiled unless `interpret`; `seed` seeds dropout.
    """
    options = {"interpret": interpret, "threads": threads}
    if isinstance(model_or_graph, Graph):
        if inputs is not None or target is not None:
            raise GraphError("train_step: inputs= and target= are for modules; a graph has its own")
        return TrainStep(model_or_graph, optimizer, loss, seed=seed, **options)
    if not isinstance(model_or_graph, nn.Module):
        raise GraphError(
            f"train_step: expected a convc.nn.Module or a Graph, got {type(model_or_graph).__name__}"
        )
    model = model_or_graph
    inputs = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    if loss is None or inputs == [None]:
        raise GraphError("train_step of a module needs loss= (a loss module) and inputs=")
    graph = _trace_loss(model, loss, inputs, target)
    step = TrainStep(graph, optimizer, "loss", seed=seed, **options)
    step.predictor = Predictor(_trace_mode(model, False, inputs), step.variables, options)
    return step


@contextmanager
def _mode(model: nn.Module, training: bool):
    """Put every submodule of `model` in train or eval mode for a while, then restore each."""
    before = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, mode in before:
            object.__setattr__(module, "training", mode)


def _trace_mode(model: nn.Module, training: bool, inputs: list) -> Graph:
    with _mode(model, training):
        return nn.trace(model, *inputs)


def _trace_loss(model: nn.Module, loss, inputs: list, target) -> Graph:
    """The train-mode graph of `loss(model(*inputs), target)` with outputs loss and output."""
    if target is None:
        forward = _trace_mode(model, True, inputs)
        target = _default_target(loss, forward.values[forward.outputs[0]].type)

    def loss_of(*tensors):
        prediction = model(*tensors[:-1])
        return {"loss": loss(prediction, tensors[-1]), "output": prediction}

    with _mode(model, True):
        return nn.trace(loss_of, *inputs, target, name=f"{type(model).__name__.lower()}_train")


def _default_target(loss, out_type) -> nn.Tensor:
    if isinstance(loss, nn.CrossEntropyLoss):
        return nn.Input("target", (out_type.shape[0], *out_type.shape[2:]), "int64")
    return nn.Input("target", out_type.shape, out_type.dtype)


def _loss_name(graph: Graph, loss: str | None) -> str:
    if loss is not None:
        return loss
    results = [o for o in graph.outputs if not o.endswith(UPDATED)]  # not running statistics
    if len(results) == 1:
        return results[0]
    if "loss" in results:
        return "loss"
    raise GraphError(
        f"training step of graph '{graph.name}': it has outputs {graph.outputs}; name the "
        "loss with loss="
    )
