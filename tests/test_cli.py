"""The command line: each subcommand through `convc.cli.main`, exit codes and error messages."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convc
from convc import cli
from convc.nn.examples import random_inputs

HERE = Path(__file__).resolve().parent
SAMPLE = str(HERE / "cli_sample.py")
LENET = HERE.parent / "samples" / "lenet5.py"


def _sample_module():
    return cli._load_sample(Path(SAMPLE))


def run_cli(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def expect_error(capsys, *argv, message):
    status, _, err = run_cli(capsys, *argv)
    assert status == 1
    assert err.startswith("convc: error: "), err
    assert message in err
    assert "Traceback" not in err


# ----- show and summary ------------------------------------------------------------------------


def test_show_graph(capsys):
    status, out, _ = run_cli(capsys, "show", SAMPLE)
    assert status == 0
    assert out.startswith("graph tiny(%x: f32[N,1,6,6]) {")
    assert "%fc: f32[N,3] = gemm(%flat, @fc.weight) transB=1" in out


def test_show_shapes_symbolic_and_bound(capsys):
    status, out, _ = run_cli(capsys, "show", SAMPLE, "--stage", "shapes")
    assert status == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["x"] == ["input", "float32", "[N,1,6,6]"]
    assert rows["conv.weight"] == ["param", "float32", "[2,1,3,3]"]
    assert rows["flat"] == ["node", "float32", "[N,32]"]
    _, out, _ = run_cli(capsys, "show", SAMPLE, "--stage", "shapes", "--batch", "5")
    assert "[5,2,4,4]" in out and "N" not in out.split("shape", 1)[1]


def test_show_dot(capsys):
    status, out, _ = run_cli(capsys, "show", SAMPLE, "--stage", "dot")
    assert status == 0
    assert out.startswith('digraph "tiny" {')
    assert '"conv" -> "relu"' in out


def test_registered_stage_is_shown(capsys, monkeypatch):
    monkeypatch.setitem(
        cli.STAGES, "names", cli.Stage("node names", lambda g, args: ",".join(g.nodes))
    )
    status, out, _ = run_cli(capsys, "show", SAMPLE, "--stage", "names")
    assert (status, out) == (0, "conv,relu,flat,fc\n")


def test_summary_hand_counts(capsys):
    # conv: 32 outputs a sample * 9 MACs, FLOPs 2*288 + 32 (bias); relu 32; gemm 3*32 MACs
    status, out, _ = run_cli(capsys, "summary", SAMPLE)
    assert status == 0
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert total == ["total", "116", "384*N", "832*N"]
    _, out, _ = run_cli(capsys, "summary", SAMPLE, "--batch", "10")
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert total == ["total", "116", "3,840", "8,320"]


# ----- run -------------------------------------------------------------------------------------


def test_run_with_example_inputs(capsys, tmp_path):
    out_file = tmp_path / "out.npz"
    status, out, _ = run_cli(
        capsys, "run", SAMPLE, "--interpret", "--batch", "2", "--output", out_file
    )
    assert status == 0
    assert "reference interpreter" in out
    assert "float32[2,1,6,6]" in out and "float32[2,3]" in out
    assert "elapsed:" in out
    module = _sample_module()
    expected = convc.interpret(module.graph, module.example_inputs(batch=2, seed=0))
    np.testing.assert_array_equal(np.load(out_file)["fc"], expected["fc"])


def test_run_with_input_file(capsys, tmp_path):
    x = np.random.default_rng(3).standard_normal((3, 1, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out_file = tmp_path / "out.npz"
    status, out, _ = run_cli(
        capsys,
        "run",
        SAMPLE,
        "--interpret",
        "--input",
        f"x={tmp_path / 'x.npy'}",
        "--output",
        out_file,
    )
    assert status == 0
    assert "float32[3,3]" in out
    expected = convc.interpret(_sample_module().graph, {"x": x})
    np.testing.assert_array_equal(np.load(out_file)["fc"], expected["fc"])


def test_run_seed_changes_inputs(capsys, tmp_path):
    outs = []
    for seed in ("0", "1"):
        run_cli(capsys, "run", SAMPLE, "--seed", seed, "--output", tmp_path / f"{seed}.npz")
        outs.append(np.load(tmp_path / f"{seed}.npz")["fc"])
    assert not np.array_equal(*outs)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("y=x.npy", "--input y: graph 'tiny' has no input 'y' (inputs: x)"),
        ("x", "--input 'x': expected NAME=FILE.npy"),
        ("x=missing.npy", "--input x: cannot read"),
    ],
)
def test_run_bad_input_option(capsys, spec, message):
    expect_error(capsys, "run", SAMPLE, "--input", spec, message=message)


def test_run_input_of_wrong_shape(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 6, 6), np.float32))
    expect_error(capsys, "run", SAMPLE, "--input", f"x={tmp_path / 'x.npy'}", message="'x'")


# ----- user errors -----------------------------------------------------------------------------


def test_missing_file_and_wrong_kind(capsys, tmp_path):
    expect_error(capsys, "show", tmp_path / "nope.py", message="nope.py: no such file")
    (tmp_path / "model.txt").write_text("")
    expect_error(capsys, "summary", tmp_path / "model.txt", message="expected a sample .py")


POOL_TOO_LARGE = """
import ir
def build(batch="N"):
    g = ir.Graph("g")
    g.add_input("x", (batch, 3, 4, 4))
    g.add_node("max_pool", ["x"], {"kernel_shape": [5, 5]}, name="p")
