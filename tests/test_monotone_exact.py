"""Monotone in capacity for every solver, ``exact`` included (issue 14, item 2).

A plan found at a smaller capacity is a candidate at a larger one
(``stowage.solvers.portfolio.monotone_over``); ``stowage compare`` passes each solver's plans
of the capacities before along, so its curves never rise, whatever stopped a search.  The
relabelled plans are judged by the validator at the larger capacity."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.ir.lifetimes import m_r, peak_live
from stowage.plan.validate import validate
from stowage.solvers.portfolio import monotone_over
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.tools.report import run_comparison
from tests.spill_cases import fanout_graph, random_graphs, two_level


def test_a_worse_plan_at_a_larger_capacity_is_replaced_by_the_smaller_ones():
    # fanout (tests/spill_cases.py): M_R = 48, one reload of x (16 B) below 64.  Pretend
    # exact did worse at 56 than at 48: the 48 plan, relabelled for 56, wins and is valid.
    g = fanout_graph()
    small = solve(Problem(g, two_level(48, 16), time_limit=2.0, workers=1), "exact")
    prob = Problem(g, two_level(56, 16), time_limit=2.0, workers=1)
    large = solve(prob, "exact")
    worse = replace(large, metrics=replace(large.metrics, noncompulsory_bytes=10_000),
                    solver=replace(large.solver, status="feasible"))
    got = monotone_over(prob, worse, [("48 B", small)])
    assert got.metrics.noncompulsory_bytes == small.metrics.noncompulsory_bytes == 16
    assert got.solver.found_by.endswith(" at 48 B")
    assert got.solver.name == "exact"
    assert got.target.level("sram").capacity == 56
    assert validate(g, got).ok
    # Not better: the solver's own plan stays, untouched.
    assert monotone_over(prob, large, [("48 B", small)]) is large


def test_candidates_that_do_not_fit_are_skipped():
    g = fanout_graph()
    prob = Problem(g, two_level(48, 16), time_limit=1.0)
    own = solve(prob, "auto")
    naive = solve(Problem(g, two_level(48, 16), time_limit=1.0), "naive")   # ignores the capacity
    larger = solve(Problem(g, two_level(64, 16), time_limit=1.0), "auto")  # a larger capacity
    assert naive.metrics.peak_bytes["sram"] > 48
    assert monotone_over(prob, own, [("naive", naive), ("64 B", larger)]) is own


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(max_ops=6), weights=st.booleans(), shares=st.lists(st.floats(0, 1), min_size=2, max_size=3))
def test_exact_in_compare_never_rises_with_capacity(g, weights, shares):
    lo, hi = m_r(g, weights), peak_live(g, None, weights)
    caps = sorted({lo + int(s * (hi - lo)) for s in shares})
    comp = run_comparison(g, two_level(None), [str(c) for c in caps], ["exact"],
                          weights_in_compute_level=weights, time_limit=1.0)
    traffic = []
    for run in comp.runs:
        assert run.plan is not None, run.error
        assert validate(g, run.plan).ok
        assert run.plan.target.level("sram").capacity == run.capacity.bytes
        traffic.append(run.plan.metrics.noncompulsory_bytes)
    assert traffic == sorted(traffic, reverse=True)


def test_compare_passes_the_smaller_capacities_plans_along(monkeypatch):
    # A solver that does worse at 56 B than at 48 B (its plan's traffic inflated at 56):
    # compare shows the 48 B plan at 56 B, relabelled, validated, ``found_by`` saying so.
    from stowage.solvers import registry

    real = registry.solve

    def worse_at_56(problem, name, params=None, validate=True):
        plan = real(problem, name, params, validate)
        if problem.capacity == 56:
            plan = replace(plan, metrics=replace(plan.metrics, noncompulsory_bytes=10_000))
        return plan

    monkeypatch.setattr(registry, "solve", worse_at_56)
    g = fanout_graph()
    comp = run_comparison(g, two_level(None, 16), ["48", "56", "64"], ["exact"], time_limit=2.0)
    got = {r.capacity.bytes: r.plan for r in comp.runs}
    assert [got[c].metrics.noncompulsory_bytes for c in (48, 56, 64)] == [16, 16, 0]
    assert got[56].solver.found_by.endswith(" at 48 B"), got[56].solver.found_by
    assert got[56].target.level("sram").capacity == 56
    assert validate(g, got[56]).ok


def test_exact_above_m_r_takes_autos_plan_at_m_r_as_a_candidate():
    # fanout at 56 B (M_R = 48 B): the phase "plan at M_R" runs auto's single pass at 48 B
    # (one reload of x, 16 B, proven there), relabels it for 56 B and offers it; with nothing
    # else run, exact's answer is that plan, named so, and valid at 56 B.
    import time

    from stowage.solvers.exact.auto import AutoPipeline
    from stowage.solvers.exact.params import ExactParams

    g = fanout_graph()
    prob = Problem(g, two_level(56, 16), time_limit=2.0, workers=1)
    pipe = AutoPipeline(prob, ExactParams(), time.perf_counter(), 2.0, 1, 0)
    assert pipe.above_m_r()
    pipe.plan_at_m_r()
    assert pipe.m_r_plan is not None and pipe.m_r_plan.target.level("sram").capacity == 56
    assert pipe.best_value == 16 and pipe.best_source.endswith(" at M_R")
    plan = pipe._final(None)
    assert plan.solver.name == "exact" and plan.solver.found_by.endswith(" at M_R")
    assert plan.metrics.noncompulsory_bytes == 16
    assert validate(g, plan).ok
    # The cheap proofs at M_R (before the reference heuristic) find the same 16 B plan at 48 B
    # but prove only a bound of 0 there, so the later phase "plan at M_R" still runs.
    early = AutoPipeline(prob, ExactParams(), time.perf_counter(), 2.0, 1, 0)
    early.cheap_at_m_r()
    assert not early.m_r_proven and early.best_value == 16
    assert early.m_r_plan is not None and early.m_r_plan.target.level("sram").capacity == 56
    assert validate(g, early._final(None)).ok
    # Where the cheap proofs do prove M_R (a 40-operator layered graph: 0 B at M_R = 640 B),
    # their plan is auto's at M_R and the later phase is skipped.
    from tests.test_on_time import layered_graph

    lg = layered_graph(40, seed=0)
    lo, hi = m_r(lg, False), peak_live(lg, None, False)
    proven = AutoPipeline(Problem(lg, two_level(lo + (hi - lo) // 5), time_limit=2.0, workers=1), ExactParams(),
                          time.perf_counter(), 2.0, 1, 0)
    proven.cheap_at_m_r()
    assert lo == 640 and proven.m_r_proven and proven.best_value == 0
    assert proven.best_source.endswith(" at M_R") and validate(lg, proven._final(None)).ok
    # At M_R itself, or with an incumbent that moves nothing, the phase does not run.
    assert not AutoPipeline(replace(prob, target=two_level(48, 16)), ExactParams(), time.perf_counter(), 2.0, 1,
                            0).above_m_r()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(max_ops=10), weights=st.booleans(), share=st.floats(0, 1), seed=st.integers(0, 2))
def test_single_exact_and_auto_compiles_never_move_more_than_auto_at_m_r(g, weights, share, seed):
    # The guarantee of one compile above M_R: exact (its phase "plan at M_R") and auto (its
    # run at M_R) each move at most what auto moves at M_R, unless a wall-clock stop says so.
    lo, hi = m_r(g, weights), peak_live(g, None, weights)
    cap = lo + int(share * (hi - lo))
    at_mr = solve(Problem(g, two_level(lo), weights, time_limit=2.0, seed=seed, workers=1), "auto")
    prob = Problem(g, two_level(cap), weights, time_limit=2.0, seed=seed, workers=1)
    for name in ("exact", "auto"):
        plan = solve(prob, name)
        assert plan.metrics.noncompulsory_bytes >= (plan.solver.lower_bound or 0)
        if "time" not in (plan.solver.stopped_by, at_mr.solver.stopped_by):
            assert plan.metrics.noncompulsory_bytes <= at_mr.metrics.noncompulsory_bytes, (name, plan.solver.found_by)
