"""convc.interpret: the NumPy reference interpreter.

`interpret(graph, inputs, dtype=None)` runs an `ir.Graph` directly in NumPy
and returns its outputs by name. It imports only `ir` and NumPy and is the
independent reference every compiled result is checked against. The loop is
in `core`; each op family's implementations are in the module of that name,
registered in `core.IMPLS`.

Derived ops that have no NumPy formula of their own (the generic `texpr` op
of gradient graphs) are registered into the same table by the stage that
defines them, with `implements`; the reference never imports that code.
"""

from . import conv, dense, elementwise, loss, norm, pool, tensor  # noqa: F401  (registration)
from .core import IMPLS, implements, interpret

__all__ = ["IMPLS", "implements", "interpret"]
