"""The frameworks a case is timed on, each behind the same small interface.

Stage: benchmark setup. Input: a graph, its input arrays and a thread count.
Output: a `Prepared` runner whose `run()` executes the model once on inputs
bound in advance (so the timing covers inference only, no conversion) and
returns its outputs by graph output name, plus the setup time (compiling,
building the session).

Peers: `convc` (native code from `convc.compile`, present once the compiler
is), `numpy` (the convc NumPy interpreter, also the reference every output is
checked against), `torch` (eager PyTorch) and `onnxruntime`. The optional
ones are imported lazily; a missing package leaves its column out. Thread
counts are pinned for each: `convc.compile(threads=)`, `torch.set_num_threads`
and ONNX Runtime's intra-op pool; NumPy's OpenBLAS reads its environment
variables when it loads, which the driver (`convc.bench`) arranges by running
each thread count in a child process.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ir import Graph


@dataclass
class Prepared:
    """A ready runner: `run()` returns {output name: array-like}; setup_s is its build time."""

    run: Callable[[], dict]
    setup_s: float


@dataclass(frozen=True)
class Peer:
    """A framework column, present when `module` can be imported here.

    `setup` names what `prepare` builds when its time is worth reporting
    (compiling, creating a session), else None.
    """

    name: str
    label: str
    module: str
    prepare: Callable[[Graph, dict, int], Callable[[], dict]]
    setup: str | None = None

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


def _prepare_convc(graph: Graph, inputs: dict, threads: int):
    from convc.compiler import compile as compile_graph

    model = compile_graph(graph, threads=threads)
    return lambda: model.run(inputs)


def _prepare_numpy(graph: Graph, inputs: dict, threads: int):
    from convc import interpret

    return lambda: interpret(graph, inputs)


def _prepare_torch(graph: Graph, inputs: dict, threads: int):
    import torch

    from .torch_peer import torch_function

    torch.set_num_threads(threads)
    forward = torch_function(graph)
    feeds = {name: torch.from_numpy(array) for name, array in inputs.items()}

    def run():
        with torch.inference_mode():
            return forward(feeds)

    return run


def _prepare_onnxruntime(graph: Graph, inputs: dict, threads: int):
    import onnxruntime

    from .onnx_export import to_onnx

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(
        to_onnx(graph).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = list(graph.outputs)
    return lambda: dict(zip(names, session.run(names, inputs)))


PEERS = {
    peer.name: peer
    for peer in (
        Peer("convc", "convc", "convc.compiler", _prepare_convc, "compile"),
        Peer("numpy", "numpy interp", "convc.interpret", _prepare_numpy),
        Peer("torch", "PyTorch", "torch", _prepare_torch),
        Peer("onnxruntime", "ONNX Runtime", "onnxruntime", _prepare_onnxruntime, "session"),
    )
}
#: peers a user may name with --peers (convc itself always runs when it exists).
PEER_NAMES = ("numpy", "torch", "onnxruntime")


def prepare(peer: Peer, graph: Graph, inputs: dict, threads: int) -> Prepared:
    """Build `peer`'s runner for the case and time how long that took (imports excluded)."""
    importlib.import_module(peer.module)
    start = time.perf_counter()
    run = peer.prepare(graph, inputs, threads)
    return Prepared(run, time.perf_counter() - start)


def as_arrays(outputs: dict) -> dict[str, np.ndarray]:
    """Outputs of any peer (NumPy arrays, torch tensors) as NumPy arrays."""
    return {name: np.asarray(value) for name, value in outputs.items()}
