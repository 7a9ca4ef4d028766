"""Every ONNX backend node case of an op convc imports, through from_onnx + interpret.

Expected outputs are the ones onnx ships with each case (see tests/onnx_cases.py);
cases listed in UNSUPPORTED must be rejected by the importer with the expected
UnsupportedError, so a change in how they fail is noticed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import onnx
import pytest
from onnx_cases import UNSUPPORTED, assert_outputs, backend_cases

import convc
from convc.onnx.rules import RULES

CASES = backend_cases()
DOCS = Path(__file__).resolve().parents[1] / "docs" / "onnx_backend.md"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_backend_case(case):
    if case.unsupported is not None:
        with pytest.raises(convc.UnsupportedError, match=case.unsupported.match):
            convc.from_onnx(case.model)
        return
    graph = convc.from_onnx(case.model)
    actual = convc.interpret(graph, case.inputs)
    assert_outputs(case.name, actual, case.expected_outputs, case.tolerances)


def test_every_listed_unsupported_case_exists():
    assert set(UNSUPPORTED) <= {case.name for case in CASES}


def test_every_rule_has_backend_cases():
    used = {node.op_type for case in CASES for node in case.model.graph.node}
    assert set(RULES) == used


def test_docs_table_lists_exactly_the_unsupported_cases():
    documented = re.findall(r"^\| `(test_\w+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert sorted(documented) == sorted(UNSUPPORTED)


def _ceil_mode_count(size, kernel, stride, dilation, pad_begin, pad_end):
    """PyTorch/ONNX Runtime: round up, but drop a last window that starts in the right padding."""
    count = math.ceil((size + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride) + 1
    return count - 1 if (count - 1) * stride >= size + pad_begin else count


def _ceil_mode_pools():
    for case in CASES:
        for node in case.model.graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type in ("MaxPool", "AveragePool") and attrs.get("ceil_mode"):
                yield case, node, attrs


@pytest.mark.parametrize(
    "case, node, attrs", list(_ceil_mode_pools()), ids=lambda v: getattr(v, "name", "")
)
def test_ceil_mode_cases_follow_the_pytorch_rule(case, node, attrs):
    """onnx's reference evaluator once got these shapes wrong; check the shipped ones."""
    x = case.inputs[node.input[0]]
    rank = x.ndim - 2
    pads = attrs.get("pads", [0] * 2 * rank)
    expected = [
        _ceil_mode_count(
            x.shape[2 + i],
            attrs["kernel_shape"][i],
            attrs.get("strides", [1] * rank)[i],
            attrs.get("dilations", [1] * rank)[i],
            pads[i],
            pads[i + rank],
        )
        for i in range(rank)
    ]
    assert list(case.expected_outputs[node.output[0]].shape[2:]) == expected
