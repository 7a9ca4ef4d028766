"""Loop IR: the imperative form every kernel takes between lowering and LLVM codegen.

Stage: produced by `convc.lower` (tensor expression + schedule -> kernels), consumed by
`convc.codegen` (kernels -> llvmlite.ir) and printed by `convc.loops.printer`.

Representation
--------------
- A `Program` is the whole compiled model: its `Buffer`s (inputs, outputs, params and
  temporaries placed in one arena), its `Kernel`s, the call sequence, and the run-time
  symbols (e.g. the batch size ``N``) that sizes and loop bounds may use.
- Index arithmetic is sympy: loop variables and run-time symbols are sympy Symbols (matched
  by name), and an index may use +, *, integer constants, ``floor(p/q)`` and ``ceiling(p/q)``
  with a positive integer ``q``, ``Mod(a, q)``, ``Min`` and ``Max``. Every index must be an
  integer for every integer value of its symbols (a bare ``n/2`` is a CodegenError).
- Values (`Expr` subclasses) are small frozen trees: `Const`, `Index` (an index expression
  used as an int64 value), `Load`, `Ref` (a local), `Unary`, `Binary`, `Fma`, `Cmp`,
  `Select`, `Cast`. Python operators build them: ``Load("x", (i,)) * 2.0 + Ref("acc")``.
- Statements: `For`, `Store`, `Let`, `Alloc`, `Assign`, `If`, `Block`. `Let` and `Alloc`
  declare a local for the rest of the enclosing `Block` (C-like scoping).

Loop kinds and their semantics
------------------------------
Every loop has plain sequential semantics; the kind is a promise the lowering makes and the
codegen exploits:

- ``serial``: an ordinary loop.
- ``parallel``: iterations are independent (no two write the same element, none reads what
  another writes); the range is split statically over the threads. Parallel loops nested
  perfectly (the inner one the only statement of the outer, its bounds free of the outer
  variable) share one region over the product of their ranges; any other parallel loop
  inside a parallel loop runs serially inside its thread.
- ``vectorized`` (``width`` W): the body is evaluated for W consecutive values of the loop
  variable at once with explicit ``<W x T>`` vectors. Loads/stores whose index has
  coefficient 1 in the variable become contiguous vector accesses, invariant loads become
  broadcasts, loads with a constant stride of 2-4 one wide load and a shuffle, anything else
  a gather/scatter. Locals declared inside become vectors. An `If` whose condition depends
  on the variable runs each branch under the lanes where it holds (masked loads and stores,
  blended local updates; skipped when no lane holds), so a bound check guards the accesses
  under it exactly as in scalar code. The one allowed write to a local declared outside is a
  reduction ``Assign(acc, (), Binary(op, Ref(acc), e))`` with
  op in add/mul/max/min (lanes are combined at the end, so float sums are reassociated).
  A store to an address that does not depend on the variable is an error. ``tail`` says how
  an extent that is not a multiple of W finishes: ``"scalar"`` (the body once per leftover
  iteration) or ``"masked"`` (one masked vector iteration). The variable must not appear in
  the bounds of loops nested inside.
- ``unrolled``: fully unrolled at codegen time (the extent must be a constant); the variable
  becomes a constant in each copy, so e.g. ``acc[t]`` with unrolled ``t`` lives in a register.

Invariants (checked by `convc.loops.verify_program` before codegen)
-----------------------------------------------------------------
Buffer and kernel names are unique; loop variables do not shadow enclosing ones or symbols;
every buffer an expression names exists and index tuples have its rank; indices use only
loop variables in scope and program symbols; temporaries have an arena ``offset`` that is
provably a multiple of 64 bytes. Not checked (the lowering's promise): the arena size covers
the temporaries, and no two buffers one kernel uses overlap (codegen marks them ``noalias``).
The program's printed text (`convc.loops.printer.format_program`) determines its code
completely, so its hash keys the code caches (parameter *values* are not part of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

DTYPES = ("float32", "float64", "int32", "int64", "bool")
"""Element types. ``bool`` is one byte (0/1) in memory, an i1 inside expressions."""

DTYPE_SIZES = {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "bool": 1}
ROLES = ("input", "output", "param", "temp")
LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled")
TAILS = ("scalar", "masked")
UNARY_OPS = (
    "neg", "abs", "exp", "log", "tanh", "erf", "sqrt", "sigmoid", "floor", "ceil", "not",
)  # fmt: skip
BINARY_OPS = ("add", "sub", "mul", "div", "max", "min", "pow", "mod", "and", "or")
CMP_OPS = ("lt", "le", "gt", "ge", "eq", "ne")
REDUCE_OPS = ("add", "mul", "max", "min")

IndexExpr = sympy.Expr | int


def loop_var(name: str) -> sympy.Symbol:
    """A loop variable: a non-negative integer sympy Symbol (codegen matches symbols by name)."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


