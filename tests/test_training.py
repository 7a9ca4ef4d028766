"""Training: optimizer formulas, the training step (interpreted, compiled, PyTorch), dropout
masks, errors, and the digits sample.

References: PyTorch's update formulas written out in NumPy by hand (and torch.optim itself
where torch is installed); the interpreter for the compiled step; PyTorch autograd for the
losses of a few steps from the same initial weights, data order and dropout masks.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convc
from convc import nn
from convc.optim import SGD, Adam

RTOL, ATOL = 1e-5, 1e-6  # float32 arithmetic done in a different order
SAMPLES = pathlib.Path(__file__).resolve().parent.parent / "samples"

# ----- optimizer formulas -------------------------------------------------------------------


def numpy_sgd(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's single-tensor update (dampening 0), step by step in NumPy."""
    g = g + weight_decay * p
    if momentum:
        buf = g.copy() if buf is None else momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def numpy_adam(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """torch.optim.Adam's single-tensor update, step t (from 1), in NumPy."""
    b1, b2 = betas
    g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
    return p - lr / (1 - b1**t) * m / denom, m, v


def update_graph(optimizer, shape=(3, 5)) -> convc.Graph:
    """A graph taking w and its gradient g and returning the optimizer's updates."""
    graph = convc.Graph("update")
    graph.add_input("w", shape)
    graph.add_input("g", shape)
    optimizer.declare(graph, ["w"])
    names = optimizer.append_updates(graph, "w", "g")
    graph.set_outputs(*names)
    return graph


def run_updates(optimizer, steps: int, compiled: bool, seed: int = 0):
    """w after each of `steps` updates with random gradients (state carried by the caller)."""
    rng = np.random.default_rng(seed)
    graph = update_graph(optimizer)
    run = convc.compile(graph).run if compiled else lambda f: convc.interpret(graph, f)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    state = {f"w:{s}": np.zeros_like(w) for s in optimizer.state_names}
    grads = [rng.standard_normal(w.shape).astype(np.float32) for _ in range(steps)]
    history = [w]
    for t, g in enumerate(grads, start=1):
        out = run({"w": w, "g": g, **state, **optimizer.scalars(t)})
        state = {k: out[k + ":updated"] for k in state}
        w = out["w:updated"]
        history.append(w)
    return history, grads


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.001, "nesterov": True},
]
ADAM_CASES = [
    {"lr": 1e-3},
    {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01},
]


