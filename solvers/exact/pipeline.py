"""The exact solvers: ``exact`` (CP-SAT) and ``exact-mip`` (the same model through PuLP).

One-shot modes (``joint``, ``fixed-schedule``, ``min-peak``): derive the instance
(``joint_data``: fails early with the capacity an operator needs), collect warm starts
(``warm_start``: the registered heuristics' plans, our greedy on good orders), pick the order
for ``fixed-schedule``, build and solve the model, and lower the better of the model's answer
and the best warm start to a ``Plan`` with the proven bound (``finish``).  Mode ``auto``, the
default of ``exact``, is the bound-and-pack pipeline of ``auto``.

Statuses are about the primary objective (non-compulsory byte-hops; the peak in ``min-peak``
mode).  ``joint`` proves global optimality.  ``fixed-schedule`` proves optimality for its
order only, so its plan says ``feasible`` with no bound unless the traffic is 0 (which
nothing can beat).  When the solver finds nothing better than the warm start within the time
limit, the warm start is returned with the solver's proven bound, and ``found_by`` names the
planner that found it.
"""

from __future__ import annotations

import time

# OR-Tools must be loaded before anything imports pulp (pulp imports highspy when it can,
# and OR-Tools cannot load after highspy: both ship a libhighs).
from ortools.sat.python import cp_model  # noqa: F401  (import order matters)

from stowage.errors import InfeasibleError, SolverError
from stowage.plan import Plan
from stowage.solvers.exact.auto import solve_auto
from stowage.solvers.exact.joint_data import JointData, SolveResult, joint_data, score_of
from stowage.solvers.exact.joint_model import JointCpModel
from stowage.solvers.exact.lower import infeasible_message, lower_solution
from stowage.solvers.exact.orders import best_orders
from stowage.solvers.exact.params import ExactMipParams, ExactParams, resolve_mode
from stowage.solvers.exact.warm_start import WarmStart, warm_starts
from stowage.solvers.problem import Problem, default_workers
from stowage.solvers.registry import register


def prepare(problem: Problem, mode: str, max_segments: int | None,
            warm_start: bool, budget: float | None = None) -> tuple[JointData, list[WarmStart]]:
    """Instance + warm starts.  Fixed-schedule takes the order of the best warm start."""
    mode = resolve_mode(problem, mode)
    if mode == "fixed-schedule":
        free = joint_data(problem, "joint", None, max_segments)
        starts = warm_starts(problem, free, warm_start, budget)
        order = starts[0].solution.order if starts else best_orders(problem, budget)[0]
        data = joint_data(problem, mode, order, max_segments)
        return data, [s for s in starts if s.solution.order == order]
    data = joint_data(problem, mode, None, max_segments)
    return data, warm_starts(problem, data, warm_start, budget)


def finish(problem: Problem, data: JointData, result: SolveResult, starts: list[WarmStart],
           solver_name: str, started: float) -> Plan:
    """Choose the better of the solver's answer and the best warm start; lower it to a plan
    that names who found it."""
    if result.status == "infeasible":
        raise InfeasibleError(infeasible_message(problem, data))
    sol, status, bound = result.solution, result.status, result.bound
    found_by = f"{solver_name}: {data.mode} model"
    if starts and (sol is None or score_of(data, starts[0].solution) < score_of(data, sol)):
        sol, status = starts[0].solution, "feasible"
    if starts and sol == starts[0].solution:
        found_by = starts[0].source        # the model returned its hint unchanged
    if sol is None:
        raise SolverError(f"{solver_name}: no plan found within {problem.time_limit:g}s "
                          "(raise the time limit or use mode fixed-schedule)")
    value = score_of(data, sol)[0]
    if bound is not None and value <= bound:
        status = "optimal"
    if data.mode == "fixed-schedule" or not data.exact:
        # Proofs hold for the restricted model only; traffic 0 is optimal regardless.
        if value == 0 and data.mode != "min-peak":
            status, bound = "optimal", 0
        else:
            status, bound = "feasible", None
    objective = value if data.mode == "min-peak" else None
    return lower_solution(problem, data, sol, solver_name, status, bound, started, found_by, objective)


# -- registered solvers ---------------------------------------------------------------------
@register("exact", ExactParams, "CP-SAT joint order + spill + offsets model; proven optimal or gap "
                                 "(modes: joint, fixed-schedule, min-peak)")
def exact(problem: Problem, params: ExactParams) -> Plan:
    started = time.perf_counter()
    if params.partition not in ("model", "heuristic"):
        # Read by tiled plans only (``stowage.solvers.tiling.plan``), checked everywhere.
        raise SolverError(f"exact: unknown partition '{params.partition}'; choose model or heuristic")
    time_limit = problem.time_limit if params.time_limit is None else params.time_limit
    workers = params.workers or problem.workers or default_workers()
    seed = problem.seed if params.seed is None else params.seed
    if params.objective == "latency":
        from stowage.solvers.exact.latency_model import solve_latency

        return solve_latency(problem, params, started, time_limit, workers, seed, exact)
    if params.mode == "auto":
        return solve_auto(problem, params, started, time_limit, workers, seed)
    budget = min(5.0, 0.25 * time_limit)
    data, starts = prepare(problem, params.mode, params.max_segments, params.warm_start, budget)
    model = JointCpModel(data)
    if starts:
        model.add_hint(starts[0].solution)
    reserve = min(2.0, max(0.1, 0.1 * time_limit))
    remaining = max(0.05, time_limit - reserve - (time.perf_counter() - started))
    result = model.solve(remaining, workers, seed, params.deterministic, label=f"exact[{data.mode}]",
                         on_progress=problem.on_progress)
    return finish(problem, data, result, starts, "exact", started)


@register("exact-mip", ExactMipParams, "the exact joint model as a MIP through PuLP (CBC, or HiGHS in a subprocess)")
def exact_mip(problem: Problem, params: ExactMipParams) -> Plan:
    # Imported here: pulp must load after OR-Tools (above), and only when this solver runs.
    from stowage.solvers.exact.joint_mip import solve_mip

    started = time.perf_counter()
    time_limit = problem.time_limit if params.time_limit is None else params.time_limit
    data, starts = prepare(problem, params.mode, params.max_segments, params.warm_start)
    remaining = max(0.5, time_limit - (time.perf_counter() - started))
    result = solve_mip(data, params.backend, remaining)
    return finish(problem, data, result, starts, "exact-mip", started)


__all__ = ["exact", "exact_mip", "finish", "prepare"]
