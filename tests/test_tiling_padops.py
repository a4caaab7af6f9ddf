"""Edge / reflect Pad along H (``RowMap.kind == "mirror"``) and a QDQ-wrapped Split
(``DequantizeLinear -> Split -> QuantizeLinear`` per result) in row bands.

Hand-checked row maps (the rows a band reads at both borders), tiled plans of small graphs
built here at a capacity below M_R, valid by the validator and executed by the simulator
against ONNX Runtime (fp32 within its tolerance, the QDQ int8 graph bit-exact), and mutants
(a wrong mirrored row, a Split stripe naming the other int8 result) caught by both."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.backend.emit import emit_c
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import import_model
from stowage.ir.tiling import MIRROR, RowMap, mirror_pad_rows, row_maps, row_units
from stowage.plan import Plan
from stowage.plan.validate import validate
from stowage.simulate import simulate
from test_emit import needs_gcc, replay

RNG = np.random.default_rng(11)


def _w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _model(nodes: list, inits: list, x_shape: list[int]) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def mirror_model(h: int = 16) -> onnx.ModelProto:
    """x (1x4xHx8) -> 3x3 conv (a) -> Pad reflect, 2 rows above, 1 below, 1 column each side
    (p: H+3 rows) -> 3x3 conv without pads (q: H+1 rows) -> Pad edge, 1 row above, 2 below
    (e: H+4 rows) -> 3x3 conv with pads (y).  Opset 13: the pads are an input."""
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Pad", ["a", "pads0"], ["p"], name="reflect", mode="reflect"),
        helper.make_node("Conv", ["p", "w1"], ["q"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Pad", ["q", "pads1"], ["e"], name="edge", mode="edge"),
        helper.make_node("Conv", ["e", "w2"], ["y"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    inits = [_w("w0", (4, 4, 3, 3)), _ints("pads0", [0, 0, 2, 1, 0, 0, 1, 1]), _w("w1", (4, 4, 3, 3)),
             _ints("pads1", [0, 0, 1, 0, 0, 0, 2, 0]), _w("w2", (4, 4, 3, 3))]
    return _model(nodes, inits, [1, 4, h, 8])


class _QDQ:
    """Builds a QDQ graph as onnxruntime's quantizer writes one: int8 activations between
    ``QuantizeLinear`` / ``DequantizeLinear`` pairs, int8 weights dequantized by constant DQs."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = [
            numpy_helper.from_array(np.array(0.05, dtype=np.float32), "s"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), "z"),
            numpy_helper.from_array(np.array(0.01, dtype=np.float32), "sw"),
        ]

    def q(self, x: str, y: str) -> str:
        self.nodes.append(helper.make_node("QuantizeLinear", [x, "s", "z"], [y], name=f"Q_{y}"))
        return y

    def dq(self, x: str, y: str) -> str:
        self.nodes.append(helper.make_node("DequantizeLinear", [x, "s", "z"], [y], name=f"DQ_{y}"))
        return y

    def conv(self, x: str, y: str, cin: int, cout: int, pads: list[int]) -> str:
        wq = f"{y}_wq"
        self.inits.append(numpy_helper.from_array(RNG.integers(-40, 40, (cout, cin, 3, 3)).astype(np.int8), wq))
        self.nodes.append(helper.make_node("DequantizeLinear", [wq, "sw", "z"], [f"{y}_w"], name=f"DQ_{y}_w"))
        self.nodes.append(helper.make_node("Conv", [x, f"{y}_w"], [y], name=y, kernel_shape=[3, 3], pads=pads))
        return y


