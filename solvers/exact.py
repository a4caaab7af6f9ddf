"""The exact solvers: ``exact`` (CP-SAT) and ``exact-mip`` (the same model through PuLP).

Pipeline: derive the instance (``joint_data``: fails early with the capacity an operator
needs), collect warm starts (our greedy on good orders, and the plans of the registered
heuristic solvers when they exist), pick the order for ``fixed-schedule``, build and solve
the model, lower the best solution to a ``Plan`` with the proven bound.

Statuses are about the primary objective (non-compulsory byte-hops; the peak in
``min-peak`` mode).  ``joint`` proves global optimality.  ``fixed-schedule`` proves
optimality for its order only, so its plan says ``feasible`` with no bound unless the traffic
is 0 (which nothing can beat).  When the solver finds nothing better than the warm start
within the time limit, the warm start is returned with the solver's proven bound.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, replace

# OR-Tools must be loaded before anything imports pulp (pulp imports highspy when it can,
# and OR-Tools cannot load after highspy: both ship a libhighs).
from ortools.sat.python import cp_model  # noqa: F401  (import order matters)

from ir.errors import InfeasibleError, SolverError
from ir.graph import OpIndex
from planner.plan import Plan
from solvers.assemble import assemble_plan
from solvers.joint_data import (
    JointData, JointSolution, SolveResult, check_solution, compute_placements_and_transfers, greedy_solution,
    joint_data, peak_of, solution_from_plan, traffic_of,
)
from solvers.joint_model import JointCpModel
from solvers.problem import Problem, default_workers
from solvers.registry import available, register

log = logging.getLogger(__name__)

#: Above this many computing operators ``mode="auto"`` uses a fixed schedule: the
#: order-free model grows quadratically (positions x coverage) and stops proving.
AUTO_JOINT_MAX_OPS = 40

#: Registered solvers whose plans are tried as warm starts, when they exist.
WARM_START_SOLVERS = ("heuristic", "minpeak")


@dataclass(frozen=True)
class ExactParams:
    mode: str = "auto"
    """joint | fixed-schedule | min-peak | auto (joint up to 40 operators, else fixed-schedule)"""
    time_limit: float | None = None
    """seconds; default: the problem's time limit"""
    workers: int | None = None
    """CP-SAT workers; default: the machine's cores"""
    max_segments: int | None = None
    """cap on residency segments per buffer (default: exact, as many as the buffer's users)"""
    warm_start: bool = True
    """hint the solver with the best heuristic plan available"""
    seed: int | None = None
    """random seed; default: the problem's seed"""
    deterministic: bool = True
    """same answer for the same seed and workers (CP-SAT interleaved search)"""


@dataclass(frozen=True)
class ExactMipParams:
    mode: str = "auto"
    """joint | fixed-schedule | min-peak | auto (joint up to 40 operators, else fixed-schedule)"""
    backend: str = "cbc"
    """cbc (bundled with PuLP) | highs (runs in a subprocess: its libhighs clashes with OR-Tools')"""
    time_limit: float | None = None
    """seconds; default: the problem's time limit"""
    max_segments: int | None = None
    """cap on residency segments per buffer (default: exact)"""
    warm_start: bool = True
    """use the best heuristic plan as the fallback answer and as the fixed order"""


# -- warm starts -----------------------------------------------------------------------------
def _best_orders(problem: Problem) -> list[tuple[OpIndex, ...]]:
    """Good orders for greedy warm starts: the min-peak order when its module exists, and
    the file order."""
    orders: list[tuple[OpIndex, ...]] = []
    try:
        schedule = importlib.import_module("solvers.schedule")
        orders.append(tuple(schedule.min_peak_order(problem.graph, problem.include_weights,
                                                    min(2.0, problem.time_limit), problem.seed)))
    except (ImportError, AttributeError) as exc:  # module of another engineer not there yet
        log.debug("no min-peak order available: %s", exc)
    file_order = problem.graph.file_order()
    if file_order not in orders:
        orders.append(file_order)
    return orders


def _heuristic_plans(problem: Problem) -> list[Plan]:
    plans = []
    specs = available()
    short = replace(problem, time_limit=min(problem.time_limit / 4, 5.0))
    for name in WARM_START_SOLVERS:
        if name not in specs:
            continue
        try:
            plans.append(specs[name].fn(short, specs[name].params_cls()))
        except Exception as exc:  # a warm start is optional; never let it sink the solve
            log.info("warm start from %s failed: %s", name, exc)
    return plans


def _warm_starts(problem: Problem, data: JointData, use_heuristics: bool) -> list[JointSolution]:
    """Feasible solutions of ``data`` (vetted by ``check_solution``), best first."""
    cands: list[JointSolution] = []
    orders = [data.order] if data.order is not None else _best_orders(problem)
    for order in orders:
        sol = greedy_solution(data, order)
        if sol is not None:
            cands.append(sol)
    if use_heuristics:
        for plan in _heuristic_plans(problem):
            order = _plan_order(problem, plan)
            if order is None or (data.order is not None and order != data.order):
                continue
            sol = solution_from_plan(data, plan, order)
            if sol is not None:
                cands.append(sol)
    cands = [c for c in cands if check_solution(data, c) is None]
    return sorted(cands, key=lambda s: _score(data, s))


