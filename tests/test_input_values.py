"""Input values (issue 13 item 2): ``--input-value NAME=V[,V...]`` / ``input_values=`` fixes a
graph input; folding resolves the If and the shape computations that depend on it, the plan
records the values, and validate/simulate rebuild the same graph.  Sizes: float32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from stowage import cli
from stowage.errors import ModelError, PlanFormatError
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import import_model
from stowage.ir.onnx_values import recorded, resolve_values

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def vad_like() -> onnx.ModelProto:
    """silero-vad's pattern: ``If(sr == 16000)`` picks a branch, the branches' results differ
    in shape.  then: Relu(x) [1, 8]; else: Concat(x, x) [1, 16].  Then y = Neg(z)."""
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="then_relu")], "then", [],
                             [helper.make_tensor_value_info("t", F, None)])
    other = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["e"], axis=1, name="else_cat")], "else", [],
                              [helper.make_tensor_value_info("e", F, None)])
    nodes = [helper.make_node("Equal", ["sr", "c16"], ["cond"], name="eq"),
             helper.make_node("If", ["cond"], ["z"], then_branch=then, else_branch=other, name="by_rate"),
             helper.make_node("Neg", ["z"], ["y"], name="neg")]
    g = helper.make_graph(nodes, "vad", [helper.make_tensor_value_info("x", F, [1, 8]),
                                         helper.make_tensor_value_info("sr", I64, [])],
                          [helper.make_tensor_value_info("y", F, None)],
                          initializer=[numpy_helper.from_array(np.array(16000, np.int64), "c16")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def reshape_by_input() -> onnx.ModelProto:
    """x[2, 8] reshaped to [n, -1] with n an int64[1] input: its shape needs n's value."""
    nodes = [helper.make_node("Concat", ["n", "minus1"], ["shape"], axis=0, name="cat"),
             helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "rs", [helper.make_tensor_value_info("x", F, [2, 8]),
                                        helper.make_tensor_value_info("n", I64, [1])],
                          [helper.make_tensor_value_info("y", F, None)],
                          initializer=[numpy_helper.from_array(np.array([-1], np.int64), "minus1")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_if_is_planned_as_the_branch_taken():
    g = import_model(vad_like(), input_values={"sr": "16000"})
    # then: Relu(x) [1, 8] = 32 B, the If's result z is its Identity view, Neg writes 32 B.
    assert [op.op_type for op in g.computing_ops] == ["Relu", "Neg"]
    assert g.tensors["z"].shape == (1, 8) and g.tensors["y"].bytes == 32
    assert g.inputs == ("x",) and dict(g.input_values) == {"sr": (16000,)}
    assert m_r(g, True) == 64  # Relu: x 32 + t 32; Neg: z 32 + y 32
    assert any("planned as its then_branch" in n for n in g.import_notes)
    g = import_model(vad_like(), input_values={"sr": 8000})
    # else: Concat(x, x) [1, 16] = 64 B; Neg 64 + 64 = 128 = M_R.
    assert [op.op_type for op in g.computing_ops] == ["Concat", "Neg"]
    assert g.tensors["y"].shape == (1, 16) and m_r(g, True) == 128


def test_shape_computation_resolved_by_the_value():
    g = import_model(reshape_by_input(), input_values={"n": [4]})
    assert g.tensors["r"].shape == g.tensors["y"].shape == (4, 4)
    assert g.tensors["shape"].kind.value == "weight"  # folded: [4, -1]
    g = import_model(reshape_by_input(), input_values={"n": np.array([8], np.int64)})
    assert g.tensors["y"].shape == (8, 2)


@pytest.mark.parametrize("values, message", [
    ({"sr": "1.5"}, "--input-value sr: '1.5' is not an integer (input 'sr' is int64)"),
    ({"sr": "abc"}, "--input-value sr: 'abc' is not an integer"),
    ({"sr": "1,2"}, "--input-value sr: 2 value(s) given, but input 'sr' has shape [] (1 value(s))"),
    ({"sr": [[1, 2]]}, "--input-value sr: a value of shape [1, 2] does not fit input 'sr' of shape []"),
    ({"sr": 2 ** 63}, "out of range for int64"),
    ({"rate": 1}, "--input-value rate: the model has no graph input 'rate' (inputs: x, sr)"),
    ({"c16": 1}, "'c16' is an initializer (a weight), not a graph input"),
    ({"x": "1,2,3,4,5,6,7,nan"}, "is not a finite float32 number"),
])
def test_bad_input_values_are_one_line_errors(values, message):
    with pytest.raises(ModelError) as exc:
        import_model(vad_like(), input_values=values)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_cli_errors_exit_2(tmp_path: Path, capsys):
    path = tmp_path / "vad.onnx"
    onnx.save(vad_like(), str(path))
    assert cli.main(["inspect", str(path), "--input-value", "sr=1.5"]) == 2
    assert cli.main(["inspect", str(path), "--input-value", "nope=1"]) == 2
    with pytest.raises(SystemExit) as exc:  # argparse: malformed flag
        cli.main(["inspect", str(path), "--input-value", "sr"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no graph input 'nope'" in err


@pytest.mark.slow
def test_plan_records_the_values_and_validate_simulate_use_them(tmp_path: Path, capsys):
    path = tmp_path / "vad.onnx"
    onnx.save(vad_like(), str(path))
    assert cli.main(["inspect", str(path), "--input-value", "sr=8000"]) == 0
    assert "planned as its else_branch" in capsys.readouterr().out
    out = tmp_path / "out"
    assert cli.main(["compile", str(path), "--input-value", "sr=8000", "-o", str(out), "-q"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["options"]["input_values"] == {"sr": [8000]}
    capsys.readouterr()
    assert cli.main(["validate", str(path), str(out / "plan.json")]) == 0
    assert cli.main(["simulate", str(path), str(out / "plan.json")]) == 0
    assert "match" in capsys.readouterr().out


def test_api_compile_records_input_values(tmp_path: Path):
    import stowage.api
    from stowage.plan import plan_from_json, plan_to_json

    path = tmp_path / "vad.onnx"
    onnx.save(vad_like(), str(path))
    plan = stowage.api.compile(path, input_values={"sr": 16000}, solver="naive")
    assert dict(plan.options.input_values) == {"sr": (16000,)}
    again = plan_from_json(plan_to_json(plan))
    assert dict(again.options.input_values) == {"sr": (16000,)}
    for bad in (["16000"], [], [True, None], 5):
        d = json.loads(plan_to_json(plan))
        d["options"]["input_values"] = {"sr": bad}
        with pytest.raises(PlanFormatError, match=r"options\.input_values\.sr"):
            plan_from_json(json.dumps(d))
    d = json.loads(plan_to_json(plan))
    del d["options"]["input_values"]  # optional on read: older plans have none
    assert dict(plan_from_json(json.dumps(d)).options.input_values) == {}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), min_size=3, max_size=3))
def test_values_round_trip_through_the_record(vals):
    """What the plan records reads back into the same array (CLI string or list)."""
    x = helper.make_tensor_value_info("v", TensorProto.INT32, [3])
    g = helper.make_graph([helper.make_node("Neg", ["v"], ["y"])], "g", [x], [x.__class__(name="y")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    a = resolve_values(m, {"v": ",".join(map(str, vals))})["v"]
    b = resolve_values(m, {"v": recorded({"v": a})["v"]})["v"]
    assert a.dtype == b.dtype == np.int32 and a.tolist() == b.tolist() == vals