def _sym(e: IndexExpr) -> sympy.Expr:
    return sympy.sympify(e)


def _index(index) -> tuple[sympy.Expr, ...]:
    if not isinstance(index, (tuple, list)):
        index = (index,)
    return tuple(_sym(i) for i in index)


def _value(v) -> Expr:
    """Wrap Python numbers as constants (float -> float32, int -> int64, bool -> bool)."""
    if isinstance(v, Expr):
        return v
    if isinstance(v, bool):
        return Const(v, "bool")
    if isinstance(v, int):
        return Const(v, "int64")
    if isinstance(v, float):
        return Const(v, "float32")
    raise TypeError(f"cannot use {v!r} as a loop-IR value")


# ---------------------------------------------------------------------------- values


class Expr:
    """Base of value expressions. Operators build `Binary`/`Unary` nodes."""

    def __add__(self, other):
        return Binary("add", self, _value(other))

    def __radd__(self, other):
        return Binary("add", _value(other), self)

    def __sub__(self, other):
        return Binary("sub", self, _value(other))

    def __rsub__(self, other):
        return Binary("sub", _value(other), self)

    def __mul__(self, other):
        return Binary("mul", self, _value(other))

    def __rmul__(self, other):
        return Binary("mul", _value(other), self)

    def __truediv__(self, other):
        return Binary("div", self, _value(other))

    def __rtruediv__(self, other):
        return Binary("div", _value(other), self)

    def __neg__(self):
        return Unary("neg", self)


@dataclass(frozen=True)
class Const(Expr):
    """A scalar constant of `dtype` (broadcast when used in vector context)."""

    value: float | int | bool
    dtype: str = "float32"


@dataclass(frozen=True)
class Index(Expr):
    """The value of an index expression (int64), e.g. to compare a loop variable with a bound."""

    expr: sympy.Expr

    def __post_init__(self):
        object.__setattr__(self, "expr", _sym(self.expr))


@dataclass(frozen=True)
class Load(Expr):
    """``buffer[index...]``: one element (row-major over the buffer's shape)."""

    buffer: str
    index: tuple[sympy.Expr, ...]

    def __post_init__(self):
        object.__setattr__(self, "index", _index(self.index))


@dataclass(frozen=True)
class Ref(Expr):
    """A local: a `Let` name (index ``()``) or an element of an `Alloc` array."""

    name: str
    index: tuple[sympy.Expr, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "index", _index(self.index) if self.index != () else ())


@dataclass(frozen=True)
class Unary(Expr):
    """``op(x)``; op in UNARY_OPS. Math ops (exp, log, tanh, erf, sigmoid) need floats."""

    op: str
    x: Expr


@dataclass(frozen=True)
class Binary(Expr):
    """``op(a, b)``; op in BINARY_OPS; both operands have the same dtype."""

    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Fma(Expr):
    """``a*b + c`` rounded once (llvm.fma): the micro-kernel building block."""

    a: Expr
    b: Expr
    c: Expr


