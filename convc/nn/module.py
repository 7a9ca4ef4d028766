"""Modules: PyTorch-style containers of parameters, buffers and submodules.

Stage: DSL. A `Module` owns NumPy arrays (wrapped as `Parameter` or `Buffer`)
and submodules, registered by attribute assignment as in PyTorch, so that
`state_dict()` keys are exactly PyTorch's (`layer1.0.bn1.running_mean`) and a
PyTorch state_dict converted with `{k: v.numpy() for k, v in sd.items()}`
loads with `load_state_dict`. Calling a module on `Tensor`s runs its
`forward`, which records nodes into the tensors' graph (see `tensor.py`).

Invariant: loading a state replaces a parameter's `.data` array instead of
writing into it, so a graph traced earlier (which shares the arrays it was
traced with) keeps the values it was traced with.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple, Self

import numpy as np

from ir import GraphError, InputError

from .tensor import Tensor


class Parameter:
    """A trainable array of a module (float arrays are stored as float32)."""

    requires_grad = True

    def __init__(self, data):
        array = np.asarray(data)
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        self.data = array

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def numpy(self) -> np.ndarray:
        return self.data

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"


class Buffer(Parameter):
    """A non-trainable array of a module's state (batch-norm running statistics)."""

    requires_grad = False


class LoadResult(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer and model; subclasses define `forward`."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ----- registration ---------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise GraphError(
                f"{type(self).__name__}: call super().__init__() before assigning '{name}'"
            )
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Buffer):
            self._buffers[name] = value
        elif isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        setattr(self, name, Buffer(array))

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        setattr(self, name, param)

    def add_module(self, name: str, module: Module | None) -> None:
        setattr(self, name, module)

    # ----- traversal ------------------------------------------------------------------------
    def named_modules(self, prefix: str = "", memo: set | None = None):
        """(path, module) for this module and every submodule, each once, depth first."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def named_children(self):
        yield from self._modules.items()

    def children(self):
        yield from self._modules.values()

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_states(self, prefix: str = ""):
        """(state_dict key, Parameter or Buffer) in PyTorch's state_dict order."""
        for name, param in self._parameters.items():
            yield f"{prefix}{name}", param
        for name, buf in self._buffers.items():
            yield f"{prefix}{name}", buf
        for name, child in self._modules.items():
            yield from child.named_states(f"{prefix}{name}.")

    def named_parameters(self, prefix: str = ""):
        """(name, Parameter) for the trainable parameters, each shared one once."""
        seen = set()
        for name, state in self.named_states(f"{prefix}." if prefix else ""):
            if not isinstance(state, Buffer) and id(state) not in seen:
                seen.add(id(state))
                yield name, state

    def parameters(self):
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self):
        for name, state in self.named_states():
            if isinstance(state, Buffer):
                yield name, state

    def num_parameters(self) -> int:
        """The number of trainable scalars (what torchvision's parameter counts count)."""
        return sum(int(p.data.size) for p in self.parameters())

    # ----- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter and buffer arrays by PyTorch's state_dict names."""
        return OrderedDict((name, state.data) for name, state in self.named_states())

    def load_state_dict(self, state_dict, strict: bool = True) -> LoadResult:
        """Load arrays by name (cast to each parameter's dtype); shapes must match exactly.

        With strict, a missing or unexpected key raises InputError naming it;
        otherwise they are returned as (missing_keys, unexpected_keys).
        """
        own = dict(self.named_states())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise InputError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        arrays = {k: self._checked_array(k, own[k], state_dict[k]) for k in own if k in state_dict}
        for key, array in arrays.items():  # nothing changes unless every array fits
            own[key].data = array
        return LoadResult(missing, unexpected)

    def _checked_array(self, key: str, state: Parameter, value) -> np.ndarray:
        """A copy of `value` in the parameter's dtype, or InputError naming the key."""
        array = np.asarray(value)
        if array.shape != state.shape or array.dtype.kind not in "biuf":
            raise InputError(
                f"{type(self).__name__}.load_state_dict: '{key}' is an array of shape "
                f"{array.shape} and dtype {array.dtype}; the module's parameter has shape "
                f"{state.shape} and dtype {state.dtype}"
            )
        return np.array(array, dtype=state.dtype)

    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    # ----- calling --------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        first = args[0] if args else None
        if not isinstance(first, Tensor):
            raise GraphError(
                f"{type(self).__name__} called on {type(first).__name__} {first!r:.60}; "
                "expected a convc Tensor (make one with convc.Input)"
            )
        builder = first.builder
        if not builder.scope and id(self) not in builder.module_paths:
            builder.set_root(self)
        builder.scope.append((self, builder.module_path(self)))
        try:
            return self.forward(*args, **kwargs)
        finally:
            builder.scope.pop()

    def forward(self, *args, **kwargs):
        raise GraphError(f"{type(self).__name__} defines no forward()")

    def describe(self) -> str:
        """The constructor arguments shown by repr (PyTorch's extra_repr)."""
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.describe()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: submodules in order, appended as "0", "1", ..."""

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> Self:
        self.add_module(str(len(self)), module)
        return self


class Sequential(_ModuleSequence):
    """Submodules named "0", "1", ... called in order (or named by an OrderedDict)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        return items[index]

    def forward(self, x):
        for module in self:
            x = module(x)
        return x


class ModuleList(_ModuleSequence):
    """A list of submodules named "0", "1", ...; its owner decides how to call them."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def __getitem__(self, index):
        items = list(self._modules.values())
        return ModuleList(items[index]) if isinstance(index, slice) else items[index]

    def extend(self, modules) -> ModuleList:
        for module in modules:
            self.append(module)
        return self
