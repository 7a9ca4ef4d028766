"""Symbolic tensors and the builder that records them into an `ir.Graph`.

Stage: DSL (front end). Input: Python calls on `Tensor`s (operators, methods,
`convc.nn.functional`, modules). Output: nodes appended to the `ir.Graph`
owned by the tensors' `Builder`; shape inference runs as each node is added,
so a mistake is reported by ir's shape rule at the call that made it.

A `Tensor` is only a handle: its builder and the name of a value in the
builder's graph. Every tensor of one computation must share a builder.

Names. The builder keeps a stack of the modules being called. A node made
while a leaf module (one with no submodules: `Conv2d`, `ReLU`) is on top is
named by the module's path (`conv1`, `layer1.0.relu`; `_1` is appended when
the module is called again); inside any other module it is named
`<path>.<op>` (`layer1.0.add`), and at the top level just `<op>` (`relu`,
`relu_1`). Parameters and buffers take the names PyTorch gives them in a
state_dict (`layer1.0.bn1.running_mean`) and are added to the graph the
first time a node reads them.
"""

from __future__ import annotations

import numpy as np
import sympy

from ir import Graph, GraphError, TensorType, UnsupportedError


class Builder:
    """A graph under construction with the naming state of the trace that builds it."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.module_paths: dict[int, str] = {}
        self.state_names: dict[int, str] = {}
        self.bound: dict[int, str] = {}
        self.scope: list = []  # (module, path) of the modules being called, innermost last
        self.side_outputs: list[str] = []
        self.scalars: dict[tuple, str] = {}  # (value, dtype) -> name of a shared constant
        self._keep_alive: list = []  # objects whose id() keys the maps above

    # ----- naming ---------------------------------------------------------------------------
    def set_root(self, module) -> None:
        """Name every submodule, parameter and buffer of `module` by its state_dict path."""
        for path, sub in module.named_modules():
            self.module_paths.setdefault(id(sub), path)
        for name, state in module.named_states():
            self.state_names.setdefault(id(state), name)
        self._keep_alive.append(module)

    def module_path(self, module) -> str:
        """The module's path; a module outside the root gets a fresh name from its class."""
        path = self.module_paths.get(id(module))
        if path is None:
            path = self.graph.unique_name(type(module).__name__.lower())
            self.module_paths[id(module)] = path
            self._keep_alive.append(module)
        return path

    def node_name(self, stem: str, name: str | None = None) -> str:
        """A unique node name: `name` if given, else derived from the module scope (see above)."""
        if name is None:
            name = stem
            if self.scope:
                module, path = self.scope[-1]
                if path and not module._modules:
                    name = path
                elif path:
                    name = f"{path}.{stem}"
        return self.graph.unique_name(name)

    # ----- values ---------------------------------------------------------------------------
    def emit(self, op: str, inputs, attrs=None, name=None, outputs=None) -> list[Tensor]:
        """Add one node; `inputs` are Tensors, value names or None. Returns its output Tensors."""
        names = [None if v is None else v.name if isinstance(v, Tensor) else str(v) for v in inputs]
        while names and names[-1] is None:  # absent trailing optional inputs are left out
            names.pop()
        for v in inputs:
            if isinstance(v, Tensor):
                self.check_owns(v, f"{op} '{name}'")
        values = self.graph.add_node(op, names, attrs, name=name, outputs=outputs)
        return [Tensor(self, v.name) for v in values]

    def check_owns(self, tensor: Tensor, where: str) -> None:
        if tensor.builder is not self:
            raise GraphError(
                f"{where}: tensor '{tensor.name}' belongs to graph '{tensor.graph.name}', "
                f"not '{self.graph.name}' (trace every input together)"
            )

    def state(self, state, default_name: str) -> str:
        """The graph value of a Parameter or Buffer, added as a param on first use."""
        key = id(state)
        if key not in self.bound:
            name = self.state_names.get(key)
            if name is None or name in self.graph.values:
                name = self.graph.unique_name(name or default_name)
            self.graph.add_param(name, state.data, trainable=state.requires_grad)
            self.bound[key] = name
            self._keep_alive.append(state)
        return self.bound[key]

    def const(self, array, name: str) -> str:
        """A fixed array as a graph constant with a unique name."""
        return self.graph.add_const(self.graph.unique_name(name), np.asarray(array)).name

    def scalar(self, value: float, dtype: str) -> str:
        """A rank-0 constant `const_<value>` of the given dtype, shared by every use."""
        key = (float(value), dtype)
        if key not in self.scalars:
            stem = f"const_{value:g}" + ("" if dtype == "float32" else f"_{dtype}")
            self.scalars[key] = self.const(np.asarray(value, dtype=dtype), stem)
        return self.scalars[key]


