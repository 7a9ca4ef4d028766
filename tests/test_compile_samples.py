"""Every sample model (samples/*.py) compiled end to end, at batch 1 and 3, against the
interpreter. One compilation serves both batch sizes (the batch N stays symbolic). The
small models run by default; the ImageNet-sized ones (seconds of LLVM time each) are
marked slow."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from compile_check import assert_compiled_matches

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SMALL = ("lenet5", "conv1d_sequence", "conv3d_volume")
ALL = sorted(p.stem for p in SAMPLES.glob("*.py") if not p.stem.startswith("_"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"sample_{name}", SAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def check_sample(name: str) -> None:
    module = load(name)
    graph = module.build(batch="N")
    for batch in (1, 3):
        assert_compiled_matches(graph, module.example_inputs(batch=batch, seed=batch))


@pytest.mark.parametrize("name", SMALL)
def test_small_sample(name):
    check_sample(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in SMALL])
def test_large_sample(name):
    check_sample(name)


def test_every_sample_is_covered():
    assert set(SMALL) <= set(ALL)
    assert all(hasattr(load(name), "build") for name in ALL)
