"""Split along channels, Slice, constant Pad and Upsample in row bands (``stowage.ir.tiling``).

Hand-checked row maps and stripes on small graphs built here; tiled plans of them valid by
the validator and executed by the simulator against ONNX Runtime (float within its
tolerance, an int8 QOperator graph bit-exact); mutants (a dropped row load, wrong Slice rows,
a Split stripe naming the wrong result) caught by both."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.backend.emit import build_schedule, emit_c
from stowage.errors import CapacityError
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import import_model, load_graph
from stowage.ir.operand_values import operand_attributes
from stowage.ir.tiling import RESIZE, RowMap, row_maps, row_units
from stowage.plan import Cascade, Plan
from stowage.plan.json_format import plan_from_json, plan_to_json
from stowage.plan.validate import validate
from stowage.simulate import simulate
from stowage.solvers.tiling.program import stripe_program
from test_emit import needs_gcc, replay

RNG = np.random.default_rng(7)


def _w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _model(nodes: list, inits: list, x_shape: list[int], opset: int) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def split_model(h: int = 16) -> onnx.ModelProto:
    """x (1x4xHx8) -> 3x3 conv to 8 channels (t) -> Split on channels into s0, s1 (4 each) ->
    s0 through a 3x3 conv (a), s1 through Relu (b) -> Concat(a, b) -> 1x1 conv -> y."""
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["t"], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["t", "sizes"], ["s0", "s1"], name="split", axis=1),
        helper.make_node("Conv", ["s0", "w1"], ["a"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s1"], ["b"], name="relu"),
        helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
        helper.make_node("Conv", ["c", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    inits = [_w("w0", (8, 4, 3, 3)), _ints("sizes", [4, 4]), _w("w1", (4, 4, 3, 3)), _w("w2", (4, 8, 1, 1))]
    return _model(nodes, inits, [1, 4, h, 8], 13)


def slice_pad_model() -> onnx.ModelProto:
    """x (1x4x32x8) -> Slice rows 1::2 and columns 0:6 (s: 16 rows) -> 3x3 conv (a) -> Pad one
    zero row above, two below (p: 19 rows) -> 3x3 conv without pads (17 rows) -> Slice
    channels 1:3 (y: 1x2x17x4).  Opset 13: Slice and Pad take their numbers as inputs."""
    nodes = [
        helper.make_node("Slice", ["x", "st0", "en0", "ax0", "sp0"], ["s"], name="slice_h"),
        helper.make_node("Conv", ["s", "w0"], ["a"], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Pad", ["a", "pads"], ["p"], name="pad", mode="constant"),
        helper.make_node("Conv", ["p", "w1"], ["q"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Slice", ["q", "st1", "en1", "ax1"], ["y"], name="slice_c"),
    ]
    inits = [_ints("st0", [1, 0]), _ints("en0", [2**63 - 1, 6]), _ints("ax0", [2, 3]), _ints("sp0", [2, 1]),
             _w("w0", (4, 4, 3, 3)), _ints("pads", [0, 0, 1, 0, 0, 0, 2, 0]), _w("w1", (4, 4, 3, 3)),
             _ints("st1", [1]), _ints("en1", [3]), _ints("ax1", [1])]
    return _model(nodes, inits, [1, 4, 32, 8], 13)


def upsample_model() -> onnx.ModelProto:
    """Opset 9: x (1x4x16x8) -> 3x3 conv -> Upsample x2 nearest (32 rows) -> Slice-1
    (attributes) rows 2:30 -> Pad-2 (attribute pads) one row above -> 3x3 conv -> y."""
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Upsample", ["a", "scales"], ["u"], name="up", mode="nearest"),
        helper.make_node("Slice", ["u"], ["s"], name="slice", starts=[2], ends=[30], axes=[2]),
        helper.make_node("Pad", ["s"], ["p"], name="pad", pads=[0, 0, 1, 0, 0, 0, 0, 0], mode="constant"),
        helper.make_node("Conv", ["p", "w1"], ["y"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    return _model(nodes, [_w("w0", (4, 4, 3, 3)), scales, _w("w1", (4, 4, 3, 3))], [1, 4, 16, 8], 9)


def int8_split_model() -> onnx.ModelProto:
    """QuantizeLinear -> int8 Split on channels -> two QLinearConvs -> int8 Concat ->
    Slice rows 0::2 -> DequantizeLinear: QOperator int8 arithmetic, bit-exact in bands."""
    def q(name: str, v: float) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(v, dtype=np.float32), name)

    def z(name: str) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(0, dtype=np.int8), name)

    wq = [numpy_helper.from_array(RNG.integers(-20, 20, (4, 4, 3, 3)).astype(np.int8), f"wq{i}") for i in (0, 1)]
    bias = [numpy_helper.from_array(RNG.integers(-50, 50, (4,)).astype(np.int32), f"b{i}") for i in (0, 1)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="quant"),
        helper.make_node("Split", ["xq", "sizes"], ["h0", "h1"], name="split", axis=1),
        *[helper.make_node("QLinearConv", [f"h{i}", "sx", "zx", f"wq{i}", "sw", "zw", "sy", "zy", f"b{i}"],
                           [f"c{i}"], name=f"qconv{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1]) for i in (0, 1)],
        helper.make_node("Concat", ["c0", "c1"], ["cat"], name="cat", axis=1),
        helper.make_node("Slice", ["cat", "st", "en", "ax", "sp"], ["half"], name="slice"),
        helper.make_node("DequantizeLinear", ["half", "sy", "zy"], ["y"], name="dequant"),
    ]
    inits = [q("sx", 0.05), z("zx"), _ints("sizes", [4, 4]), *wq, q("sw", 0.02), z("zw"), q("sy", 0.1), z("zy"),
             *bias, _ints("st", [0]), _ints("en", [16]), _ints("ax", [2]), _ints("sp", [2])]
    return _model(nodes, inits, [1, 8, 16, 8], 13)


def _save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, path)
    return path


def _op(g, name: str):
    return next(op for op in g.operators if op.name == name)


# -- row maps ---------------------------------------------------------------------------------
def test_split_on_channels_is_one_unit_per_result_with_the_operand_rows() -> None:
    g = import_model(split_model())
    split = _op(g, "split")
    assert row_maps(g, split) == {"t": RowMap(1, 1, 0, 16)}
    units = row_units(g, split)
    assert units is not None and [u.output for u in units] == ["s0", "s1"]
    assert all(dict(u.maps) == {"t": RowMap(1, 1, 0, 16)} for u in units)


def test_split_along_h_needs_whole_tensors() -> None:
    m = split_model()
    m.graph.node[1].attribute[0].i = 2           # axis 2: rows, not channels
    m.graph.initializer[1].CopyFrom(_ints("sizes", [8, 8]))
    g = import_model(m)
    assert row_maps(g, _op(g, "split")) is None


def test_slice_rows_are_a_strided_shift_and_channels_the_identity() -> None:
    g = import_model(slice_pad_model())
    sl = _op(g, "slice_h")
    assert sl.attributes["starts"] == (1, 0) and sl.attributes["steps"] == (2, 1)
    rm = row_maps(g, sl)["x"]
    # Output row o is input row 1 + 2o: rows [0, 3) read [1, 6), the last row 15 reads 31.
    assert rm == RowMap(stride=2, kernel=1, pad_top=-1, in_rows=32)
    assert rm.need(0, 3) == (1, 6, 0, 0)
    assert rm.need(15, 16) == (31, 32, 0, 0)
    assert rm.first_needed(4) == 9
    assert row_maps(g, _op(g, "slice_c")) == {"q": RowMap(1, 1, 0, 17)}


def test_pad_rows_are_a_shift_with_zero_borders() -> None:
    g = import_model(slice_pad_model())
    rm = row_maps(g, _op(g, "pad"))["a"]
    assert rm == RowMap(stride=1, kernel=1, pad_top=1, in_rows=16)
    # 19 output rows: row 0 is padding, rows 1..16 are input rows 0..15, rows 17, 18 padding.
    assert rm.need(0, 2) == (0, 1, 1, 0)
    assert rm.need(5, 9) == (4, 8, 0, 0)
    assert rm.need(16, 19) == (15, 16, 0, 2)


def test_negative_slice_bounds_clamp_as_onnx_does_and_reversal_is_whole() -> None:
    nodes = [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"], name="s")]
    # 16 rows, starts -12 -> 4, ends -2 -> 14, step 3: rows 4, 7, 10, 13.
    g = import_model(_model(nodes, [_ints("st", [-12]), _ints("en", [-2]), _ints("ax", [2]), _ints("sp", [3])],
                            [1, 2, 16, 4], 13))
    assert g.tensors["y"].shape == (1, 2, 4, 4)
    assert row_maps(g, g.operators[0]) == {"x": RowMap(stride=3, kernel=1, pad_top=-4, in_rows=16)}
    rev = import_model(_model(nodes, [_ints("st", [-1]), _ints("en", [-(2**63)]), _ints("ax", [2]),
                                      _ints("sp", [-1])], [1, 2, 16, 4], 13))
    assert row_maps(rev, rev.operators[0]) is None


def test_operands_computed_at_run_time_leave_the_operator_as_it_is() -> None:
    node = helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"])
    assert operand_attributes(node, {"st": (0,), "en": (4,), "ax": (2,)}) == {"starts": (0,), "ends": (4,),
                                                                            "axes": (2,)}
    assert operand_attributes(node, {"st": (0,), "ax": (2,)}) == {}     # ends computed: no attributes
    pad18 = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"])
    assert operand_attributes(pad18, {"pads": (1, 1), "axes": (2,)}) == {}


def test_wrap_pad_needs_whole_tensors_and_edge_mirrors() -> None:
    m = slice_pad_model()
    m.graph.node[2].attribute[0].s = b"wrap"
    g = import_model(m)
    assert row_maps(g, _op(g, "pad")) is None
    m.graph.node[2].attribute[0].s = b"edge"   # the mirror map (tests/test_tiling_padops.py)
    g = import_model(m)
    assert row_maps(g, _op(g, "pad"))["a"].kind == "mirror"


def test_upsample_is_the_resize_map_and_old_forms_keep_attributes() -> None:
    g = import_model(upsample_model())
    up = row_maps(g, _op(g, "up"))["a"]
    assert (up.kind, up.scale, up.mode) == (RESIZE, 2, "nearest:asymmetric:floor")
    assert up.need(4, 8) == (2, 4, 0, 0)       # nearest x2, floor: output rows 4..7 read rows 2, 3
    assert row_maps(g, _op(g, "slice")) == {"u": RowMap(stride=1, kernel=1, pad_top=-2, in_rows=32)}
    assert row_maps(g, _op(g, "pad")) == {"s": RowMap(stride=1, kernel=1, pad_top=1, in_rows=28)}


# -- the stripe program --------------------------------------------------------------------
def test_stripes_of_a_split_name_their_result() -> None:
    g = fuse_in_place(import_model(split_model(), element_bytes=1))
    order = g.file_order()
    # One pass per band (``interleave=False``): each member makes every row its readers want
    # at once, the walk these rows were derived for (the share-at-a-time walk splits band 0).
    prog = stripe_program(g, order, 1, {b.id: False for b in g.buffers}, interleave=False)
    split = _op(g, "split").index
    first = [(s.op, s.output, s.out_lo, s.out_hi, s.inputs, s.pad_top, s.pad_bottom) for s in prog.stripes[:5]]
    conv0, conv1 = _op(g, "conv0").index, _op(g, "conv1").index
    # Band 0: conv1's 3x3 window needs s0 rows [0, 2), Relu needs s1 row 0: conv0 makes t rows
    # [0, 2) from x rows [0, 3) with one pad row, the Split makes s0 rows [0, 2) and s1 row 0
    # (each result as far as its readers need), Relu (in place over s1, in the Split's step)
    # rewrites s1 row 0, conv1 makes a row 0 with one pad row.
    assert _op(g, "relu").fused_into == split
    assert first == [
        (conv0, "", 0, 2, (("x", 0, 3),), 1, 0),
        (split, "s0", 0, 2, (("t", 0, 2),), 0, 0),
        (split, "s1", 0, 1, (("t", 0, 1),), 0, 0),
        (_op(g, "relu").index, "", 0, 1, (("s1", 0, 1),), 0, 0),
        (conv1, "", 0, 1, (("s0", 0, 2),), 1, 0),
    ]
    made: dict[tuple[int, str], list[int]] = {}
    for s in prog.stripes:
        made.setdefault((s.op, s.output), []).extend(range(s.out_lo, s.out_hi))
    assert made[(split, "s0")] == made[(split, "s1")] == list(range(16))
    # s0 is read by a 3x3 stride-1 window (3 rows, as for any conv: tests/test_tiling.py), s1
    # by Relu in the same band, in place: one row.
    assert prog.rings[g.tensor_buffer["s0"]] == 3
    assert prog.rings[g.tensor_buffer["s1"]] == 1


def test_stripes_of_a_slice_read_every_other_row() -> None:
    g = fuse_in_place(import_model(slice_pad_model(), element_bytes=1))
    order = g.file_order()
    # One pass per band (``interleave=False``), the walk these rows were derived for.
    prog = stripe_program(g, order, 1, {b.id: False for b in g.buffers}, interleave=False)
    sl = _op(g, "slice_h").index
    reads = [s.inputs for s in prog.stripes if s.op == sl]
    # Band 0: output row 0 of y (17 rows) needs q row 0, p rows [0, 3) (conv1 has no pads),
    # a rows [0, 2) (one of them the Pad's zero row), s rows [0, 3) (conv0's pad row above),
    # so x rows 1, 3, 5; then one more output row of s per band: x row 7, x row 9, ...
    assert reads[:3] == [(("x", 1, 6),), (("x", 7, 8),), (("x", 9, 10),)]
    assert len(reads) == 14 and reads[-1] == (("x", 31, 32),)
    pad = [(s.out_lo, s.out_hi, s.inputs, s.pad_top, s.pad_bottom) for s in prog.stripes if s.op == _op(g, "pad").index]
    assert pad[0] == (0, 3, (("a", 0, 2),), 1, 0)
    # The last band is wholly in the Pad's bottom border: it reads no rows of a.
    assert pad[-1] == (18, 19, (("a", 16, 16),), 0, 1)
    # x streams in rows as the stripes need them, each row loaded once, and only rows read
    # (loads start at the lowest row a reader still needs, docs/tiling.md): rows [1, 6) for
    # the first stripe (the taken rows 1, 3, 5 and the rows 2, 4 between them in its band),
    # then rows 7, 9, ..., 31 one a stripe: 5 + 13 = 18 rows, not 32.
    loads = [(x.lo, x.hi) for s in prog.stripes for x in s.transfers if x.direction == "load"]
    assert loads[0] == (1, 6) and loads[1:] == [(r, r + 1) for r in range(7, 32, 2)]
    assert sum(hi - lo for lo, hi in loads) == 18


# -- tiled plans, validated and executed ---------------------------------------------------
def _tiled(path: Path, fraction: float = 0.5) -> tuple[object, Plan]:
    from stowage.ir.lifetimes import m_r

    g = fuse_in_place(load_graph(path))
    plan = compile_plan(path, capacity=int(m_r(g, False) * fraction), time_limit=5)
    assert plan.cascades, "a plan below M_R is tiled"
    return g, plan


def _with_cascade(plan: Plan, k: int, c: Cascade) -> Plan:
    cs = list(plan.cascades)
    cs[k] = c
    return dataclasses.replace(plan, cascades=tuple(cs))


@pytest.fixture(scope="module")
def split_plan(tmp_path_factory):
    path = _save(split_model(h=32), tmp_path_factory.mktemp("split") / "split.onnx")
    return (path, *_tiled(path))


@pytest.fixture(scope="module")
def slice_plan(tmp_path_factory):
    path = _save(slice_pad_model(), tmp_path_factory.mktemp("slice") / "slice.onnx")
    return (path, *_tiled(path))


def test_tiled_split_plan_is_valid_and_matches_ort(split_plan) -> None:
    path, g, plan = split_plan
    named = {s.output for c in plan.cascades for s in c.stripes if s.output}
    assert named == {"s0", "s1"}, "the Split runs in bands"
    assert validate(g, plan).ok
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert plan_from_json(plan_to_json(plan)) == plan   # Stripe.output round-trips


def test_tiled_slice_and_pad_plan_is_valid_and_matches_ort(slice_plan) -> None:
    path, g, plan = slice_plan
    banded = {g.operators[s.op].op_type for c in plan.cascades for s in c.stripes}
    assert {"Slice", "Pad"} <= banded
    assert validate(g, plan).ok
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


def test_tiled_upsample_plan_matches_ort(tmp_path) -> None:
    path = _save(upsample_model(), tmp_path / "up.onnx")
    g, plan = _tiled(path)
    banded = {g.operators[s.op].op_type for c in plan.cascades for s in c.stripes}
    assert {"Upsample", "Slice", "Pad"} <= banded
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


def test_int8_split_and_slice_are_bit_exact(tmp_path) -> None:
    path = _save(int8_split_model(), tmp_path / "q.onnx")
    g, plan = _tiled(path, 0.25)   # M_R is the QuantizeLinear's float input: a quarter of it tiles the rest
    banded = {g.operators[s.op].op_type for c in plan.cascades for s in c.stripes}
    assert {"Split", "Slice", "QLinearConv"} <= banded
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.exact for o in r.outputs)


# -- mutants ---------------------------------------------------------------------------------
def test_a_dropped_row_load_is_caught(slice_plan) -> None:
    path, g, plan = slice_plan
    k, c, j = next((k, c, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                   if g.operators[s.op].op_type == "Slice" and any(x.direction == "load" for x in s.transfers)
                   and j > 0)
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(stripes[j], transfers=tuple(x for x in stripes[j].transfers
                                                                  if x.direction != "load"))
    bad = _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes)))
    v = validate(g, bad)
    assert not v.ok and any("never loaded" in e.message or "not produced" in e.message for e in v.errors), v.summary()
    assert not simulate(path, g, bad).ok


def test_wrong_slice_rows_are_caught(slice_plan) -> None:
    path, g, plan = slice_plan
    k, c, j = next((k, c, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                   if g.operators[s.op].name == "slice_h" and s.out_lo > 0)
    st = c.stripes[j]
    (name, lo, hi), = st.inputs
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(st, inputs=((name, lo - 1, hi - 1),))   # the even rows, not the odd
    bad = _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes)))
    v = validate(g, bad)
    assert any(f"need rows [{lo}, {hi})" in e.message for e in v.errors), v.summary()
    r = simulate(path, g, bad)
    assert not r.ok and r.corruptions


def test_a_split_stripe_naming_the_other_result_is_caught(split_plan) -> None:
    path, g, plan = split_plan
    k, c, j = next((k, c, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                   if s.output == "s1")
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(stripes[j], output="s0")
    bad = _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes)))
    v = validate(g, bad)
    assert any("of 's0' again" in e.message for e in v.errors), v.summary()
    assert any("of 's1' are never produced" in e.message for e in v.errors), v.summary()
    assert not simulate(path, g, bad).ok
    unnamed = dataclasses.replace(stripes[j], output="")
    stripes[j] = unnamed
    v = validate(g, _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes))))
    assert any("a stripe of it must name one" in e.message for e in v.errors), v.summary()


def test_a_side_result_nobody_later_reads_gets_its_rows_in_time() -> None:
    """x -> 1x1 conv0 (t) -> 3x3 conv1 (y1, a graph output nothing in the cascade reads) and
    1x1 conv2 (y2, the end).  The walk back from the end asks t for one row per band; conv1,
    keeping pace with the end, needs two rows of t in the first band (its window), so conv0
    must make them first: before the fix, conv1's first stripe read row 1 of t unmade (as a
    YOLOv5 CSP bottleneck's side branch did on ddddocr's detector)."""
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["t"], name="conv0", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["t", "w1"], ["y1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["t", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    m = _model(nodes, [_w("w0", (4, 4, 1, 1)), _w("w1", (4, 4, 3, 3)), _w("w2", (4, 4, 1, 1))], [1, 4, 16, 8], 13)
    m.graph.output.append(helper.make_tensor_value_info("y1", TensorProto.FLOAT, None))
    g = import_model(m, element_bytes=1)
    prog = stripe_program(g, g.file_order(), 1, {b.id: False for b in g.buffers}, interleave=False)
    c0, c1, c2 = (_op(g, n).index for n in ("conv0", "conv1", "conv2"))
    assert [(s.op, s.out_lo, s.out_hi, s.inputs) for s in prog.stripes[:3]] == [
        (c0, 0, 2, (("x", 0, 2),)), (c1, 0, 1, (("t", 0, 2),)), (c2, 0, 1, (("t", 0, 1),))]
    # Both walks (one pass per band, and the default share-at-a-time passes) read only made rows.
    for walk in (prog, stripe_program(g, g.file_order(), 1, {b.id: False for b in g.buffers})):
        made = {"x": 16}
        for s in walk.stripes:
            for name, _lo, hi in s.inputs:
                assert hi <= made.get(name, 0), f"stripe of op {s.op} reads row {hi - 1} of {name} before it is made"
            out = g.operators[s.op].outputs[0]
            made[out] = max(made.get(out, 0), s.out_hi)


@needs_gcc
def test_plan_h_of_split_and_slice_plans_replays_in_c(split_plan, slice_plan, tmp_path) -> None:
    """The C tables of both tiled plans: a Split stripe's output tile is the result it names,
    and the C replay (tests/c/replay.c) checks every row each stripe reads and writes."""
    for (_path, g, plan), name in ((split_plan, "split"), (slice_plan, "slice")):
        sch = build_schedule(plan, g)
        outs = [sch.cascade_tensors[s.output.tensor].tensor for s in sch.stripes if s.op_type == "Split"]
        if name == "split":
            assert set(outs) == {"s0", "s1"}
        r = replay(emit_c(plan, g), tmp_path / name)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "replay ok" in r.stdout


@settings(max_examples=8, deadline=None)
@given(start=st.integers(-24, 23), end=st.integers(-24, 30), step=st.integers(1, 3),
       top=st.integers(0, 2), bottom=st.integers(0, 2))
@example(start=0, end=-1, step=1, top=0, bottom=1)   # a Pad below only: its last band's pad row
def test_random_slices_and_pads_in_bands_match_ort(start: int, end: int, step: int, top: int, bottom: int) -> None:
    """x (1x2x24x4) -> Slice rows start:end:step -> 3x3 conv -> Pad top/bottom rows: whatever
    the numbers (negative bounds, ends past the tensor), the tiled plan is valid and computes
    ONNX Runtime's result."""
    import tempfile

    h = len(range(24)[slice(start, end, step)])
    assume(h >= 2)
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"], name="slice"),
        helper.make_node("Conv", ["s", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Pad", ["c", "pads"], ["y"], name="pad"),
    ]
    inits = [_ints("st", [start]), _ints("en", [end]), _ints("ax", [2]), _ints("sp", [step]), _w("w", (2, 2, 3, 3)),
             _ints("pads", [0, 0, top, 0, 0, 0, bottom, 0])]
    with tempfile.TemporaryDirectory() as tmp:
        path = _save(_model(nodes, inits, [1, 2, 24, 4], 13), Path(tmp) / "m.onnx")
        g = fuse_in_place(load_graph(path))
        assert g.tensors["y"].shape[2] == h + top + bottom
        assert row_maps(g, _op(g, "slice")) is not None and row_maps(g, _op(g, "pad")) is not None
        from stowage.ir.lifetimes import m_r

        try:
            plan = compile_plan(path, capacity=int(m_r(g, False) * 0.75), time_limit=5)
        except CapacityError:
            # A Slice skipping many leading rows still streams them through x's ring (rows
            # load from the last loaded one on): its ring is then most of x.
            assume(False)
        assume({g.operators[s.op].op_type for c in plan.cascades for s in c.stripes} & {"Slice", "Pad"})
        assert validate(g, plan).ok
        r = simulate(path, g, plan)
        assert r.ok, r.first_problem
