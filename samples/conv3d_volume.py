"""A 3-D convolutional network for volumes: 1x16x16x16 voxels, 4 classes.

Conv3d + BN + ReLU + 2x2x2 max pool (16 -> 8), conv + ReLU + 2x2x2 average
pool (8 -> 4), a 3x3x3 conv, global average pooling and a linear classifier.
"""

from __future__ import annotations

import numpy as np

import convc
from convc import nn

INPUT_SHAPE = (1, 16, 16, 16)
NUM_CLASSES = 4


class VolumeNet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 8, 3, padding=1),
            nn.BatchNorm3d(8),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool3d(2),
            nn.Conv3d(16, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The inference graph for x: f32[batch, 1, 16, 16, 16] -> logits f32[batch, 4]."""
    nn.manual_seed(seed)
    model = VolumeNet().eval()
    return nn.trace(model, convc.Input("x", (batch, *INPUT_SHAPE)), name="conv3d_volume")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    return nn.sample_inputs({"x": (batch, *INPUT_SHAPE)}, seed)


if __name__ == "__main__":
    print(build())
