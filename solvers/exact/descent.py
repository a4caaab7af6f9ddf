"""``auto``'s window descent: exact's phase "window descent" (``AutoPipeline.improve``) run
on ``auto``'s own candidates when its cheap proofs did not prove them optimal (issue 14).

Why: ``auto`` runs only exact's cheap proofs (bounds and the gap model on quick orders) and
the heuristic; on NAS cells and the Transformer (no weights, M_R) the gap between the two was
exact's descent over ``window_orders`` of the incumbent's order -- on NASNet-A 517,440 B
(``auto``: the gap model on the min-peak order) against 310,464 B (``exact``, by the descent).
The descent is cheap where it pays (each neighbour is one gap-model solve, ``DESCENT_EVALS``
of them at most) and is bounded by work: its evaluation count and CP-SAT's deterministic time
(``AUTO_WORK_BUDGETS["improve"]`` of the cheap proofs' capped limit), so the plan it returns
does not depend on the machine's load.  Only the wall clock's safety stop can cut it; then
``hit_wall`` says so and the caller's plan says ``solver.stopped_by = "time"``.

Never worse: the descent starts from the best candidate (read back as a model solution) and
returns a plan only when it found one with strictly less traffic; the caller keeps every
previous candidate beside it (``portfolio.keep_best``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from stowage.errors import StowageError
from stowage.plan import Plan
from stowage.solvers.exact.auto import AutoPipeline
from stowage.solvers.exact.joint_data import solution_from_plan
from stowage.solvers.exact.lower import lower_solution
from stowage.solvers.exact.params import ExactParams
from stowage.solvers.exact.warm_start import plan_order
from stowage.solvers.problem import Problem

log = logging.getLogger(__name__)

#: Gap-model evaluations of ``auto``'s descent (exact's own: ``IMPROVE_EVALS``, 200).  The
#: spills' windows come first, so the improving neighbours come early (NASNet-A at M_R: the
#: 28th, at M_H the 14th; the Transformer at M_R the 94th, at M_H the 62nd), and the scan after
#: the last improvement only confirms it; a smaller count ends by work, not by the wall clock,
#: inside ``auto``'s 10 s passes (about 50 ms per evaluation on 600 operators, idle).
DESCENT_EVALS = 100

#: The descent needs at least this much wall time before its deadline to start (the model
#: data's build, one gap-model solve and a packing); with less it is skipped and ``hit_wall``
#: is set (it might have improved the plan on a quieter machine).
DESCENT_MIN_SECONDS = 0.3


@dataclass(frozen=True)
class Descent:
    """The result of ``window_descent``: a plan with less traffic than every start (``None``
    when the descent found none), the gap-model evaluations it spent, and whether the wall
    clock cut or skipped it (the result may then depend on the machine's load)."""

    plan: Plan | None
    evaluations: int
    hit_wall: bool


def window_descent(problem: Problem, starts: Sequence[tuple[str, Plan]], bound: int, time_limit: float,
                   wall_deadline: float, solver_name: str = "auto", seed: int = 0) -> Descent:
    """Exact's window descent from the best of ``starts`` (``(found_by, plan)`` pairs of
    ``problem``; plans the model cannot read back are skipped), with exact's work budgets
    for ``time_limit`` seconds, one worker and ``seed``, stopped at the latest by
    ``wall_deadline`` (``time.perf_counter`` seconds).  ``bound``: a proven lower bound (the
    descent stops when it reaches it).  The improved plan is named ``solver_name`` with
    ``found_by = "exact: window descent"`` and ``bound`` as its lower bound."""
    started = time.perf_counter()
    if wall_deadline - started < DESCENT_MIN_SECONDS:
        return Descent(None, 0, True)
    try:
        pipe = AutoPipeline(problem, ExactParams(), started, time_limit, 1, seed)
        # The caller's deadline is the wall clock's only say: ``time_limit`` sets the work budgets.
        pipe.final_deadline = pipe.deadline = wall_deadline
        pipe.raise_bound(bound, "the caller's bound")
        for who, plan in starts:
            order = plan_order(problem, plan)
            if order is not None:
                pipe.offer(solution_from_plan(pipe.data, plan, order, check=False), who)
        if pipe.best is None or pipe.proven():
            return Descent(None, 0, False)
        before = pipe.best_value
        pipe.improve(DESCENT_EVALS)
        evals = pipe.descent_evals
        if pipe.best_value is None or before is None or pipe.best_value >= before:
            return Descent(None, evals, pipe.hit_wall)
        status = "optimal" if pipe.proven() else "feasible"
        plan = lower_solution(problem, pipe.data, pipe.best, solver_name, status, pipe.lb, started,
                              pipe.best_source)
    except StowageError as exc:     # a model the descent cannot read: the candidates stand
        log.info("%s: window descent gave nothing: %s", solver_name, exc)
        return Descent(None, 0, False)
    log.info("%s: window descent %d -> %d B in %d evaluations", solver_name, before,
             plan.metrics.noncompulsory_bytes, evals)
    return Descent(plan, evals, pipe.hit_wall)


__all__ = ["DESCENT_EVALS", "DESCENT_MIN_SECONDS", "Descent", "window_descent"]