@dataclass(frozen=True)
class Cmp(Expr):
    """``a op b`` -> bool; op in CMP_OPS. Float comparisons are ordered (false on NaN)."""

    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Select(Expr):
    """``a if cond else b`` (elementwise in vector context)."""

    cond: Expr
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Cast(Expr):
    """Convert `x` to `dtype` (float->int truncates toward zero; bool is 0/1)."""

    x: Expr
    dtype: str


# ---------------------------------------------------------------------------- statements


class Stmt:
    """Base of statements."""


@dataclass(frozen=True)
class Block(Stmt):
    """A sequence of statements; the scope of the `Let`/`Alloc` declarations in it."""

    stmts: tuple[Stmt, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "stmts", tuple(self.stmts))


@dataclass(frozen=True)
class For(Stmt):
    """``for var in start..stop`` (stop exclusive); see the module docstring for `kind`."""

    var: sympy.Symbol
    start: sympy.Expr
    stop: sympy.Expr
    body: Stmt
    kind: str = "serial"
    width: int = 1
    tail: str = "scalar"

    def __post_init__(self):
        object.__setattr__(self, "start", _sym(self.start))
        object.__setattr__(self, "stop", _sym(self.stop))
        if isinstance(self.body, (list, tuple)):
            object.__setattr__(self, "body", Block(tuple(self.body)))


@dataclass(frozen=True)
class Store(Stmt):
    """``buffer[index...] = value`` (value converted to the buffer's dtype must match it).

    `streaming`: a non-temporal store where the store is a whole aligned vector (the line
    goes to memory without being read first, and leaves the caches to the kernel's inputs):
    for large model outputs that nothing in the program reads again. Codegen fences the
    kernel (and each parallel body) that has them, so the writes are visible when it returns.
    """

    buffer: str
    index: tuple[sympy.Expr, ...]
    value: Expr
    streaming: bool = False

    def __post_init__(self):
        object.__setattr__(self, "index", _index(self.index))
        object.__setattr__(self, "value", _value(self.value))


@dataclass(frozen=True)
class Prefetch(Stmt):
    """A hint to bring ``buffer[index...]`` into cache (no value, no effect on results);
    the index must be in bounds like any access's and must not depend on a vector lane."""

    buffer: str
    index: tuple[sympy.Expr, ...]

    def __post_init__(self):
        object.__setattr__(self, "index", _index(self.index))


@dataclass(frozen=True)
class Barrier(Stmt):
    """A compiler barrier: stores before it are done there and loads after it read memory
    again (no instruction is emitted). It ends each chunk of a cache-blocked reduction
    (`convc.lower.nest`): without it LLVM merged a bias-free conv's final and partial
    stores into one, then kept a whole row's partial sums in registers across the chunk
    loop and spilled them inside the reduction (3x3 64->64 @56: 3.0 ms against 1.35)."""


@dataclass(frozen=True)
class Let(Stmt):
    """Bind `name` to a value for the rest of the block (immutable; read with `Ref(name)`)."""

    name: str
    value: Expr

    def __post_init__(self):
        object.__setattr__(self, "value", _value(self.value))


