"""Run an `ir.Graph` in eager PyTorch, op by op, with the graph's own weights.

Stage: benchmark peer setup. Input: a verified graph with concrete spatial
sizes (the batch may stay symbolic). Output: a function from a dict of torch
tensors to a dict of torch tensors keyed by the graph's outputs.

Each node becomes the `torch.nn.functional` call that an `nn.Module` written
by hand for the same layer would make (conv2d, batch_norm, max_pool2d, linear,
...), with the node's attributes resolved once, so the timing is that of
PyTorch's eager mode: one Python dispatch a layer and oneDNN/ATen kernels. A
hand-written ResNet-18 or MobileNetV2 in `torch.nn` runs the same calls. Ops
and attributes without a counterpart raise `UnsupportedError`, and the
benchmark leaves the torch column out for that case.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ir import Graph, Node, UnsupportedError

_FACTORIES: dict[str, Callable] = {}


def _factory(*ops: str):
    """Register `fn(node, consts, torch) -> step` as the translation of `ops`."""

    def register(fn):
        for op in ops:
            _FACTORIES[op] = fn
        return fn

    return register


def torch_function(graph: Graph):
    """A function running `graph` in eager torch: `f({input: tensor}) -> {output: tensor}`."""
    import torch

    consts = {
        v.name: torch.from_numpy(np.ascontiguousarray(v.data))
        for v in graph.values.values()
        if v.is_constant
    }
    steps = [_step(node, graph, torch) for node in graph.topological_nodes()]
    outputs = tuple(graph.outputs)

    def run(feeds: dict) -> dict:
        env = {**consts, **feeds}
        for fn, inputs, output in steps:
            env[output] = fn(*(None if name is None else env[name] for name in inputs))
        return {name: env[name] for name in outputs}

    return run


def _step(node: Node, graph: Graph, torch) -> tuple:
    if node.op not in _FACTORIES:
        raise UnsupportedError(f"{node.op} '{node.name}': no PyTorch translation for this op")
    if len(node.outputs) > 1 or node.attrs.get("training_mode"):
        raise UnsupportedError(f"{node.op} '{node.name}': only inference with one output runs")
    consts = [None if v is None else graph.values[v].data for v in node.inputs]
    return _FACTORIES[node.op](node, consts, torch), node.inputs, node.outputs[0]


def _unsupported(node: Node, what: str) -> UnsupportedError:
    return UnsupportedError(f"{node.op} '{node.name}': {what} has no PyTorch equivalent")


def _window(node: Node, torch, pad_value: float):
    """(spatial rank, symmetric padding, pre-pad function) of a conv/pool node's pads."""
    if node.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise _unsupported(node, f"auto_pad={node.attrs['auto_pad']} on a symbolic size")
    rank = len(node.attrs["kernel_shape"])
    begins, ends = node.attrs["pads"][:rank], node.attrs["pads"][rank:]
    if begins == ends:
        return rank, tuple(begins), lambda x: x
    order = [p for axis in reversed(range(rank)) for p in (begins[axis], ends[axis])]
    return rank, (0,) * rank, lambda x: torch.nn.functional.pad(x, order, value=pad_value)


@_factory("conv")
def _conv(node, consts, torch):
    rank, padding, pre = _window(node, torch, 0.0)
    conv = getattr(torch.nn.functional, f"conv{rank}d")
    stride, dilation, groups = node.attrs["strides"], node.attrs["dilations"], node.attrs["group"]
    return lambda x, w, b=None: conv(pre(x), w, b, stride, padding, dilation, groups)


@_factory("max_pool")
def _max_pool(node, consts, torch):
    rank, padding, pre = _window(node, torch, -math.inf)
    kernel = node.attrs["kernel_shape"]
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise _unsupported(node, f"padding {list(padding)} over half the kernel {list(kernel)}")
    pool = getattr(torch.nn.functional, f"max_pool{rank}d")
    attrs = node.attrs
    return lambda x: pool(
        pre(x), kernel, attrs["strides"], padding, attrs["dilations"], bool(attrs["ceil_mode"])
    )


