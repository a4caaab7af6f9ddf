"""Tiled execution: row maps, exact ring sizes, cascades as macro steps, plans below M_R."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.errors import CapacityError
from stowage.ir.inplace import fuse_in_place
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import import_model
from stowage.ir.tiling import CascadeSpec, RowMap, macro_graph, row_maps
from stowage.plan.validate import validate
from stowage.solvers.tiling.program import stripe_program


def conv_chain(strides: tuple[int, ...] = (1, 2, 1), h: int = 16, c: int = 4):
    """x (1 x c x h x 8, int8 sizes via element_bytes=1) -> 3x3 convs (pads 1) with the given
    strides -> y.  Every conv keeps c channels."""
    rng = np.random.default_rng(0)
    nodes, inits, cur, hh = [], [], "x", h
    for i, s in enumerate(strides):
        w = numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        out = f"t{i}" if i < len(strides) - 1 else "y"
        nodes.append(helper.make_node("Conv", [cur, f"w{i}"], [out], name=f"conv{i}", pads=[1, 1, 1, 1],
                                      strides=[s, s], kernel_shape=[3, 3]))
        cur, hh = out, (hh + 2 - 3) // s + 1
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_row_map_of_a_strided_conv() -> None:
    # 3x3, stride 2, pad 1, 16 input rows -> 8 output rows.  Output rows [0, 2) need input
    # rows [-1, 4) -> [0, 4) with one pad row on top; [6, 8) need [11, 16) -> no pad (16 = H).
    rm = RowMap(stride=2, kernel=3, pad_top=1, in_rows=16)
    assert rm.need(0, 2) == (0, 4, 1, 0)
    assert rm.need(6, 8) == (11, 16, 0, 0)
    assert rm.need(7, 8) == (13, 16, 0, 0)
    assert rm.first_needed(3) == 5


def test_row_maps_from_the_graph() -> None:
    g = import_model(conv_chain())
    maps = row_maps(g, g.operators[1])
    assert maps == {"t0": RowMap(stride=2, kernel=3, pad_top=1, in_rows=16)}


def test_ring_sizes_are_the_exact_row_liveness() -> None:
    """A 3x3 reader of 1-row stripes needs a 3-row ring of its input, stride 1 or 2: the
    stride-2 conv's output row r reads rows 2r-1..2r+1, and its producer makes the next two
    rows (one band's share) only after it, so at most 3 are live.  The design notes measured
    4 for stride 2: their walk made the first band's lead (rows 0..3, which the stride-1 conv
    after it needs for its first row) in one stripe, as ``interleave=False`` still does."""
    g = import_model(conv_chain((1, 2, 1)), element_bytes=1)
    ops = g.file_order()
    prog = stripe_program(g, ops, 1, {b.id: False for b in g.buffers})
    t0, t1 = g.tensor_buffer["t0"], g.tensor_buffer["t1"]
    # t0 is read by the stride-2 conv: 3 rows; t1 by a stride-1 conv: 3 rows.
    assert prog.rings == {t0: 3, t1: 3}
    one_pass = stripe_program(g, ops, 1, {b.id: False for b in g.buffers}, interleave=False)
    assert one_pass.rings == {t0: 4, t1: 3}
    # The first band's lead, in shares: conv0 makes rows [0, 2) then [2, 4) (its share of a
    # 1-row band of the 8-row end is 2 rows), conv1 row 0 between them.
    firsts = [(s.op, s.out_lo, s.out_hi) for s in prog.stripes[:5]]
    assert firsts == [(0, 0, 2), (1, 0, 1), (0, 2, 4), (1, 1, 2), (2, 0, 1)]
    assert [(s.op, s.out_lo, s.out_hi) for s in one_pass.stripes[:3]] == [(0, 0, 4), (1, 0, 2), (2, 0, 1)]
    # x (the graph input) and y (the output) are streamed through rings from and to DRAM.
    assert set(prog.streamed) == {g.tensor_buffer["x"], g.tensor_buffer["y"]}
    # Every output row of every conv is produced exactly once.
    made: dict[int, list[int]] = {}
    for s in prog.stripes:
        made.setdefault(s.op, []).extend(range(s.out_lo, s.out_hi))
    assert made == {0: list(range(16)), 1: list(range(8)), 2: list(range(8))}
    # Each row of x is loaded exactly once: 16 rows x (4 channels x 8 columns); each row of y
    # stored once: 8 rows x (4 channels x 4 columns, the stride-2 conv halved W).
    assert prog.load_bytes == 16 * 4 * 8 and prog.store_bytes == 8 * 4 * 4


def test_macro_graph_has_one_step_per_cascade() -> None:
    g = import_model(conv_chain(), element_bytes=1)
    ops = g.file_order()
    prog = stripe_program(g, ops, 2, {b.id: False for b in g.buffers})
    macro, _rings = macro_graph(g, [CascadeSpec(prog.ops, prog.rings, prog.streamed)])
    assert len(macro.computing_ops) == 1 and macro.computing_ops[0].op_type == "Cascade"
    # The macro step's footprint is its rings only (input and output are streamed).
    assert m_r(macro, False) == prog.ring_bytes(g)
    assert m_r(macro, False) < m_r(g, False)


def test_compile_below_m_r_tiles_and_validates() -> None:
    g = fuse_in_place(import_model(conv_chain(h=32), element_bytes=1))
    mr = m_r(g, False)              # conv0: x + t0 = 2 x 32 x 4 x 8
    assert mr == 2 * 32 * 4 * 8
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=mr // 2, time_limit=5)
    assert plan.cascades
    v = validate(g, plan)
    assert v.ok, v.summary()
    assert plan.metrics.noncompulsory_bytes == 0
    # Compulsory: the input's rows loaded once (32 x 4 x 8) and the output's stored once
    # (16 rows x 4 channels x 4 columns).
    assert plan.metrics.compulsory_bytes == 32 * 4 * 8 + 16 * 4 * 4
    with pytest.raises(CapacityError):
        compile_plan(g, target="mcu-cortex-m7", capacity=mr // 2, tiling="off")


def test_capacity_below_one_stripe_names_it() -> None:
    g = fuse_in_place(import_model(conv_chain(h=32), element_bytes=1))
    with pytest.raises(CapacityError, match="too small even when tiled"):
        compile_plan(g, target="mcu-cortex-m7", capacity=64, time_limit=5)


def test_a_step_that_needs_whole_tensors_is_refused_before_any_search(monkeypatch) -> None:
    """x (1 x 4 x 32 x 8) -> 3x3 conv -> t (same shape) -> Softmax over H -> y, one byte per
    element.  The Softmax mixes the tiled axis, so it runs whole with t and y resident: 2 x
    1,024 B = 2,048 B, in any partition.  At 1,536 B (the conv alone stripes) the refusal names
    it at once: the cascade searches, which cannot change that, are never started."""
    from stowage.solvers.tiling.partition import Partitioner

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["t"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Softmax", ["t"], ["y"], name="soft", axis=2)]
    graph = helper.make_graph(nodes, "soft", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 32, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    g = fuse_in_place(import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                                   element_bytes=1))
    assert m_r(g, False) == 2 * 1024

    def never(*_a, **_k):
        raise AssertionError("a cascade search ran")

    monkeypatch.setattr(Partitioner, "fewest_stripes", never)
    monkeypatch.setattr(Partitioner, "least_traffic", never)
    with pytest.raises(CapacityError, match=r"operator 'soft' \(Softmax\), which needs whole tensors, "
                                            r"needs 2048 bytes"):
        compile_plan(g, target="mcu-cortex-m7", capacity=1536, time_limit=5)


@pytest.mark.slow
def test_mobilenet_v2_int8_sizes_plans_at_256_kib_without_traffic() -> None:
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "models" / "suite" / "mobilenet_v2.onnx"
    plan = compile_plan(model, element_bytes=1, time_limit=10)
    assert plan.target.levels[0].capacity == 256 * 1024
    assert plan.cascades and plan.metrics.noncompulsory_bytes == 0
    assert plan.metrics.compulsory_bytes == 3 * 224 * 224 + 1000


def test_a_boundary_through_dram_below_the_zero_traffic_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """20 convs (more than one cascade may hold): below the least capacity at which every
    cascade boundary stays on chip, the boundary tensor crosses through DRAM row by row:
    stored once and loaded once, 2 x 1 KiB of non-compulsory traffic per such cut.  That is
    with rings only; with rows by slot (the default, given the time to finish its searches)
    the planner's cascades fit with nothing crossing: 0 B."""
    import stowage.solvers.tiling.partition as partition
    from stowage.solvers.tiling.partition import MAX_LEN, Partitioner

    n = MAX_LEN + 4
    g = fuse_in_place(import_model(conv_chain(strides=(1,) * n, h=32), element_bytes=1))
    part = Partitioner(g, False, 1)
    zero, _ = part.min_peak()
    assert part.fewest_stripes(zero) is not None and part.fewest_stripes(zero - 1) is None
    segs = part.least_traffic(zero - 1)
    assert segs is not None
    moved = sum(s.traffic for s in segs)
    assert moved > 0 and moved % (2 * 1024) == 0   # whole 1 KiB tensors, stored then loaded
    slotted = compile_plan(g, target="mcu-cortex-m7", capacity=zero - 1, time_limit=120)
    assert validate(g, slotted).ok and slotted.solver.stopped_by is None
    assert slotted.metrics.noncompulsory_bytes == 0 and any(c.slotted for c in slotted.cascades)
    monkeypatch.setattr(partition, "SLOT_ROWS", False)
    plan = compile_plan(g, target="mcu-cortex-m7", capacity=zero - 1, time_limit=5)
    v = validate(g, plan)
    assert v.ok, v.summary()
    assert plan.metrics.noncompulsory_bytes == moved
    assert plan.metrics.compulsory_bytes == 2 * 1024          # input rows in, output rows out


