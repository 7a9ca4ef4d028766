"""ir: convc's graph IR as a library of its own (it never imports convc).

Types with symbolic shapes, the op set with attribute schemas and shape rules,
the `Graph`, its verifier, text printer, DOT export and layer report.
"""

from .errors import (
    CodegenError,
    ConvcError,
    GraphError,
    InputError,
    OnnxError,
    ShapeError,
    UnsupportedError,
)
from .graph import Graph, Node, Value
from .ops import OPS, get_op
from .types import DTYPES, FLOAT_DTYPES, TensorType, dim, symbol

__all__ = [
    "DTYPES",
    "FLOAT_DTYPES",
    "OPS",
    "CodegenError",
    "ConvcError",
    "Graph",
    "GraphError",
    "InputError",
    "Node",
    "OnnxError",
    "ShapeError",
    "TensorType",
    "UnsupportedError",
    "Value",
    "dim",
    "get_op",
    "symbol",
]
