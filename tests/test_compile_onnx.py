"""Every ONNX backend node case in scope, through from_onnx + convc.compile.

The expected outputs are the ones onnx ships with each case (tests/onnx_cases.py).
Cases whose output shapes depend on run-time input *values* (a reshape or pad
whose target arrives as an input) cannot be planned ahead of time: `compile`
gives a model specialised on those inputs' values at run time, and it must give
onnx's outputs all the same.
"""

from __future__ import annotations

import pytest
from onnx_cases import assert_outputs, supported_cases

import convc
from convc.specialize import ShapeSpecializedModel

CASES = list(supported_cases())
RUN_TIME_SHAPES = {
    "test_constant_pad",
    "test_constant_pad_axes_as_initializers",
    "test_constant_pad_negative_axes_as_initializers",
    "test_reshape_allowzero_reordered",
    "test_reshape_extended_dims",
    "test_reshape_negative_dim",
    "test_reshape_negative_extended_dims",
    "test_reshape_one_dim",
    "test_reshape_reduced_dims",
    "test_reshape_reordered_all_dims",
    "test_reshape_reordered_last_dims",
    "test_reshape_zero_and_negative_dim",
    "test_reshape_zero_dim",
}


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_backend_case_compiled(case):
    name, model, inputs, expected, tolerances = case
    compiled = convc.compile(convc.from_onnx(model), threads=1)
    specialized = isinstance(compiled, ShapeSpecializedModel)
    assert specialized == (name in RUN_TIME_SHAPES)
    assert_outputs(name, compiled.run(inputs), expected, tolerances)


def test_run_time_shape_list_names_real_cases():
    assert RUN_TIME_SHAPES <= {case[0] for case in CASES}
