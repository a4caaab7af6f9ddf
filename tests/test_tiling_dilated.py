"""Dilated convolutions read only their taps' rows (``RowMap`` kind ``dilated``).

Hand-checked tap rows for small cases (dilation 2 and 3 on 5 to 9 rows, with pads, stride 1
and 2); the staging of a loaded operand (``staged_loads``); tiled plans of small dilated conv
graphs (float, int8 QOperator, int8 QDQ) judged by the validator and run by the simulator
(bit-exact for int8); mutants (a tap row's run dropped, a staged load dropped) caught by both.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.backend.emit import HOLDER_MODES, STRIPE_FLAGS, EmitError, build_schedule, emit_c
from stowage.ir.graph import Graph
from stowage.ir.tiling import DILATED, WINDOW, RowMap, row_maps
from stowage.plan import Plan
from stowage.plan.validate import _tap_runs, validate
from stowage.simulate import simulate
from stowage.solvers.tiling.program import staged_loads
from test_emit import needs_gcc, replay

#: (dilation, pad, stride) of each 3x3 convolution (each followed by a Relu, in place).
LAYERS = ((2, 2, 1), (3, 3, 1), (2, 2, 2))


def dilated(d: int, k: int = 3, s: int = 1, p: int = 0, h: int = 8, out_rows: int = 0) -> RowMap:
    return RowMap(s, d * (k - 1) + 1, p, h, kind=DILATED, dilation=d, out_rows=out_rows)


# -- the rows a band reads, by hand ------------------------------------------------------
@pytest.mark.parametrize(("rm", "a", "b", "runs"), [
    # H=5, 3 taps 2 apart, pad 2: row 0 reads rows -2 (padding), 0 and 2.
    (dilated(2, p=2, h=5), 0, 1, ((0, 1), (2, 3))),
    (dilated(2, p=2, h=5), 2, 3, ((0, 1), (2, 3), (4, 5))),
    (dilated(2, p=2, h=5), 4, 5, ((2, 3), (4, 5))),
    # Two rows: tap 1 reads 0-1, tap 2 reads 2-3; runs that meet are one.
    (dilated(2, p=2, h=5), 0, 2, ((0, 4),)),
    # H=8, dilation 3, pad 3.
    (dilated(3, p=3, h=8), 0, 1, ((0, 1), (3, 4))),
    (dilated(3, p=3, h=8), 4, 5, ((1, 2), (4, 5), (7, 8))),
    (dilated(3, p=3, h=8), 7, 8, ((4, 5), (7, 8))),
    # Rows 1-2: tap 0 reads -2, -1 (padding), tap 1 rows 1-2, tap 2 rows 4-5.
    (dilated(3, p=3, h=8), 1, 3, ((1, 3), (4, 6))),
    # H=7, dilation 3, no pad (valid): row 0 reads rows 0, 3 and 6.
    (dilated(3, p=0, h=7), 0, 1, ((0, 1), (3, 4), (6, 7))),
    # Stride 2, H=7, dilation 2, pad 2: output row o reads 2o-2, 2o, 2o+2.
    (dilated(2, s=2, p=2, h=7), 0, 1, ((0, 1), (2, 3))),
    (dilated(2, s=2, p=2, h=7), 1, 2, ((0, 1), (2, 3), (4, 5))),
    (dilated(2, s=2, p=2, h=7), 3, 4, ((4, 5), (6, 7))),
    # Stride 2, H=8, 2 taps 5 apart: rows 0 and 2 (tap 0), 5 and 7 (tap 1).
    (dilated(5, k=2, s=2, p=0, h=8), 0, 2, ((0, 3), (5, 8))),
    # Stride 2, H=9, 2 taps 6 apart, pad 3: tap 0 of rows 0-2 reads -3, -1, 1 -> row 1 only
    # (its first row inside, not row 0); tap 1 reads 3, 5, 7.
    (dilated(6, k=2, s=2, p=3, h=9), 0, 3, ((1, 2), (3, 8))),
    # Stride 2, dilation 3, pad 3: row 1 reads -1, 2, 5.
    (dilated(3, s=2, p=3, h=8), 1, 2, ((2, 3), (5, 6))),
])
def test_tap_runs_by_hand(rm: RowMap, a: int, b: int, runs: tuple[tuple[int, int], ...]) -> None:
    assert rm.runs(a, b) == runs
    lo, hi, _, _ = rm.need(a, b)
    assert (lo, hi) == (runs[0][0], runs[-1][1])   # the hull of the runs


def test_need_keeps_the_dense_pads_and_first_needed_follows_the_taps() -> None:
    rm = dilated(3, p=3, h=8, out_rows=8)
    # Output row 0: the dense window is rows [-3, 4): 3 rows of padding above; its taps' hull [0, 4).
    assert rm.need(0, 1) == (0, 4, 3, 0)
    assert rm.need(7, 8) == (4, 8, 0, 3)
    # The lowest row output rows >= 5 read: row 2 (tap 0 of row 5); >= 0: row 0.
    assert rm.first_needed(5) == 2
    assert rm.first_needed(0) == 0
    # DeepLabV3's ASPP: dilation 36, pad 36 on 28 rows: only the centre tap is inside.
    aspp = dilated(36, p=36, h=28, out_rows=28)
    assert all(aspp.runs(o, o + 1) == ((o, o + 1),) for o in range(28))
    assert [aspp.first_needed(o) for o in (0, 5, 27)] == [0, 5, 27]
    # Dilation 24: row 0 reads rows 0 and 24; row 10 only row 10; row 27 rows 3 and 27.
    d24 = dilated(24, p=24, h=28, out_rows=28)
    assert [d24.runs(o, o + 1) for o in (0, 10, 27)] == [((0, 1), (24, 25)), ((10, 11),), ((3, 4), (27, 28))]
    # Every row of a window map is one run.
    assert RowMap(1, 3, 1, 8).runs(0, 2) == ((0, 3),)


def test_validator_recomputes_the_same_runs() -> None:
    """The validator's tap enumeration (``_tap_runs``, from the node's attributes) and
    ``RowMap.runs`` (clipping formulas) agree on every small geometry."""
    for s, k, d, p, h in itertools.product((1, 2, 3), (2, 3, 5), (2, 3, 4, 7), (0, 1, 3, 8), (5, 6, 8, 13)):
        h_out = (h + 2 * p - d * (k - 1) - 1) // s + 1
        if h_out < 1:
            continue
        g = _graph_of(_conv_model(h, k, d, p, s))
        op = next(o for o in g.operators if o.op_type == "Conv")
        maps = row_maps(g, op)
        rm = next(iter(maps.values())) if maps else None
        for a in range(h_out):
            for b in range(a + 1, min(h_out, a + 4) + 1):
                want = _tap_runs(g, op, a, b)
                if rm is None:   # an output row of padding alone: not tiled
                    assert any(not _tap_runs(g, op, o, o + 1) for o in range(h_out))
                    break
                assert rm.kind == DILATED and rm.runs(a, b) == want, (s, k, d, p, h, a, b)


def test_only_dilated_convolutions_read_sparsely() -> None:
    g = _graph_of(_conv_model(8, 3, 2, 2, 1))
    conv = next(o for o in g.operators if o.op_type == "Conv")
    assert next(iter(row_maps(g, conv).values())).kind == DILATED
    g1 = _graph_of(_conv_model(8, 3, 1, 1, 1))
    conv1 = next(o for o in g1.operators if o.op_type == "Conv")
    assert next(iter(row_maps(g1, conv1).values())).kind == WINDOW
    gp = _graph_of(_conv_model(8, 3, 2, 2, 1, op="MaxPool"))
    pool = next(o for o in gp.operators if o.op_type == "MaxPool")
    assert next(iter(row_maps(gp, pool).values())).kind == WINDOW   # -inf padding: a dense window


def test_staged_loads_by_hand() -> None:
    # Stripe 0 reads rows 0 and 24 (two readers); stripe 1 rows 1 and 25; stripe 2 row 2.
    rows, loads = staged_loads([(0, ((0, 1), (24, 25))), (1, ((1, 2),)), (1, ((25, 26),)), (2, ((2, 3),))])
    assert rows == 2
    assert loads == {0: [(0, 1), (24, 25)], 1: [(1, 2), (25, 26)], 2: [(2, 3)]}
    # Readers of the same rows in one stripe load them once, in ascending runs.
    assert staged_loads([(4, ((3, 5),)), (4, ((4, 7),))]) == (4, {4: [(3, 7)]})


# -- models ---------------------------------------------------------------------------------
def _conv_model(h: int, k: int, d: int, p: int, s: int, c: int = 2, op: str = "Conv") -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.ones((c, c, k, k), np.float32), "w")] if op == "Conv" else []
    node = helper.make_node(op, ["x", "w"] if op == "Conv" else ["x"], ["y"], name="op", kernel_shape=[k, k],
                            dilations=[d, d], pads=[p, p, p, p], strides=[s, s])
    g = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def _graph_of(model: onnx.ModelProto) -> Graph:
    from stowage.ir.onnx_import import import_model

    return import_model(model)


def _float_model(h: int = 12, w: int = 6, c: int = 4, layers: tuple[tuple[int, int, int], ...] = LAYERS
                 ) -> onnx.ModelProto:
    """x -> [Conv 3x3 (dilation d, pad p, stride s) -> Relu] per layer -> y, float32."""
    rng = np.random.default_rng(1)
    nodes, inits, cur = [], [], "x"
    for i, (d, p, s) in enumerate(layers):
        inits.append(numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}",
                                      kernel_shape=[3, 3], dilations=[d, d], pads=[p, p, p, p], strides=[s, s]))
        out = "y" if i == len(layers) - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [out], name=f"relu{i}"))
        cur = out
    g = helper.make_graph(nodes, "dilated", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def _scalar(name: str, v: float, t: int) -> onnx.TensorProto:
    return helper.make_tensor(name, t, [], [v])


def _qop_model(h: int = 12, w: int = 6, c: int = 4) -> onnx.ModelProto:
    """x -> QuantizeLinear -> QLinearConv (uint8, non-zero zero points, so the padding value
    matters) per layer of ``LAYERS`` -> DequantizeLinear -> y."""
    rng = np.random.default_rng(2)
    u8, f = TensorProto.UINT8, TensorProto.FLOAT
    inits = [_scalar("s0", 0.05, f), _scalar("z0", 120, u8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s0", "z0"], ["q0"], name="qin")]
    cur, sc = "q0", ("s0", "z0")
    for i, (d, p, s) in enumerate(LAYERS):
        inits += [numpy_helper.from_array(rng.integers(0, 255, (c, c, 3, 3)).astype(np.uint8), f"w{i}"),
                  _scalar(f"sw{i}", 0.01, f), _scalar(f"zw{i}", 128, u8), _scalar(f"sy{i}", 0.1, f),
                  _scalar(f"zy{i}", 100 + i, u8),
                  numpy_helper.from_array(rng.integers(-500, 500, c).astype(np.int32), f"b{i}")]
        nodes.append(helper.make_node(
            "QLinearConv", [cur, *sc, f"w{i}", f"sw{i}", f"zw{i}", f"sy{i}", f"zy{i}", f"b{i}"], [f"q{i + 1}"],
            name=f"qconv{i}", kernel_shape=[3, 3], dilations=[d, d], pads=[p, p, p, p], strides=[s, s]))
        cur, sc = f"q{i + 1}", (f"sy{i}", f"zy{i}")
    nodes.append(helper.make_node("DequantizeLinear", [cur, *sc], ["y"], name="dqout"))
    g = helper.make_graph(nodes, "dilated_qop", [helper.make_tensor_value_info("x", f, [1, c, h, w])],
                          [helper.make_tensor_value_info("y", f, None)], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def _qdq_model(h: int = 12, w: int = 6, c: int = 4) -> onnx.ModelProto:
    """The same layers in QDQ form (int8, DQ -> Conv -> Q groups, folded by the importer)."""
    rng = np.random.default_rng(3)
    i8, f = TensorProto.INT8, TensorProto.FLOAT
    inits = [_scalar("s0", 0.05, f), _scalar("z0", -3, i8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s0", "z0"], ["q0"], name="qin")]
    cur, sc = "q0", ("s0", "z0")
    for i, (d, p, s) in enumerate(LAYERS):
        inits += [numpy_helper.from_array(rng.integers(-127, 127, (c, c, 3, 3)).astype(np.int8), f"w{i}"),
                  _scalar(f"sw{i}", 0.01, f), _scalar(f"zw{i}", 0, i8), _scalar(f"sy{i}", 0.1, f),
                  _scalar(f"zy{i}", 5 - i, i8)]
        nodes += [helper.make_node("DequantizeLinear", [cur, *sc], [f"d{i}"], name=f"dq{i}"),
                  helper.make_node("DequantizeLinear", [f"w{i}", f"sw{i}", f"zw{i}"], [f"wd{i}"], name=f"dqw{i}"),
                  helper.make_node("Conv", [f"d{i}", f"wd{i}"], [f"f{i}"], name=f"conv{i}", kernel_shape=[3, 3],
                                   dilations=[d, d], pads=[p, p, p, p], strides=[s, s]),
                  helper.make_node("QuantizeLinear", [f"f{i}", f"sy{i}", f"zy{i}"], [f"q{i + 1}"], name=f"q{i}")]
        cur, sc = f"q{i + 1}", (f"sy{i}", f"zy{i}")
    nodes.append(helper.make_node("DequantizeLinear", [cur, *sc], ["y"], name="dqout"))
    g = helper.make_graph(nodes, "dilated_qdq", [helper.make_tensor_value_info("x", f, [1, c, h, w])],
                          [helper.make_tensor_value_info("y", f, None)], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


#: Per model: builder and capacities below its M_R at which its plan reads taps sparsely.
MODELS = {"float": (_float_model, (1500, 1000, 700)), "qop": (_qop_model, (500, 300)),
          "qdq": (_qdq_model, (500, 300))}
#: Those where a loaded operand is staged (elsewhere the room left keeps it in a ring).
# (With the smaller rings of ``share_rings`` and the share-at-a-time walk the float model at
# 1000 B plans in 2 cascades with staging, 4,032 B, against 3 cascades and rings, 4,512 B.)
STAGED = {("float", 1500), ("float", 1000), ("float", 700), ("qop", 300), ("qdq", 300)}


@cache
def _planned(tmp: str, kind: str, capacity: int) -> tuple[Path, Graph, Plan]:
    path = Path(tmp) / f"{kind}.onnx"
    if not path.exists():
        onnx.save(MODELS[kind][0](), path)
    plan = compile_plan(path, target="mcu-cortex-m7", capacity=capacity, time_limit=5)
    return path, load_model(path, in_place=True, qdq="fold"), plan


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("dilated"))


def _sparse_stripes(g: Graph, plan: Plan) -> list[tuple[int, int]]:
    """(cascade, stripe) of the stripes that read one tensor in more than one run."""
    return [(k, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
            if len({n for n, _, _ in s.inputs}) < len(s.inputs)]


@pytest.mark.parametrize(("kind", "capacity"), [(k, cap) for k, (_, caps) in MODELS.items() for cap in caps])
def test_tiled_dilated_plans_validate_and_simulate(tmp: str, kind: str, capacity: int) -> None:
    path, g, plan = _planned(tmp, kind, capacity)
    assert plan.cascades, "below M_R the plan is tiled"
    staged = any(t.mode == "staged" for c in plan.cascades for t in c.tensors)
    assert staged == ((kind, capacity) in STAGED)
    assert _sparse_stripes(g, plan), "some stripe reads its taps' rows in several runs"
    peak = plan.metrics.peak_bytes[plan.target.compute_level]
    assert peak <= capacity
    v = validate(g, plan)
    assert v.ok, v.summary()
    r = simulate(path, g, plan)
    assert r.ok, r.first_problem
    if kind != "float":
        assert r.outputs and all(o.exact for o in r.outputs), "int8 stripes are bit-exact"


@pytest.mark.parametrize(("kind", "capacity"), [("float", 750), ("qop", 500)])
def test_rings_replace_staging_where_the_capacity_leaves_room(tmp: str, kind: str, capacity: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The search judges segments with staging (least memory); the chosen cascades put a staged
    buffer back into a ring (each row loaded once) when there is room.  Without that pass the
    same capacity gives a staged plan moving more bytes (float at 750 B: 8,640 against 6,720,
    where one cascade keeps its staging; QOp at 500 B: 1,008 against 576, measured when this
    was written)."""
    import stowage.solvers.tiling.partition as partition
    import stowage.solvers.tiling.plan as tiled

    # Rings against staging: rows by slot (``slotfit``) would fit these cascades another way.
    monkeypatch.setattr(partition, "SLOT_ROWS", False)

    def n_staged(p: Plan) -> int:
        return sum(t.mode == "staged" for c in p.cascades for t in c.tensors)

    path, g, plan = _planned(tmp, kind, capacity)
    assert _sparse_stripes(g, plan)
    monkeypatch.setattr(tiled, "_unstaged", lambda problem, part, s, p, i, j: p)
    staged = compile_plan(path, target="mcu-cortex-m7", capacity=capacity, time_limit=5)
    assert n_staged(staged) > n_staged(plan)
    assert validate(g, staged).ok and validate(g, plan).ok
    assert plan.metrics.noncompulsory_bytes < staged.metrics.noncompulsory_bytes
    assert simulate(path, g, staged).ok


