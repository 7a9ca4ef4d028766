"""LLVM code generation: loop-IR `Program` -> one `llvmlite.ir` module (see `module`).

The only package that imports `llvmlite.ir`. Fast-math policy: `convc.codegen.llvmutil`;
vector math and its error bounds: `convc.codegen.vmath`; parallel loops:
`convc.codegen.parallel`.
"""

from .llvmutil import for_range, vector_fma
from .module import ENTRY, GeneratedModule, generate, kernel_buffers, kernel_symbol

__all__ = [
    "ENTRY",
    "GeneratedModule",
    "for_range",
    "generate",
    "kernel_buffers",
    "kernel_symbol",
    "vector_fma",
]