def _random_cnn(seed: int, n: int, h: int, c: int, residual: bool):
    """A random conv chain (3x3 or 1x1, stride 1 or 2, pads 1 or 0, ReLU after some), with a
    residual Add around one stride-1 conv when ``residual``."""
    rng = np.random.default_rng(seed)
    nodes, inits, cur, hh, k_res = [], [], "x", h, None
    for i in range(n):
        k = int(rng.choice([1, 3]))
        s = int(rng.choice([1, 2])) if hh >= 4 else 1
        w = numpy_helper.from_array((rng.standard_normal((c, c, k, k)) * 0.3).astype(np.float32), f"w{i}")
        inits.append(w)
        p = k // 2
        out = f"c{i}"
        nodes.append(helper.make_node("Conv", [cur, f"w{i}"], [out], name=f"conv{i}", pads=[p, p, p, p],
                                      strides=[s, s], kernel_shape=[k, k]))
        if residual and s == 1 and k_res is None and i > 0:
            nodes.append(helper.make_node("Add", [out, cur], [f"a{i}"], name=f"add{i}"))
            out, k_res = f"a{i}", i
        if rng.random() < 0.5:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            out = f"r{i}"
        cur, hh = out, (hh + 2 * p - k) // s + 1
    nodes.append(helper.make_node("Identity", [cur], ["y"], name="out"))
    g = helper.make_graph(nodes, "rnd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 5), h=st.integers(8, 20), c=st.sampled_from([2, 4]),
       residual=st.booleans(), frac=st.floats(0.2, 0.95))