def test_centre_tap_alone_needs_one_row() -> None:
    """Dilation 8 on 6 rows (as DeepLabV3's dilation 36 on 28): only the centre tap is inside,
    so an output row needs one input row, not all six.  x and y are 4 x 6 x 6 floats (576 B,
    96 B a row): at 400 B the dense window (all of x, 576 B) could not run."""
    g = _graph_of(_float_model(h=6, w=6, c=4, layers=((8, 8, 1),)))
    conv = next(o for o in g.operators if o.op_type == "Conv")
    rm = next(iter(row_maps(g, conv).values()))
    assert [rm.runs(o, o + 1) for o in range(6)] == [((o, o + 1),) for o in range(6)]
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=400, time_limit=5)
    assert plan.cascades
    assert plan.metrics.peak_bytes[plan.target.compute_level] <= 400
    assert validate(g, plan).ok
    c = plan.cascades[0]
    x = c.tensor("x")
    assert x is not None and x.mode in ("streamed", "staged") and x.ring_rows == c.stripe_rows


# -- mutants ---------------------------------------------------------------------------------
def _with_stripe(plan: Plan, k: int, j: int, **changes: object) -> Plan:
    c = plan.cascades[k]
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(stripes[j], **changes)
    cs = list(plan.cascades)
    cs[k] = dataclasses.replace(c, stripes=tuple(stripes))
    return dataclasses.replace(plan, cascades=tuple(cs))


