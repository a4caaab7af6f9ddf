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

from stowage.errors import CapacityError
from stowage.plan import Plan
from stowage.solvers.alloc.exact import solve_allocation
from stowage.solvers.alloc.interval import Interval
from stowage.solvers.assemble import target_ref
from stowage.solvers.baselines import BASELINES, baseline_plan, baseline_results, minpeak_order_cut
from stowage.solvers.costs import home_level
from stowage.solvers.problem import Problem
from stowage.solvers.spill import SpillResult

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


def monotone_over(problem: Problem, plan: Plan, smaller: Sequence[tuple[str, Plan]]) -> Plan:
    """``plan`` (a solver's plan for ``problem``), or the best of ``smaller`` -- ``(label,
    plan)`` pairs: the same solver's plans of the same graph and setting at capacities no
    larger than ``problem``'s, e.g. the previous cells of a comparison -- relabelled with
    ``problem``'s capacity (``at_capacity``) when one moves fewer bytes (then a smaller peak).
    A plan for a smaller capacity is a plan for this one, so along capacities solved in
    increasing order the traffic can only fall, for every solver, ``exact`` included, and
    whatever stopped a search (issue 14, item 2).  The winner's ``found_by`` gets
    `` at LABEL``; status and bound stay those of ``plan`` (status re-derived from the bound),
    and ``stopped_by`` is ``plan``'s.  Candidates whose compute-level peak exceeds the capacity
    (``naive`` ignores it) or whose target differs otherwise are skipped; the caller validates
    the result as every plan (``stowage.solvers.registry`` does it for solver plans)."""
    cap = problem.capacity
    if cap is None:
        return plan
    level = problem.target.compute_level
    others = [lv for lv in target_ref(problem.target).levels if lv.name != level]
    best, label = plan, None
    for who, cand in smaller:
        peak = cand.metrics.peak_bytes.get(level, 0)
        ref = cand.target.level(level)
        if ref is None or ref.capacity is None or ref.capacity > cap or peak > cap:
            continue
        if [lv for lv in cand.target.levels if lv.name != level] != others:
            continue
        if cand.options != plan.options or cand.model != plan.model:
            continue
        if plan_key(cand) < plan_key(best):
            best, label = cand, who
    if label is None:
        return plan
    bound = plan.solver.lower_bound
    value = best.metrics.noncompulsory_bytes
    status = "optimal" if bound is not None and value <= bound else "feasible"
    info = replace(best.solver, name=plan.solver.name, status=status, lower_bound=bound,
                   found_by=f"{best.solver.found_by or best.solver.name} at {label}", seconds=plan.solver.seconds,
                   stopped_by=plan.solver.stopped_by)
    log.info("%s: the plan at %s (%d B) replaces its own (%d B)", plan.solver.name, label, value,
             plan.metrics.noncompulsory_bytes)
    return replace(at_capacity(best, problem), solver=info)


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


def _has_compute_homes(problem: Problem) -> bool:
    """Whether some buffer's home is the compute level: then the assembler rewrites the
    engine's decisions for it (``assemble._resident_homes``) and a simulation's traffic is
    not the plan's."""
    g, t = problem.graph, problem.target
    return any(home_level(g, t, b.id) == t.compute_level for b in g.buffers)


def keep_best_of_baselines(problem: Problem, name: str, candidates: Sequence[tuple[str, Plan]], bound: int | None,
                           started: float, stopped_by: str | None = None, *,
                           minpeak_order: tuple[int, ...] | None = None, deadline: float | None = None,
                           estimate: float = 0.0,
                           results: Sequence[tuple[str, SpillResult]] | None = None) -> Plan:
    """``keep_best`` over ``candidates`` and the four baselines' plans
    (``stowage.solvers.baselines.baseline_results``, same skipping rule: ``deadline``,
    ``estimate``; a skipped baseline, or a min-peak order of their own that the wall clock cut,
    sets ``stopped_by = "time"``).  A baseline is assembled
    only when its simulation beats the best plan so far on ``plan_key``: the assembler keeps
    the engine's traffic and compute offsets (the off-chip offsets too, which the engine
    reserved), so a simulation's (traffic, peak address) is its plan's -- unless some buffer's
    home is the compute level, and then every baseline is assembled.  The result is the plan
    ``keep_best`` would return over all four assembled plans; on 10,000 operators this saves
    about one simulation's time per losing baseline (issue 14, on time).  ``results``: the
    baselines' simulations when the caller already ran them (``auto`` runs all four first,
    with no deadline, so that never worse than a baseline does not depend on the load)."""
    if results is None:
        results = baseline_results(problem, minpeak_order=minpeak_order, deadline=deadline, estimate=estimate)
    if len(results) < len(BASELINES):
        stopped_by = "time"
    if minpeak_order is None and any("minpeak" in who for who, _ in results) and minpeak_order_cut(problem):
        # The baselines' own min-peak order (memoised, possibly by an earlier call) was cut
        # by the wall clock: a candidate's order depends on the load.
        stopped_by = "time"
    lazy = not _has_compute_homes(problem)
    cands = list(candidates)
    best = min(plan_key(p) for _, p in cands)
    for who, res in results:
        if lazy and (res.noncompulsory, res.peak_address) >= best:
            continue
        try:
            plan = baseline_plan(problem, who, res)
        except CapacityError as exc:   # e.g. outputs that must stay in the compute level do not fit
            log.info("%s: %s gives no plan: %s", name, who, exc)
            continue
        cands.append((who, plan))
        best = min(best, plan_key(plan))
    return keep_best(problem, name, cands, bound, started, stopped_by)


@functools.cache
def warm_up_jit() -> None:
    """Load the exact packer's numba kernel from its disk cache before a search starts its
    clock (well under a second).  Without this the first packing of a process paid the load
    inside the heuristic's time budget.  On a cold cache (the first run after an install) the
    kernel is compiled by a background process instead, and this process packs with the Python
    search, node for node the same (``stowage.solvers.alloc.exact._jit_module``): compiling here
    took 10-15 s past the time limit.  Once per process."""
    solve_allocation([Interval(0, 0, 0, 1)], 1, 1.0)


__all__ = ["BASELINE_WALL_SHARE", "at_capacity", "baseline_deadline", "keep_best", "keep_best_of_baselines",
           "monotone_over", "plan_key", "warm_up_jit"]