@_factory("avg_pool")
def _avg_pool(node, consts, torch):
    rank, padding, _ = _window(node, torch, 0.0)
    attrs = node.attrs
    if any(d != 1 for d in attrs["dilations"]) or attrs["pads"][:rank] != attrs["pads"][rank:]:
        raise _unsupported(node, "dilated or asymmetric average pooling")
    pool = getattr(torch.nn.functional, f"avg_pool{rank}d")
    ceil, include = bool(attrs["ceil_mode"]), bool(attrs["count_include_pad"])
    return lambda x: pool(x, attrs["kernel_shape"], attrs["strides"], padding, ceil, include)


@_factory("global_avg_pool", "global_max_pool")
def _global_pool(node, consts, torch):
    reduce = torch.mean if node.op == "global_avg_pool" else torch.amax
    return lambda x: reduce(x, dim=tuple(range(2, x.dim())), keepdim=True)


@_factory("gemm")
def _gemm(node, consts, torch):
    a = node.attrs
    if (a["transA"], a["transB"], a["alpha"], a["beta"]) == (0, 1, 1.0, 1.0):
        return lambda x, w, b=None: torch.nn.functional.linear(x, w, b)

    def gemm(x, w, c=None):
        product = (x.T if a["transA"] else x) @ (w.T if a["transB"] else w)
        product = a["alpha"] * product if a["alpha"] != 1.0 else product
        return product if c is None else product + a["beta"] * c

    return gemm


@_factory("batch_norm")
def _batch_norm(node, consts, torch):
    eps = node.attrs["epsilon"]
    return lambda x, scale, bias, mean, var: torch.nn.functional.batch_norm(
        x, mean, var, scale, bias, False, 0.0, eps
    )


@_factory("clip")
def _clip(node, consts, torch):
    bounds = []
    for index in (1, 2):
        present = index < len(node.inputs) and node.inputs[index] is not None
        if present and consts[index] is None:
            raise _unsupported(node, f"the run-time bound '{node.inputs[index]}'")
        bounds.append(float(consts[index]) if present else None)
    if bounds == [0.0, 6.0]:
        return lambda x, *_: torch.nn.functional.relu6(x)
    return lambda x, *_: torch.clamp(x, *bounds)


@_factory("flatten")
def _flatten(node, consts, torch):
    axis = node.attrs["axis"]
    return lambda x: x.reshape(math.prod(x.shape[:axis]), -1)


@_factory("reshape")
def _reshape(node, consts, torch):
    target = consts[1]
    if target is None:
        raise _unsupported(node, "a run-time reshape target")
    keep = not node.attrs["allowzero"]

    def reshape(x, _shape):
        return x.reshape([x.shape[i] if keep and s == 0 else int(s) for i, s in enumerate(target)])

    return reshape


@_factory("concat")
def _concat(node, consts, torch):
    return lambda *xs: torch.cat(xs, node.attrs["axis"])


@_factory("softmax", "log_softmax")
def _softmax(node, consts, torch):
    fn = torch.softmax if node.op == "softmax" else torch.log_softmax
    return lambda x: fn(x, node.attrs["axis"])


@_factory("add", "sub", "mul", "div", "prelu")
def _binary(node, consts, torch):
    return {
        "add": torch.add,
        "sub": torch.sub,
        "mul": torch.mul,
        "div": torch.div,
        "prelu": lambda x, slope: torch.where(x >= 0, x, slope * x),
    }[node.op]


@_factory("relu", "sigmoid", "tanh", "softplus", "silu", "identity", "dropout")
def _plain_unary(node, consts, torch):
    functional = torch.nn.functional
    return {
        "relu": functional.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softplus": functional.softplus,
        "silu": functional.silu,
        "identity": lambda x: x,
        "dropout": lambda x: x,
    }[node.op]


@_factory("leaky_relu", "elu", "selu", "hard_sigmoid", "gelu")
def _activation(node, consts, torch):
    functional, a = torch.nn.functional, node.attrs
    if node.op == "leaky_relu":
        return lambda x: functional.leaky_relu(x, a["alpha"])
    if node.op == "elu":
        return lambda x: functional.elu(x, a["alpha"])
    if node.op == "selu":
        return lambda x: a["gamma"] * functional.elu(x, a["alpha"])
    if node.op == "hard_sigmoid":
        return lambda x: torch.clamp(a["alpha"] * x + a["beta"], 0.0, 1.0)
    return lambda x: functional.gelu(x, approximate=a["approximate"])
