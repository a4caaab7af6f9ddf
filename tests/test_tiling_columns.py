"""A YOLO-like detection head in bands along its last axis (``stowage.ir.columns``), and
streamed loads that skip the rows a Slice does not take.

The head, built here: two feature maps (8x8 and 4x4, 6 channels) flattened to ``(1, 6, N)``
and concatenated along ``N`` (80 positions), split on channels into box logits (4) and class
logits (2, through a Sigmoid), the box logits viewed as ``(1, 2, 2, N)``, transposed, put
through a Softmax over their 2 bins and a 1x1 "DFL" conv, a Slice, anchor arithmetic with
constants along ``N`` and a final Concat on channels.  Hand-checked row maps, stripes, ring
rows and bytes; tiled plans valid and executed against ONNX Runtime (fp32 within tolerance,
an int8 QDQ version bit-exact); mutants caught by the validator and the simulator; the C
tables replayed."""

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
from stowage.ir.columns import column_tensors, flattened_pieces, mixed_buffer, row_axis_of, transposed_columns
from stowage.ir.onnx_import import import_model
from stowage.ir.tiling import CONCAT, FLATTEN, RowMap, buffer_row_bytes, row_maps, row_units, rows
from stowage.plan import Cascade, Plan
from stowage.plan.validate import validate
from stowage.simulate import simulate
from stowage.solvers.tiling.program import stripe_program
from test_emit import needs_gcc, replay

N = 8 * 8 + 4 * 4   # 80 positions: 64 from the 8x8 map, then 16 from the 4x4 map


def _ints(name: str, v: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(v, dtype=np.int64), name)


