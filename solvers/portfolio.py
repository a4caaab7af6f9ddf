"""The final choice of ``heuristic``, ``divide`` and ``auto``: the best of several whole plans.

Why a separate step: each planner's search is a portfolio of orders and replacement policies,
but none of its candidates is *the* plan a baseline returns (the baselines' arena, order
budget and tie-breaking differ in details), so "never worse than the baselines" held on the
suite but not by construction; on models nobody tuned the planner for it tied or lost
(issue 14).  The baselines run in milliseconds to a second, so the planners now run them
(``stowage.solvers.baselines.baseline_plans``, the very plans ``--solver baseline-...``
returns) and keep the best plan of all (``keep_best``); the plan's ``solver.found_by`` names
the one that won.

The same step makes ``auto`` monotone in capacity against M_R: a plan for a smaller capacity
is a valid plan for a larger one (its placements stay inside the smaller range), so ``auto``
above M_R also plans at M_R and keeps the better (``at_capacity`` re-labels that plan with the
larger capacity; the validator judges it there like every plan).

The order of preference: less non-compulsory traffic, then a smaller compute-level peak, then
the first candidate (the planner's own plan), so ties never replace the planner's own work.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from stowage.plan import Plan
from stowage.solvers.alloc.exact import solve_allocation
from stowage.solvers.alloc.interval import Interval
from stowage.solvers.assemble import target_ref
from stowage.solvers.problem import Problem

log = logging.getLogger(__name__)

#: The baselines that the planners keep as candidates start only before this share of the
#: time limit (wall clock, from the planner's start); they run in milliseconds to a second,
#: so only very large graphs or an overloaded machine skip any (``solver.stopped_by`` then
#: says ``time``).
BASELINE_WALL_SHARE = 0.85


def baseline_deadline(problem: Problem, started: float, wall_deadline: float | None) -> float:
    """When the baselines may no longer start: ``BASELINE_WALL_SHARE`` of the limit after the
    planner's start, and no later than 10% of the limit after a caller's ``wall_deadline``
    for the search (``auto`` runs its cheap proofs before the planner and a run at M_R after
    it, all in one limit)."""
    deadline = started + BASELINE_WALL_SHARE * problem.time_limit
    if wall_deadline is not None:
        deadline = min(deadline, wall_deadline + 0.1 * problem.time_limit)
    return deadline


def plan_key(plan: Plan) -> tuple[int, int]:
    """What "better" means between whole plans of one problem: non-compulsory bytes, then the
    compute level's peak address."""
    peak = plan.metrics.peak_bytes.get(plan.target.compute_level, 0)
    return plan.metrics.noncompulsory_bytes, peak


def at_capacity(plan: Plan, problem: Problem) -> Plan:
    """``plan`` (made for a capacity no larger than ``problem``'s) labelled with ``problem``'s
    target, so that it is a plan *for* that capacity (the validator checks it there)."""
    return replace(plan, target=target_ref(problem.target))


def keep_best(problem: Problem, name: str, candidates: Sequence[tuple[str, Plan]], bound: int | None,
              started: float, stopped_by: str | None = None) -> Plan:
    """The best of ``candidates`` (``(found_by, plan)`` pairs, the planner's own first), under
    the planner's ``name`` with ``bound`` (the planner's proven lower bound for ``problem``),
    its status re-derived from that bound, ``found_by`` naming the winner and ``seconds`` the
    whole run's wall time.  ``stopped_by`` (``"time"`` when a wall-clock stop cut a search
    short) is recorded in the plan."""
    if not candidates:
        raise ValueError("keep_best needs at least one candidate")
    found_by, best = candidates[0]
    for who, plan in candidates[1:]:
        if plan_key(plan) < plan_key(best):
            found_by, best = who, plan
    value = best.metrics.noncompulsory_bytes
    if problem.capacity is not None and bound is not None and value <= bound:
        status = "optimal"
    else:
        status = "feasible"
    log.info("%s: best of %d candidates is %s (%d B non-compulsory, bound %s)", name, len(candidates), found_by,
             value, bound)
    info = replace(best.solver, name=name, status=status, lower_bound=bound, found_by=found_by,
                   seconds=time.perf_counter() - started, stopped_by=stopped_by)
    return replace(best, solver=info)


@functools.cache
def warm_up_jit() -> None:
    """Load (or, the first time on a machine, compile: about 10 s) the exact packer's numba
    kernel before a search starts its clock.  Without this the first packing of a process
    paid the compile inside the heuristic's time budget, so a time-limited result depended on
    whether numba's disk cache was warm (issue 14).  Once per process."""
    solve_allocation([Interval(0, 0, 0, 1)], 1, 1.0)


__all__ = ["BASELINE_WALL_SHARE", "at_capacity", "baseline_deadline", "keep_best", "plan_key", "warm_up_jit"]