@dataclass(frozen=True)
class Alloc(Stmt):
    """A mutable local array of constant `shape` (``()`` for a scalar), set to `init`.

    Lives in registers when every access index is constant after unrolling (accumulators).
    Each element is one value, or one vector of the enclosing vectorized loop's width.
    `lanes` > 1 declares elements of that many lanes outside any vectorized loop: a panel
    that vectorized loops of that width later write and read lane by lane (packed inputs,
    `convc.lower.nest`), each thread its own.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    init: Expr | None = None
    lanes: int = 1

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.init is not None:
            object.__setattr__(self, "init", _value(self.init))


@dataclass(frozen=True)
class Assign(Stmt):
    """``name[index...] = value`` for an `Alloc` local."""

    name: str
    index: tuple[sympy.Expr, ...]
    value: Expr

    def __post_init__(self):
        object.__setattr__(self, "index", _index(self.index) if self.index != () else ())
        object.__setattr__(self, "value", _value(self.value))


@dataclass(frozen=True)
class If(Stmt):
    """``if cond: then else: orelse``; `cond` is a bool value (per lane in a vector loop)."""

    cond: Expr
    then: Stmt
    orelse: Stmt | None = None


# ---------------------------------------------------------------------------- program


@dataclass(frozen=True)
class Buffer:
    """A named n-d array in memory, row-major (C order) over `shape`.

    `role`: ``input``/``output`` (the caller's arrays), ``param`` (weights, packed at compile
    time, owned by the executable), ``temp`` (placed in the arena at byte `offset`, a sympy
    expression over the run-time symbols, multiple of 64). `align` is the alignment in bytes
    that codegen may assume for the buffer's base address (64 for params and temps, which
    the runtime allocates; inputs/outputs too when the runtime copies them into aligned
    storage, which it does).
    """

    name: str
    dtype: str
    shape: tuple[sympy.Expr, ...]
    role: str
    offset: sympy.Expr | None = None
    align: int = 64

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(_sym(s) for s in self.shape))
        if self.offset is not None:
            object.__setattr__(self, "offset", _sym(self.offset))

    @property
    def size(self) -> sympy.Expr:
        """Number of elements."""
        return sympy.Mul(*self.shape)

    @property
    def nbytes(self) -> sympy.Expr:
        return self.size * DTYPE_SIZES[self.dtype]

    def strides(self) -> tuple[sympy.Expr, ...]:
        """Row-major strides in elements."""
        strides, acc = [], sympy.Integer(1)
        for d in reversed(self.shape):
            strides.append(acc)
            acc = acc * d
        return tuple(reversed(strides))


@dataclass(frozen=True)
class Kernel:
    """A function over the program's buffers; its parameters are the buffers and symbols
    its body names (derived by codegen, in program order). `comment` is printed above it
    (e.g. which graph nodes it fuses). `parallel_when`: None, or a bool expression of the
    run-time symbols (``Cmp("ge", Index(N), Index(4))``) outside which its parallel loops
    run on the calling thread alone."""

    name: str
    body: Stmt
    comment: str = ""
    parallel_when: Expr | None = None

    def __post_init__(self):
        if isinstance(self.body, (list, tuple)):
            object.__setattr__(self, "body", Block(tuple(self.body)))


@dataclass(frozen=True)
class Program:
    """The whole model in loop IR.

    `symbols`: run-time symbol names in the entry point's order (e.g. ``("N",)``).
    `calls`: kernel names in execution order (default: every kernel once, in order).
    `arena_size`: bytes of the arena holding all temps (sympy over the symbols).
    `params`: the packed values of the ``param`` buffers; not part of the program's hash.
    """

    name: str
    buffers: tuple[Buffer, ...]
    kernels: tuple[Kernel, ...]
    symbols: tuple[str, ...] = ()
    calls: tuple[str, ...] | None = None
    arena_size: sympy.Expr | int = 0
    params: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "buffers", tuple(self.buffers))
        object.__setattr__(self, "kernels", tuple(self.kernels))
        object.__setattr__(self, "symbols", tuple(self.symbols))
        if self.calls is None:
            object.__setattr__(self, "calls", tuple(k.name for k in self.kernels))
        object.__setattr__(self, "arena_size", _sym(self.arena_size))

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    def kernel(self, name: str) -> Kernel:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(name)

    def external_buffers(self) -> tuple[Buffer, ...]:
        """Buffers the caller passes to the entry point, in order: inputs, outputs, params."""
        order = {"input": 0, "output": 1, "param": 2}
        ext = [b for b in self.buffers if b.role != "temp"]
        return tuple(sorted(ext, key=lambda b: order[b.role]))
