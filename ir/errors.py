"""The error hierarchy shared by every stage.

`ir` owns it because `ir` never imports `convc`; `convc` re-exports the same
classes, so `convc.ConvcError` catches anything a user can cause anywhere in
the pipeline. Messages name the node (or value) and the offending values.
"""


class ConvcError(Exception):
    """Base of every error a user can cause."""


class GraphError(ConvcError):
    """The graph is malformed: unknown value, duplicate name, bad arity, cycle."""


class ShapeError(ConvcError):
    """Shapes or attributes of a node do not fit together."""


class UnsupportedError(ConvcError):
    """An op, attribute or attribute value the compiler does not support."""


class InputError(ConvcError):
    """A run-time input is missing, extra, or has the wrong shape, rank or dtype."""


class CodegenError(ConvcError):
    """Native code generation failed for a kernel (an internal error, reported with its name)."""


class OnnxError(ConvcError):
    """An ONNX model is malformed or cannot be read."""
