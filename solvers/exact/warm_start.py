"""Warm starts: feasible model solutions from other planners' plans and from a greedy.

A hint makes CP-SAT start where the heuristics already are, and a vetted warm start is a
fallback answer when the solver finds nothing better in time.  Every start carries the name
of whoever found it (``WarmStart.source``), so that a plan built from it says so
(``SolverInfo.found_by``) instead of passing as the model's own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from stowage.ir.graph import OpIndex
from stowage.plan import Plan
from stowage.solvers.exact.joint_data import (
    JointData,
    JointSolution,
    check_solution,
    greedy_solution,
    score_of,
    solution_from_plan,
    traffic_of,
)
from stowage.solvers.exact.orders import best_orders
from stowage.solvers.problem import Problem
from stowage.solvers.registry import available

log = logging.getLogger(__name__)

#: Registered solvers whose plans are tried as warm starts, when they exist.
WARM_START_SOLVERS = ("heuristic", "minpeak")


@dataclass(frozen=True)
class WarmStart:
    """A vetted solution and who found it (a registered solver's name, or ``exact: greedy``)."""

    solution: JointSolution
    source: str


def plan_order(problem: Problem, plan: Plan) -> tuple[OpIndex, ...] | None:
    """The operator indices of ``plan``'s steps (the plan names operators, it does not number
    them): the first unused operator of each name.  None when the plan does not fit the graph."""
    index: dict[str, list[OpIndex]] = {}
    for op in problem.graph.computing_ops:
        index.setdefault(op.name, []).append(op.index)
    try:
        return tuple(index[st.op].pop(0) for st in plan.steps)
    except (KeyError, IndexError):
        return None


def heuristic_plans(problem: Problem, budget: float | None = None,
                    names: Sequence[str] = WARM_START_SOLVERS) -> list[tuple[str, Plan]]:
    """(name, plan) of the registered heuristic planners, each run with ``budget`` seconds as
    its time limit (default: a quarter of the time limit, at most 5 s).  The heuristics scale
    their work with their time limit (scheduler beam widths) and stop on work budgets
    (local-search iterations), so each gets the same fixed limit -- not the time left -- and
    returns the same plan on a loaded machine as long as it ends by work."""
    plans: list[tuple[str, Plan]] = []
    specs = available()
    budget = min(problem.time_limit / 4, 5.0) if budget is None else budget
    for name in names:
        if name not in specs or budget <= 0.02:
            continue
        if name == "minpeak" and problem.capacity is not None and plans and \
                plans[0][1].metrics.noncompulsory_bytes == 0:
            continue  # nothing to gain over a spill-free plan
        short = replace(problem, time_limit=budget)
        try:
            plans.append((name, specs[name].fn(short, specs[name].params_cls())))
        except Exception as exc:  # noqa: BLE001  (a warm start is optional; never let it sink the solve)
            log.info("warm start from %s failed: %s", name, exc)
    return plans


def warm_starts(problem: Problem, data: JointData, use_heuristics: bool, budget: float | None = None,
                names: Sequence[str] = WARM_START_SOLVERS) -> list[WarmStart]:
    """Feasible solutions of ``data`` (vetted by ``check_solution``), best first, found from
    about ``budget`` seconds of work (default: a quarter of the time limit, at most 5 s; the
    heuristics get 70% of it, the scheduler for the greedy orders 30%).  The greedy runs only
    when no heuristic plan reads back as a spill-free solution."""
    budget = min(problem.time_limit / 4, 5.0) if budget is None else budget
    cands: list[WarmStart] = []
    if use_heuristics:
        for name, plan in heuristic_plans(problem, 0.7 * budget, names):
            order = plan_order(problem, plan)
            if order is None or (data.order is not None and order != data.order):
                continue
            sol = solution_from_plan(data, plan, order)
            if sol is not None:
                cands.append(WarmStart(sol, name))
    if not cands or traffic_of(data, min(cands, key=lambda c: score_of(data, c.solution)).solution) > 0:
        orders = [data.order] if data.order is not None else best_orders(problem, 0.3 * budget, data.pred_map())
        for order in orders:
            sol = greedy_solution(data, order)
            if sol is not None:
                cands.append(WarmStart(sol, "exact: greedy"))
    cands = [c for c in cands if check_solution(data, c.solution) is None]
    return sorted(cands, key=lambda c: score_of(data, c.solution))


__all__ = ["WARM_START_SOLVERS", "WarmStart", "heuristic_plans", "plan_order", "warm_starts"]