def qdq_model(h: int = 16) -> onnx.ModelProto:
    """x (1x4xHx8) -> Q -> 3x3 conv to 8 channels -> Split on channels (4 + 4), each result
    requantized (the QDQ Split) -> branch 0: Pad reflect 2 above, 1 below -> 3x3 conv without
    pads; branch 1: Pad edge 2 above, 1 below -> 3x3 conv without pads -> Add -> DQ -> y.
    Every operator is a folded QDQ group: int8 in, int8 out."""
    b = _QDQ()
    b.q("x", "xq")
    b.conv(b.dq("xq", "xf"), "t", 4, 8, [1, 1, 1, 1])
    b.nodes.append(helper.make_node("Split", [b.dq(b.q("t", "tq"), "tf"), "sizes"], ["s0", "s1"], name="split",
                                    axis=1))
    b.inits.append(_ints("sizes", [4, 4]))
    b.inits += [_ints("pads", [0, 0, 2, 0, 0, 0, 1, 0])]
    branch = []
    for i, mode in ((0, "reflect"), (1, "edge")):
        sf = b.dq(b.q(f"s{i}", f"s{i}q"), f"s{i}f")
        b.nodes.append(helper.make_node("Pad", [sf, "pads"], [f"p{i}"], name=f"pad{i}", mode=mode))
        pf = b.dq(b.q(f"p{i}", f"p{i}q"), f"p{i}f")
        branch.append(b.dq(b.q(b.conv(pf, f"c{i}", 4, 4, [0, 1, 0, 1]), f"c{i}q"), f"c{i}f"))
    b.nodes.append(helper.make_node("Add", branch, ["sum"], name="add"))
    b.dq(b.q("sum", "sumq"), "y")
    return _model(b.nodes, b.inits, [1, 4, h, 8])


def _op(g, name: str):
    return next(op for op in g.operators if op.name == name)


def _save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, path)
    return path


# -- row maps, hand-checked ------------------------------------------------------------------
def test_reflect_pad_reads_mirrored_rows_at_both_borders() -> None:
    g = import_model(mirror_model())
    rm = row_maps(g, _op(g, "reflect"))["a"]
    assert rm == RowMap(1, 1, 2, 16, kind=MIRROR, mode="reflect", out_rows=19)
    # 19 output rows: rows 0, 1 mirror input rows 2, 1; rows 2..17 are input rows 0..15;
    # row 18 mirrors row 14 (reflect never repeats the edge row).
    assert [rm.mirror_row(o) for o in (0, 1, 2, 17, 18)] == [2, 1, 0, 15, 14]
    # (lo, hi, border rows above, border rows below) per band.
    assert rm.need(0, 1) == (2, 3, 1, 0)     # a band wholly in the top border reads row 2
    assert rm.need(1, 2) == (1, 2, 1, 0)
    assert rm.need(0, 3) == (0, 3, 2, 0)     # rows 2, 1, 0
    assert rm.need(0, 5) == (0, 3, 2, 0)     # rows 2, 1, 0, 1, 2
    assert rm.need(6, 9) == (4, 7, 0, 0)     # inside: a shift by 2
    assert rm.need(17, 19) == (14, 16, 0, 1)  # rows 15, 14
    assert rm.need(18, 19) == (14, 15, 0, 1)
    # Rows still needed from output row a on: row 0 until row 2 is made, and the bottom
    # border's row 14 from output row 16 on (it is read again by output row 18).
    assert [rm.first_needed(a) for a in (0, 2, 3, 10, 16, 17, 18)] == [0, 0, 1, 8, 14, 14, 14]


def test_edge_pad_repeats_the_outer_rows() -> None:
    g = import_model(mirror_model())
    rm = row_maps(g, _op(g, "edge"))["q"]
    assert rm == RowMap(1, 1, 1, 17, kind=MIRROR, mode="edge", out_rows=20)
    assert rm.need(0, 1) == (0, 1, 1, 0)
    assert rm.need(0, 3) == (0, 2, 1, 0)     # rows 0, 0, 1
    assert rm.need(17, 20) == (16, 17, 0, 2)  # rows 16, 16, 16
    assert rm.need(19, 20) == (16, 17, 0, 1)
    assert rm.first_needed(18) == 16


def test_symmetric_borders_and_the_limits_of_each_mode() -> None:
    rm = RowMap(1, 1, 2, 5, kind=MIRROR, mode="symmetric", out_rows=9)
    assert [rm.mirror_row(o) for o in range(9)] == [1, 0, 0, 1, 2, 3, 4, 4, 3]
    assert rm.need(0, 2) == (0, 2, 2, 0) and rm.need(7, 9) == (3, 5, 0, 2)
    # Reflect mirrors at most H - 1 rows, symmetric H; edge any; none cut rows.
    assert mirror_pad_rows("reflect", 4, 0, 5) and not mirror_pad_rows("reflect", 5, 0, 5)
    assert mirror_pad_rows("symmetric", 0, 5, 5) and not mirror_pad_rows("symmetric", 0, 6, 5)
    assert mirror_pad_rows("edge", 9, 9, 1) and not mirror_pad_rows("edge", -1, 0, 5)
    assert not mirror_pad_rows("wrap", 1, 1, 5)


