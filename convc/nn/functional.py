"""The functional form of the DSL: one function an op, with PyTorch's signatures.

Stage: DSL. Inputs: `Tensor`s, plus weights given as Tensors, `Parameter`s
(added to the graph as params under their state_dict name) or NumPy arrays
(added as constants, cast to the input's float dtype). Output: Tensors whose
nodes were appended to the input's graph. Every function takes a keyword-only
`name` for its node; by default the name follows the module scope (see
`tensor.py`). Modules are thin wrappers over these functions.

Mapping to ir ops, where it is not one to one:
- padding='same' (stride 1 only) is PyTorch's rule: total pad d*(k-1) per
  axis, the odd one at the end; it becomes explicit pads.
- batch_norm's momentum m (PyTorch: running = (1-m)*running + m*batch) is
  ONNX's 1 - m. In training mode the updated running statistics are extra
  graph outputs `<running_mean>:updated` and `<running_var>:updated` (they are
  not written back into the module); num_batches_tracked is not counted.
- dropout in eval mode, and adaptive pooling to the input's own size, add an
  identity (or nothing, for dropout).
- relu6 / hardtanh are `clip`; hardsigmoid is hard_sigmoid(alpha=1/6, beta=1/2);
  softplus with beta != 1 is softplus(beta*x)/beta (the threshold is not
  modelled: above it the two differ by less than exp(-threshold)).
"""

from __future__ import annotations

import numpy as np

from ir import GraphError, ShapeError, UnsupportedError

from . import windows
from .module import Parameter
from .tensor import Builder, Tensor

# ----- arguments ---------------------------------------------------------------------


def _builder(x, what: str) -> Builder:
    if not isinstance(x, Tensor):
        raise GraphError(f"{what}: expected a convc Tensor, got {type(x).__name__} {x!r:.60}")
    return x.builder


def _check_rank(x: Tensor, rank: int, where: str) -> None:
    if x.ndim != rank + 2:
        raise ShapeError(
            f"{where}: input '{x.name}' is {x.type}; expected rank {rank + 2} "
            f"(N, C and {rank} spatial dims)"
        )


def _value(builder: Builder, obj, default_name: str, dtype: str) -> str:
    """The graph value for a weight given as a Tensor, Parameter or array."""
    if isinstance(obj, Tensor):
        builder.check_owns(obj, default_name)
        return obj.name
    if isinstance(obj, Parameter):
        return builder.state(obj, default_name)
    array = np.asarray(obj)
    if array.dtype.kind in "fiu":
        return builder.const(array.astype(dtype, copy=False), default_name)
    raise GraphError(f"'{default_name}': cannot use {type(obj).__name__} as a weight")


def _optional(builder: Builder, obj, default_name: str, dtype: str):
    return None if obj is None else _value(builder, obj, default_name, dtype)


def _emit(x: Tensor, op: str, inputs, attrs=None, name=None, stem=None) -> Tensor:
    builder = _builder(x, op)
    node = builder.node_name(stem or op, name)
    return builder.emit(op, [x, *inputs], attrs, name=node)[0]


# ----- convolution and pooling ---------------------------------------------------------------


def _window_start(x, op: str, rank: int, name):
    """Builder, node name and error prefix of a windowed op, after checking the input rank."""
    builder = _builder(x, f"{op}{rank}d")
    node = builder.node_name(op, name)
    where = f"{op}{rank}d '{node}'"
    _check_rank(x, rank, where)
    return builder, node, where


def _conv(op: str, rank: int, x, weight, bias, name, **window) -> Tensor:
    """conv or conv_transpose; `window` holds stride, padding, dilation, groups (output_padding)."""
    builder, node, where = _window_start(x, op, rank, name)
    w = _value(builder, weight, f"{node}.weight", x.dtype)
    b = _optional(builder, bias, f"{node}.bias", x.dtype)
    kernel = builder.graph.values[w].type.concrete_shape()[2:]
    attrs = windows.conv_attrs(kernel, where, **window)
    return builder.emit(op, [x, w, b], attrs, name=node)[0]


def _make_conv(rank: int):
    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, name=None):
        window = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        return _conv("conv", rank, input, weight, bias, name, **window)

    conv.__name__ = conv.__qualname__ = f"conv{rank}d"
    conv.__doc__ = f"{rank}-d convolution; weight (out, in/groups, *kernel), bias (out,)."
    return conv


