"""Optimizers: PyTorch's SGD and Adam as tensor expressions appended to a graph.

Stage: training (after autodiff). Input: a graph holding parameter values and
their gradients. Output: the same graph with one `texpr` node per updated
tensor, so that the update runs inside the same interpreted or compiled call as
the forward and backward passes. An optimizer never touches arrays itself; it
owns the per-parameter state arrays (zeros at first) and the step count, and
says which run-time scalars each step feeds (`scalars(step)`).

Update formulas, element by element, for a parameter p with gradient g at step
t = 1, 2, ... (PyTorch's `torch.optim` formulas, single-tensor path):

SGD(lr, momentum=m, weight_decay=wd, nesterov):
    g  <- g + wd * p                          (when wd != 0)
    b' =  m * b + g                           (momentum buffer, b = 0 at first;
                                               PyTorch starts with b = g: the same)
    d  =  g + m * b'  if nesterov else  b'    (d = g when m = 0)
    p' =  p - lr * d

Adam(lr, betas=(b1, b2), eps, weight_decay=wd):
    g  <- g + wd * p                          (L2 penalty, not AdamW's decoupled decay)
    m' =  b1 * m + (1 - b1) * g               (exp_avg, zero at first)
    v' =  b2 * v + (1 - b2) * g * g           (exp_avg_sq, zero at first)
    p' =  p - step_size * m' / (sqrt(v') / bias2 + eps)
    with step_size = lr / (1 - b1**t) and bias2 = sqrt(1 - b2**t), computed in
    double precision each step and fed as run-time scalars.

Names in the graph: state `<param>:<state>` (PyTorch's state keys:
momentum_buffer, exp_avg, exp_avg_sq) and updated values `<tensor>:updated`;
the run-time scalars are the rank-0 inputs `optimizer.lr`, `optimizer.step_size`,
`optimizer.bias2`. Hyperparameters other than the learning rate are constants
of the formulas: changing `optimizer.lr` between steps needs no recompilation,
changing a momentum does.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

import numpy as np
import sympy

from convc.nn import Parameter
from convc.texpr import TensorExpr, access
from convc.texpr.rules import axis_indices
from convc.texpr.serialize import program_formula, program_to_str
from ir import Graph, GraphError, InputError

UPDATED = ":updated"


def updated(name: str) -> str:
    """The name of the value that replaces `name` after a step."""
    return name + UPDATED


class Optimizer:
    """Hyperparameters, per-parameter state and the update formulas of one optimizer.

    `params` is what PyTorch accepts plus names: `model.parameters()` (matched to
    the graph's parameters by array identity when a step is built),
    `model.named_parameters()`, a dict of name -> array, or a list of names.
    """

    state_names: tuple[str, ...] = ()
    scalar_names: tuple[str, ...] = ()

    def __init__(self, params, lr: float):
        self.entries = _entries(params, type(self).__name__)
        self.lr = lr
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    @property
    def lr(self) -> float:
        """The learning rate: a run-time input, so it may change between steps."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        _check_non_negative(type(self).__name__, "lr", value)
        self._lr = float(value)

    def bind(self, graph: Graph) -> dict[str, np.ndarray]:
        """The optimized parameters as {graph name: array}; state arrays are created here.

        Raises GraphError naming a parameter name the graph does not hold as a
        trainable parameter. Parameter objects the graph does not read are left
        alone, as PyTorch leaves parameters without a gradient.
        """
        by_array = {id(v.data): n for n, v in graph.values.items() if v.kind == "param"}
        trainable = graph.params(trainable_only=True)
        bound: dict[str, np.ndarray] = {}
        for name, array in self.entries:
            if name is None:
                name = by_array.get(id(array))
                if name is None:
                    continue
            elif name not in trainable:
                raise GraphError(
                    f"{type(self).__name__}: parameter '{name}' is not a trainable parameter of "
                    f"graph '{graph.name}' (it has {sorted(trainable)})"
                )
            bound[name] = trainable[name] if array is None else array
        if not bound:
            raise GraphError(
                f"{type(self).__name__}: none of its parameters is read by graph '{graph.name}'"
            )
        for name, array in bound.items():
            self.state.setdefault(name, {s: np.zeros_like(array) for s in self.state_names})
        return bound

    def scalars(self, step: int) -> dict[str, np.ndarray]:
        """The rank-0 float32 inputs of step `step` (counted from 1)."""
        return {"optimizer.lr": np.asarray(self.lr, np.float32)}

    def append_updates(self, graph: Graph, param: str, grad: str) -> list[str]:
        """Add the update of `param` (gradient value `grad`) to `graph`; the names it defines.

        `graph` must already hold the state values `<param>:<state>` and the
        scalar inputs (see `declare`).
        """
        shape = graph.values[param].type.shape
        defined = []
        for target, body in self.formulas(param, grad, axis_indices(len(shape))):
            add_elementwise(graph, updated(target), shape, body)
            defined.append(updated(target))
        return defined

    def declare(self, graph: Graph, params: Iterable[str]) -> None:
        """Add the scalar inputs and, for every parameter, its state inputs to `graph`."""
        for name in self.scalar_names:
            _fresh_input(graph, name, (), "float32")
        for param in params:
            value = graph.values[param]
            for state in self.state_names:
                _fresh_input(graph, f"{param}:{state}", value.type.shape, value.dtype)

    def state_inputs(self, params: Iterable[str]) -> dict[str, np.ndarray]:
        """The state arrays of `params` by graph input name (`<param>:<state>`)."""
        return {f"{p}:{s}": a for p in params for s, a in self.state[p].items()}

    def formulas(self, param: str, grad: str, idx) -> list[tuple[str, sympy.Expr]]:
        """(updated tensor, its element at `idx`) in the order they must be computed."""
        raise NotImplementedError

    def _gradient(self, param: str, grad: str, idx, weight_decay: float) -> sympy.Expr:
        g = access(grad, idx)
        return g + sympy.Float(weight_decay) * access(param, idx) if weight_decay else g


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, weight decay and Nesterov momentum."""

    scalar_names = ("optimizer.lr",)

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(params, lr)
        _check_non_negative("SGD", "momentum", momentum)
        _check_non_negative("SGD", "weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise InputError("SGD: nesterov=True needs a momentum > 0 (as in PyTorch)")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.state_names = ("momentum_buffer",) if momentum else ()

    def formulas(self, param, grad, idx):
        g = self._gradient(param, grad, idx, self.weight_decay)
        lr = access("optimizer.lr", ())
        if not self.momentum:
            return [(param, access(param, idx) - lr * g)]
        m = sympy.Float(self.momentum)
        buf = f"{param}:momentum_buffer"
        new_buf = m * access(buf, idx) + g
        direction = (
            g + m * access(updated(buf), idx) if self.nesterov else access(updated(buf), idx)
        )
        return [(buf, new_buf), (param, access(param, idx) - lr * direction)]

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
            f"nesterov={self.nesterov})"
        )


class Adam(Optimizer):
    """Adam (Kingma and Ba) with PyTorch's bias correction and L2 weight decay."""

    state_names = ("exp_avg", "exp_avg_sq")
    scalar_names = ("optimizer.step_size", "optimizer.bias2")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        for k, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise InputError(f"Adam: betas[{k}]={beta!r} must lie in [0, 1)")
        _check_non_negative("Adam", "eps", eps)
        _check_non_negative("Adam", "weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def scalars(self, step: int) -> dict[str, np.ndarray]:
        beta1, beta2 = self.betas
        step_size = self.lr / (1.0 - beta1**step)
        bias2 = math.sqrt(1.0 - beta2**step)
        return {
            "optimizer.step_size": np.asarray(step_size, np.float32),
            "optimizer.bias2": np.asarray(bias2, np.float32),
        }

    def formulas(self, param, grad, idx):
        g = self._gradient(param, grad, idx, self.weight_decay)
        beta1, beta2 = (sympy.Float(b) for b in self.betas)
        m, v = f"{param}:exp_avg", f"{param}:exp_avg_sq"
        new_m = beta1 * access(m, idx) + (1 - beta1) * g
        new_v = beta2 * access(v, idx) + (1 - beta2) * g * g
        denom = sympy.sqrt(access(updated(v), idx)) / access("optimizer.bias2", ())
        denom = denom + sympy.Float(self.eps)
        step = access("optimizer.step_size", ()) * access(updated(m), idx) / denom
        return [(m, new_m), (v, new_v), (param, access(param, idx) - step)]

    def __repr__(self) -> str:
        return (
            f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
            f"weight_decay={self.weight_decay})"
        )


def add_elementwise(graph: Graph, name: str, shape, body: sympy.Expr) -> None:
    """Add a `texpr` node `name[idx] = body` (one element of a tensor shaped `shape`)."""
    idx = axis_indices(len(shape))
    expr = TensorExpr(
        name, idx, shape, body, op="optimizer", node=name, attrs={"family": "elementwise"}
    )
    reads = expr.reads
    shapes = {r: graph.values[r].type.shape for r in reads}
    attrs = {
        "shape": expr.shape,
        "dtype": expr.dtype,
        "program": program_to_str([expr], shapes),
        "formula": program_formula([expr]),
    }
    graph.add_node("texpr", reads, attrs, name=name, outputs=[name])


def _fresh_input(graph: Graph, name: str, shape, dtype: str) -> None:
    if name in graph.values or name in graph.nodes:
        raise GraphError(f"graph '{graph.name}': the optimizer's input '{name}' is already a name")
    graph.add_input(name, shape, dtype)


def _check_non_negative(owner: str, what: str, value) -> None:
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise InputError(f"{owner}: {what}={value!r} must be a finite number >= 0")


def _entries(params, owner: str) -> list[tuple[str | None, np.ndarray | None]]:
    """(name or None, array or None) for each parameter given; see `Optimizer`."""
    if isinstance(params, Mapping):
        params = params.items()
    entries = []
    for item in params:
        if isinstance(item, str):
            entries.append((item, None))
        elif isinstance(item, Parameter):
            entries.append((None, item.data))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            array = item[1].data if isinstance(item[1], Parameter) else item[1]
            entries.append((item[0], _float_array(owner, item[0], array)))
        else:
            raise InputError(
                f"{owner}: cannot optimize {type(item).__name__} {item!r:.60}; give Parameters, "
                "(name, Parameter) pairs, a dict of name -> array, or parameter names"
            )
    if not entries:
        raise InputError(f"{owner}: got an empty parameter list")
    return entries


def _float_array(owner: str, name: str, array) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype != np.float32:
        got = getattr(array, "dtype", type(array).__name__)
        raise InputError(f"{owner}: parameter '{name}' must be a float32 NumPy array, got {got}")
    return array
