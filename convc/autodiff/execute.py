"""The interpreter's implementation of the `texpr` op: evaluate the carried program.

Stage: reference execution of derived expressions. Registered into
`convc.interpret`'s op table when `convc.autodiff` is imported (which `import
convc` does), so the interpreter itself keeps importing only `ir` and NumPy.
Evaluation is the brute-force `convc.texpr.evaluate`: exact, and slow on large
shapes, which is acceptable for a reference.
"""

from __future__ import annotations

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


@implements("texpr")
def texpr(node, args):
    text = node.attrs["program"]
    arrays = dict(zip(node.inputs, args))
    bindings = _bindings(node, arrays, program_inputs(text))
    exprs = program_from_str(text)
    floats = [a.dtype for a in args if a.dtype.kind == "f"]
    values = evaluate_all(exprs, arrays, bindings, np.result_type(*floats) if floats else None)
    return np.asarray(values[exprs[-1].name])
