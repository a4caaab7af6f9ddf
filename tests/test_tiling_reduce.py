"""Tiled execution through reductions and resizes (issue 12, "Below M_R", item 2).

A reduction over H and W (GlobalAveragePool, ReduceMean, QLinearGlobalAveragePool, ...) ends a
cascade by reducing its input band by band into its one-row result; a Resize by an integer
factor along H reads the input rows its output band interpolates from.  Hand-checked row maps,
then tiny models planned below their M_R: every plan passes the validator and executes in the
simulator against ONNX Runtime (int8 bit-exactly), and mutants are caught.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.backend.emit import STRIPE_FLAGS, build_schedule, emit_c
from stowage.ir.graph import Graph
from stowage.ir.inplace import fuse_in_place
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import load_graph
from stowage.ir.qdq import fold_qdq
from stowage.ir.tiling import ACCUMULATE, RESIZE, TRANSPOSED, RowMap, resize_taps, row_maps
from stowage.plan import Cascade, Plan
from stowage.plan.validate import validate
from stowage.simulate import resize_band, simulate
from stowage.solvers.tiling.program import NotTileable, stripe_program
from test_emit import compile_only, needs_gcc, needs_gxx

OPSET = [helper.make_opsetid("", 13)]


# ---------------------------------------------------------------------------------------
# Tiny models, built here (nothing big is committed)
# ---------------------------------------------------------------------------------------
def _w(name: str, shape: tuple[int, ...], rng: np.random.Generator, scale: float = 0.3) -> TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def se_block(path: Path, c_in: int = 4, c: int = 8, h: int = 16) -> Path:
    """conv 3x3 -> relu (x) -> GlobalAveragePool -> 1x1 conv -> sigmoid (s) -> x * s -> 1x1 conv:
    a squeeze-excitation block, whose x is read by the reduction and again by the Mul."""
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node("Conv", ["in", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["x"]),
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Conv", ["g", "w2", "b2"], ["z"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["z"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["m"]),
        helper.make_node("Conv", ["m", "w3", "b3"], ["out"], kernel_shape=[1, 1]),
    ]
    inits = [_w("w1", (c, c_in, 3, 3), rng), _w("b1", (c,), rng), _w("w2", (c, c, 1, 1), rng),
             _w("b2", (c,), rng), _w("w3", (c_in, c, 1, 1), rng), _w("b3", (c_in,), rng)]
    g = helper.make_graph(nodes, "se_block", [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, c_in, h, h])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, c_in, h, h])], inits)
    onnx.save(helper.make_model(g, opset_imports=OPSET), path)
    return path


def resize_net(path: Path, mode: str, coord: str, scale: int = 2, h: int = 8) -> Path:
    """conv 3x3 -> Resize x``scale`` (given by ``sizes``) -> conv 3x3."""
    rng = np.random.default_rng(3)
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    if mode == "nearest":
        attrs["nearest_mode"] = "floor"
    nodes = [
        helper.make_node("Conv", ["in", "w1"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["a", "", "", "sizes"], ["r"], **attrs),
        helper.make_node("Conv", ["r", "w2"], ["out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    inits = [_w("w1", (8, 3, 3, 3), rng), _w("w2", (3, 8, 3, 3), rng),
             numpy_helper.from_array(np.array([1, 8, h * scale, h * scale], np.int64), "sizes")]
    g = helper.make_graph(nodes, "resize_net", [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, 3, h, h])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, h * scale, h * scale])],
                          inits)
    onnx.save(helper.make_model(g, opset_imports=OPSET), path)
    return path


def deconv_net(path: Path, k: int = 2, stride: int = 2, pad: int = 0, h: int = 8) -> Path:
    """conv 3x3 -> ConvTranspose (k, stride, pad) -> sigmoid: a learned upsampling head."""
    rng = np.random.default_rng(5)
    out_h = (h - 1) * stride + k - 2 * pad
    nodes = [
        helper.make_node("Conv", ["in", "w1"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("ConvTranspose", ["a", "w2", "b2"], ["t"], kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad, pad, pad, pad]),
        helper.make_node("Sigmoid", ["t"], ["out"]),
    ]
    inits = [_w("w1", (8, 3, 3, 3), rng), _w("w2", (8, 4, k, k), rng), _w("b2", (4,), rng)]
    g = helper.make_graph(nodes, "deconv", [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, 3, h, h])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, out_h, out_h])], inits)
    onnx.save(helper.make_model(g, opset_imports=OPSET), path)
    return path


def _graph(path: Path) -> Graph:
    """As ``stowage compile`` imports by default: QDQ groups folded, then in-place operators."""
    return fuse_in_place(fold_qdq(load_graph(str(path))))


def _op(g: Graph, op_type: str):
    return next(op for op in g.operators if op.op_type == op_type)


def _tiled(g: Graph, capacity: int) -> Plan:
    plan = compile_plan(g, capacity=capacity, time_limit=5.0, seed=0)
    assert plan.cascades, "below M_R the plan must be tiled"
    verdict = validate(g, plan)
    assert verdict.ok, verdict.summary()
    return plan


def _gap_cascade(g: Graph, plan: Plan) -> tuple[int, Cascade]:
    gap = _op(g, "GlobalAveragePool").index
    return next((k, c) for k, c in enumerate(plan.cascades) if gap in c.ops)


def _holder(g: Graph, c: Cascade, name: str):
    """How cascade ``c`` holds tensor ``name`` (by buffer: the ReLU in place shares the conv's)."""
    return next(t for t in c.tensors if g.tensor_buffer[t.tensor] == g.tensor_buffer[name])


def _with_cascade(plan: Plan, k: int, c: Cascade) -> Plan:
    cs = list(plan.cascades)
    cs[k] = c
    return dataclasses.replace(plan, cascades=tuple(cs))


# ---------------------------------------------------------------------------------------
# Row maps, by hand
# ---------------------------------------------------------------------------------------
def test_nearest_resize_rows_hand_checked() -> None:
    rm = RowMap(1, 1, 0, 8, kind=RESIZE, scale=2, mode="nearest:asymmetric:floor")
    # Output rows 4..7 of a x2 nearest resize repeat input rows 2, 2, 3, 3.
    assert rm.need(4, 8) == (2, 4, 0, 0)
    assert rm.need(0, 1) == (0, 1, 0, 0) and rm.need(15, 16) == (7, 8, 0, 0)
    assert rm.first_needed(5) == 2
    # half_pixel with round_prefer_floor: x(o) = (o + 0.5) / 2 - 0.5; rows 4, 5 -> 1.75, 2.25 -> 2, 2.
    assert resize_taps("nearest:half_pixel:round_prefer_floor", 2, 8, 4) == (2, 3)
    assert resize_taps("nearest:half_pixel:round_prefer_floor", 2, 8, 3) == (1, 2)   # x = 1.25


def test_linear_resize_halo_hand_checked() -> None:
    rm = RowMap(1, 1, 0, 14, kind=RESIZE, scale=2, mode="linear:half_pixel")
    # x(o) = (o + 0.5) / 2 - 0.5: o = 4 -> 1.75 (rows 1, 2), o = 7 -> 3.25 (rows 3, 4).
    assert rm.need(4, 8) == (1, 5, 0, 0)
    # The borders clamp: o = 0 -> x = -0.25 -> row 0 (and 1, weight 0); o = 27 -> 13.25 -> row 13.
    assert rm.need(0, 1) == (0, 2, 0, 0)
    assert rm.need(27, 28) == (13, 14, 0, 0)
    # x8 (LR-ASPP's last resize, 28 -> 224): output rows 0..7 read input rows 0 and 1.
    assert RowMap(1, 1, 0, 28, kind=RESIZE, scale=8, mode="linear:half_pixel").need(0, 8) == (0, 2, 0, 0)
    # asymmetric linear: x(o) = o / 2, rows [2, 6) -> x in 1.0 .. 2.5 -> rows 1..3.
    assert resize_taps("linear:asymmetric", 2, 14, 2) == (1, 3) and resize_taps("linear:asymmetric", 2, 14, 5) == (2, 4)


def test_transposed_conv_rows_hand_checked() -> None:
    # k = s = 2, no pads (PP-OCR's head): output rows 4..7 come from input rows 2 and 3 only.
    rm = RowMap(2, 2, 0, 80, kind=TRANSPOSED)
    assert rm.need(4, 8) == (2, 4, 0, 0) and rm.need(159, 160) == (79, 80, 0, 0)
    # k = 3, s = 2, pad 1: input row i adds to output rows [2i - 1, 2i + 2); rows [3, 5) meet
    # i = 1 ([1, 4)) and i = 2 ([3, 6)); row 0 only i = 0.
    rm = RowMap(2, 3, 1, 8, kind=TRANSPOSED)
    assert rm.need(3, 5) == (1, 3, 0, 0) and rm.need(0, 1) == (0, 1, 0, 0)
    assert rm.first_needed(3) == 1


_RESIZE_MODES = [("nearest", c, n) for c in ("asymmetric", "half_pixel", "pytorch_half_pixel")
                 for n in ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")]
_RESIZE_MODES += [("linear", c, "floor") for c in ("asymmetric", "half_pixel", "pytorch_half_pixel")]


@functools.cache
def _resize_session(mode: str, coord: str, nearest: str):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    attrs = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)
    g = helper.make_graph([node], "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
                                        helper.make_tensor_value_info("sizes", TensorProto.INT64, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return ort.InferenceSession(helper.make_model(g, opset_imports=OPSET).SerializeToString(),
                                providers=["CPUExecutionProvider"])


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_resize_bands_agree_with_the_whole_resize(data: st.DataObject) -> None:
    """Property: for every supported mode, the rows ``RowMap.need`` names for a band of output
    rows are enough: the simulator's band resize (``stowage.simulate.resize_band``: onnxruntime
    on just those rows) gives the whole resize's rows of the band, bit for bit at power-of-two
    scales."""
    mode, coord, nearest = data.draw(st.sampled_from(_RESIZE_MODES))
    s, h, w = data.draw(st.sampled_from([1, 2, 4, 8])), data.draw(st.integers(1, 9)), data.draw(st.integers(1, 5))
    a = data.draw(st.integers(0, h * s - 1))
    b = data.draw(st.integers(a + 1, h * s))
    rm = RowMap(1, 1, 0, h, kind=RESIZE, scale=s,
                mode=f"nearest:{coord}:{nearest}" if mode == "nearest" else f"linear:{coord}")
    lo, hi, _, _ = rm.need(a, b)
    sess = _resize_session(mode, coord, nearest)
    x = np.random.default_rng(h * 131 + s).standard_normal((1, 2, h, w)).astype(np.float32)
    whole = sess.run(None, {"x": x, "sizes": np.array([1, 2, h * s, w * 2], np.int64)})[0]
    assert 0 <= lo < hi <= h
    band = resize_band(lambda rows: sess.run(None, {"x": rows, "sizes": np.array([1, 2, rows.shape[2] * s, w * 2],
                                                                                   np.int64)})[0],
                       x[:, :, lo:hi], lo, s, a, b)
    np.testing.assert_array_equal(band, whole[:, :, a:b])


def test_row_maps_of_reductions_and_resizes(tmp_path: Path) -> None:
    g = _graph(se_block(tmp_path / "se.onnx"))
    gap = _op(g, "GlobalAveragePool")
    (name, rm), = row_maps(g, gap).items()
    assert (name, rm.kind, rm.in_rows, rm.need(3, 7)) == ("x", ACCUMULATE, 16, (3, 7, 0, 0))
    g2 = _graph(resize_net(tmp_path / "r.onnx", "linear", "half_pixel"))
    (name, rm), = row_maps(g2, _op(g2, "Resize")).items()
    assert (name, rm.kind, rm.scale, rm.mode) == ("a", RESIZE, 2, "linear:half_pixel")
    # align_corners does not map rows by the scale alone: whole tensors.
    g3 = _graph(resize_net(tmp_path / "ac.onnx", "linear", "align_corners"))
    assert row_maps(g3, _op(g3, "Resize")) is None


def test_reduce_mean_keepdims_only(tmp_path: Path) -> None:
    def net(keepdims: int, axes: list[int]) -> Graph:
        node = helper.make_node("ReduceMean", ["in"], ["out"], axes=axes, keepdims=keepdims)
        shape = [1, 4, 1, 1] if keepdims else [1, 4]
        if axes == [1]:
            shape = [1, 1, 6, 6]
        g = helper.make_graph([node], "rm", [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
        p = tmp_path / f"rm{keepdims}{axes}.onnx"
        onnx.save(helper.make_model(g, opset_imports=OPSET), p)
        return load_graph(str(p))

    g = net(1, [2, 3])
    assert row_maps(g, g.operators[0])["in"].kind == ACCUMULATE
    for g in (net(0, [2, 3]), net(1, [1])):
        assert row_maps(g, g.operators[0]) is None


# ---------------------------------------------------------------------------------------
# The stripe program
# ---------------------------------------------------------------------------------------
def test_reduction_ends_its_cascade_and_accumulates_bands(tmp_path: Path) -> None:
    g = _graph(se_block(tmp_path / "se.onnx"))
    conv, gap = _op(g, "Conv").index, _op(g, "GlobalAveragePool").index
    x_buf = g.tensor_buffer["x"]
    p = stripe_program(g, (conv, gap), 4, {x_buf: True, g.tensor_buffer["g"]: True})
    acc = [s for s in p.stripes if s.op == gap]
    # 16 input rows in bands of 4: each stripe reduces the next 4 rows of x into row 0 of g.
    assert [(s.out_lo, s.out_hi) for s in acc] == [(0, 1)] * 4
    assert [s.inputs for s in acc] == [(("x", lo, lo + 4),) for lo in (0, 4, 8, 12)]
    # x is read again outside (the Mul): whole; g is whole, never a ring.
    assert x_buf in p.whole_out and g.tensor_buffer["g"] in p.whole_out and not p.rings
    # Nothing can follow the reduction in its cascade: its result is complete only at the end.
    se_conv = next(op for op in g.operators if op.op_type == "Conv" and op.inputs[0] == "g").index
    with pytest.raises(NotTileable):
        stripe_program(g, (conv, gap, se_conv), 4, {})


# ---------------------------------------------------------------------------------------
# Planned below M_R, validated, simulated
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def se(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Graph]:
    path = se_block(tmp_path_factory.mktemp("se") / "se.onnx")
    return path, _graph(path)


def test_se_block_below_m_r_keeps_x_whole(se: tuple[Path, Graph]) -> None:
    """At 10 KiB x (8 KiB) fits whole: the GAP runs on it (in bands or as one step, as the
    partitioner likes) and the Mul's cascade reads it whole; nothing moves off-chip."""
    path, g = se
    assert m_r(g, False) == 16 * 16 * 8 * 4 * 2 + 8 * 4   # the Mul: x, s and its result, whole
    plan = _tiled(g, 10 * 1024)
    assert plan.metrics.noncompulsory_bytes == 0
    x = g.tensor_buffer["x"]
    assert not [t for c in plan.cascades for st in c.stripes for t in st.transfers if g.tensor_buffer[t.tensor] == x]
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


@pytest.fixture(scope="module")
def se_dram(se: tuple[Path, Graph]) -> Plan:
    """The SE block at 6 KiB: x (8 KiB) fits nowhere whole, so the GAP must reduce it in bands."""
    _path, g = se
    plan = _tiled(g, 6 * 1024)
    _k, c = _gap_cascade(g, plan)
    assert c.ops[-1] == _op(g, "GlobalAveragePool").index
    assert len([st for st in c.stripes if st.op == c.ops[-1]]) >= 2
    return plan


def test_se_block_streams_x_through_dram(se: tuple[Path, Graph], se_dram: Plan) -> None:
    path, g = se
    plan = se_dram   # x no longer fits: stored by the GAP's cascade, loaded by the Mul's
    _k, c = _gap_cascade(g, plan)
    x = _holder(g, c, "x")
    assert x.mode == "streamed"
    stores = [t for st in c.stripes for t in st.transfers if t.direction == "store" and t.tensor == x.tensor]
    assert sum(t.hi - t.lo for t in stores) == 16
    # x out and back once (8 KiB each way).  g (8 floats) crosses the same cut: whole, or
    # stored after the last band (one row, [0, 1)) and loaded by the SE's conv.
    g_store = [t for st in c.stripes for t in st.transfers if t.tensor == "g"]
    assert [(t.direction, t.lo, t.hi) for t in g_store] in ([], [("store", 0, 1)])
    assert g_store == [] or g_store[0] in c.stripes[-1].transfers
    assert plan.metrics.noncompulsory_bytes == 2 * 16 * 16 * 8 * 4 + (2 * 8 * 4 if g_store else 0)
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


def test_dropped_accumulating_stripe_is_caught(se: tuple[Path, Graph], se_dram: Plan) -> None:
    path, g = se
    plan = se_dram
    k, c = _gap_cascade(g, plan)
    gap = _op(g, "GlobalAveragePool").index
    acc = [j for j, st in enumerate(c.stripes) if st.op == gap]
    assert len(acc) >= 2
    for drop, why in ((acc[0], "the next band must start at row 0"), (acc[-1], "are never reduced")):
        bad = _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(st for j, st in enumerate(c.stripes)
                                                                           if j != drop)))
        v = validate(g, bad)
        assert not v.ok and any(e.rule == 8 and why in e.message for e in v.errors), v.summary()
    # Executed anyway, the last band missing leaves the result unwritten (poison) for its reader.
    bad = _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(st for j, st in enumerate(c.stripes)
                                                                       if j != acc[-1])))
    r = simulate(path, g, bad)
    assert not r.ok and r.corruptions


def test_reading_the_reduction_before_its_last_band_is_caught(se: tuple[Path, Graph], se_dram: Plan) -> None:
    """A cascade that also runs the SE's 1x1 conv, whose stripe reads g between the GAP's
    bands: rule 8 says the row is still accumulating."""
    _path, g = se
    plan = se_dram
    k, c = _gap_cascade(g, plan)
    gap = _op(g, "GlobalAveragePool").index
    se_conv = next(op for op in g.operators if op.op_type == "Conv" and op.inputs[0] == "g")
    acc = [j for j, st in enumerate(c.stripes) if st.op == gap]
    early = dataclasses.replace(c.stripes[acc[0]], op=se_conv.index, inputs=(("g", 0, 1),), transfers=())
    stripes = list(c.stripes)
    stripes.insert(acc[0] + 1, early)
    bad = _with_cascade(plan, k, dataclasses.replace(c, ops=(*c.ops, se_conv.index), stripes=tuple(stripes)))
    v = validate(g, bad)
    assert not v.ok
    assert any(e.rule == 8 and "still accumulating" in e.message for e in v.errors), v.summary()


@pytest.mark.parametrize("mode,coord", [("nearest", "asymmetric"), ("linear", "half_pixel")])
def test_resize_below_m_r_simulates(tmp_path: Path, mode: str, coord: str) -> None:
    path = resize_net(tmp_path / "r.onnx", mode, coord)
    g = _graph(path)
    mr = m_r(g, False)
    plan = _tiled(g, mr // 2)
    resize = _op(g, "Resize").index
    c = next(c for c in plan.cascades if resize in c.ops)
    assert len([st for st in c.stripes if st.op == resize]) > 1   # the resize itself runs in bands
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


def test_resize_rows_mutant_is_caught(tmp_path: Path) -> None:
    path = resize_net(tmp_path / "r.onnx", "linear", "half_pixel")
    g = _graph(path)
    plan = _tiled(g, m_r(g, False) // 2)
    resize = _op(g, "Resize").index
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if resize in c.ops)
    j, st = next((j, st) for j, st in enumerate(c.stripes) if st.op == resize and st.inputs[0][2] - st.inputs[0][1] > 1)
    name, lo, hi = st.inputs[0]
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(st, inputs=((name, lo, hi - 1),))   # the linear halo row dropped
    v = validate(g, _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes))))
    assert not v.ok and any(e.rule == 8 and "Resize" in e.message for e in v.errors), v.summary()


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 2, 1)])
def test_conv_transpose_below_m_r_simulates(tmp_path: Path, k: int, stride: int, pad: int) -> None:
    path = deconv_net(tmp_path / "d.onnx", k, stride, pad)
    g = _graph(path)
    plan = _tiled(g, m_r(g, False) // 2)
    deconv = _op(g, "ConvTranspose").index
    assert len([st for c in plan.cascades for st in c.stripes if st.op == deconv]) > 1
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem


def test_c_tables_flag_accumulating_stripes(se: tuple[Path, Graph], se_dram: Plan) -> None:
    """plan.h / plan.c of a plan with a reduction in bands: each of its stripes carries
    ACCUMULATE, the first FIRST, the last LAST."""
    _path, g = se
    plan = se_dram
    gap = _op(g, "GlobalAveragePool").index
    sch = build_schedule(plan, g)
    flags = [s.flags for s in sch.stripes if s.op == gap]
    acc, first, last = STRIPE_FLAGS["ACCUMULATE"], STRIPE_FLAGS["FIRST"], STRIPE_FLAGS["LAST"]
    assert len(flags) >= 2 and flags[0] == acc | first and flags[-1] == acc | last
    assert all(f == acc for f in flags[1:-1])
    assert all(s.flags == 0 for s in sch.stripes if s.op != gap)
    files = emit_c(plan, g)
    h = str(files["plan.h"])
    assert "_STRIPE_ACCUMULATE 1u" in h and "_STRIPE_FIRST 2u" in h and "_STRIPE_LAST 4u" in h


@needs_gcc
@needs_gxx
def test_c_tables_of_a_plan_with_reductions_in_bands_compile(se: tuple[Path, Graph], se_dram: Plan,
                                                             tmp_path: Path) -> None:
    """plan.h + plan.c compile warning-free as C99 and C++ (tests/c/replay.c needs a plan with
    whole-tensor transfers, which these plans have none of), reading the flags."""
    _path, g = se
    body = ("unsigned count_last(void) { unsigned n = 0, j;\n"
            "  for (j = 0; j < SE_NUM_STRIPES; ++j)\n"
            "    n += (se_stripes[j].flags & SE_STRIPE_LAST) != 0u;\n  return n; }\n"
            "int main(void) { return count_last() == 1u ? 0 : 1; }\n")
    compile_only(emit_c(se_dram, g, prefix="se"), tmp_path, body)


# ---------------------------------------------------------------------------------------
# int8: QLinearGlobalAveragePool and folded QDQ groups, bit-exact
# ---------------------------------------------------------------------------------------
def _quantized(src: Path, dst: Path, fmt: str) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.data = iter([{"in": rng.standard_normal((1, 4, 16, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.data, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QOperator if fmt == "qop"
                    else QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["qop", "qdq"])
def test_int8_se_block_bit_exact(tmp_path: Path, fmt: str) -> None:
    path = _quantized(se_block(tmp_path / "se.onnx"), tmp_path / f"se_{fmt}.onnx", fmt)
    if fmt == "qop":
        assert "QLinearGlobalAveragePool" in {n.op_type for n in onnx.load(str(path)).graph.node}
    g = _graph(path)
    # 3/4 of x (2 KiB at int8): x fits nowhere whole, so the reduction must run in bands.
    plan = _tiled(g, 16 * 16 * 8 * 3 // 4)
    gap = next(op.index for op in g.operators if op.op_type in ("GlobalAveragePool", "QLinearGlobalAveragePool"))
    bands = [st for c in plan.cascades for st in c.stripes if st.op == gap]
    assert len(bands) >= 2 and all((st.out_lo, st.out_hi) == (0, 1) for st in bands), "the reduction runs in bands"
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    assert r.outputs and all(o.exact for o in r.outputs)


def test_unfolded_qdq_chain_changing_width_is_not_striped_whole(tmp_path: Path) -> None:
    """Unfolded (``--qdq off``), the quantizer's Conv -> QuantizeLinear -> DequantizeLinear run
    in place in one buffer (float, int8, float).  Held whole, a narrow row written in the int8
    layout would land on float rows not yet rewritten: such a buffer read outside the cascade
    is not striped (a tiled plan of it corrupted the GAP's operand before)."""
    path = _quantized(se_block(tmp_path / "se.onnx"), tmp_path / "se_qdq.onnx", "qdq")
    g = fuse_in_place(load_graph(str(path)))   # not folded
    conv = next(op for op in g.computing_ops if op.op_type == "Conv")
    widths = {g.tensors[m.outputs[0]].bytes for m in g.step_members(conv)}
    assert len(widths) == 2   # float and int8 in one buffer
    out = g.tensor_buffer[conv.outputs[0]]
    with pytest.raises(NotTileable, match="changes its width"):
        stripe_program(g, (conv.index,), 4, {out: True})