@pytest.mark.parametrize("options", SGD_CASES)
def test_sgd_matches_numpy(options):
    history, grads = run_updates(SGD(["w"], **options), steps=4, compiled=False)
    p, buf = history[0].astype(np.float64), None
    for g, got in zip(grads, history[1:]):
        p, buf = numpy_sgd(p, g, buf, **options)
        np.testing.assert_allclose(got, p, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("options", ADAM_CASES)
def test_adam_matches_numpy(options):
    history, grads = run_updates(Adam(["w"], **options), steps=4, compiled=False)
    p = history[0].astype(np.float64)
    m = v = np.zeros_like(p)
    for t, (g, got) in enumerate(zip(grads, history[1:]), start=1):
        p, m, v = numpy_adam(p, g, m, v, t, **options)
        np.testing.assert_allclose(got, p, rtol=RTOL, atol=ATOL)


@settings(max_examples=15, deadline=None)
@given(
    lr=st.floats(1e-4, 1.0),
    momentum=st.floats(0.0, 0.99),
    weight_decay=st.sampled_from([0.0, 1e-4, 0.05]),
    nesterov=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sgd_hyperparameters(lr, momentum, weight_decay, nesterov, seed):
    options = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
    options["nesterov"] = nesterov and momentum > 0
    history, grads = run_updates(SGD(["w"], **options), steps=3, compiled=False, seed=seed)
    p, buf = history[0].astype(np.float64), None
    for g, got in zip(grads, history[1:]):
        p, buf = numpy_sgd(p, g, buf, **options)
        np.testing.assert_allclose(got, p, rtol=RTOL, atol=ATOL)


@settings(max_examples=15, deadline=None)
@given(
    lr=st.floats(1e-4, 0.1),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-8, 1e-6, 1e-3]),
    seed=st.integers(0, 2**16),
)
def test_adam_hyperparameters(lr, beta1, beta2, eps, seed):
    options = {"lr": lr, "betas": (beta1, beta2), "eps": eps}
    history, grads = run_updates(Adam(["w"], **options), steps=3, compiled=False, seed=seed)
    p = history[0].astype(np.float64)
    m = v = np.zeros_like(p)
    for t, (g, got) in enumerate(zip(grads, history[1:]), start=1):
        p, m, v = numpy_adam(p, g, m, v, t, **options)
        np.testing.assert_allclose(got, p, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "optimizer", [SGD(["w"], **SGD_CASES[-1]), Adam(["w"], **ADAM_CASES[-1])], ids=repr
)
def test_compiled_updates_equal_interpreted(optimizer):
    interpreted, _ = run_updates(optimizer, steps=3, compiled=False)
    compiled, _ = run_updates(optimizer, steps=3, compiled=True)
    for a, b in zip(interpreted, compiled):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "kind, options", [("SGD", c) for c in SGD_CASES] + [("Adam", c) for c in ADAM_CASES]
)
def test_updates_match_torch_optim(kind, options):
    torch = pytest.importorskip("torch")
    optimizer = (SGD if kind == "SGD" else Adam)(["w"], **options)
    history, grads = run_updates(optimizer, steps=4, compiled=False)
    w = torch.nn.Parameter(torch.from_numpy(history[0].copy()))
    reference = getattr(torch.optim, kind)([w], **options)
    for g, got in zip(grads, history[1:]):
        w.grad = torch.from_numpy(g)
        reference.step()
        np.testing.assert_allclose(got, w.detach().numpy(), rtol=RTOL, atol=ATOL)


def test_update_formulas_are_printed():
    graph = update_graph(SGD(["w"], lr=0.1, momentum=0.9, nesterov=True))
    text = graph.to_text()
    assert "w:momentum_buffer:updated[n, c] = g[n, c] + 0.9*w:momentum_buffer[n, c]" in text
    nesterov = "-(g[n, c] + 0.9*w:momentum_buffer:updated[n, c])*optimizer.lr[0] + w[n, c]"
    assert f"w:updated[n, c] = {nesterov}" in text


# ----- the training step --------------------------------------------------------------------

BATCH, CLASSES = 5, 4