"""


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = 1\n", "defines no build(batch='N') function"),
        ("def build(batch='N'):\n    return 3\n", "build() returned int, not an ir.Graph"),
        ("def build(:\n", "bad.py:1:"),
        (POOL_TOO_LARGE, "max_pool 'p'"),
    ],
)
def test_bad_sample_files(capsys, tmp_path, source, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    expect_error(capsys, "show", path, message=message)


def test_sample_with_dataclass_and_sibling_import(capsys, tmp_path):
    (tmp_path / "sibling.py").write_text("CHANNELS = 3\n")
    (tmp_path / "model.py").write_text(
        "from __future__ import annotations\n"
        "from dataclasses import dataclass\n"
        "import ir\n"
        "from sibling import CHANNELS\n"
        "@dataclass\n"
        "class Config:\n"
        "    size: int = 4\n"
        "def build(batch='N'):\n"
        "    g = ir.Graph('g')\n"
        "    g.add_input('x', (batch, CHANNELS, Config().size, 4))\n"
        "    g.add_node('relu', ['x'], name='r')\n"
        "    g.set_outputs('r')\n"
        "    return g\n"
    )
    status, out, _ = run_cli(capsys, "show", tmp_path / "model.py")
    assert status == 0 and "%x: f32[N,3,4,4]" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ((), "required: COMMAND"),
        (("show", SAMPLE, "--stage", "nope"), "invalid choice: 'nope'"),
        (("summary", SAMPLE, "--batch", "0"), "expected a positive integer, got '0'"),
        (("run", SAMPLE, "--seed", "x"), "invalid int value"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments(capsys, argv, message):
    expect_error(capsys, *argv, message=message)


def test_help_exits_zero(capsys):
    status, out, _ = run_cli(capsys, "run", "--help")
    assert status == 0 and "--input NAME=FILE.npy" in out


# ----- ONNX files ------------------------------------------------------------------------------


def _write_onnx(path, batch):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.5, np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
            helper.make_node("Relu", ["y"], ["z"], name="relu"),
        ],
        "onnx_tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 5, 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, 2, 3, 3])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_run_generates_inputs(capsys, tmp_path):
    model = _write_onnx(tmp_path / "m.onnx", "batch")
    status, out, _ = run_cli(capsys, "run", model, "--batch", "2", "--output", tmp_path / "o.npz")
    assert status == 0
    assert "float32[2,1,5,5]" in out and "float32[2,2,3,3]" in out
    z = np.load(tmp_path / "o.npz")["z"]
    assert z.shape == (2, 2, 3, 3) and (z >= 0).all()


def test_onnx_summary_symbolic_batch(capsys, tmp_path):
    model = _write_onnx(tmp_path / "m.onnx", "batch")
    status, out, _ = run_cli(capsys, "summary", model)
    assert status == 0
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    # conv: 18 outputs a sample * 9 MACs; relu 18 FLOPs
    assert total == ["total", "18", "162*batch", "342*batch"]


def test_onnx_fixed_batch(capsys, tmp_path):
    model = _write_onnx(tmp_path / "m.onnx", 3)
    status, out, _ = run_cli(capsys, "run", model)
    assert status == 0 and "float32[3,2,3,3]" in out
    assert run_cli(capsys, "run", model, "--batch", "3")[0] == 0
    expect_error(capsys, "run", model, "--batch", "4", message="fixed batch size of 3")


def test_random_inputs_need_bound_dims():
    graph = convc.Graph("g")
    graph.add_input("x", ("N", 3, "H", 4))
    graph.add_input("labels", ("N",), "int64")
    with pytest.raises(convc.InputError, match="input 'x' has type f32\\[2,3,H,4\\]"):
        random_inputs(graph, ["x"], cli.batch_bindings(graph, 2), seed=0)
    labels = random_inputs(graph, ["labels"], cli.batch_bindings(graph, 2), seed=0)
    np.testing.assert_array_equal(labels["labels"], np.zeros(2, np.int64))


# ----- entry points ----------------------------------------------------------------------------


def test_python_dash_m(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "convc", "show", str(tmp_path / "none.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"convc: error: {tmp_path / 'none.py'}: no such file\n"


@pytest.mark.skipif(not LENET.exists(), reason="samples/lenet5.py not yet there")
def test_readme_main_job(capsys):
    status, out, _ = run_cli(capsys, "run", LENET, "--batch", "1")
    assert status == 0
    assert "elapsed:" in out


# ----- the README's commands and example ------------------------------------------------------

README = (HERE.parent / "README.md").read_text()
MAIN_JOB = "convc run samples/lenet5.py --batch 1"


def test_readme_commands_are_the_ci_commands():
    assert f"pip install -e . && {MAIN_JOB}" in README
    assert "pip install -e '.[test]' && python -m pytest" in README
    ci = (HERE.parent / ".ci" / "run").read_text().splitlines()
    assert ci.index("pip install -e '.[test]'") < ci.index("python -m pytest") < ci.index(MAIN_JOB)


def test_readme_dsl_example(capsys, tmp_path):
    code = re.search(r"## The DSL.*?```python\n(.*?)```", README, re.DOTALL).group(1)
    (tmp_path / "readme_example.py").write_text(code)
    namespace = runpy.run_path(str(tmp_path / "readme_example.py"))
    assert namespace["out"]["fc3"].shape == (2, 10)
    assert namespace["graph"].summary().total_params == 61706
    assert (
        "%conv1: f32[N,6,28,28] = conv2d(%x, @conv1.weight, @conv1.bias)" in capsys.readouterr().out
    )
