"""MobileNetV2 (Sandler et al., 2018) as torchvision defines it: 3x224x224, 1000 classes.

Inverted residual blocks: a 1x1 expansion (ratio t), a 3x3 depthwise
convolution (groups = channels) and a linear 1x1 projection, each with batch
norm, ReLU6 after the first two, and a residual add when the stride is 1 and
the channel count is kept. 3,504,872 parameters named as torchvision's
`mobilenet_v2` state_dict (`features.1.conv.0.0.weight`, `classifier.1.bias`).
"""

from __future__ import annotations

import numpy as np

import convc
from convc import nn

INPUT_SHAPE = (3, 224, 224)
NUM_CLASSES = 1000
# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn_relu6(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    """torchvision's Conv2dNormActivation: conv (no bias, same padding), BN, ReLU6."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_ch * expand_ratio
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers = [conv_bn_relu6(in_ch, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2):
        super().__init__()
        layers, channels = [conv_bn_relu6(3, 32, stride=2)], 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        layers.append(conv_bn_relu6(channels, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(x.flatten(1))


def build(batch="N", seed: int = 0) -> convc.Graph:
    """The inference graph for x: f32[batch, 3, 224, 224] -> logits f32[batch, 1000]."""
    nn.manual_seed(seed)
    model = MobileNetV2().eval()
    return nn.trace(model, convc.Input("x", (batch, *INPUT_SHAPE)), name="mobilenet_v2")


def example_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    return nn.sample_inputs({"x": (batch, *INPUT_SHAPE)}, seed)


if __name__ == "__main__":
    print(build())
