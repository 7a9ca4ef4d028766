"""The interpreter's implementation of the `texpr` op: evaluate the carried program.

Stage: reference execution of derived expressions. Registered into
`convc.interpret`'s op table when `convc.autodiff` is imported (which `import
convc` does), so the interpreter itself keeps importing only `ir` and NumPy.
Evaluation is the brute-force `convc.texpr.evaluate`: exact, and slow on large
shapes, which is acceptable for a reference.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy

from convc.interpret.core import implements
from convc.texpr.evaluate import evaluate_all
from convc.texpr.serialize import program_from_str, program_inputs
from ir import ShapeError


def _bindings(node, arrays: dict, shapes: dict) -> dict:
    """Symbol values read off the arrays' sizes where the declared dim is a plain symbol."""
    bindings = {}
    for name, shape in shapes.items():
        for d, size in zip(shape, arrays[name].shape):
            if isinstance(d, sympy.Symbol) and bindings.setdefault(d, size) != size:
                raise ShapeError(
                    f"texpr '{node.name}': dim {d} is {bindings[d]} in one input and "
                    f"{size} in '{name}'"
                )
    return bindings


@functools.lru_cache(maxsize=256)
def _program(text: str):
    """The parsed program and its input shapes (cached: a training loop runs it every step)."""
    return tuple(program_from_str(text)), program_inputs(text)


@implements("texpr")
def texpr(node, args):
    exprs, shapes = _program(node.attrs["program"])
    arrays = dict(zip(node.inputs, args))
    bindings = _bindings(node, arrays, shapes)
    floats = [a.dtype for a in args if a.dtype.kind == "f"]
    values = evaluate_all(exprs, arrays, bindings, np.result_type(*floats) if floats else None)
    return np.asarray(values[exprs[-1].name])