def _f(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(a.astype(np.float32), name)


def _head_nodes() -> list[onnx.NodeProto]:
    """Flatten a and b, Concat along N, Split on channels into box (4) and cls (2)."""
    return [
        helper.make_node("Reshape", ["a", "sa"], ["fa"], name="flat_a"),
        helper.make_node("Reshape", ["b", "sb"], ["fb"], name="flat_b"),
        helper.make_node("Concat", ["fa", "fb"], ["cat"], name="cat_n", axis=2),
        helper.make_node("Split", ["cat", "sizes"], ["box", "cls"], name="split", axis=1),
    ]


def head_model() -> onnx.ModelProto:
    """The fp32 head (module docstring): x (1x4x8x8) -> 3x3 conv -> a (1x6x8x8) -> stride-2
    3x3 conv -> b (1x6x4x4); y is (1x3x80)."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w1"], ["b"], name="conv_b", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        *_head_nodes(),
        helper.make_node("Sigmoid", ["cls"], ["score"], name="sig"),
        helper.make_node("Reshape", ["box", "s4"], ["box4"], name="view4"),
        helper.make_node("Transpose", ["box4"], ["boxt"], name="perm", perm=[0, 2, 1, 3]),
        helper.make_node("Softmax", ["boxt"], ["soft"], name="softmax", axis=1),
        helper.make_node("Conv", ["soft", "wd"], ["dfl"], name="dfl"),
        helper.make_node("Reshape", ["dfl", "s3"], ["dist"], name="view3"),
        helper.make_node("Slice", ["dist", "st", "en", "ax"], ["lt"], name="slice_lt"),
        helper.make_node("Sub", ["anchors", "lt"], ["xy"], name="sub"),
        helper.make_node("Mul", ["xy", "stride"], ["xys"], name="mul"),
        helper.make_node("Concat", ["xys", "score"], ["y"], name="cat_c", axis=1),
    ]
    inits = [_f("w0", rng.standard_normal((6, 4, 3, 3)) * 0.3), _f("w1", rng.standard_normal((6, 6, 3, 3)) * 0.3),
             _ints("sa", [1, 6, 64]), _ints("sb", [1, 6, 16]), _ints("sizes", [4, 2]), _ints("s4", [1, 2, 2, N]),
             _f("wd", np.array([0.0, 1.0]).reshape(1, 2, 1, 1)), _ints("s3", [1, 2, N]),
             _ints("st", [0]), _ints("en", [1]), _ints("ax", [1]),
             _f("anchors", rng.standard_normal((1, 1, N))),
             _f("stride", np.r_[np.full(64, 8.0), np.full(16, 16.0)][None])]
    g = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def int8_head_model() -> onnx.ModelProto:
    """The head on int8 tensors (QDQ form, folded into int8 steps by ``compile``): int8 input
    maps a (1x6x8x8) and b (1x6x4x4); flatten, Concat along N and Split on int8 bytes; the
    Sigmoid, Softmax and 1x1 DFL conv each between a DequantizeLinear and a QuantizeLinear;
    int8 result y (1x4x80)."""
    s = _f("s", np.array(0.05))
    z = numpy_helper.from_array(np.array(0, dtype=np.int8), "z")

    def dq(x: str, y: str) -> onnx.NodeProto:
        return helper.make_node("DequantizeLinear", [x, "s", "z"], [y], name=f"dq_{y}")

    def q(x: str, y: str) -> onnx.NodeProto:
        return helper.make_node("QuantizeLinear", [x, "s", "z"], [y], name=f"q_{y}")

    wq = numpy_helper.from_array(np.array([1, 3], dtype=np.int8).reshape(1, 2, 1, 1), "wq")
    nodes = [
        *_head_nodes(),
        dq("cls", "cls_f"), helper.make_node("Sigmoid", ["cls_f"], ["score_f"], name="sig"), q("score_f", "score"),
        helper.make_node("Reshape", ["box", "s4"], ["box4"], name="view4"),
        helper.make_node("Transpose", ["box4"], ["boxt"], name="perm", perm=[0, 2, 1, 3]),
        dq("boxt", "boxt_f"), helper.make_node("Softmax", ["boxt_f"], ["soft_f"], name="softmax", axis=1),
        q("soft_f", "soft"),
        dq("soft", "soft_d"), helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], name="dq_w"),
        helper.make_node("Conv", ["soft_d", "wd"], ["dfl_f"], name="dfl"), q("dfl_f", "dfl"),
        helper.make_node("Reshape", ["dfl", "s3"], ["dist"], name="view3"),
        helper.make_node("Concat", ["dist", "score"], ["y"], name="cat_c", axis=1),
    ]
    inits = [s, z, wq, _ints("sa", [1, 6, 64]), _ints("sb", [1, 6, 16]), _ints("sizes", [4, 2]),
             _ints("s4", [1, 2, 2, N]), _ints("s3", [1, 2, N])]
    g = helper.make_graph(nodes, "qhead", [helper.make_tensor_value_info("a", TensorProto.INT8, [1, 6, 8, 8]),
                                           helper.make_tensor_value_info("b", TensorProto.INT8, [1, 6, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def _op(g, name: str):
    return next(op for op in g.operators if op.name == name)


# -- which tensors are columns, and their row maps -------------------------------------------
def test_the_head_after_the_flatten_is_in_columns_and_the_backbone_is_not() -> None:
    g = import_model(head_model(), element_bytes=1)
    cols = column_tensors(g)
    assert {"cat", "box", "cls", "box4", "boxt", "soft", "dfl", "dist", "lt", "y"} <= cols
    assert not {"x", "a", "b"} & cols          # NCHW maps keep their H rows
    # The flattening views read only by the Concat along N are flattened pieces, not columns:
    # their buffers keep a's and b's H rows (W = 8 and 4 positions a row).
    assert not {"fa", "fb"} & cols and flattened_pieces(g) == {"fa": ("a", 8), "fb": ("b", 4)}
    assert row_axis_of(g, g.tensors["boxt"]) == 3 and row_axis_of(g, g.tensors["a"]) == 2
    assert rows(g, g.tensors["cat"]) == N and rows(g, g.tensors["boxt"]) == N
    # One row of the (1, 6, 80) Concat is its 6 channels at one position: 6 bytes at 8-bit.
    assert buffer_row_bytes(g, g.tensor_buffer["cat"]) == 6
    # a's buffer (a and its view fa) is held in a's rows: 6 channels x 8 = 48 B, not mixed.
    assert g.tensor_buffer["fa"] == g.tensor_buffer["a"] and not mixed_buffer(g, g.tensor_buffer["a"])
    assert buffer_row_bytes(g, g.tensor_buffer["a"]) == 48 and buffer_row_bytes(g, g.tensor_buffer["b"]) == 24
    assert not mixed_buffer(g, g.tensor_buffer["box"])   # (1, 4, 80) and its (1, 2, 2, 80) view


def test_a_flattening_view_read_elsewhere_stays_a_mixed_column_tensor() -> None:
    """fa also read by a Sigmoid (not a Concat along N): it stays a column tensor, and a's
    buffer mixes two row layouts (whole), as before flattened pieces."""
    m = head_model()
    m.graph.node.append(helper.make_node("Sigmoid", ["fa"], ["fa_s"], name="side"))
    m.graph.output.append(helper.make_tensor_value_info("fa_s", TensorProto.FLOAT, None))
    g = import_model(m, element_bytes=1)
    assert "fa" in column_tensors(g) and flattened_pieces(g) == {"fb": ("b", 4)}
    assert mixed_buffer(g, g.tensor_buffer["a"]) and not mixed_buffer(g, g.tensor_buffer["b"])
    maps = row_maps(g, _op(g, "cat_n"))
    assert maps == {"fa": RowMap(1, 1, 0, 64, kind=CONCAT), "b": RowMap(1, 1, 64, 4, kind=FLATTEN, scale=4)}


def test_concat_along_n_reads_each_piece_at_its_offset() -> None:
    """A flattened piece is read in its NCHW source's rows: position n of fa is row n // 8 of
    a, position n of fb row (n - 64) // 4 of b."""
    g = import_model(head_model(), element_bytes=1)
    maps = row_maps(g, _op(g, "cat_n"))
    assert maps == {"a": RowMap(1, 1, 0, 8, kind=FLATTEN, scale=8), "b": RowMap(1, 1, 64, 4, kind=FLATTEN, scale=4)}
    # Positions 60..69 are a's 60..63 (row 7) and b's 0..5 (rows 0 and 1).
    assert maps["a"].need(60, 70) == (7, 8, 0, 0) and maps["b"].need(60, 70) == (0, 2, 0, 0)
    # Positions 5..16 cross a's rows 0, 1 and 2; 0..15 read none of b, 64..79 none of a.
    assert maps["a"].need(5, 17) == (0, 3, 0, 0) and maps["a"].need(8, 16) == (1, 2, 0, 0)
    assert maps["b"].need(0, 16) == (0, 0, 0, 0) and maps["a"].need(64, 80) == (8, 8, 0, 0)
    # Rows a later band still needs: a's from position 17 on start at row 2; b's from 70 at row 1.
    assert maps["a"].first_needed(17) == 2 and maps["a"].first_needed(64) == 8 and maps["b"].first_needed(70) == 1
    assert maps["b"].first_needed(0) == 0
    # Every other head operator reads the same positions of its column operands.
    for name, operand in (("perm", "box4"), ("softmax", "boxt"), ("dfl", "soft"), ("slice_lt", "dist")):
        assert row_maps(g, _op(g, name)) == {operand: RowMap(1, 1, 0, N)}, name
    assert [u.output for u in row_units(g, _op(g, "split"))] == ["box", "cls"]


def test_a_softmax_over_n_needs_whole_tensors() -> None:
    m = head_model()
    next(n for n in m.graph.node if n.name == "softmax").attribute[0].i = 3   # over the positions
    g = import_model(m)
    assert row_maps(g, _op(g, "softmax")) is None
    assert row_maps(g, _op(g, "perm")) is not None


# -- the stripe program --------------------------------------------------------------------
def test_stripes_of_the_head_hand_checked(tmp_path) -> None:
    """Bands of 16 positions of the head after the two convs (a and b whole, made before):
    5 bands; band k of the Concat reads a's rows [2k, 2k + 2) (8 positions a row), band 4
    reads a's rows [8, 8) (none) and all 4 rows of b."""
    g = load_model(_save(head_model(), tmp_path / "head.onnx"), element_bytes=1, in_place=True)
    ops = tuple(op.index for op in g.computing_ops if op.name not in ("conv_a", "conv_b"))
    outside = {b.id: b.id in (g.tensor_buffer["a"], g.tensor_buffer["b"]) for b in g.buffers}
    prog = stripe_program(g, ops, 16, outside)
    cat = [(s.out_lo, s.out_hi, s.inputs, s.pad_top, s.pad_bottom) for s in prog.stripes
           if s.op == _op(g, "cat_n").index]
    assert cat == [(lo, lo + 16, (("a", min(lo, 64) // 8, min(lo + 16, 64) // 8), ("b", 0, 4 if lo == 64 else 0)),
                    0, 0) for lo in range(0, N, 16)]
    assert cat[3][2] == (("a", 6, 8), ("b", 0, 0)) and cat[4][2] == (("a", 8, 8), ("b", 0, 4))
    # Every ring holds one band (16 positions); y streams out 16 positions at a time.
    # A row is a position's channels, 1 B each: cat 6, box 4 (its (1, 2, 2, N) view the same
    # 4), cls 2, the transposed bins 4, the DFL's 2, the Slice's 1 (Sub and Mul in place).
    rb = {g.buffers[b].tensors[0]: (r, buffer_row_bytes(g, b)) for b, r in prog.rings.items()}
    assert rb == {"cat": (16, 6), "box": (16, 4), "cls": (16, 2), "boxt": (16, 4), "soft": (16, 4),
                  "dfl": (16, 2), "lt": (16, 1)}
    assert prog.streamed == {g.tensor_buffer["y"]: 16}
    stores = [(x.lo, x.hi) for s in prog.stripes for x in s.transfers if x.direction == "store"]
    assert stores == [(lo, lo + 16) for lo in range(0, N, 16)]
    # y (1, 3, 80) at 8-bit: 3 bytes a position, all 240 stored once; nothing loaded.
    assert (prog.store_bytes, prog.load_bytes) == (3 * N, 0)
    # a and b are whole (read after the cascade): the Concat reads their H rows.
    assert set(prog.whole_in) == {g.tensor_buffer["a"], g.tensor_buffer["b"]}


def test_the_flattened_maps_are_rings_inside_the_cascade(tmp_path) -> None:
    """The whole head, convs included, in bands of 16 positions: conv_a makes 2 rows of a a
    band (16 positions are 2 rows of 8), conv_b 1 row of b, which the Concat reads only from
    position 64 on.  a is a ring of 3 rows (conv_b's 3x3 window), 48 B a row; b keeps all 4
    rows (24 B each) until the last band reads them; x streams in, 32 B a row."""
    g = load_model(_save(head_model(), tmp_path / "head.onnx"), element_bytes=1, in_place=True)
    prog = stripe_program(g, tuple(op.index for op in g.computing_ops), 16, {b.id: False for b in g.buffers})
    by = {name: [(s.out_lo, s.out_hi, s.inputs) for s in prog.stripes if s.op == _op(g, name).index]
          for name in ("conv_a", "conv_b", "cat_n")}
    assert by["conv_a"] == [(0, 2, (("x", 0, 3),)), (2, 4, (("x", 1, 5),)), (4, 6, (("x", 3, 7),)),
                            (6, 8, (("x", 5, 8),))]
    assert by["conv_b"] == [(r, r + 1, (("a", max(2 * r - 1, 0), 2 * r + 2),)) for r in range(4)]
    assert [c[2] for c in by["cat_n"]] == [(("a", 0, 2), ("b", 0, 0)), (("a", 2, 4), ("b", 0, 0)),
                                           (("a", 4, 6), ("b", 0, 0)), (("a", 6, 8), ("b", 0, 0)),
                                           (("a", 8, 8), ("b", 0, 4))]
    rb = {g.buffers[b].tensors[0]: (r, buffer_row_bytes(g, b)) for b, r in prog.rings.items()}
    assert rb["a"] == (3, 48) and rb["b"] == (4, 24) and rb["cat"] == (16, 6)
    assert not prog.whole_in and prog.streamed[g.tensor_buffer["x"]] == 4


def _save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, path)
    return path


# -- tiled plans, validated and executed ---------------------------------------------------
@pytest.fixture(scope="module")
def head_plan(tmp_path_factory):
    path = _save(head_model(), tmp_path_factory.mktemp("head") / "head.onnx")
    g = load_model(path, in_place=True)
    plan = compile_plan(g, capacity=2000, time_limit=10)   # M_R is 3,840 B
    return path, g, plan


def test_head_below_m_r_is_tiled_valid_and_matches_ort(head_plan) -> None:
    path, g, plan = head_plan
    banded = {g.operators[s.op].op_type for c in plan.cascades for s in c.stripes}
    assert {"Concat", "Split", "Transpose", "Softmax", "Conv", "Slice"} <= banded
    assert validate(g, plan).ok
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.close for o in r.outputs)


def test_int8_head_is_bit_exact_in_bands(tmp_path) -> None:
    path = _save(int8_head_model(), tmp_path / "qhead.onnx")
    g = load_model(path, in_place=True, qdq="fold")
    # At 400 B the whole head is one cascade: a and b (480 B whole) stream in as rows.
    plan = compile_plan(path, capacity=400, time_limit=10)
    banded = {g.operators[s.op].op_type for c in plan.cascades for s in c.stripes}
    assert {"Concat", "Split", "Transpose"} <= banded, banded
    modes = {t.tensor: t.mode for c in plan.cascades for t in c.tensors}
    assert modes["a"] == modes["b"] == "streamed"
    assert validate(load_model(path, in_place=True, qdq="fold"), plan).ok
    r = simulate(path, load_model(path, in_place=True, qdq="fold"), plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.exact for o in r.outputs)


def _with_cascade(plan: Plan, k: int, c: Cascade) -> Plan:
    cs = list(plan.cascades)
    cs[k] = c
    return dataclasses.replace(plan, cascades=tuple(cs))


def _concat_stripe(g, plan: Plan, piece: str):
    return next((k, c, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                if g.operators[s.op].name == "cat_n" and any(n == piece and hi > lo for n, lo, hi in s.inputs))


def test_a_concat_stripe_reading_the_wrong_piece_rows_is_caught(head_plan) -> None:
    path, g, plan = head_plan
    # The flattened pieces are read in their sources' rows (a's 8 and b's 4 positions a row).
    k, c, j = _concat_stripe(g, plan, "b")
    st = c.stripes[j]
    shifted = tuple((n, lo + 1, hi + 1) if n == "a" and hi > lo else (n, lo - 1, hi - 1) if hi > lo and lo > 0
                    else (n, lo, hi) for n, lo, hi in st.inputs)
    if shifted == st.inputs:   # the band holds b's row 0: read a row of b too many instead
        shifted = tuple((n, lo, hi + 1) if n == "b" else (n, lo, hi) for n, lo, hi in st.inputs)
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(st, inputs=shifted)
    bad = _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes)))
    v = validate(g, bad)
    assert not v.ok and any("need rows" in e.message for e in v.errors), v.summary()
    assert not simulate(path, g, bad).ok


