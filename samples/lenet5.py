"""LeNet-5 (LeCun et al., 1998) on 1x32x32 images, in its modern rendition.

conv 6@5x5 -> pool 2 -> conv 16@5x5 -> pool 2 -> fc 120 -> fc 84 -> fc 10,
61,706 parameters. As in today's renditions (and PyTorch's tutorial), the
activations are ReLU and the subsampling layers are max pools; the original
used scaled tanh and trainable average subsampling, and a partially
connected C3 layer.

Run `python samples/lenet5.py` to print the graph.
"""

from __future__ import annotations

import numpy as np

import convc
from convc import nn

INPUT_SHAPE = (1, 32, 32)
NUM_CLASSES = 10


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The inference graph for input x: f32[batch, 1, 32, 32] -> logits f32[batch, 10]."""
    nn.manual_seed(seed)
    model = LeNet5().eval()
    return nn.trace(model, convc.Input("x", (batch, *INPUT_SHAPE)), name="lenet5")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    return nn.sample_inputs({"x": (batch, *INPUT_SHAPE)}, seed)


if __name__ == "__main__":
    print(build())
