"""Graph passes: named, pure, verified graph -> graph rewrites, and fusion decisions.

`PIPELINE` is the inference pipeline `convc.compile` runs, in order; after it,
`plan_fusion` groups the nodes into kernels (the `fused` stage).
"""

from .fold_bn import FOLD_BATCH_NORM, fold_batch_norm
from .fusion import FusedGroup, fused_text, plan_fusion
from .manager import Pass, dump, dump_requested, run_passes, trace_text
from .reorder import REORDER_ACTIVATION_POOL, reorder_activation_pool
from .simplify import DCE, REMOVE_NOOPS, eliminate_dead_code, remove_noops

PIPELINE = (REMOVE_NOOPS, DCE, FOLD_BATCH_NORM, REORDER_ACTIVATION_POOL, DCE)

__all__ = [
    "DCE",
    "FOLD_BATCH_NORM",
    "PIPELINE",
    "REMOVE_NOOPS",
    "REORDER_ACTIVATION_POOL",
    "FusedGroup",
    "Pass",
    "dump",
    "dump_requested",
    "eliminate_dead_code",
    "fold_batch_norm",
    "fused_text",
    "plan_fusion",
    "remove_noops",
    "reorder_activation_pool",
    "run_passes",
    "trace_text",
]