class Small(nn.Module):
    """conv -> batch norm -> relu -> max pool -> dropout -> linear, on 1x6x6 images."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)  # BN follows
        self.bn = nn.BatchNorm2d(3)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(3 * 3 * 3, CLASSES)

    def forward(self, x):
        x = self.pool(self.bn(self.conv(x)).relu())
        return self.fc(self.drop(x.flatten()))


def batches(count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [
        (
            rng.standard_normal((BATCH, 1, 6, 6)).astype(np.float32),
            rng.integers(0, CLASSES, BATCH).astype(np.int64),
        )
        for _ in range(count)
    ]


def make_step(optimizer: str, interpret: bool, seed: int = 0, threads: int | None = None):
    nn.manual_seed(seed)
    model = Small()
    opt = (
        SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        if optimizer == "sgd"
        else Adam(model.parameters(), lr=0.01)
    )
    step = convc.train_step(
        model,
        loss=nn.CrossEntropyLoss(),
        optimizer=opt,
        inputs=convc.Input("x", ("N", 1, 6, 6)),
        interpret=interpret,
        threads=threads,
        seed=7,
    )
    return model, step


def train_losses(optimizer: str, interpret: bool, steps: int = 3, threads: int | None = None):
    model, step = make_step(optimizer, interpret, threads=threads)
    losses = [step(x, y) for x, y in batches(steps)]
    return losses, {k: v.copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def interpreted():
    return {opt: train_losses(opt, interpret=True) for opt in ("sgd", "adam")}


@pytest.mark.parametrize("optimizer, threads", [("sgd", 2), ("adam", 2), ("sgd", 1)])
def test_compiled_step_equals_interpreted(interpreted, optimizer, threads):
    losses, state = train_losses(optimizer, interpret=False, threads=threads)
    ref_losses, ref_state = interpreted[optimizer]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name, array in ref_state.items():
        np.testing.assert_allclose(state[name], array, rtol=1e-4, atol=1e-5, err_msg=name)


def test_step_updates_module_in_place_and_learns():
    model, step = make_step("adam", interpret=True)
    weight = model.fc.weight.data
    before = weight.copy()
    x, y = batches(1)[0]
    losses = [step(x, y) for _ in range(8)]
    assert model.fc.weight.data is weight and not np.array_equal(weight, before)
    assert losses[-1] < losses[0]
    assert step.step_count == 8
    assert not np.allclose(model.bn.running_mean.data, 0)


def test_predict_uses_the_current_weights():
    model, step = make_step("sgd", interpret=True)
    x, y = batches(1)[0]
    for _ in range(2):
        step(x, y)
    eval_graph = nn.trace(model.eval(), convc.Input("x", ("N", 1, 6, 6)))
    expected = convc.interpret(eval_graph, {"x": x})[eval_graph.outputs[0]]
    np.testing.assert_allclose(step.predict(x), expected, rtol=1e-6, atol=1e-6)


def test_a_graph_trains_the_named_parameters_in_place():
    nn.manual_seed(0)
    model, loss = Small(), nn.CrossEntropyLoss()
    graph = nn.trace(
        lambda x, y: loss(model(x), y),
        convc.Input("x", ("N", 1, 6, 6)),
        convc.Input("y", ("N",), "int64"),
    )
    fc, conv = graph.values["fc.weight"].data, graph.values["conv.weight"].data
    fc_before, conv_before = fc.copy(), conv.copy()
    step = convc.train_step(graph, optimizer=SGD(["fc.weight"], lr=0.5), interpret=True)
    assert step.loss == "softmax_cross_entropy"
    x, y = batches(1)[0]
    for _ in range(3):
        step(x, y)
    assert not np.array_equal(fc, fc_before) and np.array_equal(conv, conv_before)
    assert "conv.weight" not in step.graph.inputs and "fc.weight" in step.graph.inputs


def torch_losses(optimizer: str, steps: int = 3):
    """The same steps in PyTorch: same weights, data and dropout masks."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model, step = make_step(optimizer, interpret=True)
    weights = {
        k: torch.nn.Parameter(torch.from_numpy(p.data.copy())) for k, p in model.named_parameters()
    }
    stats = {k: torch.from_numpy(b.data.copy()) for k, b in model.named_buffers()}
    if optimizer == "sgd":
        opt = torch.optim.SGD(weights.values(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = torch.optim.Adam(weights.values(), lr=0.01)
    losses = []
    for t, (x, y) in enumerate(batches(steps), start=1):
        (mask,) = step.dropout_masks({"x": x, "target": y}, t).values()
        h = F.conv2d(torch.from_numpy(x), weights["conv.weight"], padding=1)
        h = F.batch_norm(
            h,
            stats["bn.running_mean"],
            stats["bn.running_var"],
            weights["bn.weight"],
            weights["bn.bias"],
            training=True,
            momentum=0.1,
        )
        h = F.max_pool2d(F.relu(h), 2).flatten(1) * torch.from_numpy(mask)
        loss = F.cross_entropy(
            F.linear(h, weights["fc.weight"], weights["fc.bias"]), torch.from_numpy(y)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, {k: w.detach().numpy() for k, w in weights.items()}, stats


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_step_matches_pytorch(interpreted, optimizer):
    losses, weights, stats = torch_losses(optimizer)
    ref_losses, state = interpreted[optimizer]
    np.testing.assert_allclose(ref_losses, losses, rtol=1e-5)
    for name, array in weights.items():
        np.testing.assert_allclose(state[name], array, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(
        state["bn.running_mean"], stats["bn.running_mean"], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        state["bn.running_var"], stats["bn.running_var"], rtol=1e-5, atol=1e-6
    )


def test_regression_with_mse_matches_pytorch():
    torch = pytest.importorskip("torch")
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv1d(4, 1, 3, padding=1))
    twin = torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv1d(4, 1, 3, padding=1)
    )
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    options = {"lr": 0.1, "momentum": 0.9, "nesterov": True}
    reference = torch.optim.SGD(twin.parameters(), **options)
    step = convc.train_step(
        model,
        nn.MSELoss(),
        SGD(model.named_parameters(), **options),
        inputs=convc.Input("x", ("N", 2, 16)),
        interpret=True,
    )
    assert str(step.loss_graph.values["target"].type) == "f32[N,1,16]"  # the output's type
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((5, 2, 16), dtype=np.float32)
        target = rng.standard_normal((5, 1, 16), dtype=np.float32)
        loss = torch.nn.functional.mse_loss(twin(torch.from_numpy(x)), torch.from_numpy(target))
        reference.zero_grad()
        loss.backward()
        reference.step()
        np.testing.assert_allclose(step(x, target), float(loss.detach()), rtol=1e-5)
    for name, array in twin.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[name], array.numpy(), rtol=1e-4, atol=1e-6)


# ----- dropout ------------------------------------------------------------------------------


def test_dropout_masks_are_seeded_per_step():
    _, step = make_step("sgd", interpret=True)
    _, again = make_step("sgd", interpret=True)
    x, y = batches(1)[0]
    batch = {"x": x, "target": y}
    (first,) = step.dropout_masks(batch, 1).values()
    (same,) = again.dropout_masks(batch, 1).values()
    (second,) = step.dropout_masks(batch, 2).values()
    np.testing.assert_array_equal(first, same)
    assert not np.array_equal(first, second)
    assert first.shape == (BATCH, 27) and first.dtype == np.float32
    assert set(np.unique(first)) <= {0.0, np.float32(1 / 0.7)}
    step.seed = 8
    (other_seed,) = step.dropout_masks(batch, 1).values()
    assert not np.array_equal(first, other_seed)


def test_dropout_becomes_a_mask_input_and_keeps_the_expected_fraction():
    graph = nn.trace(nn.Dropout(0.25), convc.Input("x", ("N", 1000)))
    masked, masks = convc.training.masked_dropout(graph)
    assert masks == {"dropout:mask": 0.25}
    assert [n.op for n in masked.topological_nodes()] == ["mul"]
    _, step = make_step("sgd", interpret=True)
    x, y = batches(1)[0]
    batch = {"x": x, "target": y}
    kept = [np.mean(m > 0) for t in range(1, 41) for m in step.dropout_masks(batch, t).values()]
    assert abs(np.mean(kept) - 0.7) < 0.03


# ----- errors -------------------------------------------------------------------------------


def test_unknown_parameter_name_is_reported():
    nn.manual_seed(0)
    model = Small()
    opt = SGD(["fc.wieght"], lr=0.1)
    with pytest.raises(convc.GraphError, match="fc.wieght"):
        convc.train_step(model, nn.CrossEntropyLoss(), opt, inputs=convc.Input("x", ("N", 1, 6, 6)))


def test_wrong_label_dtype_is_reported():
    _, step = make_step("sgd", interpret=True)
    x, y = batches(1)[0]
    with pytest.raises(convc.InputError, match="'target' has dtype float32"):
        step(x, y.astype(np.float32))


@pytest.mark.parametrize("interpret", [True, False])
def test_labels_outside_the_classes_are_reported(interpret):
    _, step = make_step("sgd", interpret=interpret)
    x, y = batches(1)[0]
    y[3] = CLASSES
    with pytest.raises(convc.InputError, match=r"'target': label 4 at index \(3,\) is not a class"):
        step(x, y)
    assert step.step_count == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SGD(["w"], lr=-0.1), "lr=-0.1"),
        (lambda: SGD(["w"], lr=0.1, nesterov=True), "nesterov"),
        (lambda: Adam(["w"], betas=(0.9, 1.0)), r"betas\[1\]=1.0"),
        (lambda: SGD([], lr=0.1), "empty"),
        (lambda: SGD([3.0], lr=0.1), "float 3.0"),
        (lambda: setattr(SGD(["w"], lr=0.1), "lr", float("nan")), "lr=nan"),
    ],
)
def test_bad_optimizer_arguments(make, message):
    with pytest.raises(convc.InputError, match=message):
        make()


