"""ONNX front end: an ONNX model -> a verified `ir.Graph`.

Stage: front end, beside the DSL; imports only `ir` (and `onnx`, an optional
extra loaded on first use). Input: a path to a `.onnx` file, its bytes, or an
`onnx.ModelProto` of the default domain. Output: an `ir.Graph` whose values
keep their ONNX names: graph inputs become inputs (dims with a `dim_param`
become sympy symbols of that name, unknown dims fresh symbols), initializers
become named parameters (an input that is also an initializer is a parameter
holding its default), Constant nodes become constants, and each node becomes
one or a few ir nodes (`rules.py` holds the table).

Errors: an op, op version, attribute value, dtype or output the compiler does
not support raises `UnsupportedError`; a model that cannot be read, fails
`onnx.checker` or refers to undefined values raises `OnnxError`. Both name the
node and the offending value.
"""

from __future__ import annotations

import os

from ir import Graph, OnnxError

ONNX_EXTRA_HINT = "pip install convc[onnx]"


def require_onnx():
    """Import the optional `onnx` package, or explain how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise OnnxError(
            f"importing ONNX models needs the 'onnx' package: {ONNX_EXTRA_HINT}"
        ) from exc
    return onnx


def from_onnx(model: str | os.PathLike | bytes | object, name: str | None = None) -> Graph:
    """Import an ONNX model (path, serialized bytes or ModelProto) as an `ir.Graph`.

    `name` names the graph (default: the ONNX graph's name). The result is
    verified; its outputs are the ONNX graph outputs, in order.
    """
    require_onnx()
    from .convert import convert_model
    from .model import load_model

    return convert_model(load_model(model), name)


__all__ = ["ONNX_EXTRA_HINT", "from_onnx", "require_onnx"]
