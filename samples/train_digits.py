"""Train a small LeNet-style CNN on scikit-learn's handwritten digits with convc.

The data set is `sklearn.datasets.load_digits`: 1,797 grey 8x8 images of the
digits 0-9 (pixel values 0..16), shipped inside scikit-learn (the optional
extra `samples`), so nothing is downloaded. A fixed, stratified 80/20 split
gives 1,437 training and 360 test images.

The network: conv 16@3x3 (same) -> ReLU -> max-pool 2 -> conv 32@3x3 (same) ->
ReLU -> max-pool 2 -> fc 64 -> ReLU -> dropout 0.25 -> fc 10 (10,314 weights).
Adam (lr 0.003, or SGD with momentum 0.9, lr 0.05) with cosine annealing over
15 epochs of batches of 16 reaches 98.1% test accuracy with seed 0 (97.5-98.3%
with seeds 0-2). Each batch runs one `convc.train_step`: forward, backward and the optimizer
update in one native call (or interpreted with --interpret), the weights
updated in place; test accuracy uses the eval-mode graph with the same weights.

Run `python samples/train_digits.py [--epochs 15] [--optimizer adam|sgd]` or
`convc train`. `build(batch)` and `example_inputs` make it a sample for
`convc show` / `convc run` too (the untrained inference graph).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

import convc
from convc import nn

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10
DEFAULTS = {"sgd": 0.05, "adam": 3e-3}  # learning rate by optimizer


class DigitsNet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.25):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.pool1(self.conv1(x).relu())
        x = self.pool2(self.conv2(x).relu())
        x = self.fc1(self.flatten(x)).relu()
        return self.fc2(self.dropout(x))


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The (untrained) inference graph: x f32[batch, 1, 8, 8] -> logits f32[batch, 10]."""
    nn.manual_seed(seed)
    return nn.trace(DigitsNet().eval(), convc.Input("x", (batch, *INPUT_SHAPE)), name="digits")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    x_train, _, _, _ = load_data(seed)
    return {"x": x_train[:batch]}


