"""The op set: every op's schema and shape rule, registered by family."""

from . import conv, dense, elementwise, loss, norm, pool, tensor, texpr_op  # noqa: F401  (registration)
from .registry import OPS, REQUIRED, Attr, InferContext, OpDef, broadcast_shapes, get_op

__all__ = ["OPS", "REQUIRED", "Attr", "InferContext", "OpDef", "broadcast_shapes", "get_op"]
