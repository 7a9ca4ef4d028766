"""AlexNet (Krizhevsky et al., 2012) as torchvision defines it: 3x224x224, 1000 classes.

Five convolutions (64@11x11/4, 192@5x5, 384, 256, 256 @3x3) with three max
pools, then three fully connected layers with dropout; 61,100,840
parameters, named as in torchvision's state_dict (`features.0.weight`,
`classifier.1.weight`, ...), so its pretrained weights load directly. The
adaptive average pool to 6x6 is an identity at 224x224; dropout records
nothing in eval mode.
"""

from __future__ import annotations

import numpy as np

import convc
from convc import nn

INPUT_SHAPE = (3, 224, 224)
NUM_CLASSES = 1000


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The inference graph for x: f32[batch, 3, 224, 224] -> logits f32[batch, 1000]."""
    nn.manual_seed(seed)
    model = AlexNet().eval()
    return nn.trace(model, convc.Input("x", (batch, *INPUT_SHAPE)), name="alexnet")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    return nn.sample_inputs({"x": (batch, *INPUT_SHAPE)}, seed)


if __name__ == "__main__":
    print(build())