def test_loss_must_be_a_scalar():
    loss = nn.CrossEntropyLoss(reduction="none")
    graph = nn.trace(
        lambda s, y: loss(s, y), convc.Input("s", ("N", 3)), convc.Input("y", ("N",), "int64")
    )
    graph.add_param("unused", np.zeros(2, np.float32))
    with pytest.raises(convc.GraphError, match="expected a float scalar"):
        convc.train_step(graph, optimizer=SGD(["unused"], lr=0.1))


def test_optimizer_must_be_a_convc_optimizer():
    graph = nn.trace(lambda s: s, convc.Input("s", ("N", 3)))
    with pytest.raises(convc.InputError, match="optimizer must be"):
        convc.train_step(graph, optimizer="sgd")


# ----- the digits sample --------------------------------------------------------------------


def load_sample():
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("train_digits", SAMPLES / "train_digits.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_digits_reach_97_percent(capsys, optimizer):
    history = load_sample().train(optimizer=optimizer)
    out = capsys.readouterr().out
    assert "epoch 15/15" in out and "test acc" in out
    assert history[-1].test_accuracy >= 0.97


def test_convc_train_runs_a_short_training(capsys):
    pytest.importorskip("sklearn")
    from convc.cli import main

    assert main(["train", "--epochs", "3", "--optimizer", "sgd"]) == 0
    out = capsys.readouterr().out
    assert "SGD(lr=0.05, momentum=0.9" in out and "step compiled in" in out
    assert out.count("train acc") == 3 and "epoch 3/3 [" in out
    final = float(out.split("final test accuracy: ")[1].split("%")[0])
    assert final > 85.0


def test_convc_train_rejects_bad_options(capsys):
    pytest.importorskip("sklearn")
    from convc.cli import main

    assert main(["train", "--epochs", "0"]) == 1
    assert "--epochs: expected a positive integer, got '0'" in capsys.readouterr().err
    assert main(["train", "--lr", "-1", "--epochs", "1"]) == 1
    assert "lr=-1.0 must be a finite number >= 0" in capsys.readouterr().err


def test_bench_training_suite_checks_pytorch_against_the_interpreter():
    pytest.importorskip("torch")
    from convc.bench.training import run_training_case, training_cases

    case = next(c for c in training_cases(batches=[2]) if c.name.startswith("LeNet-5"))
    result = run_training_case(case, ["numpy", "torch", "onnxruntime"], 1, repeat=1, block_s=0)
    assert result.peers["numpy"].max_err == 0.0
    assert result.peers["torch"].note == "" and result.peers["torch"].max_err < 1e-5
    assert result.peers["torch"].median_s > 0
    assert result.peers["onnxruntime"].note in ("no training step", "not installed")
    assert result.macs == 3 * 2 * 416_520  # LeNet-5's forward MACs per image, times three
