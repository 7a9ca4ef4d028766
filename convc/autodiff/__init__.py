"""Symbolic autodiff: gradients derived from the ops' tensor expressions.

`gradient(graph, wrt=None, output=None)` returns the gradient graph (see
`gradient.py`); `grad_text(graph)` prints the derived formulas per op
(`convc show --stage grad`). Importing this package registers the `texpr` op
with the NumPy interpreter.
"""

from . import execute  # noqa: F401  (registers the texpr op with the interpreter)
from .gradient import gradient
from .show import grad_text

__all__ = ["grad_text", "gradient"]