def test_random_cnns_below_m_r_validate_and_simulate(tmp_path_factory, seed, n, h, c, residual, frac) -> None:
    """Property: whatever tiled plan compile returns below M_R passes the validator (rule 8
    included) and computes the model's outputs when simulated; a refusal is a CapacityError."""
    from helpers import save
    from stowage.simulate import simulate

    model = _random_cnn(seed, n, h, c, residual)
    path = save(model, tmp_path_factory.mktemp("rnd") / "m.onnx")
    g = fuse_in_place(import_model(model))
    cap = max(64, int(m_r(g, False) * frac))
    try:
        plan = compile_plan(g, target="mcu-cortex-m7", capacity=cap, time_limit=3)
    except CapacityError:
        return
    v = validate(g, plan)
    assert v.ok, v.summary()
    res = simulate(path, g, plan)
    assert res.ok, res.first_problem


def test_folded_qdq_groups_run_in_stripes_bit_exactly() -> None:
    """A DequantizeLinear -> Conv -> QuantizeLinear group is one row unit: its stripes read
    int8 rows and write int8 rows (the float rows between live only in the kernel), and the
    plan simulates bit for bit."""
    from pathlib import Path

    from stowage.api import load_model
    from stowage.simulate import simulate

    model = Path(__file__).resolve().parents[1] / "models" / "int8" / "tiny_cnn_int8_qdq.onnx"
    g = load_model(model, in_place=True, qdq="fold")
    assert m_r(g, False) == 15_360                 # the QOperator form's M_R (tests/test_qdq.py)
    plan = compile_plan(g, capacity="8KiB", time_limit=5)
    assert plan.cascades
    convs = [st for c in plan.cascades for st in c.stripes if g.operators[st.op].op_type == "Conv"]
    assert convs and all(g.tensors[name].dtype == "int8" for st in convs for name, _, _ in st.inputs)
    assert validate(g, plan).ok
    res = simulate(model, g, plan)
    assert res.ok and all(o.exact for o in res.outputs), res.first_problem
