"""convc: a compiler for convolutional networks.

Build a graph with the DSL (`convc.nn`) or import one from ONNX
(`convc.from_onnx`), check it with the NumPy reference (`convc.interpret`),
and compile it to native code (`convc.compile`).
"""

from ir import (
    CodegenError,
    ConvcError,
    Graph,
    GraphError,
    InputError,
    OnnxError,
    ShapeError,
    TensorType,
    UnsupportedError,
)

from . import nn, optim
from .autodiff import gradient
from .compiler import CompiledModel, compile
from .interpret import interpret
from .memory import MemoryReport
from .nn import Input
from .onnx import from_onnx
from .training import TrainStep, train_step

__all__ = [
    "CodegenError",
    "CompiledModel",
    "ConvcError",
    "Graph",
    "GraphError",
    "Input",
    "InputError",
    "MemoryReport",
    "OnnxError",
    "ShapeError",
    "TensorType",
    "TrainStep",
    "UnsupportedError",
    "compile",
    "from_onnx",
    "gradient",
    "interpret",
    "nn",
    "optim",
    "train_step",
]