def test_a_reflect_pad_wider_than_its_tensor_needs_whole_tensors() -> None:
    m = mirror_model(h=2)   # reflect 2 rows above a 2-row tensor: onnxruntime refuses it too
    g = import_model(m)
    assert row_maps(g, _op(g, "reflect")) is None


def test_qdq_split_is_one_unit_per_int8_result(tmp_path) -> None:
    g = load_model(_save(qdq_model(), tmp_path / "qdq.onnx"), in_place=True, qdq="fold")
    split = _op(g, "split")
    assert split.computing, "the Split hosts its folded group"
    units = row_units(g, split)
    assert units is not None and [u.output for u in units] == ["s0q", "s1q"]
    # Both read the same rows of the int8 operand (the DQ's input), not the float between.
    assert all(dict(u.maps) == {"tq": RowMap(1, 1, 0, 16)} for u in units)
    pad = row_units(g, _op(g, "pad0"))
    assert pad is not None and [u.output for u in pad] == ["p0q"]
    assert dict(pad[0].maps) == {"s0q": RowMap(1, 1, 2, 16, kind=MIRROR, mode="reflect", out_rows=19)}


# -- tiled plans, validated and executed ---------------------------------------------------
def _tiled(path: Path, fraction: float) -> tuple[object, Plan]:
    g = load_model(path, in_place=True, qdq="fold")   # as ``compile`` loads it
    plan = compile_plan(path, capacity=int(m_r(g, False) * fraction), time_limit=5)
    assert plan.cascades, "a plan below M_R is tiled"
    return g, plan


def _with_stripe(plan: Plan, k: int, j: int, **change: object) -> Plan:
    c = plan.cascades[k]
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(stripes[j], **change)
    cs = list(plan.cascades)
    cs[k] = dataclasses.replace(c, stripes=tuple(stripes))
    return dataclasses.replace(plan, cascades=tuple(cs))


def _banded(g, plan: Plan) -> set[str]:
    return {g.operators[s.op].name for c in plan.cascades for s in c.stripes}


@pytest.fixture(scope="module")
def mirror_plan(tmp_path_factory):
    path = _save(mirror_model(h=32), tmp_path_factory.mktemp("mirror") / "mirror.onnx")
    return (path, *_tiled(path, 0.5))


@pytest.fixture(scope="module")
def qdq_plan(tmp_path_factory):
    path = _save(qdq_model(h=32), tmp_path_factory.mktemp("qdq") / "qdq.onnx")
    # M_R is the QuantizeLinear's float input beside its int8 result: a quarter tiles the rest.
    return (path, *_tiled(path, 0.25))


def test_tiled_edge_and_reflect_pads_are_valid_and_match_ort(mirror_plan) -> None:
    path, g, plan = mirror_plan
    assert {"reflect", "edge"} <= _banded(g, plan)
    # The stripes of the reflect Pad at its borders read the mirrored rows.
    pad = _op(g, "reflect").index
    for c in plan.cascades:
        for s in c.stripes:
            if s.op == pad:
                rm = row_maps(g, g.operators[pad])["a"]
                copied = [rm.mirror_row(o) for o in range(s.out_lo, s.out_hi)]
                assert s.inputs == (("a", min(copied), max(copied) + 1),)
    assert validate(g, plan).ok, validate(g, plan).summary()
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


def test_tiled_qdq_split_and_mirror_pads_are_bit_exact(qdq_plan) -> None:
    path, g, plan = qdq_plan
    assert {"split", "pad0", "pad1"} <= _banded(g, plan)
    named = {s.output for c in plan.cascades for s in c.stripes if s.output}
    assert named == {"s0q", "s1q"}, "the QDQ Split's stripes name its int8 results"
    v = validate(g, plan)
    assert v.ok, v.summary()
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.exact for o in r.outputs)