def load_data(seed: int = 0):
    """(x_train, y_train, x_test, y_test): images scaled to [0, 1] as f32[n, 1, 8, 8], int64 labels."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise convc.ConvcError(
            "train_digits needs scikit-learn (pip install scikit-learn, or the extra 'samples')"
        ) from None
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    return x_train, y_train, x_test, y_test


@dataclass
class Epoch:
    """What one epoch measured."""

    number: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float


class ProgressBar:
    """A one-line text progress bar, redrawn in place on a terminal, printed once otherwise."""

    def __init__(self, total: int, label: str, out=sys.stdout, width: int = 30):
        self.total, self.label, self.out, self.width = total, label, out, width
        self.live = hasattr(out, "isatty") and out.isatty()

    def update(self, done: int, note: str) -> None:
        if self.live:
            self.out.write("\r" + self._line(done, note))
            self.out.flush()

    def finish(self, note: str) -> None:
        self.out.write(("\r" if self.live else "") + self._line(self.total, note) + "\n")
        self.out.flush()

    def _line(self, done: int, note: str) -> str:
        filled = self.width * done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {done:>{len(str(self.total))}}/{self.total} {note}"


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def train(
    epochs: int = 15,
    lr: float | None = None,
    optimizer: str = "adam",
    batch_size: int = 16,
    seed: int = 0,
    interpret: bool = False,
    threads: int | None = None,
    out=sys.stdout,
    save: str | None = None,
) -> list[Epoch]:
    """Train DigitsNet and print per-epoch loss and accuracy; returns the epochs' records.

    `save` names an .npz file that receives the trained state_dict.
    """
    x_train, y_train, x_test, y_test = load_data(seed)
    print(f"{len(x_train)} training / {len(x_test)} test images", file=out)
    model, opt, step = _training_step(optimizer, lr, seed, interpret, threads, out)
    order = np.random.default_rng(seed)
    history, base_lr = [], opt.lr
    for number in range(1, epochs + 1):
        opt.lr = cosine_lr(base_lr, number, epochs)
        record = _epoch(step, number, epochs, x_train, y_train, batch_size, order, out)
        record.test_accuracy = accuracy(step.predict(x_test), y_test)
        print(
            f"  loss {record.loss:.4f}  train acc {record.train_accuracy:.2%}  "
            f"test acc {record.test_accuracy:.2%}  ({record.seconds:.2f} s)",
            file=out,
        )
        history.append(record)
    if save:
        np.savez(save, **model.state_dict())
        print(f"trained weights written to {save}", file=out)
    return history


def _training_step(optimizer: str, lr: float | None, seed: int, interpret, threads, out):
    """(model, optimizer, convc.TrainStep) for a freshly initialised DigitsNet."""
    nn.manual_seed(seed)
    model = DigitsNet()
    opt = _optimizer(optimizer, model, lr)
    start = time.perf_counter()
    step = convc.train_step(
        model,
        loss=nn.CrossEntropyLoss(),
        optimizer=opt,
        inputs=convc.Input("x", ("N", *INPUT_SHAPE)),
        interpret=interpret,
        threads=threads,
        seed=seed,
    )
    engine = "interpreted" if interpret else "compiled"
    print(f"{opt!r}; step {engine} in {time.perf_counter() - start:.2f} s", file=out)
    return model, opt, step


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from `base` (epoch 1) towards 0 (the learning rate is a run-time input
    of the compiled step, so changing it needs no recompilation)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


def _optimizer(name: str, model: nn.Module, lr: float | None):
    if name not in DEFAULTS:
        raise convc.InputError(f"--optimizer {name!r}: expected one of {sorted(DEFAULTS)}")
    lr = DEFAULTS[name] if lr is None else lr
    if name == "sgd":
        return convc.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return convc.optim.Adam(model.parameters(), lr=lr)


def _epoch(step, number, epochs, x, y, batch_size, order, out) -> Epoch:
    """One pass over the shuffled training set."""
    perm = order.permutation(len(x))
    batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    bar = ProgressBar(len(batches), f"epoch {number:>{len(str(epochs))}}/{epochs}", out)
    start, total_loss, correct = time.perf_counter(), 0.0, 0
    for k, batch in enumerate(batches, start=1):
        outputs = step.run({"x": x[batch], "target": y[batch]})
        total_loss += float(outputs["loss"]) * len(batch)
        correct += int(np.sum(np.argmax(outputs["output"], axis=1) == y[batch]))
        bar.update(k, f"loss {float(outputs['loss']):.4f}")
    seconds = time.perf_counter() - start
    bar.finish(f"{seconds:.2f} s")
    return Epoch(number, total_loss / len(x), correct / len(x), float("nan"), seconds)


def _positive_int(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options (shared by this script and `convc train`)."""
    parser.add_argument("--epochs", type=_positive_int, default=15, help="passes over the data")
    parser.add_argument("--lr", type=float, help="initial learning rate (sgd 0.05, adam 0.003)")
    parser.add_argument("--optimizer", choices=sorted(DEFAULTS), default="adam")
    parser.add_argument("--batch-size", type=_positive_int, default=16, help="images a step")
    parser.add_argument("--seed", type=int, default=0, help="split, weights, order and dropout")
    parser.add_argument("--threads", type=_positive_int, help="threads of the compiled step")
    parser.add_argument("--interpret", action="store_true", help="use the reference interpreter")
    parser.add_argument("--save", metavar="OUT.npz", help="write the trained weights (state_dict)")


def run(args: argparse.Namespace, out=sys.stdout) -> list[Epoch]:
    """Train with parsed options and print the final test accuracy."""
    history = train(
        args.epochs,
        args.lr,
        args.optimizer,
        args.batch_size,
        args.seed,
        args.interpret,
        args.threads,
        out,
        args.save,
    )
    if history:
        print(f"final test accuracy: {history[-1].test_accuracy:.2%}", file=out)
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())
