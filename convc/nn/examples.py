"""Example inputs for models (the samples' `example_inputs`, and any graph's).

Stage: DSL. Input: the shapes of a model's inputs by name (`sample_inputs`), or a
graph and bindings of its symbols (`random_inputs`); output: one seeded array per
input. One generator seeded with `seed` draws the arrays in the order the inputs
are given, so a seed names the same inputs on every run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ir import Graph, InputError
from ir.types import FLOAT_DTYPES


def sample_inputs(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """{name: standard-normal float32 array of shapes[name]}, drawn in order from `seed`."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def random_inputs(graph: Graph, names, bindings: dict, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs `names` of `graph`, its symbols bound by `bindings`: floats standard
    normal, integers and bools zero (a valid index into any table, so labels and indices
    stay in range whatever they index)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in names:
        value_type = graph.values[name].type.subs(bindings)
        if not value_type.is_concrete:
            unbound = ", ".join(sorted(s.name for s in value_type.free_symbols))
            raise InputError(
                f"input '{name}' has type {value_type} with unbound dims {unbound}; "
                f"give it as an array (convc run: --input {name}=FILE.npy)"
            )
        shape = value_type.concrete_shape()
        if value_type.dtype in FLOAT_DTYPES:
            arrays[name] = rng.standard_normal(shape).astype(value_type.dtype)
        else:
            arrays[name] = np.zeros(shape, dtype=value_type.dtype)
    return arrays
