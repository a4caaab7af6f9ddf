"""QDQ folding (``stowage.ir.qdq``, ``--qdq fold|off``): a ``DequantizeLinear -> op ->
QuantizeLinear`` group is one int8 step, the float tensors between the pairs have no buffer,
weights are their int8 initializers with scales and zero points; plans of folded graphs
validate and simulate bit-exactly; on the int8 models in models/int8/ the QDQ and QOperator
forms give the same M_R, steps and activation sizes.

Sizes below are derived by hand from the model built in ``_conv_add_model``: x float
1x4x4x4 (256 B), every int8 activation 1x4x4x4 (64 B), an int8 5x5 kernel 4x4x5x5 (400 B,
float 1,600 B), an int32 bias of 4 (16 B, float 16 B), float scales (4 B), int8 zero points
(1 B) and the bias's int32 zero point (4 B)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.cli import main
from stowage.errors import StowageError
from stowage.ir.inplace import fuse_in_place, in_place_report
from stowage.ir.lifetimes import m_r, summarize
from stowage.ir.onnx_import import load_graph
from stowage.ir.qdq import fold_qdq, qdq_members, qdq_report
from stowage.plan import plan_from_json, plan_to_json

ROOT = Path(__file__).resolve().parents[1]
INT8 = ROOT / "models" / "int8"


def _scalar(name: str, value: float | int, dtype: int) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, [], [value])


def _save(tmp_path: Path, nodes: list, inits: list, inputs: list, outputs: list, name: str) -> Path:
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, path)
    return path


def _conv_add_model(tmp_path: Path) -> Path:
    """x -> Q -> DQ ─┬─ Conv(DQ(w int8), DQ(b int32)) -> Q -> DQ ─ Add -> Q -> DQ -> y
                     └──────────────────────────────────────────┘
    The DQ of x is read by both the Conv and the residual Add."""
    rng = np.random.default_rng(0)
    f, i8, i32 = TensorProto.FLOAT, TensorProto.INT8, TensorProto.INT32
    inits = [
        _scalar("s0", 0.05, f), _scalar("z0", 3, i8), _scalar("s1", 0.1, f), _scalar("z1", -2, i8),
        _scalar("s2", 0.15, f), _scalar("z2", 1, i8), _scalar("sw", 0.02, f), _scalar("zw", 0, i8),
        _scalar("sb", 0.001, f), _scalar("zb", 0, i32),
        numpy_helper.from_array(rng.integers(-60, 60, (4, 4, 5, 5)).astype(np.int8), "wq"),
        numpy_helper.from_array(rng.integers(-500, 500, (4,)).astype(np.int32), "bq"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s0", "z0"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "s0", "z0"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], name="dq_w"),
        helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["bd"], name="dq_b"),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], name="conv", pads=[2, 2, 2, 2]),
        helper.make_node("QuantizeLinear", ["c", "s1", "z1"], ["cq"], name="q_c"),
        helper.make_node("DequantizeLinear", ["cq", "s1", "z1"], ["cd"], name="dq_c"),
        helper.make_node("Add", ["cd", "xd"], ["a"], name="add"),
        helper.make_node("QuantizeLinear", ["a", "s2", "z2"], ["aq"], name="q_a"),
        helper.make_node("DequantizeLinear", ["aq", "s2", "z2"], ["y"], name="dq_y"),
    ]
    return _save(tmp_path, nodes, inits, [helper.make_tensor_value_info("x", f, [1, 4, 4, 4])],
                 [helper.make_tensor_value_info("y", f, [1, 4, 4, 4])], "conv_add_qdq")


def _steps(g) -> list[str]:
    return [op.name for op in g.computing_ops]


def test_conv_add_groups_are_int8_steps_with_hand_checked_sizes(tmp_path) -> None:
    raw = load_graph(_conv_add_model(tmp_path))
    g = fold_qdq(raw)
    assert g.qdq and not raw.qdq
    # Four steps: the input Q (float in, int8 out), the Conv and Add groups, the output DQ.
    assert _steps(g) == ["q_x", "conv", "add", "dq_y"]
    ops = {op.name: op for op in g.operators}
    members = {n: [g.operators[i].name for i in ops[n].fused] for n in ("conv", "add")}
    assert members == {"conv": ["dq_x", "dq_w", "dq_b", "q_c"], "add": ["dq_x", "dq_c", "q_a"]}
    # The shared DQ of x runs in both steps (its fused_into names the first).
    assert ops["dq_x"].fused_into == ops["conv"].index and not ops["dq_x"].computing
    # The float tensors between the pairs, and the float weight and bias, have no buffer.
    for name in ("xd", "wd", "bd", "c", "cd", "a"):
        assert name in g.tensors and name not in g.tensor_buffer, name
    by = g.tensor_buffer

    def names(bids) -> set[str]:
        return {g.buffers[b].tensors[0] for b in bids}

    assert names(g.op_reads(ops["conv"])) == {"xq", "s0", "z0", "wq", "sw", "zw", "bq", "sb", "zb", "s1", "z1"}
    assert names(g.op_writes(ops["conv"])) == {"cq"}
    assert names(g.op_reads(ops["add"])) == {"xq", "s0", "z0", "cq", "s1", "z1", "s2", "z2"}
    assert names(g.op_writes(ops["add"])) == {"aq"}
    assert g.buffers[by["xq"]].consumers == (ops["conv"].index, ops["add"].index)
    assert g.buffers[by["cq"]].producer == ops["conv"].index
    assert g.buffers[by["wq"]].bytes == 400 and g.buffers[by["bq"]].bytes == 16
    # Activations only: Q_x and DQ_y are 256 + 64 = 320; Conv 64 + 64; Add 3 x 64.
    assert m_r(g, False) == 320
    # With weights, the Conv group: xq 64 + wq 400 + sw 4 + zw 1 + bq 16 + sb 4 + zb 4 + s0 4
    # + z0 1 + s1 4 + z1 1 + cq 64 = 567.
    assert m_r(g, True) == 567
    # As written (--qdq off): the float Add reads cd and xd and writes a (3 x 256 = 768); the
    # float Conv with its dequantized weight and bias: 256 + 1,600 + 16 + 256 = 2,128.
    assert (m_r(raw, False), m_r(raw, True)) == (768, 2128)
    s = summarize(g)
    # wq, bq, the weight's and the bias's scale and zero point, three activation pairs.
    assert s.weight_bytes == 400 + 16 + (4 + 1) + (4 + 4) + 3 * (4 + 1)
    assert s.activation_bytes == 3 * 64 + 256  # xq, cq, aq and the float graph output y
    assert qdq_report(g) == [("conv", "Conv", ("dq_x", "dq_w", "dq_b", "q_c")),
                             ("add", "Add", ("dq_x", "dq_c", "q_a"))]
    # In-place fusion afterwards leaves the groups alone and does not report their members.
    fused = fuse_in_place(g)
    assert in_place_report(fused) == [] and qdq_members(fused) == qdq_members(g)
    assert fold_qdq(g) is g


def test_folded_plan_simulates_bit_exactly(tmp_path) -> None:
    from stowage.simulate import simulate

    path = _conv_add_model(tmp_path)
    plan = compile_plan(path, capacity="M_R", solver="heuristic", time_limit=5)
    assert plan.options.qdq == "fold" and [s.op for s in plan.steps] == ["q_x", "conv", "add", "dq_y"]
    graph = load_model(path, in_place=True, qdq="fold")
    result = simulate(path, graph, plan, seed=3)
    assert result.ok, result.first_problem
    assert all(o.exact for o in result.outputs)


@pytest.mark.slow
def test_cli_round_trip_of_a_folded_plan(tmp_path, capsys) -> None:
    # The plan file says how it was made; validate and simulate rebuild the folded graph.
    path = _conv_add_model(tmp_path)
    out = tmp_path / "out"
    assert main(["compile", "-q", str(path), "--capacity", "M_R", "-o", str(out)]) == 0
    assert json.loads((out / "plan.json").read_text())["options"]["qdq"] == "fold"
    assert main(["validate", str(path), str(out / "plan.json")]) == 0
    assert main(["simulate", "-q", str(path), str(out / "plan.json")]) == 0
    capsys.readouterr()


def test_qdq_off_plans_the_graph_as_written(tmp_path, capsys) -> None:
    path = _conv_add_model(tmp_path)
    plan = compile_plan(path, capacity="M_R", solver="heuristic", time_limit=5, qdq="off", in_place=False)
    assert plan.options.qdq == "off" and len(plan.steps) == 8
    out = tmp_path / "off"
    assert main(["compile", "-q", str(path), "--qdq", "off", "--in-place", "off", "--capacity", "M_R",
                 "-o", str(out)]) == 0
    assert json.loads((out / "plan.json").read_text())["options"]["qdq"] == "off"
    assert main(["validate", str(path), str(out / "plan.json")]) == 0
    capsys.readouterr()


def test_plan_option_round_trips_and_older_plans_read_as_off(tmp_path) -> None:
    plan = compile_plan(_conv_add_model(tmp_path), capacity="M_R", solver="heuristic", time_limit=5)
    d = json.loads(plan_to_json(plan))
    assert d["options"]["qdq"] == "fold"
    assert plan_from_json(json.dumps(d)).options.qdq == "fold"
    del d["options"]["qdq"]
    assert plan_from_json(json.dumps(d)).options.qdq == "off"
    d["options"]["qdq"] = "maybe"
    with pytest.raises(StowageError):
        plan_from_json(json.dumps(d))


def test_bad_qdq_setting_is_a_one_line_error(tmp_path, capsys) -> None:
    path = _conv_add_model(tmp_path)
    with pytest.raises(StowageError, match="qdq must be 'fold' or 'off'"):
        compile_plan(path, qdq="yes")
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(path), "--qdq", "yes"])
    assert exc.value.code == 2
    assert "--qdq" in capsys.readouterr().err


def test_inspect_lists_the_folded_groups(tmp_path, capsys) -> None:
    path = _conv_add_model(tmp_path)
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^QDQ groups folded \(int8 steps\) +2 \(Add 1, Conv 1\)$", text, re.M), text
    assert main(["inspect", "--json", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["qdq_groups"] == [{"step": "conv", "op_type": "Conv", "members": ["dq_x", "dq_w", "dq_b", "q_c"]},
                               {"step": "add", "op_type": "Add", "members": ["dq_x", "dq_c", "q_a"]}]
    assert d["m_r_without_weights"] == 320
    assert main(["inspect", "--qdq", "off", str(path)]) == 0
    assert "not folded (--qdq off)" in capsys.readouterr().out


def test_unrequantized_float_reader_keeps_the_chain_as_written(tmp_path) -> None:
    """A DQ whose float value a non-requantized op also reads (here a float Relu that is a
    graph output) cannot vanish, so the Conv group reading it does not fold either."""
    f, i8 = TensorProto.FLOAT, TensorProto.INT8
    inits = [_scalar("s", 0.1, f), _scalar("z", 0, i8), _scalar("sw", 0.1, f), _scalar("zw", 0, i8),
             numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "wq")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], name="dq_w"),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv"),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"], name="q_c"),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"], name="dq_y"),
        helper.make_node("Relu", ["xd"], ["r"], name="relu"),
    ]
    vi = [helper.make_tensor_value_info(n, f, [1, 2, 3, 3]) for n in ("x", "y", "r")]
    raw = load_graph(_save(tmp_path, nodes, inits, vi[:1], vi[1:], "blocked"))
    g = fold_qdq(raw)
    assert _steps(g) == _steps(raw) and qdq_report(g) == [] and dict(g.tensor_buffer) == dict(raw.tensor_buffer)


def test_same_scale_requantize_is_a_view_and_simulates(tmp_path) -> None:
    """DQ -> Flatten -> Q with the DQ's own scale and zero point is the identity on the int8
    bytes: the Q's result joins the int8 buffer, no step runs it (as QOperator's Flatten)."""
    from stowage.simulate import simulate

    f, i8 = TensorProto.FLOAT, TensorProto.INT8
    inits = [_scalar("s", 0.07, f), _scalar("z", 5, i8), _scalar("s2", 0.03, f), _scalar("z2", -1, i8)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_x"),
        helper.make_node("Flatten", ["xd"], ["xf"], name="flat"),
        helper.make_node("QuantizeLinear", ["xf", "s", "z"], ["fq"], name="q_f"),
        helper.make_node("DequantizeLinear", ["fq", "s", "z"], ["fd"], name="dq_f"),
        helper.make_node("Relu", ["fd"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "s2", "z2"], ["rq"], name="q_r"),
        helper.make_node("DequantizeLinear", ["rq", "s2", "z2"], ["y"], name="dq_y"),
    ]
    path = _save(tmp_path, nodes, inits, [helper.make_tensor_value_info("x", f, [1, 4, 2, 2])],
                 [helper.make_tensor_value_info("y", f, [1, 16])], "requant")
    g = fold_qdq(load_graph(path))
    assert _steps(g) == ["q_x", "relu", "dq_y"]
    assert g.tensor_buffer["xq"] == g.tensor_buffer["fq"] and "xd" not in g.tensor_buffer
    # Q_x: 64 + 16; the Relu group: 16 + 16; DQ_y: 16 + 64.
    assert m_r(g, False) == 80
    plan = compile_plan(g, capacity="M_R", solver="heuristic", time_limit=5)
    result = simulate(path, fuse_in_place(g), plan, seed=1)
    assert result.ok and all(o.exact for o in result.outputs), result.first_problem


# -- the int8 models: QDQ and QOperator forms, both folded (the CLI's default) ------------
#: Hand-derived in tests/test_int8_models.py (QOperator form): M_R activations only, then with
#: weights; the QDQ form's largest step reads 8 B more with weights when it has a bias (the
#: bias's float scale and int32 zero point, which QLinearConv does not have).
PAIRS = {
    "tiny_cnn": (15_360, 15_365, 0),
    "mobilenet_v2": (1_505_280, 1_506_543, 8),
    "efficientnet_b0": (3_612_672, 3_612_687, 0),
    "lraspp_mobilenet_v3": (5_268_480, 5_268_485, 0),
}


def _activation_sizes(g) -> list[int]:
    used = {b for op in g.computing_ops for b in (*g.op_reads(op), *g.op_writes(op))}
    return sorted(b.bytes for b in g.buffers if b.id in used and b.kind.value in ("activation", "output"))


@pytest.mark.parametrize("source", [pytest.param(s, marks=pytest.mark.slow) if s == "efficientnet_b0" else s
                                    for s in PAIRS])
def test_qdq_and_qoperator_forms_plan_the_same_int8_graph(source) -> None:
    act, with_w, bias_extra = PAIRS[source]
    qop = fold_qdq(load_graph(INT8 / f"{source}_int8_qop.onnx"))
    qdq = fold_qdq(load_graph(INT8 / f"{source}_int8_qdq.onnx"))
    assert (m_r(qop, False), m_r(qop, True)) == (act, with_w)
    assert (m_r(qdq, False), m_r(qdq, True)) == (act, with_w + bias_extra)
    # One step per QOperator node, the same activation buffers byte for byte.
    assert len(qdq.computing_ops) == len(qop.computing_ops)
    assert _activation_sizes(qdq) == _activation_sizes(qop)
    assert not [t for n, t in qdq.tensors.items() if n in qdq.tensor_buffer and t.kind.value == "activation"
                and t.dtype == "float" and qdq.buffers[qdq.tensor_buffer[n]].consumers], \
        "no float activation is planned between the input Q and the output DQ"


# -- property: random QDQ networks ----------------------------------------------------------
@st.composite
def _qdq_networks(draw) -> tuple[list, list, list, list]:
    """A random int8 network in QDQ form: Relu, Add and 1x1 Conv layers on earlier int8
    tensors (branches), each DQ shared by its readers or one per reader, the last tensor and
    sometimes an inner float result also graph outputs (which blocks that group)."""
    f, i8 = TensorProto.FLOAT, TensorProto.INT8
    c = 2
    inits = [_scalar("s_in", 0.1, f), _scalar("z_in", 0, i8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["t0"], name="q_in")]
    scale = {"t0": ("s_in", "z_in")}
    outputs = []
    share = draw(st.booleans())
    dq_of: dict[str, str] = {}

    def dq(t: str, k: int, j: int) -> str:
        if share and t in dq_of:
            return dq_of[t]
        name = f"{t}_dq{k}_{j}"
        nodes.append(helper.make_node("DequantizeLinear", [t, *scale[t]], [name], name=f"dq_{name}"))
        dq_of[t] = name
        return name

    n = draw(st.integers(1, 5))
    for k in range(1, n + 1):
        kind = draw(st.sampled_from(["Relu", "Add", "Conv"]))
        pool = sorted(scale)
        a = draw(st.sampled_from(pool))
        ins = [dq(a, k, 0)]
        if kind == "Add":
            ins.append(dq(draw(st.sampled_from(pool)), k, 1))
        if kind == "Conv":
            inits += [numpy_helper.from_array(np.ones((c, c, 1, 1), np.int8), f"w{k}"),
                      _scalar(f"sw{k}", 0.01, f), _scalar(f"zw{k}", 0, i8)]
            nodes.append(helper.make_node("DequantizeLinear", [f"w{k}", f"sw{k}", f"zw{k}"], [f"wd{k}"],
                                          name=f"dq_w{k}"))
            ins.append(f"wd{k}")
        nodes.append(helper.make_node(kind, ins, [f"f{k}"], name=f"op{k}"))
        if draw(st.integers(0, 5)) == 0:
            outputs.append(f"f{k}")  # a float result someone else reads: not folded
        inits += [_scalar(f"s{k}", 0.1 + k / 100, f), _scalar(f"z{k}", k % 3, i8)]
        nodes.append(helper.make_node("QuantizeLinear", [f"f{k}", f"s{k}", f"z{k}"], [f"t{k}"], name=f"q{k}"))
        scale[f"t{k}"] = (f"s{k}", f"z{k}")
    nodes.append(helper.make_node("DequantizeLinear", [f"t{n}", *scale[f"t{n}"]], ["y"], name="dq_out"))
    vi = [helper.make_tensor_value_info(o, f, [1, c, 3, 3]) for o in ("x", "y", *outputs)]
    return nodes, inits, vi[:1], vi[1:]


@seed(13)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=_qdq_networks())
def test_folding_random_networks_keeps_the_graph_whole(net) -> None:
    import tempfile

    nodes, inits, ins, outs = net
    with tempfile.TemporaryDirectory() as d:
        raw = load_graph(_save(Path(d), nodes, inits, ins, outs, "rand"))
    g = fold_qdq(raw)
    # Never more memory, and a valid graph: file order topological, every step's buffers
    # exist, every operator that ran before runs in some step (DQs may run in several).
    assert m_r(g, False) <= m_r(raw, False) and m_r(g, True) <= m_r(raw, True)
    assert g.is_topological(g.file_order())
    ran = {m.index for op in g.computing_ops for m in g.step_members(op)}
    aliased = {op.index for op in g.operators if not op.computing and op.fused_into is None
               and op.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert {op.index for op in raw.computing_ops} <= ran | aliased
    for op in g.computing_ops:
        for b in (*g.op_reads(op), *g.op_writes(op)):
            assert 0 <= b < len(g.buffers)
        assert [m.index for m in g.step_members(op)] == sorted(m.index for m in g.step_members(op))
    # With no float result read outside its group, every group folds: no float activation is
    # planned between the input Q and the output DQ.
    if len(outs) == 1:
        floats = [b for b in g.buffers if b.kind.value == "activation" and b.consumers
                  and g.tensors[b.tensors[0]].dtype == "float"]
        assert floats == [] and len(g.computing_ops) == 2 + sum(n.op_type in ("Relu", "Add", "Conv") for n in nodes)
    # Folding is idempotent and the in-place pass runs on top of it.
    assert fold_qdq(g) is g
    assert fuse_in_place(g).is_topological(fuse_in_place(g).file_order())


def test_the_api_validator_folds_like_the_plan_says() -> None:
    """``stowage.validate(load_graph(path), plan)`` on a plan compiled with the defaults
    (QDQ folded, in place on) judges the folded graph, as ``stowage validate`` does."""
    from pathlib import Path

    import stowage

    path = Path(__file__).resolve().parents[1] / "models" / "int8" / "tiny_cnn_int8_qdq.onnx"
    plan = stowage.compile(path, capacity="M_R", time_limit=5)
    assert plan.options.qdq == "fold" and plan.options.in_place
    assert stowage.validate(stowage.load_graph(path), plan).ok
