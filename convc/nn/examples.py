"""Example inputs for models written with convc.nn (the samples' `example_inputs`).

Stage: DSL. Input: the shapes of a model's inputs, by name; output: one
standard-normal float32 array per input. One generator seeded with `seed`
draws the arrays in the order the shapes are given, so a seed names the same
inputs on every run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def sample_inputs(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """{name: standard-normal float32 array of shapes[name]}, drawn in order from `seed`."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
