"""The simulator: naive plans of real models compute exactly what ONNX Runtime computes; tiny
graphs with views, weights read in place, control flow and graph-only files; CLI exit codes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import light_models
from helpers import chain_model, diamond_model
from stowage.cli import main
from stowage.ir.onnx_import import load_graph
from stowage.plan import save_plan
from stowage.plan.validate import validate
from stowage.simulate import simulate
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target

LIGHT = {p.stem: p for p in light_models()}


def naive(graph, weights: bool, target: str = "ethos-u55-256"):
    return solve(Problem(graph, load_target(target).with_capacity(None), weights), "naive")


@pytest.mark.parametrize("model", ["light_squeezenet", "light_shufflenet", "light_inception_v1"])
@pytest.mark.parametrize("weights", [True, False])
def test_naive_plans_of_real_models_match_ort_bit_exactly(model, weights) -> None:
    path = LIGHT[model]
    graph = load_graph(path)
    plan = naive(graph, weights)
    r = simulate(path, graph, plan)
    assert r.ok, r.first_problem
    assert r.corruptions == ()
    assert [o.name for o in r.outputs] == list(graph.outputs)
    assert all(o.exact and o.max_abs_diff == 0.0 for o in r.outputs)
    assert r.steps == len(graph.computing_ops)
    assert not r.random_weights


def test_three_level_plan_simulates(tmp_path) -> None:
    path = LIGHT["light_squeezenet"]
    graph = load_graph(path)
    plan = naive(graph, True, "sn40l")
    assert {t.src for t in plan.transfers if t.dst == "sram"} == {"ddr"}   # two levels away
    assert simulate(path, graph, plan).ok


def test_tiny_graph_with_views_and_in_place_weights(tmp_path) -> None:
    path = tmp_path / "diamond.onnx"
    onnx.save(diamond_model(), path)
    graph = load_graph(path)
    for weights in (True, False):
        r = simulate(path, graph, naive(graph, weights))
        assert r.ok, r.first_problem
        assert r.outputs[0].exact


def test_different_seeds_give_different_inputs_same_verdict(tmp_path) -> None:
    path = tmp_path / "chain.onnx"
    onnx.save(chain_model(4, 32), path)
    graph = load_graph(path)
    plan = naive(graph, True)
    assert simulate(path, graph, plan, seed=1).ok and simulate(path, graph, plan, seed=2).ok


def matmul_model() -> onnx.ModelProto:
    """x[1,8] -> MatMul(W[8,8]) -> Relu -> Add(b[1,8]) -> y."""
    w = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8) / 64, "W")
    b = numpy_helper.from_array(np.ones((1, 8), np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Relu", ["m"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "b"], ["y"], name="add")]
    g = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], initializer=[w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_graph_only_model_gets_seeded_random_weights(tmp_path) -> None:
    """Weights saved to an external file that is then deleted: the graph still plans, and the
    simulator generates seeded random weights for both the plan run and the ORT run."""
    path = tmp_path / "mm.onnx"
    onnx.save(matmul_model(), path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="mm.data", size_threshold=0)
    with_data = simulate(path, load_graph(path), naive(load_graph(path), True))
    assert with_data.ok and not with_data.random_weights
    (tmp_path / "mm.data").unlink()
    graph = load_graph(path)
    r = simulate(path, graph, naive(graph, True))
    assert r.random_weights
    assert r.ok, r.first_problem


def if_model() -> onnx.ModelProto:
    """y = If(sum(x) > 0, x + 1, x - 1): both branches read x from the outer scope."""
    one = numpy_helper.from_array(np.ones((1, 4), np.float32), "one")
    then_g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "one"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
        helper.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if"),
    ]
    g = helper.make_graph(nodes, "ifm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                          initializer=[one, numpy_helper.from_array(np.array(0, np.float32), "zero")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_control_flow_runs_as_one_node(tmp_path) -> None:
    path = tmp_path / "if.onnx"
    onnx.save(if_model(), path)
    graph = load_graph(path)
    plan = naive(graph, True)
    assert validate(graph, plan).ok
    r = simulate(path, graph, plan)
    assert r.ok, r.first_problem


def test_element_size_override_is_refused(tmp_path, capsys) -> None:
    path = LIGHT["light_squeezenet"]
    graph = load_graph(path, element_bytes=1)
    plan_path = tmp_path / "p.json"
    save_plan(naive(graph, True), plan_path)
    assert main(["simulate", str(path), str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "element-size override (element_bytes=1)" in err and err.count("\n") == 1
    # The validator does check it (the plan's element size is used by default).
    assert main(["validate", str(path), str(plan_path)]) == 0


def test_cli_exit_codes(tmp_path, capsys) -> None:
    path = LIGHT["light_squeezenet"]
    graph = load_graph(path)
    plan = naive(graph, True)
    good = tmp_path / "good.json"
    save_plan(plan, good)
    assert main(["simulate", str(path), str(good)]) == 0
    out = capsys.readouterr().out
    assert "output softmaxout_1: bit-exact vs ONNX Runtime" in out and "match:" in out

    d = json.loads(good.read_text())
    dropped = d["transfers"].pop(5)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    assert main(["simulate", str(path), str(bad), "--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["match"] is False
    first = res["corruptions"][0]
    assert first["buffer"] == dropped["buffer"] and first["step"] == dropped["step"]
    assert "found it corrupted" in first["message"] and "poison" in first["message"]
    # The validator's verdict comes with it (rule 3: the data never reached sram).
    assert res["valid"] is False and res["executed"] is True
    assert res["violations"] and res["violations"][0].startswith("rule ")

    assert main(["simulate", str(path), str(tmp_path / "none.json")]) == 2
    assert "plan file not found" in capsys.readouterr().err
