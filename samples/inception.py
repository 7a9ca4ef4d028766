"""A small GoogLeNet-style network (Szegedy et al., 2014) on 3x32x32 images, 10 classes.

Each Inception block runs four branches on the same input and concatenates
them along the channels: a 1x1 conv; 1x1 reduce then 3x3; 1x1 reduce then
5x5; 3x3 max pool (stride 1) then 1x1 projection. Every conv is followed by
batch norm and ReLU (torchvision's BasicConv2d). Stem conv, two blocks with a
max pool between, a third block, global average pooling, dropout and a
linear classifier.
"""

from __future__ import annotations

import numpy as np

import convc
from convc import nn
from convc.nn import functional as F

INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10


class BasicConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four branches concatenated: out = ch1x1 + ch3x3 + ch5x5 + pool_proj channels."""

    def __init__(self, in_ch, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(in_ch, ch1x1, 1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_ch, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_ch, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 5, padding="same")
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), BasicConv2d(in_ch, pool_proj, 1)
        )

    def forward(self, x):
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return F.cat(branches, 1)


class SmallInception(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.stem = BasicConv2d(3, 64, 3, padding=1)
        self.inception3a = Inception(64, 32, 48, 64, 8, 16, 16)  # -> 128 channels
        self.inception3b = Inception(128, 64, 64, 96, 16, 32, 32)  # -> 224
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)  # 32 -> 16
        self.inception4a = Inception(224, 96, 48, 104, 8, 24, 32)  # -> 256
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.inception3b(self.inception3a(self.stem(x)))
        x = self.inception4a(self.maxpool(x))
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x))


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The inference graph for x: f32[batch, 3, 32, 32] -> logits f32[batch, 10]."""
    nn.manual_seed(seed)
    model = SmallInception().eval()
    return nn.trace(model, convc.Input("x", (batch, *INPUT_SHAPE)), name="inception")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    return nn.sample_inputs({"x": (batch, *INPUT_SHAPE)}, seed)


if __name__ == "__main__":
    print(build())
