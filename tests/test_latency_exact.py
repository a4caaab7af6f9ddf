"""``exact`` with ``--objective latency`` (issue 15, item 4): the CP-SAT latency model
(``stowage.solvers.exact.latency_model``), the time graph and schedule replay of
``stowage.solvers.timing``, the tightened latency bound, and the plan's latency fields.

The toy engine of ``tests/test_timing.py``: 1 item per cycle at 100 MHz, so a 16-element Relu
or Add is busy 160 ns; a 16-byte copy over DRAM's 1 GB/s takes 16 ns; SRAM never limits.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from spill_cases import fanout_graph, import_model, random_graphs
from stowage import cli
from stowage.api import compile as compile_plan
from stowage.errors import PlanFormatError, SolverError
from stowage.plan import Placement, Transfer, load_plan, save_plan
from stowage.plan.json_format import plan_from_dict, plan_to_dict
from stowage.plan.validate import recompute_metrics, validate
from stowage.solvers.budgets import target_budgets
from stowage.solvers.exact.latency_model import best_schedule, with_latency
from stowage.solvers.timing import annotate, earliest_starts, estimate, latency_bound, replay, time_graph
from test_timing import toy


def _two_inputs():
    """x, y (16 B inputs) -> relu0: a = Relu(x); relu1: c = Relu(y); add: out = a + c."""
    vi = lambda t: helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 16])  # noqa: E731
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu0"), helper.make_node("Relu", ["y"], ["c"], name="relu1"),
             helper.make_node("Add", ["a", "c"], ["out"], name="add")]
    m = helper.make_model(helper.make_graph(nodes, "two", [vi("x"), vi("y")], [vi("out")]),
                          opset_imports=[helper.make_opsetid("", 17)])
    return import_model(m, element_bytes=1)


def _queued_spill_plan():
    """The naive plan of ``_two_inputs`` (every buffer at its own SRAM offset) with ``a``
    spilled after relu0 and reloaded into fresh bytes [80, 96) before add.  Transfers in plan
    order: load x (before 0), spill a (after 0), load y (before 1), reload a (before 2), store
    out (after 2)."""
    g = _two_inputs()
    p = compile_plan(g, target=toy(None), solver="naive", in_place=False, tiling="off")
    pls = [q if (q.buffer, q.level) != (2, "sram") else replace(q, last=0) for q in p.placements]
    pls += [Placement(2, "sram", 80, 2, 2), Placement(2, "dram", 48, 0, 2)]
    levels = tuple(replace(lv, capacity=96) if lv.name == "sram" else lv for lv in p.target.levels)
    ts = [replace(t, start=None, end=None, channel=None) for t in p.transfers]
    ts = [ts[0], Transfer(2, "sram", "dram", 0, "after"), ts[1], Transfer(2, "dram", "sram", 2, "before"), ts[2]]
    plan = replace(p, placements=tuple(pls), transfers=tuple(ts), target=replace(p.target, levels=levels))
    return g, replace(plan, metrics=recompute_metrics(plan))


def test_the_model_runs_a_prefetch_before_a_queued_spill():
    """Plan order queues the spill of a (valid at 176 ns, when relu0 ends) before the load of
    y (valid at 0): estimate's one-channel queue gives load x 0-16, relu0 16-176, spill
    176-192, load y 192-208, relu1 208-368, reload 208-224, add 368-528, store 528-544.
    The model loads y at 16-32 during relu0: relu1 176-336, spill 176-192, reload 192-208,
    add 336-496, store 496-512 = the bound (x or y in 16 + 3 x 160 + out 16 = 512 ns)."""
    g, plan = _queued_spill_plan()
    assert validate(g, plan).ok
    greedy = estimate(g, plan, toy(96))
    assert greedy.makespan == pytest.approx(544e-9)
    assert [round(s.start * 1e9, 6) for s in greedy.steps] == [16, 208, 368]
    assert latency_bound(g, plan, toy(96)) == pytest.approx(512e-9)
    sched = best_schedule(g, plan, toy(96), wall=5, work=5)
    assert sched is not None and sched.proven
    tl = sched.timeline
    assert tl.makespan == pytest.approx(512e-9)
    assert [round(s.start * 1e9, 6) for s in tl.steps] == [16, 176, 336]
    assert [(t.index, round(t.start * 1e9, 6)) for t in sorted(tl.transfers, key=lambda t: t.index)] == [
        (0, 0), (1, 176), (2, 16), (3, 192), (4, 496)]
    timed = with_latency(g, plan, toy(96), sched)
    assert validate(g, timed).ok                               # rule 9 judges the new times
    assert (timed.solver.latency_bound, timed.solver.latency_status) == (pytest.approx(512e-9), "optimal")
    # The recorded schedule is the plan's: estimate keeps it (faster than the plan-order queue).
    assert estimate(g, timed, toy(96)).makespan == pytest.approx(512e-9)
    back = plan_from_dict(json.loads(json.dumps(plan_to_dict(timed))))
    assert back.solver == timed.solver and estimate(g, back, toy(96)).makespan == pytest.approx(512e-9)
    # Two channels: estimate already runs load y at once on channel 1, so both give 512 ns.
    assert estimate(g, plan, toy(96, 2)).makespan == pytest.approx(512e-9)
    two = best_schedule(g, plan, toy(96, 2), wall=5, work=5)
    assert two is not None and two.proven and two.timeline.makespan == pytest.approx(512e-9)


def test_a_schedule_contradicting_a_precedence_is_refused():
    """Reloading a before its spill on the one channel is a cycle in the time graph: no
    schedule (the recorded times of such a plan are ignored; estimate's queue is used)."""
    g, plan = _queued_spill_plan()
    tg = time_graph(g, plan, toy(96))
    assert tg is not None and tg.nsteps == 3 and len(tg.duration) == 5
    # The reload (node 3 + 3) waits for the spill (node 3 + 1); add (node 2) for the reload.
    assert 4 in tg.preds[6] and 6 in tg.preds[2]
    assert earliest_starts(tg, [[0, 3, 1, 2, 4]]) is None
    assert earliest_starts(tg, [[0, 1, 2, 3]]) is None          # a copy missing from the queues
    assert replay(g, plan, toy(96), [[0, 2, 1, 3, 4]]).makespan == pytest.approx(512e-9)
    bad = replace(plan, transfers=tuple(replace(t, start=float(-i), end=0.0, channel=0)
                                        for i, t in enumerate(plan.transfers)))
    assert estimate(g, bad, toy(96)).makespan == pytest.approx(544e-9)


def test_exact_latency_on_the_fanout_is_order_optimal_above_the_bound():
    """tests/test_timing.py's fanout at capacity 48 (x spilled once): 848 ns, and no timing of
    that order and those copies is faster (the reload must wait for add_d to free b's bytes);
    the bound is 832 ns, so the status is order-optimal, the gap 16 ns."""
    g = fanout_graph(16)
    traffic = compile_plan(g, target=toy(48), solver="exact", in_place=False, tiling="off", time_limit=5)
    plan = compile_plan(g, target=toy(48), solver="exact", objective="latency", in_place=False, tiling="off",
                        time_limit=5)
    assert validate(g, plan).ok
    assert plan.metrics.estimated_seconds == pytest.approx(848e-9)
    assert plan.metrics.estimated_seconds <= traffic.metrics.estimated_seconds
    assert plan.solver.latency_bound == pytest.approx(832e-9)
    assert plan.solver.latency_status == "order-optimal"
    assert plan.solver.found_by.startswith("exact: latency schedule of ")
    # Traffic is the tie-break: the plan moves no more than exact's traffic optimum.
    assert plan.metrics.noncompulsory_bytes == traffic.metrics.noncompulsory_bytes == 16
    assert (plan.solver.status, plan.solver.lower_bound) == ("optimal", 16)
    assert traffic.solver.latency_bound is None and traffic.solver.latency_status is None


def test_latency_fields_in_plan_json(tmp_path):
    g = fanout_graph(16)
    plan = compile_plan(g, target=toy(48), solver="heuristic", objective="latency", in_place=False, tiling="off")
    assert plan.solver.latency_bound == pytest.approx(832e-9) and plan.solver.latency_status == "feasible"
    save_plan(plan, tmp_path / "p.json")
    raw = json.loads((tmp_path / "p.json").read_text())
    assert raw["solver"]["latency_status"] == "feasible"
    assert load_plan(tmp_path / "p.json").solver == plan.solver
    # A traffic plan writes neither key; an old file without them reads as None.
    plain = compile_plan(g, target=toy(48), solver="heuristic", in_place=False, tiling="off")
    assert not {"latency_bound", "latency_status"} & set(plan_to_dict(plain)["solver"])
    raw["solver"]["latency_status"] = "fast"
    with pytest.raises(PlanFormatError, match="latency_status"):
        plan_from_dict(raw)
    raw["solver"]["latency_status"] = "optimal"
    raw["solver"]["latency_bound"] = -1.0
    with pytest.raises(PlanFormatError, match="latency_bound"):
        plan_from_dict(raw)


def test_solvers_without_the_objective_are_named(tmp_path, capsys):
    g = fanout_graph(16)
    with pytest.raises(SolverError, match=r"solver 'exact-mip' does not support --objective latency "
                                          r"\(solvers that do: exact, heuristic\)"):
        compile_plan(g, target=toy(48), solver="exact-mip", objective="latency", in_place=False)
    from helpers import chain_model, save

    model = save(chain_model(3, 16), tmp_path / "chain.onnx")
    rc = cli.main(["compile", str(model), "--solver", "minpeak", "--objective", "latency", "-o", str(tmp_path / "o")])
    assert rc == 2
    assert "solver 'minpeak' does not support --objective latency" in capsys.readouterr().err


@pytest.mark.slow
def test_compile_prints_the_latency_bound_and_proof(tmp_path, capsys):
    """The chain of tests/test_timing.py (64 B load, 3 Relus of 160 ns, 64 B store = 608 ns):
    nothing spills, the estimate meets the bound, so the makespan is optimal."""
    from helpers import chain_model, save
    from test_timing import TOY_TOML, write

    model = save(chain_model(3, 16), tmp_path / "chain.onnx")
    target = write(tmp_path, TOY_TOML)
    args = ["compile", str(model), "--target", str(target), "--solver", "exact", "--objective", "latency",
            "--in-place", "off", "-o", str(tmp_path / "out"), "--emit", "json"]
    assert cli.main(args) == 0
    assert "time: estimated 0.001 ms, bound 0.001 ms, gap 0.000 ms, stall 0.000 ms (objective latency, optimal)" \
        in capsys.readouterr().out
    assert cli.main([*args, "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["time"]
    assert t["latency_status"] == "optimal" and t["bound_seconds"] == pytest.approx(608e-9)
    saved = load_plan(tmp_path / "out" / "plan.json")
    assert saved.solver.latency_bound == pytest.approx(608e-9) and saved.solver.latency_status == "optimal"


@pytest.mark.slow
def test_exact_latency_proves_the_fixed_order_optimum_on_the_tiny_cnn():
    """models/tiny_cnn.onnx at M_R on ethos-u55-256 (one 16 KiB activation spilled and
    reloaded) and tiled at 3/4 of M_R on ethos-u65-256: valid timed plans, proven."""
    from stowage.api import load_model
    from stowage.targets.hierarchy import load_target

    g = load_model("models/tiny_cnn.onnx", in_place=True)
    traffic = compile_plan(g, target="ethos-u55-256", capacity="M_R", solver="exact", time_limit=5, tiling="off")
    plan = compile_plan(g, target="ethos-u55-256", capacity="M_R", solver="exact", objective="latency",
                        time_limit=5, tiling="off")
    assert plan.solver.latency_status in ("order-optimal", "optimal")
    assert plan.metrics.estimated_seconds <= traffic.metrics.estimated_seconds
    assert plan.solver.latency_bound <= plan.metrics.estimated_seconds
    h = load_target("ethos-u65-256")
    cap = target_budgets(g, h, False).m_r * 3 // 4
    # compile validates the tiled plan, timeline included (rule 9), on the graph it planned.
    tiled = compile_plan(g, target=h, capacity=cap, solver="exact", objective="latency", time_limit=4)
    assert tiled.cascades and tiled.metrics.estimated_seconds is not None
    assert tiled.solver.latency_status in ("order-optimal", "optimal")
    assert tiled.solver.latency_bound <= tiled.metrics.estimated_seconds


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(g=random_graphs(max_ops=10), frac=st.sampled_from([0.0, 0.1, 0.3, 0.7]), channels=st.integers(1, 3),
       weights=st.booleans(), rnd=st.randoms(use_true_random=False))
def test_property_bound_below_every_plan_and_latency_never_slower(g, frac, channels, weights, rnd):
    """On random graphs between M_R and M_P: the latency bound is at most the estimated time of
    the plans of other solvers (a false bound is the worst defect); replaying estimate's own
    schedule gives estimate's timeline; any DMA schedule the time graph accepts (random queue
    orders and channels) times the plan validly by rule 9; exact's latency plan is valid and
    never slower than exact's traffic plan."""
    b = target_budgets(g, toy(None), weights)
    cap = b.m_r + int(frac * (b.m_p - b.m_r))
    h = toy(cap, channels)
    kw = dict(target=h, in_place=False, tiling="off", time_limit=2.0, weights_in_sram=weights)
    plans = {s: compile_plan(g, solver=s, **kw) for s in ("heuristic", "baseline-fileorder-belady", "exact")}
    fast = compile_plan(g, solver="exact", objective="latency", **kw)
    assert validate(g, fast).ok
    for name, p in (*plans.items(), ("exact latency", fast)):
        tl = estimate(g, p, h)
        assert tl.lower_bound <= tl.makespan * (1 + 1e-9), name
        # The time graph has every rule of estimate: its schedule replayed is the same timeline.
        again = replay(g, p, h)
        assert again is not None and again.makespan == pytest.approx(tl.makespan, rel=1e-9), name
        assert [s.start for s in again.steps] == pytest.approx([s.start for s in tl.steps], rel=1e-9, abs=1e-15)
    assert fast.metrics.estimated_seconds <= plans["exact"].metrics.estimated_seconds * (1 + 1e-9)
    p = plans["heuristic"]
    for _ in range(5):
        order = list(range(len(p.transfers)))
        rnd.shuffle(order)
        queues: list[list[int]] = [[] for _ in range(channels)]
        for i in order:
            queues[rnd.randrange(channels)].append(i)
        tl = replay(g, p, h, queues)
        if tl is not None:
            assert validate(g, annotate(p, tl)).ok
            assert tl.makespan >= tl.lower_bound * (1 - 1e-9)
    assert fast.solver.latency_bound <= fast.metrics.estimated_seconds * (1 + 1e-9)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(g=random_graphs(max_ops=12), frac=st.sampled_from([0.0, 0.05, 0.2]), channels=st.integers(1, 2))
def test_property_the_time_graph_has_every_rule_of_estimate(g, frac, channels):
    """The plan-order DMA queue replayed through the time graph is estimate's timeline, step by
    step (a rule estimate applies that the time graph lacked would let the exact model's
    schedules break it), on spilling plans of the file-order baseline."""
    b = target_budgets(g, toy(None), False)
    h = toy(b.m_r + int(frac * (b.m_p - b.m_r)), channels)
    p = compile_plan(g, target=h, solver="baseline-fileorder-greedy", in_place=False, tiling="off")
    tl = estimate(g, p, h)
    again = replay(g, p, h)
    assert again is not None
    assert [s.start for s in again.steps] == pytest.approx([s.start for s in tl.steps], rel=1e-9, abs=1e-15)
    assert [t.start for t in sorted(again.transfers, key=lambda t: t.index)] == pytest.approx(
        [t.start for t in sorted(tl.transfers, key=lambda t: t.index)], rel=1e-9, abs=1e-15)