def test_a_dropped_concat_stripe_and_a_ring_overrun_are_caught(head_plan) -> None:
    path, g, plan = head_plan
    k, c, j = _concat_stripe(g, plan, "a")
    dropped = _with_cascade(plan, k, dataclasses.replace(c, stripes=c.stripes[:j] + c.stripes[j + 1:]))
    v = validate(g, dropped)
    assert not v.ok, "a band of the Concat never made"
    assert not simulate(path, g, dropped).ok
    # At 3,000 B the head runs in 16-position bands: a ring of 15 overruns.
    plan = compile_plan(g, capacity=3000, time_limit=10)
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if any(t.tensor == "cat" for t in c.tensors))
    ring = next(i for i, t in enumerate(c.tensors) if t.tensor == "cat" and t.mode == "ring")
    assert c.tensors[ring].ring_rows == c.stripe_rows == 16
    ts = list(c.tensors)
    ts[ring] = dataclasses.replace(ts[ring], ring_rows=15)
    small = _with_cascade(plan, k, dataclasses.replace(c, tensors=tuple(ts)))
    v = validate(g, small)
    assert not v.ok, "a ring smaller than its band"
    assert not simulate(path, g, small).ok


def test_a_flattened_map_too_small_a_ring_is_caught(head_plan) -> None:
    """At 2,000 B the head is one cascade with a (8 rows, 48 B each) in a ring of 3 rows: the
    rows conv_b's 3x3 window needs while the Concat reads 2 rows a band.  In 2 rows, row 0
    is overwritten before conv_b's second band reads it."""
    path, g, plan = head_plan
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if any(t.tensor == "a" and t.mode == "ring"
                                                                   for t in c.tensors))
    i = next(i for i, t in enumerate(c.tensors) if t.tensor == "a")
    assert (c.tensors[i].ring_rows, c.tensors[i].row_bytes) == (3, 192)   # fp32: 6 x 8 x 4 B a row
    ts = list(c.tensors)
    ts[i] = dataclasses.replace(ts[i], ring_rows=2)
    small = _with_cascade(plan, k, dataclasses.replace(c, tensors=tuple(ts)))
    v = validate(g, small)
    assert not v.ok and any("'a'" in e.message for e in v.errors), v.summary()
    assert not simulate(path, g, small).ok