def _rule8(g: Graph, plan: Plan) -> list[str]:
    return [v.message for v in validate(g, plan).errors if v.rule == 8]


@pytest.mark.parametrize("kind", ["float", "qop"])
def test_missing_tap_row_is_caught(tmp: str, kind: str) -> None:
    path, g, plan = _planned(tmp, kind, MODELS[kind][1][-1])
    k, j = _sparse_stripes(g, plan)[0]
    st = plan.cascades[k].stripes[j]
    name = next(n for n, _, _ in st.inputs if sum(1 for m, _, _ in st.inputs if m == n) > 1)
    runs = [(n, lo, hi) for n, lo, hi in st.inputs if n == name]
    dropped = runs[-1]
    inputs = tuple(x for x in st.inputs if x != dropped)
    # The load that staged the dropped run goes too (else only the listing would be wrong).
    transfers = tuple(x for x in st.transfers if not (x.tensor == name and x.lo == dropped[1] and x.hi == dropped[2]))
    bad = _with_stripe(plan, k, j, inputs=inputs, transfers=transfers)
    msgs = _rule8(g, bad)
    assert any(f"cascade {k}, stripe {j}" in m and "read the runs" in m for m in msgs), msgs
    r = simulate(path, g, bad)
    assert not r.ok
    assert any(f"needs row {dropped[1]} of '{name}'" in c.message and "which the stripe does not read" in c.message
               for c in r.corruptions), r.first_problem