def _make_conv_transpose(rank: int):
    def conv_transpose(
        input,
        weight,
        bias=None,
        stride=1,
        padding=0,
        output_padding=0,
        groups=1,
        dilation=1,
        *,
        name=None,
    ):
        if isinstance(padding, str):
            raise UnsupportedError(f"conv_transpose{rank}d: padding={padding!r} is not supported")
        window = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        window["output_padding"] = output_padding
        return _conv("conv_transpose", rank, input, weight, bias, name, **window)

    conv_transpose.__name__ = conv_transpose.__qualname__ = f"conv_transpose{rank}d"
    conv_transpose.__doc__ = f"{rank}-d transposed convolution; weight (in, out/groups, *kernel)."
    return conv_transpose


def _pool(op: str, rank: int, x, name, ceil_mode, extra: dict, **window) -> Tensor:
    """max_pool or avg_pool; `window` holds kernel_size, stride, padding, dilation."""
    builder, node, where = _window_start(x, op, rank, name)
    attrs = windows.pool_attrs(rank, where, **window)
    attrs.update(ceil_mode=int(bool(ceil_mode)), **extra)
    return builder.emit(op, [x], attrs, name=node)[0]


def _make_max_pool(rank: int):
    def max_pool(
        input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, name=None
    ):
        window = {"kernel_size": kernel_size, "stride": stride, "padding": padding}
        return _pool("max_pool", rank, input, name, ceil_mode, {}, dilation=dilation, **window)

    max_pool.__name__ = max_pool.__qualname__ = f"max_pool{rank}d"
    max_pool.__doc__ = f"{rank}-d max pooling; stride defaults to the kernel size."
    return max_pool


def _make_avg_pool(rank: int):
    def avg_pool(
        input,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        *,
        name=None,
    ):
        window = {"kernel_size": kernel_size, "stride": stride, "padding": padding}
        extra = {"count_include_pad": int(bool(count_include_pad))}
        return _pool("avg_pool", rank, input, name, ceil_mode, extra, dilation=1, **window)

    avg_pool.__name__ = avg_pool.__qualname__ = f"avg_pool{rank}d"
    avg_pool.__doc__ = f"{rank}-d average pooling; padding counts in the mean by default."
    return avg_pool


def _make_adaptive_avg_pool(rank: int):
    def adaptive_avg_pool(input, output_size, *, name=None):
        builder, node, where = _window_start(input, "adaptive_avg_pool", rank, name)
        sizes = (output_size,) * rank if isinstance(output_size, int) else tuple(output_size)
        spatial = input.shape[2:]
        sizes = tuple(s if o is None else o for o, s in zip(sizes, spatial))
        if len(sizes) == rank and all(o == 1 for o in sizes):
            return builder.emit("global_avg_pool", [input], name=node)[0]
        if len(sizes) == rank and all((o - s) == 0 for o, s in zip(sizes, spatial)):
            return builder.emit("identity", [input], name=node)[0]
        raise UnsupportedError(
            f"{where}: output_size={output_size!r} for input {input.type} is not supported; "
            "only 1 (global average pooling) or the input's own size"
        )

    adaptive_avg_pool.__name__ = adaptive_avg_pool.__qualname__ = f"adaptive_avg_pool{rank}d"
    adaptive_avg_pool.__doc__ = f"{rank}-d adaptive average pooling (output size 1 or same)."
    return adaptive_avg_pool


