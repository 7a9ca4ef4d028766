"""The ONNX backend node test cases for the ops convc imports, built in memory.

The onnx wheel ships the case generators but not their .pb files, so the cases
come from `onnx.backend.test.case.node.collect_testcases()`, which runs every
generator once (a few seconds; cached for the session). A case is selected
when every node of its model is an op in convc's ONNX rule table, nothing
hand-picked. `UNSUPPORTED` names the selected cases that cannot pass for a
documented reason (docs/onnx_backend.md shows the same table): the importer
must reject those with UnsupportedError whose message matches `match`.

The interpreter and the compiled path share this module: iterate
`supported_cases()` for `(name, model, inputs, expected_outputs, tolerances)`
and check results with `assert_outputs`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import onnx

from convc.onnx.rules import RULES


class Unsupported(NamedTuple):
    """Why a case cannot pass, and a regex the importer's UnsupportedError must match."""

    reason: str
    match: str


class BackendCase(NamedTuple):
    name: str
    model: onnx.ModelProto
    inputs: dict  # graph input name -> array
    expected_outputs: dict  # graph output name -> array
    tolerances: dict  # rtol, atol for np.testing.assert_allclose
    unsupported: Unsupported | None


def _dtype(dtype: str) -> Unsupported:
    return Unsupported(
        f"{dtype} tensors are out of scope (convc holds float32/float64, int64 indices)",
        f"dtype {dtype} is not supported",
    )


def _pad_mode(mode: str) -> Unsupported:
    return Unsupported(
        f"mode='{mode}' on int32 data: only constant padding of float tensors", "dtype int32"
    )


_RUN_TIME_TRAINING = Unsupported(
    "training_mode (and ratio) arrive as run-time inputs; training dropout needs them "
    "constant, and its mask is random",
    "training_mode .* must be a constant",
)
_RUN_TIME_AXES = Unsupported(
    "Pad's axes arrive as a run-time input; ir needs them constant to type the result",
    "axes must be a constant",
)
_INDICES = Unsupported("MaxPool's second output Indices is not supported", "output Indices")

UNSUPPORTED: dict[str, Unsupported] = {
    **{f"test_{op}_{dt}": _dtype(dt) for op in ("add", "sub", "mul") for dt in ("int8", "int16")},
    **{
        f"test_{op}_{dt}": _dtype(dt)
        for op in ("add", "sub", "mul", "div")
        for dt in ("uint8", "uint16", "uint32", "uint64")
    },
    "test_div_int8": _dtype("int8"),
    "test_div_int16": _dtype("int16"),
    "test_div_int32_trunc": _dtype("int32"),
    "test_clip_default_int8_min": _dtype("int8"),
    "test_clip_default_int8_max": _dtype("int8"),
    "test_clip_default_int8_inbounds": _dtype("int8"),
    "test_clip_default_int8_inbounds_expanded": _dtype("int8"),
    "test_maxpool_2d_uint8": _dtype("uint8"),
    "test_maxpool_with_argmax_2d_precomputed_pads": _INDICES,
    "test_maxpool_with_argmax_2d_precomputed_strides": _INDICES,
    "test_edge_pad": _pad_mode("edge"),
    "test_reflect_pad": _pad_mode("reflect"),
    "test_wrap_pad": _pad_mode("wrap"),
    "test_constant_pad_axes": _RUN_TIME_AXES,
    "test_constant_pad_negative_axes": _RUN_TIME_AXES,
    "test_identity_sequence": Unsupported(
        "sequence-typed values are out of scope", "sequence_type"
    ),
    "test_identity_opt": Unsupported("optional-typed values are out of scope", "optional_type"),
    **{
        name: _RUN_TIME_TRAINING
        for name in (
            "test_training_dropout",
            "test_training_dropout_mask",
            "test_training_dropout_default",
            "test_training_dropout_default_mask",
            "test_training_dropout_zero_ratio",
            "test_training_dropout_zero_ratio_mask",
        )
    },
}


def _collect() -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some generators overflow casts on purpose
        return collect_testcases()


def _in_scope(model: onnx.ModelProto) -> bool:
    return all(
        node.domain in ("", "ai.onnx") and node.op_type in RULES for node in model.graph.node
    )


def _array(value) -> np.ndarray:
    """A case's input or output as an array (generators give TensorProtos and NumPy scalars)."""
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    return value if isinstance(value, list) else np.asarray(value)


def _case(test) -> BackendCase:
    model = test.model
    [(inputs, outputs)] = test.data_sets
    initializers = {t.name for t in model.graph.initializer}
    input_names = [v.name for v in model.graph.input if v.name not in initializers]
    return BackendCase(
        name=test.name,
        model=model,
        inputs={n: _array(v) for n, v in zip(input_names, inputs, strict=True)},
        expected_outputs={
            v.name: _array(a) for v, a in zip(model.graph.output, outputs, strict=True)
        },
        tolerances={"rtol": test.rtol, "atol": test.atol},
        unsupported=UNSUPPORTED.get(test.name),
    )


#: Cases that fail only because convc needs some inputs constant run a second time with
#: those inputs as initializers, under the name `<case>_as_initializers`. (Dropout with a
#: nonzero ratio is left out: its expected outputs come from NumPy's random mask.)
AS_INITIALIZERS = {
    "test_constant_pad_axes": ("axes",),
    "test_constant_pad_negative_axes": ("axes",),
    "test_training_dropout_zero_ratio": ("r", "t"),
    "test_training_dropout_zero_ratio_mask": ("r", "t"),
}


def _as_initializers(case: BackendCase, names: tuple) -> BackendCase:
    """The case with graph inputs `names` turned into initializers holding the case's values."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    kept = [v for v in model.graph.input if v.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(
        onnx.numpy_helper.from_array(case.inputs[name], name) for name in names
    )
    inputs = {k: v for k, v in case.inputs.items() if k not in names}
    return case._replace(
        name=f"{case.name}_as_initializers", model=model, inputs=inputs, unsupported=None
    )


@functools.cache
def backend_cases() -> tuple[BackendCase, ...]:
    """Every backend node case whose model uses only ops convc imports, in onnx's order,
    followed by the `AS_INITIALIZERS` variants."""
    cases = tuple(_case(test) for test in _collect() if _in_scope(test.model))
    by_name = {case.name: case for case in cases}
    variants = tuple(_as_initializers(by_name[n], inputs) for n, inputs in AS_INITIALIZERS.items())
    return cases + variants


def supported_cases() -> Iterator[tuple]:
    """(name, model, inputs, expected_outputs, tolerances) of the cases that must pass."""
    for case in backend_cases():
        if case.unsupported is None:
            yield case[:5]


def assert_outputs(case_name: str, actual: dict, expected: dict, tolerances: dict) -> None:
    """The backend runner's check: same outputs, shapes and dtypes, values within tolerance."""
    assert list(actual) == list(expected), f"{case_name}: outputs {list(actual)}"
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, f"{case_name}: output {name} has shape {got.shape}"
        assert got.dtype == want.dtype, f"{case_name}: output {name} has dtype {got.dtype}"
        np.testing.assert_allclose(got, want, err_msg=f"{case_name}: output {name}", **tolerances)