def test_dropped_staged_load_is_caught(tmp: str) -> None:
    path, g, plan = _planned(tmp, "float", MODELS["float"][1][-1])
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if any(t.mode == "staged" for t in c.tensors))
    staged = next(t.tensor for t in c.tensors if t.mode == "staged")
    j = next(j for j, s in enumerate(c.stripes) if any(x.tensor == staged for x in s.transfers))
    st = c.stripes[j]
    first = next(x for x in st.transfers if x.tensor == staged)
    bad = _with_stripe(plan, k, j, transfers=tuple(x for x in st.transfers if x is not first))
    msgs = _rule8(g, bad)
    # (the reader names the tensor it reads, an in-place result sharing the staged buffer maybe)
    assert any(f"cascade {k}, stripe {j}" in m and f"reads row {first.lo} of '" in m and "loads do not stage it" in m
               for m in msgs), msgs
    r = simulate(path, g, bad)
    assert not r.ok
    assert any("not staged by the stripe's loads" in c.message for c in r.corruptions), r.first_problem


def test_staging_row_from_an_earlier_stripe_is_not_held(tmp: str) -> None:
    """Staged rows live for one stripe: a stripe reading a row only an earlier stripe loaded
    (its own load of it removed) is rejected even though the bytes may still be there."""
    path, g, plan = _planned(tmp, "qop", MODELS["qop"][1][-1])
    hits = [(k, j, x) for k, c in enumerate(plan.cascades) if any(t.mode == "staged" for t in c.tensors)
            for j, s in enumerate(c.stripes)
            for x in s.transfers if x.direction == "load" and c.tensor(x.tensor).mode == "staged"
            and any(y.tensor == x.tensor and y.lo <= x.lo < y.hi for e in c.stripes[:j] for y in e.transfers)]
    assert hits, "two stripes stage a common row"
    k, j, x = hits[0]
    st = plan.cascades[k].stripes[j]
    bad = _with_stripe(plan, k, j, transfers=tuple(y for y in st.transfers if y is not x))
    msgs = _rule8(g, bad)
    assert any(f"cascade {k}, stripe {j}" in m and "loads do not stage it" in m for m in msgs), msgs
    assert not simulate(path, g, bad).ok