def test_a_flattened_map_crossing_off_chip_in_rows_plans_valid_and_matches_ort(tmp_path) -> None:
    """At 1,000 B (a and b are 768 + 384 B whole in fp32) a crosses off-chip in rows: conv_a's
    cascade stores its 8 rows, the head's cascade loads them back, each once, one at a time,
    as the Concat's bands reach them."""
    path = _save(head_model(), tmp_path / "head.onnx")
    g = load_model(path, in_place=True)
    plan = compile_plan(g, capacity=1000, time_limit=10)
    head = next(c for c in plan.cascades if any(g.operators[i].name == "cat_n" for i in c.ops))
    loads = [(x.tensor, x.lo, x.hi) for st in head.stripes for x in st.transfers if x.direction == "load"]
    assert sorted({r for t, lo, hi in loads if t == "a" for r in range(lo, hi)}) == list(range(8))
    assert sum(hi - lo for t, lo, hi in loads if t == "a") == 8   # each row once
    v = validate(g, plan)
    assert v.ok, v.summary()
    assert v.metrics.noncompulsory_bytes > 0
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


@needs_gcc
def test_plan_h_of_the_tiled_head_replays_in_c(head_plan, tmp_path) -> None:
    _path, g, plan = head_plan
    r = replay(emit_c(plan, g), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replay ok" in r.stdout


# -- a streamed Slice loads only the rows it takes --------------------------------------------
def slice_model(start: int, end: int, step: int) -> onnx.ModelProto:
    """x (1x4x24x8) -> Slice rows start:end:step -> 1x1 conv -> y."""
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"], name="slice"),
             helper.make_node("Conv", ["s", "w"], ["y"], name="conv", kernel_shape=[1, 1])]
    inits = [_ints("st", [start]), _ints("en", [end]), _ints("ax", [2]), _ints("sp", [step]),
             _f("w", rng.standard_normal((4, 4, 1, 1)))]
    g = helper.make_graph(nodes, "s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 24, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def test_a_slice_of_the_last_rows_loads_only_them() -> None:
    """Rows 21:23 of 24 in one 2-row band: x's load is rows [21, 23), 2 rows of 32 B at 8-bit,
    through a ring of 2 rows (it used to load rows [0, 23) through a ring of 23)."""
    g = load_model(import_model(slice_model(21, 23, 1), element_bytes=1), in_place=True)
    prog = stripe_program(g, g.file_order(), 2, {b.id: False for b in g.buffers})
    loads = [(x.tensor, x.lo, x.hi) for s in prog.stripes for x in s.transfers if x.direction == "load"]
    assert loads == [("x", 21, 23)]
    assert prog.load_bytes == 2 * 32 and prog.streamed[g.tensor_buffer["x"]] == 2


def test_a_step_two_slice_in_one_row_bands_skips_the_rows_it_drops() -> None:
    g = load_model(import_model(slice_model(0, 24, 2), element_bytes=1), in_place=True)
    prog = stripe_program(g, g.file_order(), 1, {b.id: False for b in g.buffers})
    loads = [(x.lo, x.hi) for s in prog.stripes for x in s.transfers if x.direction == "load"]
    assert loads == [(r, r + 1) for r in range(0, 24, 2)]
    assert prog.load_bytes == 12 * 32 and prog.streamed[g.tensor_buffer["x"]] == 1


@pytest.mark.parametrize("start,end,step,cap", [(21, 23, 1, 1000), (0, 24, 2, 400), (1, 24, 3, 400)])
def test_skipping_slices_plan_valid_and_match_ort(tmp_path, start, end, step, cap) -> None:
    path = _save(slice_model(start, end, step), tmp_path / "s.onnx")
    g = load_model(path, in_place=True)
    plan = compile_plan(g, capacity=cap, time_limit=10)
    assert plan.cascades
    v = validate(g, plan)
    assert v.ok, v.summary()
    # Compulsory loads are the rows taken, once each (fp32: 128 B a row), plus y's stores.
    taken = len(range(start, end, step))
    y_bytes = g.tensors["y"].bytes
    assert v.metrics.compulsory_bytes <= taken * 128 + y_bytes
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


# -- a Shape of a tensor with a known shape is a constant ----------------------------------------
def test_a_shape_of_a_known_tensor_folds_and_simulates(tmp_path) -> None:
    """x -> Relu -> r; Shape(r) -> Gather(1) -> Mul(r, channels) -> y: the Shape reads no
    data, so it folds into a weight (no step keeps r whole for it), and the simulator
    computes it from the shape (y = 4 * relu(x))."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Shape", ["r"], ["sh"], name="shape"),
             helper.make_node("Gather", ["sh", "one"], ["c"], name="gather", axis=0),
             helper.make_node("Cast", ["c"], ["cf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["r", "cf"], ["y"], name="mul")]
    g0 = helper.make_graph(nodes, "shape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_ints("one", [1])])
    m = helper.make_model(g0, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    path = _save(m, tmp_path / "shape.onnx")
    g = load_model(path, in_place=True)
    shape = _op(g, "shape")
    assert not shape.computing and g.tensors["sh"].kind.name == "WEIGHT" and g.tensors["cf"].kind.name == "WEIGHT"
    assert [op.name for op in g.computing_ops] == ["relu", "mul"]
    plan = compile_plan(g, time_limit=5)
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


# -- a position-major head output: Transpose (0, 2, 1) of a flattened map or a column tensor ---------
def pico_model() -> onnx.ModelProto:
    """PicoDet's head output, small: x (1x4x8x8) -> 3x3 conv -> a (1x6x8x8) -> Reshape to
    (1, 6, 64) -> Transpose (0, 2, 1) -> y (1, 64, 6), one position's 6 scores a row."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["a", "sa"], ["fa"], name="flat_a"),
             helper.make_node("Transpose", ["fa"], ["y"], name="perm", perm=[0, 2, 1])]
    g = helper.make_graph(nodes, "pico", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [_f("w0", rng.standard_normal((6, 4, 3, 3))), _ints("sa", [1, 6, 64])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def test_a_transposed_flattened_map_is_position_major_rows_hand_checked(tmp_path) -> None:
    """y's row n is position n (6 values, 6 B at 8-bit), made from row n // 8 of a: bands of 16
    positions read 2 rows of a each, a in a ring of 2 rows, y stored 16 rows a band."""
    g = load_model(_save(pico_model(), tmp_path / "pico.onnx"), element_bytes=1, in_place=True)
    assert flattened_pieces(g) == {"fa": ("a", 8)} and transposed_columns(g) == {"y"}
    assert row_axis_of(g, g.tensors["y"]) == 1 and rows(g, g.tensors["y"]) == 64
    assert buffer_row_bytes(g, g.tensor_buffer["y"]) == 6
    assert row_maps(g, _op(g, "perm")) == {"a": RowMap(1, 1, 0, 8, kind=FLATTEN, scale=8)}
    prog = stripe_program(g, tuple(op.index for op in g.computing_ops), 16, {b.id: False for b in g.buffers})
    perm = [(s.out_lo, s.out_hi, s.inputs, tuple((x.lo, x.hi) for x in s.transfers))
            for s in prog.stripes if s.op == _op(g, "perm").index]
    assert perm == [(lo, lo + 16, (("a", lo // 8, lo // 8 + 2),), ((lo, lo + 16),)) for lo in range(0, 64, 16)]
    assert prog.rings == {g.tensor_buffer["a"]: 2} and prog.streamed[g.tensor_buffer["y"]] == 16
    assert prog.store_bytes == 64 * 6


def test_a_transposed_column_tensor_reads_the_same_positions() -> None:
    m = head_model()
    m.graph.node.append(helper.make_node("Transpose", ["y"], ["yt"], name="perm_out", perm=[0, 2, 1]))
    m.graph.output[0].name = "yt"
    g = import_model(m, element_bytes=1)
    assert "y" in column_tensors(g) and transposed_columns(g) == {"yt"}
    assert row_maps(g, _op(g, "perm_out")) == {"y": RowMap(1, 1, 0, N)}
    assert buffer_row_bytes(g, g.tensor_buffer["yt"]) == 3   # (1, 80, 3): 3 B a position


@pytest.fixture(scope="module")
def pico_plan(tmp_path_factory):
    path = _save(pico_model(), tmp_path_factory.mktemp("pico") / "pico.onnx")
    g = load_model(path, in_place=True)
    plan = compile_plan(g, capacity=1000, time_limit=10)   # a and y are 1,536 B each in fp32
    return path, g, plan


def test_a_transposed_head_output_plans_in_bands_valid_and_matches_ort(pico_plan) -> None:
    path, g, plan = pico_plan
    assert plan.cascades and any(g.operators[s.op].name == "perm" for c in plan.cascades for s in c.stripes)
    modes = {t.tensor: t.mode for c in plan.cascades for t in c.tensors}
    assert modes["y"] == "streamed" and modes["a"] == "ring"
    v = validate(g, plan)
    assert v.ok, v.summary()
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.exact for o in r.outputs)   # a Transpose moves bytes only


def test_a_transpose_stripe_reading_the_wrong_rows_is_caught(pico_plan) -> None:
    path, g, plan = pico_plan
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if any(g.operators[s.op].name == "perm" for s in c.stripes))
    j = max(j for j, s in enumerate(c.stripes) if g.operators[s.op].name == "perm")
    st = c.stripes[j]
    (name, lo, hi), = st.inputs
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(st, inputs=((name, lo, hi - 1),))   # a row of a too few
    bad = _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes)))
    v = validate(g, bad)
    assert not v.ok and any("need rows" in e.message for e in v.errors), v.summary()
    assert not simulate(path, g, bad).ok


@needs_gcc
def test_plan_h_of_the_transposed_head_replays_in_c(pico_plan, tmp_path) -> None:
    _path, g, plan = pico_plan
    r = replay(emit_c(plan, g), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replay ok" in r.stdout


def split_pico_model() -> onnx.ModelProto:
    """PicoDet's head as it is: x (1x4x8x6) -> 3x3 conv -> (1x6x8x6) -> Split on channels
    into scores (2, through a Sigmoid run in place in the Split's step) and boxes (4), each
    flattened to (1, C, 48) and transposed to (1, 48, C).  Rows of 6 positions: a band of 16
    positions crosses rows."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Split", ["a", "sizes"], ["s0", "s1"], name="split", axis=1),
             helper.make_node("Sigmoid", ["s0"], ["sig"], name="sig"),
             helper.make_node("Reshape", ["sig", "r0"], ["f0"], name="flat0"),
             helper.make_node("Reshape", ["s1", "r1"], ["f1"], name="flat1"),
             helper.make_node("Transpose", ["f0"], ["scores"], name="perm0", perm=[0, 2, 1]),
             helper.make_node("Transpose", ["f1"], ["boxes"], name="perm1", perm=[0, 2, 1])]
    g = helper.make_graph(nodes, "pico2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 6])],
                          [helper.make_tensor_value_info("scores", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("boxes", TensorProto.FLOAT, None)],
                          [_f("w0", rng.standard_normal((6, 4, 3, 3))), _ints("sizes", [2, 4]),
                           _ints("r0", [1, 2, 48]), _ints("r1", [1, 4, 48])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


@pytest.mark.parametrize("capacity", [900, 600])
def test_a_transposed_in_place_chain_simulates_from_its_last_rewrite(tmp_path, capacity) -> None:
    """The Sigmoid rewrites s0's rows in place and f0 is a view of that buffer: the simulator's
    reference for f0 is the Sigmoid's value, not the Split's (layout_cdla's PicoDet head failed
    so, though the plan was valid)."""
    path = _save(split_pico_model(), tmp_path / "pico2.onnx")
    g = load_model(path, in_place=True)
    assert flattened_pieces(g) == {"f0": ("sig", 6), "f1": ("s1", 6)}
    assert g.tensor_buffer["sig"] == g.tensor_buffer["s0"] == g.tensor_buffer["f0"]
    assert row_maps(g, _op(g, "perm0")) == {"sig": RowMap(1, 1, 0, 8, kind=FLATTEN, scale=6)}
    # Positions 16..31 are rows 2..5 of the map (6 a row): row 2 holds 12..17, row 5 30..35.
    assert row_maps(g, _op(g, "perm0"))["sig"].need(16, 32) == (2, 6, 0, 0)
    plan = compile_plan(g, capacity=capacity, time_limit=10)   # a is 1,152 B in fp32
    assert any(g.operators[s.op].name == "perm0" for c in plan.cascades for s in c.stripes)
    v = validate(g, plan)
    assert v.ok, v.summary()
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


def test_a_position_major_member_inside_a_segment_paces_as_its_column_groups(tmp_path) -> None:
    """x (1x4x16x16) -> conv -> a; a flattened and transposed to y (1, 256, 6), an output;
    conv_b reads a -> z.  The segment [conv_a .. conv_b] ends at z (16 rows) with y made
    inside it: y paces as its 256 // 128 = 2-position groups (128 bands), not as 256 rows,
    so its finest bands are rows of a 128-row pace, not a 256-row one (layout_cdla's search
    spent its work budget walking a band per position)."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["a", "sa"], ["fa"], name="flat_a"),
             helper.make_node("Transpose", ["fa"], ["y"], name="perm", perm=[0, 2, 1]),
             helper.make_node("Conv", ["a", "w1"], ["z"], name="conv_b", kernel_shape=[1, 1])]
    g0 = helper.make_graph(nodes, "pace", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                            helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                           [_f("w0", rng.standard_normal((6, 4, 3, 3))), _f("w1", rng.standard_normal((2, 6, 1, 1))),
                            _ints("sa", [1, 6, 256])])
    m = helper.make_model(g0, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    g = load_model(_save(m, tmp_path / "pace.onnx"), element_bytes=1, in_place=True)
    assert transposed_columns(g) == {"y"} and rows(g, g.tensors["y"]) == 256
    from stowage.solvers.tiling.partition import Partitioner

    part = Partitioner(g, False)
    names = [g.operators[i].name for i in part.order]
    i, j = names.index("conv_a"), names.index("conv_b")
    assert names[i:j + 1] == ["conv_a", "perm", "conv_b"]
    # 16-row end, 128-row pace: 1, 2 and 4 rows of the pace are finer than one end row.
    assert part.ladder(i, j) == [(1, 128), (2, 128), (4, 128), (1, 0), (2, 0), (4, 0), (8, 0), (16, 0)]
