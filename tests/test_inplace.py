"""In-place operators (``stowage.ir.inplace``): hand-checked M_R and the proof by execution."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import save
from stowage import cli
from stowage.ir.inplace import fuse_in_place
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import import_model


def conv_relu_add_model() -> onnx.ModelProto:
    """x(1x4x8x8) -> Conv 3x3 -> a -> Relu -> b -> Add(b, x) -> y -> Sigmoid -> z, float32:
    every tensor 1 KiB.

    Off: Conv needs x + a (+ W), Relu a + b, Add b + x + y, Sigmoid y + z.  On: Relu writes over
    a (a's only reader) and Add over b, both run in the Conv's step, which reads x and writes
    one buffer; the Sigmoid does not overwrite y because z is a graph output (kept apart)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["a"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Add", ["b", "x"], ["y"], name="add"),
        helper.make_node("Sigmoid", ["y"], ["z"], name="sig"),
    ]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8])  # noqa: E731
    g = helper.make_graph(nodes, "cra", [vi("x")], [vi("z")], [w], value_info=[vi("a"), vi("b"), vi("y")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def residual_read_twice_model() -> onnx.ModelProto:
    """a = Relu(x); b = Sigmoid(a); y = Add(a, b); z = Neg(y): a has two readers, so Sigmoid
    may not overwrite it; b's only reader is the Add, which may overwrite b."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["a"], ["b"], name="sig"),
        helper.make_node("Add", ["a", "b"], ["y"], name="add"),
        helper.make_node("Neg", ["y"], ["z"], name="neg"),
    ]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 16])  # noqa: E731
    g = helper.make_graph(nodes, "rr", [vi("x")], [vi("z")], value_info=[vi("a"), vi("b"), vi("y")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_relu_add_budgets() -> None:
    g = import_model(conv_relu_add_model())
    f = fuse_in_place(g)
    # Off: the Add needs b + x + y = 3 KiB.  On: one step reads x and writes a=b=y: 2 KiB.
    assert m_r(g, False) == 3 * 1024
    assert m_r(f, False) == 2 * 1024
    assert m_r(f, True) == 2 * 1024 + 4 * 4 * 9 * 4
    assert [op.name for op in f.computing_ops] == ["conv", "sig"]
    conv = f.computing_ops[0]
    assert [f.operators[i].name for i in conv.fused] == ["relu", "add"]
    bid = f.tensor_buffer["a"]
    assert f.tensor_buffer["b"] == bid == f.tensor_buffer["y"]
    assert not f.buffers[bid].is_output and f.buffers[bid].producer == conv.index
    assert f.tensor_buffer["z"] != bid
    # x is read by the step (the Add's other operand) and is not written.
    assert f.tensor_buffer["x"] in f.op_reads(conv) and f.tensor_buffer["x"] not in f.op_writes(conv)
    assert fuse_in_place(f) is f


def test_operand_with_two_readers_is_not_overwritten() -> None:
    # x is a graph input (never overwritten); a is read by Sigmoid and Add (two readers);
    # b's only reader is the Add, which overwrites it and runs in the Sigmoid's step.
    f = fuse_in_place(import_model(residual_read_twice_model()))
    names = {op.name: op for op in f.operators}
    assert [op.name for op in f.computing_ops] == ["relu", "sig", "neg"]
    assert names["relu"].fused == ()
    assert [f.operators[i].name for i in names["sig"].fused] == ["add"]
    assert names["add"].fused_into == names["sig"].index
    assert f.tensor_buffer["a"] != f.tensor_buffer["b"] == f.tensor_buffer["y"]
    # The Sigmoid step reads a (its own operand and the Add's), writes b = y: 64 + 64 bytes.
    assert m_r(f, False) == 128


@pytest.mark.parametrize("setting", ["on", "off"])
def test_compile_validate_simulate(tmp_path, capsys, setting: str) -> None:
    path = save(conv_relu_add_model(), tmp_path / "cra.onnx")
    out = tmp_path / "out"
    assert cli.main(["compile", str(path), "--capacity", "M_R", "--in-place", setting, "-o", str(out),
                     "--target", "mcu-cortex-m7"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["version"] == 2 and plan["options"]["in_place"] is (setting == "on")
    assert plan["target"]["levels"][0]["capacity"] == (2048 if setting == "on" else 3072)
    steps = plan["steps"]
    assert len(steps) == (2 if setting == "on" else 4)
    if setting == "on":
        assert steps[0]["fused"] == ["relu", "add"] and steps[0]["index"] == 0
    capsys.readouterr()
    assert cli.main(["validate", str(path), str(out / "plan.json")]) == 0
    assert cli.main(["simulate", str(path), str(out / "plan.json")]) == 0
    assert "match: the plan computes the model's outputs" in capsys.readouterr().out


def test_inspect_shows_both(tmp_path, capsys) -> None:
    path = save(conv_relu_add_model(), tmp_path / "cra.onnx")
    assert cli.main(["inspect", "--json", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["m_r_in_place"]["off"]["without_weights"] == 3072
    assert d["m_r_in_place"]["on"]["without_weights"] == 2048
    assert [x["op"] for x in d["in_place_ops"]] == ["relu", "add"]