class Tensor:
    """A symbolic tensor: a value of a graph under construction.

    Supports `+ - * /` with Tensors and Python scalars (scalars become rank-0
    constants of the tensor's dtype) and a few PyTorch-style methods; the rest
    lives in `convc.nn.functional`.
    """

    __array_ufunc__ = None  # NumPy operands defer to Tensor's reflected operators

    def __init__(self, builder: Builder, name: str):
        self.builder = builder
        self.name = name

    # ----- description ----------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        return self.builder.graph

    @property
    def type(self) -> TensorType:
        return self.graph.values[self.name].type

    @property
    def shape(self) -> tuple:
        """The shape as a tuple of sympy dims (symbols such as N stay symbolic)."""
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.rank

    def dim(self) -> int:
        return self.type.rank

    def size(self, axis: int | None = None):
        return self.shape if axis is None else self.shape[axis]

    def __repr__(self) -> str:
        return f"Tensor(%{self.name}: {self.type})"

    # ----- arithmetic -----------------------------------------------------------------------
    def _operand(self, other) -> str:
        if isinstance(other, Tensor):
            return other.name
        if isinstance(other, (int, float, np.integer, np.floating)) and not isinstance(other, bool):
            return self.builder.scalar(float(other), self.dtype)
        raise GraphError(
            f"cannot combine tensor '{self.name}' ({self.type}) with {type(other).__name__} "
            f"{other!r}; use a Tensor or a Python number"
        )

    def _binary(self, op: str, other, reverse: bool = False) -> Tensor:
        operand = self._operand(other)
        inputs = [operand, self.name] if reverse else [self.name, operand]
        if isinstance(other, Tensor):
            self.builder.check_owns(other, f"{op} with '{self.name}'")
        return self.builder.emit(op, inputs, name=self.builder.node_name(op))[0]

    def __add__(self, other):
        return self._binary("add", other)

    def __radd__(self, other):
        return self._binary("add", other, reverse=True)

    def __sub__(self, other):
        return self._binary("sub", other)

    def __rsub__(self, other):
        return self._binary("sub", other, reverse=True)

    def __mul__(self, other):
        return self._binary("mul", other)

    def __rmul__(self, other):
        return self._binary("mul", other, reverse=True)

    def __truediv__(self, other):
        return self._binary("div", other)

    def __rtruediv__(self, other):
        return self._binary("div", other, reverse=True)

    def __neg__(self):
        return self._binary("mul", -1.0)

    # ----- methods --------------------------------------------------------------------------
    def _unary(self, op: str, attrs=None, name=None) -> Tensor:
        return self.builder.emit(op, [self], attrs, name=self.builder.node_name(op, name))[0]

    def relu(self) -> Tensor:
        return self._unary("relu")

    def sigmoid(self) -> Tensor:
        return self._unary("sigmoid")

    def tanh(self) -> Tensor:
        return self._unary("tanh")

    def softmax(self, dim: int) -> Tensor:
        return self._unary("softmax", {"axis": dim})

    def log_softmax(self, dim: int) -> Tensor:
        return self._unary("log_softmax", {"axis": dim})

    def flatten(self, start_dim: int = 1, end_dim: int = -1) -> Tensor:
        """Merge dims start_dim..end_dim (default from 1: keep the batch, unlike torch's 0)."""
        rank = self.ndim
        start, end = start_dim % max(rank, 1), end_dim % max(rank, 1)
        in_range = all(-rank <= d < rank for d in (start_dim, end_dim))
        if not in_range or start > end:
            raise GraphError(
                f"flatten of '{self.name}' ({self.type}): start_dim={start_dim} and "
                f"end_dim={end_dim} do not select a range of its {rank} dims"
            )
        if start == 1 and end == rank - 1:
            return self._unary("flatten", {"axis": 1})
        merged = sympy.Mul(*self.shape[start : end + 1])
        return self.reshape(*self.shape[:start], merged, *self.shape[end + 1 :])

    def reshape(self, *shape) -> Tensor:
        """Reshape to `shape` (ints, at most one -1, or this tensor's own sympy dims)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        target = reshape_target(self, shape)
        stem = self.builder.node_name("reshape")
        shape_const = self.builder.const(np.asarray(target, dtype=np.int64), f"{stem}.shape")
        return self.builder.emit("reshape", [self.name, shape_const], name=stem)[0]

    view = reshape


def reshape_target(tensor: Tensor, shape) -> list[int]:
    """ONNX reshape entries for a target shape: ints, -1, or 0 to copy a symbolic input dim."""
    target, inferred = [], 0
    for i, d in enumerate(shape):
        d = sympy.sympify(d)
        if d.is_Integer:
            target.append(int(d))
            inferred += int(d) == -1
        elif i < tensor.ndim and (d - tensor.shape[i]) == 0:
            target.append(0)
        else:
            target.append(-1)
            inferred += 1
    if inferred > 1:
        raise UnsupportedError(
            f"reshape of '{tensor.name}' ({tensor.type}) to {list(shape)}: at most one dim may "
            "be -1 or a symbolic size that is not copied from the same position"
        )
    return target


def Input(name: str, shape, dtype: str = "float32") -> Tensor:
    """A symbolic graph input, e.g. `Input("x", ("N", 1, 32, 32))`.

    Each input starts a graph of its own; `convc.nn.trace` gathers the inputs
    it is given into one new graph.
    """
    graph = Graph(name)
    graph.add_input(name, shape, dtype)
    return Tensor(Builder(graph), name)