conv1d, conv2d, conv3d = (_make_conv(r) for r in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (_make_conv_transpose(r) for r in (1, 2, 3))
max_pool1d, max_pool2d, max_pool3d = (_make_max_pool(r) for r in (1, 2, 3))
avg_pool1d, avg_pool2d, avg_pool3d = (_make_avg_pool(r) for r in (1, 2, 3))
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (
    _make_adaptive_avg_pool(r) for r in (1, 2, 3)
)

# ----- dense, normalisation, dropout ---------------------------------------------------------


def linear(input, weight, bias=None, *, name=None) -> Tensor:
    """y = x @ weight.T + bias for x (batch, in), weight (out, in): gemm with transB=1."""
    builder = _builder(input, "linear")
    node = builder.node_name("gemm", name)
    if input.ndim != 2:
        raise UnsupportedError(
            f"linear '{node}': input '{input.name}' is {input.type}; only 2-D (batch, features) "
            "inputs are supported (flatten first)"
        )
    w = _value(builder, weight, f"{node}.weight", input.dtype)
    b = _optional(builder, bias, f"{node}.bias", input.dtype)
    return builder.emit("gemm", [input, w, b], {"transB": 1}, name=node)[0]


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
    *,
    name=None,
) -> Tensor:
    """Batch normalisation over axis 1 (see the module docstring for training mode)."""
    builder = _builder(input, "batch_norm")
    node = builder.node_name("batch_norm", name)
    if momentum is None:
        raise UnsupportedError(f"batch_norm '{node}': momentum=None (cumulative average)")
    dtype = input.dtype
    scale = _optional(builder, weight, f"{node}.weight", dtype)
    shift = _optional(builder, bias, f"{node}.bias", dtype)
    mean = _value(builder, running_mean, f"{node}.running_mean", dtype)
    var = _value(builder, running_var, f"{node}.running_var", dtype)
    channels = builder.graph.values[mean].type.concrete_shape()
    scale = scale or builder.const(np.ones(channels, dtype), f"{node}.weight")
    shift = shift or builder.const(np.zeros(channels, dtype), f"{node}.bias")
    attrs = {"epsilon": eps, "momentum": 1.0 - momentum, "training_mode": int(bool(training))}
    updated = [builder.graph.unique_name(f"{stat}:updated") for stat in (mean, var)]
    outputs = (node, *updated) if training else None
    result = builder.emit("batch_norm", [input, scale, shift, mean, var], attrs, node, outputs)
    builder.side_outputs.extend(t.name for t in result[1:])
    return result[0]


