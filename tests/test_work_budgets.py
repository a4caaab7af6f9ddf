"""Work budgets with the wall clock as a safety stop only (issue 14, items 2 and 6).

* the min-peak scheduler's safety stop (``analysis.schedule.safety_seconds``): up to three
  times its work budget where the caller has the room, never below the budget; it moves the
  stop, never the work, so a machine slow in proportion to the work (a clock advancing a fixed
  step per reading) gives the same order where a stop *at* the budget cut it;
* ``exact``'s phases: the ones before the reference heuristic share one safety window
  (``PRE_REFERENCE_SHARE``), the later ones stop at the final deadline only, and every phase
  a window cuts or skips makes the plan say ``stopped_by = "time"``; the cheap proofs at M_R
  run right after the cover bound, so above M_R the plan at M_R is a candidate before the
  costlier proofs at the capacity (densenet121 8-bit with weights at p1 and 4 s returned a
  baseline's 2,309,632 B where the plan at M_R moves 1,205,760 B);
* a case that ends on its budgets gives the same plan under busy-loop processes, or says
  ``stopped_by = "time"``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import replace

import pytest

from stowage.ir.lifetimes import m_r, peak_live
from stowage.solvers.analysis import schedule
from stowage.solvers.analysis.schedule import SAFETY_FACTOR, min_peak_run, safety_seconds
from stowage.solvers.exact.auto import (
    AUTO_WORK_BUDGETS,
    CHEAP_PHASES,
    PRE_REFERENCE_SHARE,
    REFERENCE_END_SHARE,
    AutoPipeline,
)
from stowage.solvers.exact.params import ExactParams
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from tests.spill_cases import same, two_level
from tests.test_on_time import layered_graph


def test_the_safety_stop_is_up_to_three_budgets_within_the_room() -> None:
    assert SAFETY_FACTOR == 3.0
    assert safety_seconds(1.6, None) == 1.6          # no room given: the budget itself (as before)
    assert safety_seconds(1.6, 10.0) == pytest.approx(4.8)
    assert safety_seconds(1.6, 3.0) == 3.0           # the caller's room caps it
    assert safety_seconds(1.6, 0.5) == 1.6           # never below the budget
    assert safety_seconds(0.0, 5.0) == 0.0
    assert safety_seconds(-1.0, None) == 0.0


def test_the_safety_stop_moves_never_the_work(step_clock) -> None:
    # layered_graph(40, seed=2): three beams and a DP of 11,322 states prove its order
    # (``tests/test_minpeak_work.py``); at 6 ms per clock reading that work "takes" about
    # 1 s of a 0.5 s budget: a stop at the budget cuts it, one at three budgets does not.
    g = layered_graph(40, seed=2)
    schedule.model_for(g, False)
    schedule._forward_greedy(g, False)
    free = min_peak_run(g, False, 0.5, 1, safety_stop=False)
    assert free.proven and not free.cut
    step_clock(0.006)
    at_budget = min_peak_run(g, False, 0.5, 1)
    assert at_budget.cut and not at_budget.proven
    roomy = min_peak_run(g, False, 0.5, 1, safety=safety_seconds(0.5, 10.0))
    assert (roomy.order, roomy.proven, roomy.cut) == (free.order, True, False)


def test_exact_phase_windows_are_one_safety_window_then_the_final_deadline() -> None:
    g = layered_graph(12, seed=1)
    prob = Problem(g, two_level(between(g, 1 / 3)), time_limit=4.0, seed=1)
    pipe = AutoPipeline(prob, ExactParams(), time.perf_counter(), 4.0, 1, 1)
    phases = pipe.phases()
    names = [p.name for p in phases]
    ref = names.index("reference heuristic")
    assert names[:2] == ["cover bound", "cheap proofs at M_R"]     # the plan at M_R comes first
    assert all(p.wall_share == PRE_REFERENCE_SHARE == 0.5 for p in phases[:ref])
    assert phases[ref].wall_share is None
    for name in ("chain bound", "wide chain bound", "plan at M_R"):
        share = phases[names.index(name)].wall_share
        assert share is None or share >= 1.0                        # capped by the final deadline
    assert set(CHEAP_PHASES) <= set(names[:ref])
    assert REFERENCE_END_SHARE == 1.05
    # Budgets are the phase's share times the limit (deterministic seconds or work units).
    assert pipe.work("gap") == pytest.approx(AUTO_WORK_BUDGETS["gap"] * 4.0) == pytest.approx(0.2)
    assert pipe.work("pack") == pytest.approx(0.2)


def between(g, share: float, weights: bool = False) -> int:
    lo, hi = m_r(g, weights), peak_live(g, None, weights)
    return lo + int(share * (hi - lo))


def test_a_phase_a_window_skips_says_time(monkeypatch) -> None:
    """A phase that finds its window already passed is skipped, and the plan says so (it did
    not when the window was not the final deadline)."""
    g = layered_graph(40, seed=2)
    prob = Problem(g, two_level(between(g, 1 / 3)), time_limit=4.0, seed=1)
    real = AutoPipeline.phases

    def shut(self):                  # every pre-reference window closed at the start
        return [p if p.wall_share is None else replace(p, wall_share=0.0) for p in real(self)]

    monkeypatch.setattr(AutoPipeline, "phases", shut)
    plan = solve(prob, "exact")
    assert plan.solver.stopped_by == "time"


def test_exact_above_m_r_keeps_its_plan_at_m_r_on_a_slow_clock(monkeypatch) -> None:
    """Above M_R the cheap proofs at M_R run right after the cover bound: on a clock 3x fast
    (a machine 3x slower) exact's traffic is still at most auto's at M_R, or the plan says
    ``stopped_by = "time"``."""
    g = layered_graph(60, seed=1)
    lo = m_r(g, False)
    at_m_r = solve(Problem(g, two_level(lo), time_limit=4.0, seed=1), "auto")
    real = time.perf_counter
    t0 = real()
    monkeypatch.setattr(time, "perf_counter", lambda: t0 + 3.0 * (real() - t0))
    plan = solve(Problem(g, two_level(between(g, 0.1)), time_limit=4.0, seed=1), "exact")
    assert plan.metrics.noncompulsory_bytes <= at_m_r.metrics.noncompulsory_bytes or plan.solver.stopped_by == "time"


def _busy(stop_at: float) -> None:
    """Burn a core until the wall-clock time ``stop_at`` (a load generator)."""
    while time.time() < stop_at:
        pass


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["exact", "auto"])
def test_the_same_plan_under_busy_loops_or_the_plan_says_time(solver) -> None:
    """layered_graph(30, seed=1) at a tenth of the way from M_R to its peak: exact's cheap
    proofs at M_R prove 0 B there and the plan at M_R is the answer (about 0.1 s of work in a
    4 s limit).  With three busy loops on the cores the plan is the same, or says time."""
    g = layered_graph(30, seed=1)
    prob = Problem(g, two_level(between(g, 0.1)), time_limit=4.0, seed=1)
    idle = solve(prob, solver)
    if idle.solver.stopped_by == "time":
        pytest.skip("the machine is loaded: a safety stop fired in the reference run (the plan says so)")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_busy, args=(time.time() + 30.0,), daemon=True) for _ in range(3)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.2)
        runs = [solve(Problem(layered_graph(30, seed=1), prob.target, time_limit=4.0, seed=1), solver)
                for _ in range(2)]
    finally:
        for p in procs:
            p.terminate()
            p.join()
    for run in runs:
        assert same(run, idle) or run.solver.stopped_by == "time"
