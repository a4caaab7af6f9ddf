"""Bad input to ``stowage inspect``: one line on stderr naming the problem, exit code 2, no
traceback, no library chatter.  One test per case of issue 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage import cli
from tests.conftest import LIGHT_ZOO

F = TensorProto.FLOAT
ROOT = Path(__file__).resolve().parent.parent


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def save(tmp_path: Path, nodes, inputs, outputs, initializer=(), name="m.onnx") -> Path:
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializer))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    path.write_bytes(m.SerializeToString())  # no checker: these models are broken on purpose
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("stowage: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_missing_file(tmp_path, capsys):
    assert_one_line_error(*run_cli(capsys, str(tmp_path / "nope.onnx")), "model file not found")


def test_non_onnx_file(tmp_path, capsys):
    p = tmp_path / "notes.onnx"
    p.write_text("this is a text file, not a model\n")
    assert_one_line_error(*run_cli(capsys, str(p)), "is not a valid ONNX file")


def test_empty_file(tmp_path, capsys):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    assert_one_line_error(*run_cli(capsys, str(p)), "model file is empty")


def test_truncated_file(tmp_path, capsys):
    data = (LIGHT_ZOO / "light_resnet50.onnx").read_bytes()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2])
    assert_one_line_error(*run_cli(capsys, str(p)), "truncated")


def test_cycle(tmp_path, capsys):
    p = save(tmp_path,
             [helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
              helper.make_node("Relu", ["a"], ["b"], name="n2"),
              helper.make_node("Relu", ["b"], ["y"], name="n3")],
             [vi("x", [1, 4])], [vi("y", [1, 4])])
    assert_one_line_error(*run_cli(capsys, str(p)), "graph has a cycle: n1 -> n2 -> n1")


def test_output_never_produced(tmp_path, capsys):
    p = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
             [vi("x", [1, 4])], [vi("y", [1, 4]), vi("ghost", [1, 4])])
    assert_one_line_error(*run_cli(capsys, str(p)), "graph output 'ghost' is never produced")


def test_read_of_unknown_tensor(tmp_path, capsys):
    p = save(tmp_path, [helper.make_node("Add", ["x", "nobody"], ["y"], name="add")],
             [vi("x", [1, 4])], [vi("y", [1, 4])])
    assert_one_line_error(*run_cli(capsys, str(p)), "node 'add' (Add) reads 'nobody'")


@pytest.mark.parametrize("dim, word", [(-1, "-1"), (0, "0")])
def test_negative_or_zero_input_dim(tmp_path, capsys, dim, word):
    # A -1 or 0 input axis is a dynamic axis (issue 13): unbound, named with its --dim flag.
    p = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [vi("x", [dim, 4])], [vi("y", [dim, 4])])
    assert_one_line_error(*run_cli(capsys, str(p)), "dynamic axis 0 of 'x'", "--dim 'x[0]=1'")


def test_zero_sized_intermediate(tmp_path, capsys):
    # Slice [2:2] of x[4] is empty: an activation with a zero dimension.
    inits = [numpy_helper.from_array(np.array([v], dtype=np.int64), n) for n, v in (("s", 2), ("e", 2))]
    p = save(tmp_path, [helper.make_node("Slice", ["x", "s", "e"], ["z"]), helper.make_node("Relu", ["z"], ["y"])],
             [vi("x", [4])], [vi("y", None)], initializer=inits)
    assert_one_line_error(*run_cli(capsys, str(p)), "tensor 'z' has a zero dimension in shape [0]")


def test_tensor_over_2_pow_40_bytes(tmp_path, capsys):
    shape = [1 << 20, 1 << 20, 2]  # 2^41 float32 elements = 2^43 bytes
    p = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape)], [vi("y", shape)])
    assert_one_line_error(*run_cli(capsys, str(p)), "over 2^40")


def test_unbound_symbolic_dim(tmp_path, capsys):
    p = save(tmp_path, [helper.make_node("Add", ["x", "m"], ["y"])],
             [vi("x", ["batch", "seq"]), vi("m", ["batch", "seq"])], [vi("y", ["batch", "seq"])])
    assert_one_line_error(*run_cli(capsys, str(p)), "'batch'", "'seq'", "--dim batch=1", "--dim seq=1")
    code, out, err = run_cli(capsys, str(p), "--dim", "batch=1", "--dim", "seq=3")
    assert code == 0 and err == ""
    assert "input bytes                             24" in out  # x and m: 1*3*4 bytes each


def test_escaping_external_data_path(tmp_path, capsys):
    w = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", "../../secrets.bin"
    p = save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["y"])], [vi("x", [1, 4])], [vi("y", [1, 4])],
             initializer=[w])
    assert_one_line_error(*run_cli(capsys, str(p)), "'../../secrets.bin' escapes the model's folder")


@pytest.mark.parametrize("case", ["truncated", "custom_op", "unbound"])
def test_real_process_stderr_is_one_clean_line(tmp_path, case):
    """Through a real process: nothing from onnx / onnxruntime / Python warnings leaks."""
    if case == "truncated":
        data = (LIGHT_ZOO / "light_densenet121.onnx").read_bytes()
        p = tmp_path / "t.onnx"
        p.write_bytes(data[:-1000])
        expected, code = "is not a valid ONNX file", 2
    elif case == "custom_op":
        # Unknown op in a custom domain: symbolic inference is tried (and logs) and fails.
        g = helper.make_graph([helper.make_node("Foo", ["x"], ["u"], domain="com.example"),
                               helper.make_node("Relu", ["u"], ["y"])], "g", [vi("x", [2, 8])], [vi("y", None)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
        p = tmp_path / "c.onnx"
        p.write_bytes(m.SerializeToString())
        expected, code = "shape of tensor 'u'", 2
    else:
        p = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [vi("x", ["n", 4])], [vi("y", ["n", 4])])
        expected, code = "--dim n=1", 2
    env = {**os.environ, "PYTHONWARNINGS": "always"}
    r = subprocess.run([sys.executable, "-m", "stowage", "inspect", str(p)], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == code
    assert r.stdout == ""
    lines = r.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("stowage: error: ") and expected in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == [p]  # symbolic inference wrote no temp file into cwd


def test_usage_mistakes_are_one_line_exit_2(capsys):
    from stowage.cli import main as cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["inspect", "m.onnx", "--dim", "batch=0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stowage: error:") and "batch=0" in err
