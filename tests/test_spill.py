"""The spill engine on hand-checked cases, and its policies under the validator."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.errors import CapacityError
from stowage.ir.lifetimes import m_r, peak_live
from stowage.plan.validate import validate
from stowage.solvers.analysis.traffic_bound import traffic_lower_bound
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.problem import Problem
from stowage.solvers.spill import Config, simulate
from stowage.targets.hierarchy import Hierarchy, Level
from tests.spill_cases import fanout_graph, random_graphs, three_level, two_level

FILE = ("relu", "sig", "tanh", "add_d", "add_y")


def _order(g, names):
    by = {op.name: op.index for op in g.computing_ops}
    return tuple(by[n] for n in names)


def test_fanout_file_order_belady_spills_two_activations():
    # Capacity 48 = M_R (16-byte tensors).  File order: at tanh x,a,b are resident and c needs
    # 16 more: a and b are both next used at add_d; Belady evicts a (dirty: store 16 + reload 16).
    # At add_d (needs a,b,d) c is resident and must go too (store 16 + reload 16): 64 bytes.
    g = fanout_graph()
    res = simulate(Problem(g, two_level(48, 16)), _order(g, FILE), Config(policy="belady"))
    assert res.noncompulsory == 64
    spilled = {t.buffer for t in res.transfers if t.dst == "dram"}
    assert spilled == {g.tensor_buffer["a"], g.tensor_buffer["c"], g.tensor_buffer["y"]}  # y: compulsory


def test_fanout_minpeak_order_drops_clean_input():
    # Order relu, sig, add_d, tanh, add_y: at add_d x is clean (an input) and not needed, so it
    # is dropped without a store and reloaded before tanh: 16 bytes, for every policy.
    g = fanout_graph()
    order = _order(g, ("relu", "sig", "add_d", "tanh", "add_y"))
    for policy in ("belady", "greedy", "cost"):
        for alloc in ("online", "bytes"):
            res = simulate(Problem(g, two_level(48, 16)), order, Config(policy=policy, alloc=alloc))
            assert res is not None and res.noncompulsory == 16, (policy, alloc)
            x = g.tensor_buffer["x"]
            loads = [(t.step, t.phase) for t in res.transfers if t.buffer == x]
            assert loads == [(0, "before"), (3, "before")]


def test_no_spill_when_everything_fits():
    # Capacity 64 = peak: no spill, peak address 64, offsets 16-aligned.
    g = fanout_graph()
    res = simulate(Problem(g, two_level(64, 16)), _order(g, FILE), Config(policy="belady"))
    assert res.noncompulsory == 0 and res.peak_address == 64
    assert all(p.offset % 16 == 0 for p in res.placements)


def test_capacity_below_m_r_names_m_r_and_operator():
    g = fanout_graph()
    with pytest.raises(CapacityError, match=r"M_R = 48 bytes.*'add_d'"):
        simulate(Problem(g, two_level(47, 1)), g.file_order(), Config())
    assert CapacityError("x").exit_code == 2


def test_three_level_spill_goes_to_hbm_until_full():
    # hbm holds 16 bytes: the first dirty victim goes to hbm, the next to ddr.
    g = fanout_graph()
    res = simulate(Problem(g, three_level(48, 16)), _order(g, FILE), Config(policy="belady"))
    stores = [t.dst for t in res.transfers if t.src == "sram" and t.buffer != g.tensor_buffer["y"]]
    assert stores == ["hbm", "ddr"]
    plan = assemble_plan(Problem(g, three_level(48, 16)), res.order, res.placements, res.transfers,
                         "test", "feasible", None, 0.0,
                         offchip_offsets=res.offchip_offsets())
    assert validate(g, plan).ok


def test_assembler_moves_a_spill_to_the_next_level_when_its_level_is_full():
    # A solver that sends every spill to the cheapest level (hbm, 16 bytes) although two
    # 16-byte spills are off-chip at once: the assembler keeps the first in hbm and moves the
    # second, store and reload, to ddr -- the plan the engine itself makes (review 2.6).
    g = fanout_graph()
    prob = Problem(g, three_level(48, 16))
    res = simulate(prob, _order(g, FILE), Config(policy="belady"))
    engine_plan = assemble_plan(prob, res.order, res.placements, res.transfers, "t", "feasible", None, 0.0,
                                offchip_offsets=res.offchip_offsets())
    moved = {t.buffer for t in res.transfers if t.src == "sram" and t.dst == "ddr" and t.buffer != g.tensor_buffer["y"]}
    naive = [t if t.buffer not in moved else replace(t, dst="hbm") if t.dst == "ddr" else replace(t, src="hbm")
             for t in res.transfers]
    assert [t.dst for t in naive if t.src == "sram" and t.buffer != g.tensor_buffer["y"]] == ["hbm", "hbm"]
    plan = assemble_plan(prob, res.order, res.placements, naive, "t", "feasible", None, 0.0)
    assert validate(g, plan).ok
    assert plan.transfers == engine_plan.transfers
    assert plan.metrics == engine_plan.metrics
    # With no spill level left to try (ddr read-only), the error names the full level.
    ro = replace(prob.target, levels=(*prob.target.levels[:2], replace(prob.target.levels[2], writable=False)))
    with pytest.raises(CapacityError, match=r"level 'hbm' \(16 bytes\) cannot also hold"):
        assemble_plan(Problem(g, ro), res.order, res.placements, naive, "t", "feasible", None, 0.0)


def _late_spill_graph():
    """The falsifying example of the byte-count bug: x(8) feeds n0..n3; t0, t1 (8 bytes) and
    t2, t3 (16 bytes) are each read once, late; t4, t5, t6 are outputs."""
    from onnx import TensorProto, helper

    from stowage.ir.onnx_import import import_model

    v = lambda n, w: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, w])  # noqa: E731
    nodes = [helper.make_node("Relu", ["x"], ["t0"], name="n0"),
             helper.make_node("Relu", ["x"], ["t1"], name="n1"),
             helper.make_node("Concat", ["x", "x"], ["t2"], name="n2", axis=1),
             helper.make_node("Concat", ["x", "t1"], ["t3"], name="n3", axis=1),
             helper.make_node("Relu", ["t0"], ["t4"], name="n4"),
             helper.make_node("Relu", ["t2"], ["t5"], name="n5"),
             helper.make_node("Relu", ["t3"], ["t6"], name="n6")]
    graph = helper.make_graph(nodes, "late", [v("x", 8)], [v("t4", 8), v("t5", 16), v("t6", 16)])
    return import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), element_bytes=1)


def test_bounded_spill_level_uses_real_address_ranges():
    # Capacity 32 (= M_R), hbm 40 bytes.  File order + Belady (online): t0 (8) is evicted at
    # step 1, t1 (8) and t2 (16) at step 2/3 -- all stored to hbm right after their last touch:
    # t0 [0,8) over steps 0..4, t1 [8,16) over 1..3, t2 [16,32) over 2..5.  t3 (16) is evicted at
    # step 5 but stored after step 3, its last touch; over steps 3..6 hbm already holds
    # 8 + 8 + 16 = 32 bytes, so t3 goes to ddr.  (The byte-count engine released t1 and t0 at
    # their last uses 3 and 4, sent t3 to hbm, and the assembler then overflowed hbm.)
    # Traffic: t0, t1: 2 x 8 x 1 hop each; t2: 2 x 16 x 1; t3: 2 x 16 x 2 hops = 128.
    g = _late_spill_graph()
    prob = Problem(g, three_level(32, 40))
    res = simulate(prob, g.file_order(), Config(policy="belady"))
    name = lambda b: g.buffers[b].tensors[0]  # noqa: E731
    spills = [(name(t.buffer), t.dst, t.step) for t in res.transfers if t.src == "sram" and t.dst == "hbm"]
    assert spills == [("t0", "hbm", 0), ("t1", "hbm", 1), ("t2", "hbm", 2)]
    assert [(name(t.buffer), t.step) for t in res.transfers if t.buffer == g.tensor_buffer["t3"]] == [
        ("t3", 3), ("t3", 6)]
    assert {(name(t.buffer), t.src, t.dst) for t in res.transfers if t.buffer == g.tensor_buffer["t3"]} == {
        ("t3", "sram", "ddr"), ("t3", "ddr", "sram")}
    assert res.noncompulsory == 128
    plan = assemble_plan(prob, res.order, res.placements, res.transfers, "t", "feasible", None, 0.0,
                         offchip_offsets=res.offchip_offsets())
    hbm = sorted((name(p.buffer), p.offset, p.first, p.last) for p in plan.placements if p.level == "hbm")
    assert hbm == [("t0", 0, 0, 4), ("t1", 8, 1, 3), ("t2", 16, 2, 5)]
    assert validate(g, plan).ok
    # Bytes mode decides differently (t1 stays), and its hbm use also fits: 8 + 16 + 16 = 40.
    res = simulate(prob, g.file_order(), Config(policy="belady", alloc="bytes"))
    assert res.noncompulsory == 80
    plan = assemble_plan(prob, res.order, res.placements, res.transfers, "t", "feasible", None, 0.0,
                         offchip_offsets=res.offchip_offsets())
    assert validate(g, plan).ok and plan.metrics.peak_bytes["hbm"] == 40


def _bounded_dram(cap: int, dram: int) -> Hierarchy:
    """Two levels like mcu-cortex-m7's sram + sdram: the only spill level is bounded and also
    holds the inputs and outputs."""
    return Hierarchy(name="bounded", levels=(Level("sram", cap, 4), Level("sdram", dram, 4),
                                             Level("flash", None, 4, writable=False)),
                     compute_level="sram", weights_home="flash", inputs_home="sdram", outputs_home="sdram")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(), frac=st.floats(0, 1), weights_in_compute_level=st.booleans(),
       policy=st.sampled_from(["belady", "greedy", "cost"]), alloc=st.sampled_from(["online", "bytes"]),
       room=st.integers(0, 64))
def test_small_bounded_spill_level_never_overflows(g, frac, weights_in_compute_level, policy, alloc, room):
    # sdram = inputs + outputs + `room` bytes (aligned): either the engine finds room for every
    # spill (and the assembled plan validates with exactly its offsets) or it says no level has
    # room -- the assembler never discovers an overflow the engine did not see.
    lo, hi = m_r(g, weights_in_compute_level), peak_live(g, None, weights_in_compute_level)
    home = sum(-(-b.bytes // 4) * 4 for b in g.buffers if b.kind.value in ("input", "output") or b.is_output)
    prob = Problem(g, _bounded_dram(int(lo + frac * (hi - lo)) + 8, home + room), weights_in_compute_level)
    try:
        res = simulate(prob, g.file_order(), Config(policy=policy, alloc=alloc))
    except CapacityError as exc:
        assert "has room" in str(exc) or "cannot also hold" in str(exc) or "alignment" in str(exc)
        return
    if res is None:
        return
    plan = assemble_plan(prob, res.order, res.placements, res.transfers, "t", "feasible", None, 0.0,
                         offchip_offsets=res.offchip_offsets())
    verdict = validate(g, plan)
    assert verdict.ok, verdict.summary()
    assert plan.metrics.peak_bytes["sdram"] <= home + room


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(), frac=st.floats(0, 1), weights_in_compute_level=st.booleans(),
       policy=st.sampled_from(["belady", "greedy", "cost"]), alloc=st.sampled_from(["online", "bytes"]),
       levels=st.sampled_from([2, 3]))
def test_random_dags_validate(g, frac, weights_in_compute_level, policy, alloc, levels):
    lo, hi = m_r(g, weights_in_compute_level), peak_live(g, None, weights_in_compute_level)
    cap = int(lo + frac * (hi - lo))
    target = two_level(cap) if levels == 2 else three_level(cap, 40)
    prob = Problem(g, target, weights_in_compute_level)
    res = simulate(prob, g.file_order(), Config(policy=policy, alloc=alloc))
    if res is None:  # bytes mode may fail to pack: the online mode never does
        assert alloc == "bytes"
        return
    plan = assemble_plan(prob, res.order, res.placements, res.transfers, "t", "feasible", None, 0.0,
                         offchip_offsets=res.offchip_offsets())
    verdict = validate(g, plan)
    assert verdict.ok, verdict.summary()
    assert verdict.metrics.noncompulsory_bytes == res.noncompulsory
    assert res.noncompulsory >= traffic_lower_bound(prob)


def test_multi_level_reuses_hbm_over_time_and_falls_back_to_ddr():
    # Three ladder blocks at M_R = 48 (see tests/test_divide.py): each block spills a_i (16 bytes)
    # after step 5i+1 and reloads it before step 5i+4.  Those off-chip lifetimes are disjoint,
    # so a 16-byte hbm holds all three at offset 0 in turn: 3 x (16 + 16) x 1 hop = 96.  With
    # 15 bytes hbm has no room for any of them and they go to ddr: 3 x 32 x 2 hops = 192.
    from stowage.solvers.analysis.schedule import min_peak_order
    from tests.test_divide import ladder

    g = ladder(3)
    order = tuple(min_peak_order(g, False, 1.0))
    res = simulate(Problem(g, three_level(48, 16)), order, Config(policy="cost"))
    a = [g.tensor_buffer[f"a{i}"] for i in range(3)]
    assert res.noncompulsory == 96
    assert [(t.buffer, t.dst, t.step) for t in res.transfers if t.src == "sram" and t.dst == "hbm"] == [
        (a[0], "hbm", 1), (a[1], "hbm", 6), (a[2], "hbm", 11)]
    assert [off for b, lvl, off in res.offchip if lvl == "hbm"] == [0, 0, 0]
    plan = assemble_plan(Problem(g, three_level(48, 16)), res.order, res.placements, res.transfers, "t",
                         "feasible", None, 0.0, offchip_offsets=res.offchip_offsets())
    assert validate(g, plan).ok and plan.metrics.peak_bytes["hbm"] == 16
    res = simulate(Problem(g, three_level(48, 15)), order, Config(policy="cost"))
    assert res.noncompulsory == 192
    assert {t.dst for t in res.transfers if t.src == "sram"} == {"ddr"}


@pytest.mark.slow  # its exact-pack fallback is the first numba compile of this file on a cold cache
def test_sn40l_spills_to_hbm():
    # On the sn40l preset (sram / hbm 64 GiB / ddr, 64-byte alignment) a spilling plan stores
    # to hbm, the cheapest level with room (1 hop instead of 2).
    from stowage.solvers.registry import solve
    from stowage.targets.hierarchy import load_target
    from tests.test_divide import ladder

    g = ladder(20)
    prob = Problem(g, load_target("sn40l").with_capacity(3 * 64), time_limit=5.0)
    plan = solve(prob, "heuristic")
    stores = {t.dst for t in plan.transfers if t.src == "sram" and plan.buffers[t.buffer].kind != "output"}
    assert plan.metrics.noncompulsory_bytes == 20 * 32 and stores == {"hbm"}


def test_engine_offchip_ignores_empty_reservations():
    """An empty off-chip reservation holds no bytes: the engine's first fit never let one block
    a request (a 30 B request over [0, 10) and an empty range at 20 goes at 10, not 20)."""
    from stowage.solvers.spill.offchip import OffChip
    from tests.spill_cases import three_level

    off = OffChip(three_level(48, 1000), end=5)
    off.take("hbm", 0, 10, 3, 4)
    off.take("hbm", 20, 0, 3, 4)
    assert off.find("hbm", 30, 3, 4) == 10
