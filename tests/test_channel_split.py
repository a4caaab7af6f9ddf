"""Output-channel weight tiling (``stowage.ir.channel_split``): with weights in the compute
level, an operator whose weights do not fit becomes channel groups writing into slices of its
result (a Concat in place).  Hand-checked group counts, names and weight slices; plans that
validate and simulate; the weight blob; the plan's ``channel_split`` rebuilt by the validator."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import save
from stowage import cli
from stowage.ir.channel_split import aligned_footprint, choose_splits, split_channels
from stowage.ir.inplace import fuse_in_place
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import import_model, load_graph
from stowage.plan import load_plan
from stowage.plan.validate import validate


def mlp_model() -> tuple[onnx.ModelProto, np.ndarray]:
    """x[1,64] f32 -> Gemm(W1[32,64], C1[32], transB) -> h[1,32] -> Relu -> MatMul(W2t[32,16]) -> y.

    fc1's step with weights: x 256 + W1 8,192 + C1 128 + h 128 = 8,704 B.  At 4,096 B (align
    16): 2 groups of 16 channels need 256 + 4,096 + 64 + 128 = 4,544 B, too many; 3 groups
    (11, 11, 10 channels) need 256 + 2,816 + 48 + 128 = 3,248 B and 256 + 2,560 + 48 + 128 =
    2,992 B (h is one buffer the groups write 44, 44 and 40 B of).  fc2 needs 128 + 2,048 + 64 =
    2,240 B and stays whole."""
    rng = np.random.default_rng(2)
    w1 = rng.standard_normal((32, 64)).astype(np.float32)
    ws = [numpy_helper.from_array(w1, "W1"),
          numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "C1"),
          numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "W2t")]
    nodes = [helper.make_node("Gemm", ["x", "W1", "C1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["hr"], name="relu"),
             helper.make_node("MatMul", ["hr", "W2t"], ["y"], name="fc2")]
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(nodes, "mlp", [vi("x", [1, 64])], [vi("y", [1, 16])], ws,
                          value_info=[vi("h", [1, 32]), vi("hr", [1, 32])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), w1


def conv_model() -> onnx.ModelProto:
    """x[1,4,8,8] -> Conv 3x3 (W[16,4,3,3] 2,304 B, B[16]) -> a[1,16,8,8] 4,096 B -> Relu ->
    GlobalAveragePool -> y[1,16,1,1].  The Conv's step: x 1,024 + W 2,304 + B 64 + a 4,096 =
    7,488 B; at 6,144 B two groups of 8 channels need 1,024 + 1,152 + 32 + 4,096 = 6,304 B,
    three (6, 5, 5) 1,024 + 864 + 32 (24 aligned) + 4,096 = 6,016 B."""
    rng = np.random.default_rng(3)
    ws = [numpy_helper.from_array(rng.standard_normal((16, 4, 3, 3)).astype(np.float32), "W"),
          numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "B")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["a"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"], name="relu"),
             helper.make_node("GlobalAveragePool", ["ar"], ["y"], name="gap")]
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(nodes, "convsplit", [vi("x", [1, 4, 8, 8])], [vi("y", [1, 16, 1, 1])], ws,
                          value_info=[vi("a", [1, 16, 8, 8]), vi("ar", [1, 16, 8, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_mlp_groups_by_hand() -> None:
    g = fuse_in_place(import_model(mlp_model()[0]))
    assert choose_splits(g, 4096, 16) == {"fc1": 3}
    assert choose_splits(g, 8704, 16) == {}
    s = split_channels(g, {"fc1": 3})
    names = [op.name for op in s.computing_ops]
    assert names == ["fc1[oc 0:11]", "fc1[oc 11:22]", "fc1[oc 22:32]", "fc1[concat]", "fc2"]
    assert [aligned_footprint(s, op, 16) for op in s.computing_ops][:3] == [3248, 3248, 2992]
    assert s.derived_weights["W1[oc 11:22]"] == ("W1", 0, 11, 22)
    assert s.derived_weights["C1[oc 22:32]"] == ("C1", 0, 22, 32)
    assert "W1" not in s.tensor_buffer  # the whole weight is gone: only its slices are planned
    hb = s.tensor_buffer["h"]
    assert s.buffer_slices(hb) == (("h[oc 0:11]", 0, 44), ("h[oc 11:22]", 44, 44), ("h[oc 22:32]", 88, 40))
    cat = next(op for op in s.operators if op.name == "fc1[concat]")
    assert [s.operators[f].name for f in cat.fused] == ["relu"]     # the ReLU runs over all of h
    assert m_r(s, True) == 256 + 2816 + 44 + 128 and m_r(g, True) == 8704   # unaligned


def test_compile_simulate_and_weight_blob(tmp_path, capsys) -> None:
    model, w1 = mlp_model()
    path = save(model, tmp_path / "mlp.onnx")
    out = tmp_path / "out"
    assert cli.main(["compile", str(path), "--weights-in-sram", "--capacity", "4096", "-o", str(out), "-q",
                     "--emit", "json,header,weights"]) == 0
    plan = load_plan(out / "plan.json")
    assert dict(plan.options.channel_split) == {"fc1": 3}
    assert {s.op for s in plan.steps} >= {"fc1[oc 0:11]", "fc1[oc 11:22]", "fc1[oc 22:32]", "fc1[concat]"}
    capsys.readouterr()
    assert cli.main(["validate", str(path), str(out / "plan.json")]) == 0
    assert cli.main(["simulate", str(path), str(out / "plan.json")]) == 0
    assert "match: the plan computes the model's outputs" in capsys.readouterr().out
    # weights.bin holds each slice of W1 where schedule.json says, cut from the model's W1.
    sched = json.loads((out / "schedule.json").read_text())
    blob = (out / "weights.bin").read_bytes()
    by_id = {b["id"]: b for b in sched["buffers"]}
    seen = {}
    for w in sched["weights"]:
        name = by_id[w["buffer"]]["tensors"][0]
        seen[name] = blob[w["offset"]:w["offset"] + w["bytes"]]
    assert seen["W1[oc 11:22]"] == w1[11:22].tobytes()
    assert seen["W1[oc 22:32]"] == w1[22:32].tobytes()
    assert "W1" not in seen


def test_conv_split_with_relu_after(tmp_path, capsys) -> None:
    path = save(conv_model(), tmp_path / "conv.onnx")
    g = fuse_in_place(load_graph(path))
    assert choose_splits(g, 6144, 16) == {"conv": 3}
    out = tmp_path / "out"
    assert cli.main(["compile", str(path), "--weights-in-sram", "--capacity", "6144", "-o", str(out), "-q",
                     "--tiling", "off"]) == 0
    d = json.loads((out / "plan.json").read_text())
    assert [s["op"] for s in d["steps"]][-2:] == ["conv[concat]", "gap"]
    assert d["steps"][-2]["fused"] == ["relu"]
    capsys.readouterr()
    assert cli.main(["simulate", str(path), str(out / "plan.json")]) == 0


def test_validator_rebuilds_the_split(tmp_path) -> None:
    model, _ = mlp_model()
    path = save(model, tmp_path / "mlp.onnx")
    out = tmp_path / "out"
    assert cli.main(["compile", str(path), "--weights-in-sram", "--capacity", "4096", "-o", str(out), "-q"]) == 0
    plan = load_plan(out / "plan.json")
    raw = load_graph(path)
    assert validate(raw, plan).ok      # fused and split again from the plan's options
    other = replace(plan, options=replace(plan.options, channel_split={"fc1": 4}))
    assert not validate(raw, other).ok
    bad = replace(plan, options=replace(plan.options, channel_split={"nope": 2}))
    v = validate(raw, bad)
    assert not v.ok and "no operator named 'nope'" in v.errors[0].message


@pytest.mark.slow
@pytest.mark.parametrize("model", ["int8", "float8bit"])
def test_mobilenet_v2_at_256_kib_with_weights_in_sram(tmp_path, capsys, model) -> None:
    """The issue's case: MobileNetV2's 1.28 MB classifier (and two 1x1 convolutions) split to
    fit 256 KiB with every weight in the scratchpad, tiled below M_R; the int8 model simulates
    bit-exactly."""
    path = "models/int8/mobilenet_v2_int8_qop.onnx" if model == "int8" else "models/suite/mobilenet_v2.onnx"
    extra = [] if model == "int8" else ["--element-bytes", "1"]
    out = tmp_path / "out"
    assert cli.main(["compile", path, "--weights-in-sram", "--capacity", "256KiB", "-o", str(out), "-q",
                     "--time-limit", "30", *extra]) == 0
    plan = load_plan(out / "plan.json")
    split = dict(plan.options.channel_split)
    assert split[next(n for n in split if "classifier" in n)] == 5
    assert plan.target.levels[0].capacity == 262144 and plan.cascades
    capsys.readouterr()
    assert cli.main(["validate", path, str(out / "plan.json")]) == 0
    if model == "int8":
        assert cli.main(["simulate", path, str(out / "plan.json")]) == 0
        assert "bit-exact" in capsys.readouterr().out