# -- the C header -------------------------------------------------------------------------------
@needs_gcc
def test_staged_plan_replays_in_c(tmp: str, tmp_path: Path) -> None:
    """The C replay (tests/c/replay.c) runs the stripe tables of a plan with staging byte by
    byte: every row a stripe reads must hold its producer's signature, at the tile address the
    header gives (the staged rows in the slots their loads filled); dilated stripes say so."""
    path = Path(tmp) / "qop.onnx"
    if not path.exists():
        onnx.save(_qop_model(), path)
    # Weights in SRAM: the replay also checks whole-tensor transfers (it needs some).
    plan = compile_plan(path, target="mcu-cortex-m7", capacity=600, time_limit=5, weights_in_sram=True)
    g = load_model(path, in_place=True)
    assert plan.transfers and any(t.mode == "staged" for c in plan.cascades for t in c.tensors)
    files = emit_c(plan, g)
    r = replay(files, tmp_path / "ok")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("replay ok")
    sch = build_schedule(plan, g)
    taps = [s for s in sch.stripes if s.flags & STRIPE_FLAGS["TAPS"]]
    assert taps and all(s.op_type == "QLinearConv" for s in taps)
    assert any(len({t.tensor for t in s.inputs}) < len(s.inputs) for s in taps), "several tiles of one operand"
    assert "staged" in HOLDER_MODES and f"_STRIPE_TAPS {STRIPE_FLAGS['TAPS']}" in re.sub(r"\s+", " ", files["plan.h"])
    # A stripe whose staged loads are dropped: the validator and the emitter refuse it.
    k, c = next((k, c) for k, c in enumerate(plan.cascades) if any(t.mode == "staged" for t in c.tensors))
    staged = {t.tensor for t in c.tensors if t.mode == "staged"}
    j = next(j for j, s in enumerate(c.stripes) if sum(x.tensor in staged for x in s.transfers) > 1)
    st = c.stripes[j]
    bad = _with_stripe(plan, k, j, transfers=tuple(x for x in st.transfers if x.tensor not in staged))
    assert not validate(g, bad).ok
    with pytest.raises(EmitError, match=r"reads rows \[\d+, \d+\) of '.*', which its loads do not stage"):
        emit_c(bad, g)
    # Loads that stage the stripe's rows in another order: the emitter takes the slots they
    # give, the tiles point at them, but the replay finds the rows where the loads put them.
    loads = [x for x in st.transfers if x.tensor in staged]
    swapped = _with_stripe(plan, k, j, transfers=(*loads[::-1], *(x for x in st.transfers if x not in loads)))
    v = validate(g, swapped)
    assert v.ok, v.summary()   # any order of loads is a valid staging
    r = replay(emit_c(swapped, g), tmp_path / "swapped")
    assert r.returncode == 0, r.stderr