def _border_stripe(g, plan: Plan, name: str, top: bool) -> tuple[int, int]:
    op = _op(g, name).index
    return next((k, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                if s.op == op and (s.pad_top if top else s.pad_bottom) > 0)


@pytest.mark.parametrize("top", [True, False])
def test_a_wrong_mirrored_row_is_caught(mirror_plan, top: bool) -> None:
    """The border stripe of the reflect Pad reads its rows one row off (the rows reflect
    would read if it repeated the edge row): the validator names the rows it should read,
    and the simulator's kernel copies the wrong rows, which ONNX Runtime's Pad does not."""
    path, g, plan = mirror_plan
    k, j = _border_stripe(g, plan, "reflect", top)
    st = plan.cascades[k].stripes[j]
    (name, lo, hi), = st.inputs
    shift = -1 if top and lo > 0 else 1
    if not top:
        shift = 1 if hi < g.tensors[name].shape[2] else -1
    bad = _with_stripe(plan, k, j, inputs=((name, lo + shift, hi + shift),))
    v = validate(g, bad)
    assert any("copy rows" in e.message and f": [{lo}, {hi})" in e.message for e in v.errors), v.summary()
    r = simulate(path, g, bad)
    assert not r.ok and r.corruptions


def test_a_mirror_stripe_with_the_wrong_border_count_is_caught(mirror_plan) -> None:
    _path, g, plan = mirror_plan
    k, j = _border_stripe(g, plan, "edge", False)
    st = plan.cascades[k].stripes[j]
    v = validate(g, _with_stripe(plan, k, j, pad_bottom=st.pad_bottom + 1))
    assert any("its border rows are" in e.message for e in v.errors), v.summary()


def test_a_qdq_split_stripe_naming_the_other_int8_result_is_caught(qdq_plan) -> None:
    path, g, plan = qdq_plan
    k, j = next((k, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes) if s.output == "s1q")
    bad = _with_stripe(plan, k, j, output="s0q")
    v = validate(g, bad)
    assert any("of 's0q' again" in e.message for e in v.errors), v.summary()
    assert any("of 's1q' are never produced" in e.message for e in v.errors), v.summary()
    assert not simulate(path, g, bad).ok
    v = validate(g, _with_stripe(plan, k, j, output="s1"))   # the float result: it has no buffer
    assert any("names result 's1'" in e.message for e in v.errors), v.summary()


def test_a_qdq_mirror_stripe_reading_a_wrong_row_is_not_bit_exact(qdq_plan) -> None:
    path, g, plan = qdq_plan
    k, j = _border_stripe(g, plan, "pad1", True)
    st = plan.cascades[k].stripes[j]
    (name, lo, hi), = st.inputs
    bad = _with_stripe(plan, k, j, inputs=((name, lo + 1, hi + 1),))
    assert not validate(g, bad).ok
    r = simulate(path, g, bad)
    assert not r.ok and r.corruptions


@needs_gcc
def test_plan_h_of_the_qdq_plan_replays_in_c(qdq_plan, tmp_path) -> None:
    """The C tables of the QDQ plan: a Split stripe's output tile is the int8 result it names,
    and the C replay (tests/c/replay.c) checks every row each stripe reads and writes."""
    _path, g, plan = qdq_plan
    r = replay(emit_c(plan, g), tmp_path / "qdq")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replay ok" in r.stdout


# -- TFLite MIRROR_PAD (NHWC, rows on axis 1) ----------------------------------------------
def mirror_tflite_model(seed: int = 0) -> bytes:
    """An int8 NHWC graph LiteRT runs::

        x (1x16x8x4) -> CONV_2D 3x3 SAME (a, 1x16x8x8)
          -> MIRROR_PAD REFLECT, rows 2 above, 1 below, columns 1 each side (p, 1x19x10x8)
          -> CONV_2D 3x3 VALID (q, 1x17x8x8)
          -> MIRROR_PAD SYMMETRIC, rows 1 above, 2 below (r, 1x20x8x8)
          -> CONV_2D 3x3 VALID (y, 1x18x6x8)

    A MIRROR_PAD keeps its operand's scale and zero point, as LiteRT requires."""
    from tflite_writer import INT32, Op, T, write_model

    rng = np.random.default_rng(seed)

    def w(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-127, 128, shape).astype(np.int8)

    def bias(n: int) -> np.ndarray:
        return rng.integers(-300, 300, n).astype(np.int32)

    s_x, s_a, s_q, s_y = 0.03, 0.05, 0.06, 0.07
    tensors = [
        T("x", (1, 16, 8, 4), scale=[s_x], zero_point=[-2]),                                    # 0
        T("c0/w", (8, 3, 3, 4), data=w((8, 3, 3, 4)), scale=[0.01] * 8, zero_point=[0] * 8),     # 1
        T("c0/b", (8,), INT32, data=bias(8), scale=[s_x * 0.01] * 8, zero_point=[0] * 8),        # 2
        T("a", (1, 16, 8, 8), scale=[s_a], zero_point=[3]),                                     # 3
        T("pads0", (4, 2), INT32, data=np.array([0, 0, 2, 1, 1, 1, 0, 0], np.int32)),           # 4
        T("p", (1, 19, 10, 8), scale=[s_a], zero_point=[3]),                                    # 5
        T("c1/w", (8, 3, 3, 8), data=w((8, 3, 3, 8)), scale=[0.004] * 8, zero_point=[0] * 8),    # 6
        T("c1/b", (8,), INT32, data=bias(8), scale=[s_a * 0.004] * 8, zero_point=[0] * 8),       # 7
        T("q", (1, 17, 8, 8), scale=[s_q], zero_point=[1]),                                     # 8
        T("pads1", (4, 2), INT32, data=np.array([0, 0, 1, 2, 0, 0, 0, 0], np.int32)),           # 9
        T("r", (1, 20, 8, 8), scale=[s_q], zero_point=[1]),                                     # 10
        T("c2/w", (8, 3, 3, 8), data=w((8, 3, 3, 8)), scale=[0.004] * 8, zero_point=[0] * 8),    # 11
        T("c2/b", (8,), INT32, data=bias(8), scale=[s_q * 0.004] * 8, zero_point=[0] * 8),       # 12
        T("y", (1, 18, 6, 8), scale=[s_y], zero_point=[0]),                                     # 13
    ]
    conv = {"StrideW": 1, "StrideH": 1, "FusedActivationFunction": 0, "DilationWFactor": 1, "DilationHFactor": 1}
    ops = [
        Op("CONV_2D", [0, 1, 2], [3], "Conv2DOptions", {"Padding": 0, **conv}),
        Op("MIRROR_PAD", [3, 4], [5], "MirrorPadOptions", {"Mode": 0}),
        Op("CONV_2D", [5, 6, 7], [8], "Conv2DOptions", {"Padding": 1, **conv}),
        Op("MIRROR_PAD", [8, 9], [10], "MirrorPadOptions", {"Mode": 1}),
        Op("CONV_2D", [10, 11, 12], [13], "Conv2DOptions", {"Padding": 1, **conv}),
    ]
    return write_model(tensors, ops, inputs=[0], outputs=[13])


@pytest.fixture(scope="module")
def tfl_mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfl_mirror") / "mirror.tflite"
    path.write_bytes(mirror_tflite_model())
    g = load_model(path, in_place=True)
    plan = compile_plan(path, capacity=int(m_r(g, False) * 0.4), time_limit=5)
    return path, g, plan


def test_tflite_mirror_pad_row_maps_by_hand(tfl_mirror) -> None:
    _path, g, _plan = tfl_mirror
    pads = [op for op in g.operators if op.op_type == "MIRROR_PAD"]
    assert [list(op.attributes["paddings"]) for op in pads] == [[0, 0, 2, 1, 1, 1, 0, 0], [0, 0, 1, 2, 0, 0, 0, 0]]
    reflect, symmetric = (row_maps(g, op) for op in pads)
    assert reflect == {"a": RowMap(1, 1, 2, 16, kind=MIRROR, mode="reflect", out_rows=19)}
    assert symmetric == {"q": RowMap(1, 1, 1, 17, kind=MIRROR, mode="symmetric", out_rows=20)}
    rm = symmetric["q"]
    # Symmetric repeats the edge row: output row 0 is row 0, rows 18, 19 are rows 16, 15.
    assert [rm.mirror_row(o) for o in (0, 1, 17, 18, 19)] == [0, 0, 16, 16, 15]
    assert rm.need(0, 2) == (0, 1, 1, 0) and rm.need(18, 20) == (15, 17, 0, 2)


def test_tiled_tflite_mirror_pads_replay_bit_exactly(tfl_mirror) -> None:
    from stowage.simulate_tflite import simulate_tflite

    path, g, plan = tfl_mirror
    banded = {g.operators[s.op].op_type for c in plan.cascades for s in c.stripes}
    assert "MIRROR_PAD" in banded
    v = validate(g, plan)
    assert v.ok, v.summary()
    r = simulate_tflite(path, g, plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.exact for o in r.outputs)


def test_a_wrong_mirrored_tflite_row_is_caught(tfl_mirror) -> None:
    from stowage.simulate_tflite import simulate_tflite

    path, g, plan = tfl_mirror
    op = next(op.index for op in g.operators if op.op_type == "MIRROR_PAD" and op.attributes["mode"] == 1)
    k, j = next((k, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                if s.op == op and s.pad_bottom > 0)
    (name, lo, hi), = plan.cascades[k].stripes[j].inputs
    bad = _with_stripe(plan, k, j, inputs=((name, lo - 1, hi - 1),))   # one row above the mirrored ones
    v = validate(g, bad)
    assert any("symmetric Pad" in e.message and f": [{lo}, {hi})" in e.message for e in v.errors), v.summary()
    r = simulate_tflite(path, g, bad)
    assert not r.ok and r.corruptions


@needs_gcc
def test_plan_h_of_the_mirror_plans_replays_in_c(mirror_plan, tfl_mirror, tmp_path) -> None:
    """The C tables of the ONNX and TFLite mirror plans: the stripe program needs no new
    field (a border stripe's input tile is the rows it reads), and the C replay checks every
    row each stripe reads and writes."""
    for (_path, g, plan), name in ((mirror_plan, "onnx"), (tfl_mirror, "tflite")):
        r = replay(emit_c(plan, g), tmp_path / name)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "replay ok" in r.stdout


def qdq_column_model() -> onnx.ModelProto:
    """A QDQ detection-head fragment on column tensors (rows along the last axis ``N``):
    a (1x8x48), b (1x8x16) -> Q -> Concat along N (1x8x64) -> the QDQ Split on channels
    (4 + 4) -> s0: DQ -> Reshape (1x2x2x64, keeping N) -> Q of the same scale (an alias of
    s0's int8 bytes, ``stowage.ir.qdq``) -> Sigmoid -> y0; s1: Sigmoid -> y1.  The Split's
    first result, a ring, is read under the Reshape's int8 name (YOLOv8's DFL reads its box
    logits so)."""
    b = _QDQ()
    for name in ("a", "b"):
        b.q(name, f"{name}q")
    b.nodes.append(helper.make_node("Concat", [b.dq("aq", "af"), b.dq("bq", "bf")], ["cat"], name="cat", axis=2))
    b.nodes.append(helper.make_node("Split", [b.dq(b.q("cat", "catq"), "catf"), "sizes"], ["s0", "s1"],
                                    name="split", axis=1))
    b.inits += [_ints("sizes", [4, 4]), _ints("shape", [1, 2, 2, 64])]
    b.nodes.append(helper.make_node("Reshape", [b.dq(b.q("s0", "s0q"), "s0f"), "shape"], ["v"], name="view"))
    b.nodes.append(helper.make_node("Sigmoid", [b.dq(b.q("v", "vq"), "vf")], ["g0"], name="sig0"))
    b.nodes.append(helper.make_node("Sigmoid", [b.dq(b.q("s1", "s1q"), "s1f")], ["g1"], name="sig1"))
    b.dq(b.q("g0", "g0q"), "y0")
    b.dq(b.q("g1", "g1q"), "y1")
    g = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 8, 48]),
                                         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 8, 16])],
                          [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("y1", TensorProto.FLOAT, None)], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def test_a_qdq_split_ring_read_through_a_requantized_view_is_valid(tmp_path) -> None:
    path = _save(qdq_column_model(), tmp_path / "head.onnx")
    g = load_model(path, in_place=True, qdq="fold")
    assert g.tensor_buffer["vq"] == g.tensor_buffer["s0q"], "the same-scale DQ -> Reshape -> Q is an alias"
    units = row_units(g, _op(g, "split"))
    assert units is not None and [u.output for u in units] == ["s0q", "s1q"]
    plan = compile_plan(path, capacity=int(m_r(g, False) * 0.5), time_limit=5)
    casc = next(c for c in plan.cascades if any(g.operators[s.op].name == "sig0" for s in c.stripes))
    reads = {name for s in casc.stripes if g.operators[s.op].name == "sig0" for name, _lo, _hi in s.inputs}
    assert reads == {"vq"}
    held = {ct.tensor: ct.mode for ct in casc.tensors}
    assert held.get("s0q") == "ring", held
    v = validate(g, plan)
    assert v.ok, v.summary()
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.exact for o in r.outputs)