def dropout(input, p=0.5, training=True, *, name=None) -> Tensor:
    """Zero elements with probability p in training (seeded per node); identity otherwise."""
    builder = _builder(input, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ShapeError(f"dropout: p={p} must lie in [0, 1]")
    if not training or p == 0.0:
        return input
    node = builder.node_name("dropout", name)
    attrs = {"ratio": p, "training_mode": 1, "seed": len(builder.graph.nodes)}
    return builder.emit("dropout", [input], attrs, name=node)[0]


# ----- activations ---------------------------------------------------------------------------


def relu(input, *, name=None) -> Tensor:
    return _emit(input, "relu", [], name=name)


def _clip(input, low: float, high: float, name, stem: str) -> Tensor:
    builder = _builder(input, stem)
    bounds = [builder.scalar(low, input.dtype), builder.scalar(high, input.dtype)]
    return _emit(input, "clip", bounds, name=name, stem=stem)


def relu6(input, *, name=None) -> Tensor:
    return _clip(input, 0.0, 6.0, name, "relu6")


def hardtanh(input, min_val=-1.0, max_val=1.0, *, name=None) -> Tensor:
    return _clip(input, min_val, max_val, name, "hardtanh")


def leaky_relu(input, negative_slope=0.01, *, name=None) -> Tensor:
    return _emit(input, "leaky_relu", [], {"alpha": negative_slope}, name)


def prelu(input, weight, *, name=None) -> Tensor:
    """x if x >= 0 else weight[c] * x; weight (1,) or (C,), reshaped to broadcast over axis 1."""
    builder = _builder(input, "prelu")
    node = builder.node_name("prelu", name)
    slope = _value(builder, weight, f"{node}.weight", input.dtype)
    count = builder.graph.values[slope].type.shape
    if input.ndim > 2 and count != (1,):
        shape = np.asarray([int(count[0])] + [1] * (input.ndim - 2), dtype=np.int64)
        view = builder.graph.unique_name(f"{node}.slope")
        target = builder.const(shape, f"{view}.shape")
        slope = builder.emit("reshape", [slope, target], name=view)[0]
    return builder.emit("prelu", [input, slope], name=node)[0]


def elu(input, alpha=1.0, *, name=None) -> Tensor:
    return _emit(input, "elu", [], {"alpha": alpha}, name)


def selu(input, *, name=None) -> Tensor:
    return _emit(input, "selu", [], name=name)


def sigmoid(input, *, name=None) -> Tensor:
    return _emit(input, "sigmoid", [], name=name)


def hardsigmoid(input, *, name=None) -> Tensor:
    return _emit(input, "hard_sigmoid", [], {"alpha": 1.0 / 6.0, "beta": 0.5}, name)


def tanh(input, *, name=None) -> Tensor:
    return _emit(input, "tanh", [], name=name)


def softplus(input, beta=1.0, threshold=20.0, *, name=None) -> Tensor:
    """log(1 + exp(beta*x)) / beta."""
    if beta == 1.0:
        return _emit(input, "softplus", [], name=name)
    builder = _builder(input, "softplus")
    node = builder.node_name("softplus", name)
    scaled = input._binary("mul", beta)
    soft = builder.emit("softplus", [scaled], name=builder.graph.unique_name(f"{node}.raw"))[0]
    factor = builder.scalar(1.0 / beta, input.dtype)
    return builder.emit("mul", [soft, factor], name=node)[0]


def silu(input, *, name=None) -> Tensor:
    return _emit(input, "silu", [], name=name)


def gelu(input, approximate="none", *, name=None) -> Tensor:
    return _emit(input, "gelu", [], {"approximate": approximate}, name)


def softmax(input, dim, *, name=None) -> Tensor:
    return _emit(input, "softmax", [], {"axis": dim}, name)


def log_softmax(input, dim, *, name=None) -> Tensor:
    return _emit(input, "log_softmax", [], {"axis": dim}, name)


# ----- data movement -------------------------------------------------------------------------


def flatten(input, start_dim=1, end_dim=-1) -> Tensor:
    """Merge dims start_dim..end_dim (start_dim defaults to 1, keeping the batch)."""
    _builder(input, "flatten")
    return input.flatten(start_dim, end_dim)


def reshape(input, shape) -> Tensor:
    _builder(input, "reshape")
    return input.reshape(*shape)


def cat(tensors, dim=0, *, name=None) -> Tensor:
    """Concatenate along `dim`; the other dims must match."""
    tensors = list(tensors)
    if not tensors:
        raise GraphError("cat: needs at least one tensor")
    builder = _builder(tensors[0], "cat")
    for t in tensors:
        _builder(t, "cat")
    node = builder.node_name("concat", name)
    return builder.emit("concat", tensors, {"axis": dim}, name=node)[0]


def pad(input, pad, mode="constant", value=0.0, *, name=None) -> Tensor:
    """PyTorch's pad: (left, right) of the last dim, then of the one before, ..."""
    builder = _builder(input, "pad")
    node = builder.node_name("pad", name)
    if mode != "constant":
        raise UnsupportedError(f"pad '{node}': mode={mode!r}; only 'constant' is supported")
    count = len(pad) // 2
    if len(pad) % 2 or not 0 < count <= input.ndim:
        raise ShapeError(f"pad '{node}': pad={pad!r} should hold 2 entries for each padded dim")
    axes = [input.ndim - count + i for i in range(count)]
    pairs = [
        (int(pad[2 * (count - 1 - i)]), int(pad[2 * (count - 1 - i) + 1])) for i in range(count)
    ]
    pads = np.asarray([b for b, _ in pairs] + [e for _, e in pairs], dtype=np.int64)
    inputs = [
        builder.const(pads, f"{node}.pads"),
        builder.scalar(float(value), input.dtype),
        builder.const(np.asarray(axes, dtype=np.int64), f"{node}.axes"),
    ]
    return builder.emit("pad", [input, *inputs], name=node)[0]


# ----- losses --------------------------------------------------------------------------------


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    *,
    name=None,
) -> Tensor:
    """Softmax cross-entropy of scores (N, C, ...) against int64 class indices (N, ...)."""
    builder = _builder(input, "cross_entropy")
    node = builder.node_name("softmax_cross_entropy", name)
    _builder(target, f"cross_entropy '{node}' target")
    if target.dtype not in ("int64", "int32") or label_smoothing:
        raise UnsupportedError(
            f"cross_entropy '{node}': target '{target.name}' is {target.type} with "
            f"label_smoothing={label_smoothing}; only integer class indices without smoothing"
        )
    w = _optional(builder, weight, f"{node}.weight", input.dtype)
    attrs = {"reduction": reduction, "ignore_index": ignore_index}
    return builder.emit("softmax_cross_entropy", [input, target, w], attrs, name=node)[0]


def mse_loss(input, target, reduction="mean", *, name=None) -> Tensor:
    """Mean (or sum, or elementwise) squared error."""
    _builder(target, "mse_loss target")
    return _emit(input, "mse_loss", [target], {"reduction": reduction}, name)
