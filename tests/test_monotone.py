"""Monotone in capacity (issue 14): more memory never costs ``auto`` (or ``exact``) traffic.

A plan for a smaller capacity is a valid plan for a larger one, so ``auto`` above M_R also
plans at M_R and keeps the better (``stowage.solvers.heuristic.auto``,
``stowage.solvers.portfolio.at_capacity``).  Every plan here goes through the validator
(inside ``solve``, and once more for a plan relabelled with a larger capacity)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stowage.errors import CapacityError
from stowage.ir.lifetimes import m_r, peak_live
from stowage.ir.onnx_import import import_model
from stowage.plan.validate import validate
from stowage.solvers import heuristic as heuristic_module
from stowage.solvers.portfolio import at_capacity, keep_best
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from tests.helpers import chain_model
from tests.spill_cases import fanout_graph, random_graphs, three_level, two_level


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(max_ops=10), weights=st.booleans(), a=st.floats(0, 1), b=st.floats(0, 1),
       seed=st.integers(0, 3), levels=st.sampled_from([2, 3]))
def test_auto_traffic_never_increases_with_capacity(g, weights, a, b, seed, levels):
    lo, hi = m_r(g, weights), peak_live(g, None, weights)
    small, large = sorted((int(lo + a * (hi - lo)), int(lo + b * (hi - lo))))

    def run(cap: int):
        target = two_level(cap) if levels == 2 else three_level(cap, 64)
        return solve(Problem(g, target, weights, time_limit=2.0, seed=seed), "auto")

    at_mr, at_small, at_large = run(lo), run(small), run(large)
    for plan in (at_mr, at_small, at_large):
        assert plan.solver.stopped_by is None     # tiny graphs finish within their work budgets
        assert plan.metrics.noncompulsory_bytes >= (plan.solver.lower_bound or 0)
    assert at_large.metrics.noncompulsory_bytes <= at_small.metrics.noncompulsory_bytes <= \
        at_mr.metrics.noncompulsory_bytes
    # The M_R plan is a plan at the larger capacity: the validator accepts it there.
    relabelled = at_capacity(at_mr, Problem(g, two_level(large) if levels == 2 else three_level(large, 64), weights))
    assert validate(g, relabelled).ok


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(max_ops=6), weights=st.booleans(), a=st.floats(0, 1), b=st.floats(0, 1))
def test_exact_traffic_never_increases_with_capacity_when_proven(g, weights, a, b):
    # exact's optimum is monotone (a theorem); what is checked is that its proofs agree with it
    # and that an unproven plan is never worse than auto's at M_R, which it contains.
    lo, hi = m_r(g, weights), peak_live(g, None, weights)
    small, large = sorted((int(lo + a * (hi - lo)), int(lo + b * (hi - lo))))
    p_small = solve(Problem(g, two_level(small), weights, time_limit=3.0, workers=1), "exact")
    p_large = solve(Problem(g, two_level(large), weights, time_limit=3.0, workers=1), "exact")
    if p_small.solver.status == p_large.solver.status == "optimal":
        assert p_large.metrics.noncompulsory_bytes <= p_small.metrics.noncompulsory_bytes


def test_fanout_traffic_over_capacities():
    # Hand-checked (tests/spill_cases.py): M_R = 48, peak live 64 in every order.  At 48 and up
    # to 63 one reload of the clean input x (16 B) is needed; at 64 nothing moves.
    g = fanout_graph()
    got = [solve(Problem(g, two_level(c, 16), time_limit=1.0), "auto").metrics.noncompulsory_bytes
           for c in (48, 56, 63, 64, 80)]
    assert got == [16, 16, 16, 0, 0]


def test_auto_keeps_the_plan_at_m_r_when_it_is_better(monkeypatch):
    # Make the run at the larger capacity worse on purpose (file-order Belady, which reloads
    # more) and check that auto then returns its plan at M_R, relabelled and valid.
    g = fanout_graph()
    real = heuristic_module.auto_once

    def worse_above_m_r(problem, wall_deadline, descent_deadline=None):
        if problem.capacity is not None and problem.capacity > 48:
            plan = solve(problem, "naive")
            bad = replace(plan.metrics, noncompulsory_bytes=10_000)
            return replace(plan, metrics=bad, solver=replace(plan.solver, found_by="heuristic"))
        return real(problem, wall_deadline, descent_deadline)

    monkeypatch.setattr(heuristic_module, "auto_once", worse_above_m_r)
    plan = heuristic_module.auto(Problem(g, two_level(56, 16), time_limit=1.0), heuristic_module.AutoParams())
    # The cheap proofs' plan at M_R (kept proven or not) or the pass at M_R: both are auto's
    # plans at M_R, and both move the 16 B of the hand-checked case.
    assert plan.solver.found_by in ("heuristic at M_R", "exact: gap model at M_R")
    assert plan.metrics.noncompulsory_bytes == 16
    assert plan.target.level("sram").capacity == 56
    assert validate(g, plan).ok


def test_keep_best_prefers_less_traffic_then_the_first():
    g = import_model(chain_model(3, 16), element_bytes=1)
    prob = Problem(g, two_level(64), time_limit=1.0)
    a = solve(prob, "baseline-fileorder-belady")
    b = solve(prob, "minpeak")
    worse = replace(a, metrics=replace(a.metrics, noncompulsory_bytes=5))
    best = keep_best(prob, "heuristic", [("own", worse), ("baseline-x", a)], 0, 0.0)
    assert (best.solver.found_by, best.solver.status, best.solver.name) == ("baseline-x", "optimal", "heuristic")
    tie = keep_best(prob, "heuristic", [("own", b), ("baseline-x", a)], 0, 0.0)
    assert tie.solver.found_by == ("own" if b.metrics.peak_bytes["sram"] <= a.metrics.peak_bytes["sram"]
                                   else "baseline-x")
    assert keep_best(prob, "auto", [("own", worse)], 0, 0.0, "time").solver.stopped_by == "time"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(max_ops=10), weights=st.booleans(), share=st.floats(0, 1), levels=st.sampled_from([1, 2, 3]))
def test_lazy_baselines_pick_what_assembling_all_four_picks(g, weights, share, levels):
    # keep_best_of_baselines assembles a baseline only when its simulation beats the best plan
    # so far; the answer must be keep_best's over all four assembled plans (one-level
    # targets, where the compute level is every buffer's home, take the eager path).
    from stowage.solvers.baselines import baseline_plans
    from stowage.solvers.portfolio import keep_best_of_baselines
    from stowage.targets.hierarchy import Hierarchy, Level

    lo, hi = m_r(g, weights), peak_live(g, None, weights)
    cap = lo + int(share * (hi - lo))
    if levels == 1:   # the outputs' home is the compute level: the assembler rewrites them
        target = Hierarchy("outputs-stay", (Level("sram", cap), Level("dram", None)), "sram", "dram", "dram", "sram")
    else:
        target = two_level(cap) if levels == 2 else three_level(cap, 64)
    prob = Problem(g, target, weights, time_limit=1.0)
    try:
        own = solve(prob, "baseline-fileorder-greedy")      # any valid plan as "the planner's own"
    except CapacityError:
        assume(False)                                        # outputs that cannot stay resident
    own = replace(own, metrics=replace(own.metrics, noncompulsory_bytes=own.metrics.noncompulsory_bytes + 1))
    try:
        eager = keep_best(prob, "x", [("own", own), *baseline_plans(prob)], 0, 0.0)
    except CapacityError:
        assume(False)                                        # a baseline's outputs cannot stay
    lazy = keep_best_of_baselines(prob, "x", [("own", own)], 0, 0.0)
    assert (lazy.solver.found_by, lazy.metrics, lazy.steps, lazy.placements, lazy.transfers) == \
        (eager.solver.found_by, eager.metrics, eager.steps, eager.placements, eager.transfers)
    assert validate(g, lazy).ok or lazy.solver.found_by == "own"


def test_simulate_memo_returns_what_a_fresh_run_returns():
    from stowage.solvers.spill import Config, SpillEngine, simulate

    g = fanout_graph()
    prob = Problem(g, two_level(48, 16), time_limit=1.0)
    order = g.file_order()
    cfg = Config(policy="greedy", alloc="online")
    first = simulate(prob, order, cfg)
    assert simulate(prob, order, cfg) is first            # memoised: online runs depend on nothing else
    eng = SpillEngine(prob, order, cfg)
    eng.run()
    assert eng.finish() == first
    other = simulate(prob, order, Config(policy="belady", alloc="online"))
    assert other is not first


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(20, 40), graph_seed=st.integers(0, 50), weights=st.booleans(),
       shares=st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_single_auto_compiles_are_monotone_over_a_sweep_of_capacities(n, graph_seed, weights, shares):
    """Single compiles (no plan passed along) at M_R and three capacities up to peak live, on
    layered graphs of 20-40 operators: where no wall-clock stop fired, ``auto``'s traffic
    never rises with the capacity, and never exceeds a baseline's.  The sweep of
    ``benchmarks/monotone.py`` in small: the cheap proofs at the capacity and at M_R end on
    their work budgets here, so the plans do not depend on the load."""
    from stowage.solvers.baselines import BASELINES
    from tests.test_on_time import layered_graph

    g = layered_graph(n, seed=graph_seed)
    lo, hi = m_r(g, weights), peak_live(g, None, weights)
    caps = [lo] + sorted(int(lo + s * (hi - lo)) for s in shares)
    plans = [solve(Problem(g, two_level(c), weights, time_limit=2.0, seed=0), "auto") for c in caps]
    traffic = [p.metrics.noncompulsory_bytes for p in plans]
    for i in range(len(caps) - 1):
        uncut = plans[i].solver.stopped_by is None and plans[i + 1].solver.stopped_by is None
        # A pair that a wall-clock stop (a loaded machine) shaped is not compared.
        assert not uncut or traffic[i + 1] <= traffic[i], list(zip(caps, traffic, strict=True))
    for c, p in zip(caps, plans, strict=True):
        prob = Problem(g, two_level(c), weights, time_limit=2.0, seed=0)
        assert p.metrics.noncompulsory_bytes <= min(solve(prob, b).metrics.noncompulsory_bytes for b in BASELINES)
