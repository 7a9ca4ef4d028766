"""A tiny sample model for the command-line tests, with the samples' contract.

x: (N, 1, 6, 6) -> conv 3x3 (2 channels, bias) -> relu -> flatten -> gemm to 3.
"""

import numpy as np

import ir


def build(batch="N") -> ir.Graph:
    rng = np.random.default_rng(7)
    g = ir.Graph("tiny")
    g.add_input("x", (batch, 1, 6, 6))
    g.add_param("conv.weight", rng.standard_normal((2, 1, 3, 3)).astype(np.float32))
    g.add_param("conv.bias", rng.standard_normal(2).astype(np.float32))
    g.add_node("conv", ["x", "conv.weight", "conv.bias"], name="conv")
    g.add_node("relu", ["conv"], name="relu")
    g.add_node("flatten", ["relu"], name="flat")
    g.add_param("fc.weight", rng.standard_normal((3, 32)).astype(np.float32))
    g.add_node("gemm", ["flat", "fc.weight"], {"transB": 1}, name="fc")
    g.set_outputs("fc")
    return g


def example_inputs(batch=1, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 1, 6, 6)).astype(np.float32)}