def _plan_order(problem: Problem, plan: Plan) -> tuple[OpIndex, ...] | None:
    index = {}
    for op in problem.graph.computing_ops:
        index.setdefault(op.name, []).append(op.index)
    try:
        return tuple(index[st.op].pop(0) for st in plan.steps)
    except (KeyError, IndexError):
        return None


def _score(data: JointData, sol: JointSolution) -> tuple[int, int]:
    if data.mode == "min-peak":
        return (peak_of(data, sol), 0)
    return (traffic_of(data, sol), peak_of(data, sol))


def _resolve_mode(problem: Problem, mode: str) -> str:
    if mode == "auto":
        return "joint" if len(problem.graph.computing_ops) <= AUTO_JOINT_MAX_OPS else "fixed-schedule"
    if mode not in ("joint", "fixed-schedule", "min-peak"):
        raise SolverError(f"exact: unknown mode '{mode}'; choose joint, fixed-schedule, min-peak or auto")
    return mode


def prepare(problem: Problem, mode: str, max_segments: int | None,
            warm_start: bool) -> tuple[JointData, list[JointSolution]]:
    """Instance + warm starts.  Fixed-schedule takes the order of the best warm start."""
    mode = _resolve_mode(problem, mode)
    if mode == "fixed-schedule":
        free = joint_data(problem, "joint", None, max_segments)
        starts = _warm_starts(problem, free, warm_start)
        order = starts[0].order if starts else _best_orders(problem)[0]
        data = joint_data(problem, mode, order, max_segments)
        return data, [s for s in starts if s.order == order]
    data = joint_data(problem, mode, None, max_segments)
    return data, _warm_starts(problem, data, warm_start)


# -- results to plans -------------------------------------------------------------------------
def _infeasible_message(problem: Problem, data: JointData) -> str:
    cap = problem.capacity
    where = f"{cap} bytes of {data.compute_level}"
    if data.mode == "min-peak":
        return (f"no spill-free plan fits in {where}: every operator order needs a higher peak "
                "(the minimum, M_P, is above the capacity); allow spilling (mode joint) or add capacity")
    if not data.exact:
        return (f"no plan fits in {where} with at most the given max_segments residency segments per "
                "buffer; raise max_segments (unset = exact) or add capacity")
    if data.order is not None:
        return f"no plan fits in {where} with the fixed operator order"
    return f"no plan fits in {where} (proven by the solver)"


def finish(problem: Problem, data: JointData, result: SolveResult, starts: list[JointSolution],
           solver_name: str, started: float) -> Plan:
    """Choose the better of the solver's answer and the warm start; lower it to a plan."""
    if result.status == "infeasible":
        raise InfeasibleError(_infeasible_message(problem, data))
    sol, status, bound = result.solution, result.status, result.bound
    if starts and (sol is None or _score(data, starts[0]) < _score(data, sol)):
        sol, status = starts[0], "feasible"
    if sol is None:
        raise SolverError(f"{solver_name}: no plan found within {problem.time_limit:g}s "
                          "(raise the time limit or use mode fixed-schedule)")
    value = _score(data, sol)[0]
    if bound is not None and value <= bound:
        status = "optimal"
    if data.mode == "fixed-schedule" or not data.exact:
        # Proofs hold for the restricted model only; traffic 0 is optimal regardless.
        if value == 0 and data.mode != "min-peak":
            status, bound = "optimal", 0
        else:
            status, bound = "feasible", None
    placements, transfers = compute_placements_and_transfers(data, problem, sol)
    objective = value if data.mode == "min-peak" else None
    plan = assemble_plan(problem, sol.order, placements, transfers, solver_name, status, bound,
                         started, objective=objective)
    if data.mode != "min-peak" and plan.metrics.noncompulsory_bytes != value:
        raise SolverError(f"{solver_name}: internal error: model traffic {value} != plan traffic "
                          f"{plan.metrics.noncompulsory_bytes}")
    return plan


# -- registered solvers ---------------------------------------------------------------------
@register("exact", ExactParams, "CP-SAT joint order + spill + offsets model; proven optimal or gap (modes: joint, fixed-schedule, min-peak)")
def exact(problem: Problem, params: ExactParams) -> Plan:
    started = time.perf_counter()
    time_limit = problem.time_limit if params.time_limit is None else params.time_limit
    workers = params.workers or problem.workers or default_workers()
    seed = problem.seed if params.seed is None else params.seed
    data, starts = prepare(problem, params.mode, params.max_segments, params.warm_start)
    model = JointCpModel(data)
    if starts:
        model.add_hint(starts[0])
    remaining = max(0.05, time_limit - (time.perf_counter() - started))
    result = model.solve(remaining, workers, seed, params.deterministic, label=f"exact[{data.mode}]")
    return finish(problem, data, result, starts, "exact", started)


@register("exact-mip", ExactMipParams, "the exact joint model as a MIP through PuLP (CBC, or HiGHS in a subprocess)")
def exact_mip(problem: Problem, params: ExactMipParams) -> Plan:
    from solvers.joint_mip import solve_mip

    started = time.perf_counter()
    time_limit = problem.time_limit if params.time_limit is None else params.time_limit
    data, starts = prepare(problem, params.mode, params.max_segments, params.warm_start)
    remaining = max(0.5, time_limit - (time.perf_counter() - started))
    result = solve_mip(data, params.backend, remaining)
    return finish(problem, data, result, starts, "exact-mip", started)
