"""A 1-D convolutional network for sequences: 1x128 signals, 5 classes.

Three Conv1d stages (kernel 7, 5 'same', and 3 dilated by 2) with batch norm,
ReLU and max pooling shrink the 128 samples to 32 positions of 64 features,
averaged over time and classified by a linear layer.
"""

from __future__ import annotations

import numpy as np

import convc
from convc import nn

INPUT_SHAPE = (1, 128)
NUM_CLASSES = 5


class SequenceNet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, 7, padding=3),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding="same"),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 64, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The inference graph for x: f32[batch, 1, 128] -> logits f32[batch, 5]."""
    nn.manual_seed(seed)
    model = SequenceNet().eval()
    return nn.trace(model, convc.Input("x", (batch, *INPUT_SHAPE)), name="conv1d_sequence")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    return nn.sample_inputs({"x": (batch, *INPUT_SHAPE)}, seed)


if __name__ == "__main__":
    print(build())
