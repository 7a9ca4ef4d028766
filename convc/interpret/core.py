"""The interpreter loop: an environment of arrays and one pass over the nodes.

Stage: reference execution of an `ir.Graph`. Input: the graph and a dict of
NumPy arrays (checked by `ir.binding.bind_inputs`). Output: a dict of fresh,
C-contiguous arrays keyed by the graph's output names.

Like jax's `eval_jaxpr`, `interpret` keeps an env dict from value names to
arrays and walks `graph.topological_nodes()`, calling the op's entry in
`IMPLS` (op name -> function(node, args) -> outputs). Implementations live in
the family modules beside this one and are written directly in NumPy; they
never use tensor expressions or generated code, so every compiled result can
be checked against them.

Invariants: every array in the env has its value's inferred shape (with the
run-time dim bindings substituted) and its value's dtype, or the run dtype for
float values when `dtype` is given; a mismatch is reported as a ShapeError so
that shape inference and execution check each other. Implementations never
write into their arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ir import ConvcError, Graph, GraphError, InputError, ShapeError
from ir.binding import bind_inputs
from ir.types import FLOAT_DTYPES, is_known

#: op name -> function(node, args) returning the node's outputs (an array or a tuple of arrays).
IMPLS: dict[str, Callable] = {}


def implements(*ops: str):
    """Register a function as the implementation of `ops`."""

    def register(fn):
        for op in ops:
            IMPLS[op] = fn
        return fn

    return register


def interpret(graph: Graph, inputs: Mapping, dtype=None) -> dict[str, np.ndarray]:
    """Run `graph` on `inputs` in NumPy and return its outputs by name.

    `dtype` None runs every value in its graph dtype; "float32" or "float64"
    runs every float value (inputs, parameters, constants, intermediates) in
    that dtype, and float inputs may then be given in it. Symbolic dims (the
    batch N, symbolic spatial sizes) are bound from the inputs' shapes.
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"interpret expects an ir.Graph; got {type(graph).__name__}")
    if not graph.outputs:
        raise GraphError(f"graph '{graph.name}' has no outputs; call set_outputs first")
    run_dtype = _run_dtype(dtype)
    bindings = bind_inputs(graph, inputs, run_dtype)
    env = {}
    for name, value in graph.values.items():
        if value.kind == "input":
            env[name] = _as_value_dtype(inputs[name], value.dtype, run_dtype)
        elif value.kind in ("param", "const"):
            env[name] = _as_value_dtype(value.data, value.dtype, run_dtype)
    for node in graph.topological_nodes():
        _run_node(graph, node, env, bindings, run_dtype)
    return {name: np.array(env[name], order="C", copy=True) for name in graph.outputs}


def _run_dtype(dtype) -> str | None:
    if dtype is None:
        return None
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in FLOAT_DTYPES:
        raise InputError(f"dtype={dtype!r} is not supported; expected None, 'float32' or 'float64'")
    return name


def _as_value_dtype(array, value_dtype: str, run_dtype: str | None) -> np.ndarray:
    """The array in its value's dtype, or in the run dtype when that is a float value's override."""
    target = run_dtype if run_dtype is not None and value_dtype in FLOAT_DTYPES else value_dtype
    return np.asarray(array).astype(target, copy=False)


def _run_node(graph, node, env, bindings, run_dtype) -> None:
    args = [None if name is None else env[name] for name in node.inputs]
    impl = IMPLS.get(node.op)
    try:
        if impl is None:
            raise GraphError(f"the interpreter has no implementation of op '{node.op}'")
        results = impl(node, args)
        results = results if isinstance(results, tuple) else (results,)
        for name, result in zip(node.outputs, results):
            value = graph.values[name]
            env[name] = _as_value_dtype(result, value.dtype, run_dtype)
            _check_shape(name, env[name], value.type, bindings)
    except ConvcError as err:
        raise type(err)(f"while executing {node.op} '{node.name}': {err}") from err
    except Exception as err:
        err.add_note(f"while executing {node.op} '{node.name}'")
        raise


def _check_shape(name: str, array: np.ndarray, expected, bindings) -> None:
    """Compare a computed shape with the inferred one; dims only known at run time are skipped."""
    dims = expected.shape if expected.is_concrete else expected.subs(bindings).shape
    mismatch = len(dims) != array.ndim or any(
        is_known(d) and int(d) != size for d, size in zip(dims, array.shape)
    )
    if mismatch:
        shown = tuple(int(d) if is_known(d) else d for d in dims)
        raise ShapeError(
            f"output '{name}' was computed with shape {array.shape} but shape inference gives "
            f"{expected} = {shown}"
        )
