"""VGG-11 (configuration A of Simonyan & Zisserman, 2014) as torchvision defines it.

Eight 3x3 convolutions (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M)
with ReLU and 2x2 max pools on 3x224x224, then three fully connected layers;
132,863,336 parameters named as torchvision's `vgg11` state_dict. The
adaptive average pool to 7x7 is an identity at 224x224.
"""

from __future__ import annotations

import numpy as np

import convc
from convc import nn

INPUT_SHAPE = (3, 224, 224)
NUM_CLASSES = 1000
CONFIG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def make_features(config) -> nn.Sequential:
    """3x3 same-size convolutions with ReLU; "M" is a 2x2 max pool."""
    layers, channels = [], 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, config=CONFIG_A, num_classes: int = NUM_CLASSES, dropout: float = 0.5):
        super().__init__()
        self.features = make_features(config)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The inference graph for x: f32[batch, 3, 224, 224] -> logits f32[batch, 1000]."""
    nn.manual_seed(seed)
    model = VGG().eval()
    return nn.trace(model, convc.Input("x", (batch, *INPUT_SHAPE)), name="vgg11")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    return nn.sample_inputs({"x": (batch, *INPUT_SHAPE)}, seed)


if __name__ == "__main__":
    print(build())
