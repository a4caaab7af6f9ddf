"""A QOperator ``QLinearConcat`` along channels runs in stripes like a Concat (each operand
requantized element by element to the result's scale, then concatenated), so a cascade can
span it.  Before, it needed whole tensors: ddddocr's detector quantized to QOperator form was
refused at 256 KiB ("operator 'Concat_40_quant' (QLinearConcat), which needs whole tensors,
needs 2595840 bytes"); it now plans there and simulates bit-exact (docs/benchmarks.md)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.ir.lifetimes import m_r
from stowage.ir.tiling import RowMap, row_maps
from stowage.simulate import simulate

C, H, W = 2, 16, 8


def _model() -> onnx.ModelProto:
    """x int8 [1, 2, 16, 8] -> two 3x3 QLinearConvs (pads 1) -> QLinearConcat on C (other
    scales per operand) -> a 3x3 QLinearConv -> y [1, 2, 16, 8]."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
            (("sx", 0.05), ("sa", 0.04), ("sb", 0.07), ("sc", 0.06), ("sy", 0.05), ("sw", 0.02))]
    init += [numpy_helper.from_array(np.array(0, np.int8), "z")]
    init += [numpy_helper.from_array(rng.integers(-60, 60, (C, ci, 3, 3)).astype(np.int8), n)
             for n, ci in (("wa", C), ("wb", C), ("wy", 2 * C))]
    n = helper.make_node
    nodes = [n("QLinearConv", ["x", "sx", "z", "wa", "sw", "z", "sa", "z"], ["a"], name="conva", pads=[1, 1, 1, 1]),
             n("QLinearConv", ["x", "sx", "z", "wb", "sw", "z", "sb", "z"], ["b"], name="convb", pads=[1, 1, 1, 1]),
             n("QLinearConcat", ["sc", "z", "a", "sa", "z", "b", "sb", "z"], ["c"], name="cat", axis=1,
               domain="com.microsoft"),
             n("QLinearConv", ["c", "sc", "z", "wy", "sw", "z", "sy", "z"], ["y"], name="convy", pads=[1, 1, 1, 1])]
    i8 = TensorProto.INT8
    g = helper.make_graph(nodes, "qcat", [helper.make_tensor_value_info("x", i8, [1, C, H, W])],
                          [helper.make_tensor_value_info("y", i8, [1, C, H, W])], init,
                          value_info=[helper.make_tensor_value_info("c", i8, [1, 2 * C, H, W])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def test_row_map_of_a_qlinear_concat_is_the_identity_on_each_operand(tmp_path) -> None:
    path = tmp_path / "qcat.onnx"
    onnx.save(_model(), path)
    g = load_model(path, in_place=True)
    cat = next(op for op in g.operators if op.name == "cat")
    assert row_maps(g, cat) == {"a": RowMap(1, 1, 0, H), "b": RowMap(1, 1, 0, H)}


def test_a_cascade_spans_the_qlinear_concat_and_simulates_bit_exact(tmp_path) -> None:
    path = tmp_path / "qcat.onnx"
    onnx.save(_model(), path)
    g = load_model(path, in_place=True)
    # M_R: the Concat's operands a and b (2 x 16 x 8 each) and its result c (4 x 16 x 8),
    # one byte per element (a Concat that requantizes is not run in place).
    assert m_r(g, False) == 2 * C * H * W + 2 * C * H * W
    plan = compile_plan(g, capacity=512, time_limit=5)
    names = [{g.operators[i].name for i in c.ops} for c in plan.cascades]
    assert any("cat" in m and len(m) > 1 for m in names), names
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert all(o.exact for o in r.outputs)
