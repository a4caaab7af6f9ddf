"""From a model solution to a ``Plan``, claiming no more than the plan delivers.

The model prices every spill at the cheapest level that can ever hold the buffer
(``CostModel.store_level``).  The assembler places spills in the off-chip levels and, when
that level has no free range at the time, may put one at the next candidate level -- a plan
with more traffic than the model's objective.  So the status is decided from the plan that
was built: a proof of optimality in model terms holds for the plan only when the plan's
non-compulsory traffic is the model's.  A plan with *less* traffic than the model says is a
bug (the lowering lost a transfer) and raises.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from stowage.errors import SolverError
from stowage.plan import Plan
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.exact.joint_data import JointData, JointSolution, compute_placements_and_transfers, traffic_of
from stowage.solvers.problem import Problem

log = logging.getLogger(__name__)


def infeasible_message(problem: Problem, data: JointData) -> str:
    """Why the model has no solution, in the user's terms (what to change)."""
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


def lower_solution(problem: Problem, data: JointData, sol: JointSolution, solver_name: str, status: str,
                   bound: int | None, started: float, found_by: str, objective: int | None = None) -> Plan:
    """The plan of ``sol``, saying who found it (``found_by``).  ``status`` and ``bound`` are
    the model's verdict on ``sol``; an ``optimal`` becomes ``feasible`` when the assembled plan
    pays more traffic than the model counted (a spill placed at a farther level)."""
    placements, transfers = compute_placements_and_transfers(data, problem, sol)
    plan = assemble_plan(problem, sol.order, placements, transfers, solver_name, status, bound,
                         started, objective=objective)
    if data.mode != "min-peak":
        value, got = traffic_of(data, sol), plan.metrics.noncompulsory_bytes
        if got < value or (got > value and not _spill_moved(data, plan)):
            raise SolverError(f"{solver_name}: internal error: model traffic {value} != plan traffic {got}")
        if got > value and status == "optimal":
            log.info("%s: the plan pays %d, more than the model's %d (a spill went to a farther level): "
                     "feasible, not optimal", solver_name, got, value)
            status = "feasible"
    return replace(plan, solver=replace(plan.solver, status=status, found_by=found_by))


def _spill_moved(data: JointData, plan: Plan) -> bool:
    """Whether the assembler stored some spill elsewhere than the model's level: the only
    reason a lowered plan may pay more than the model counted."""
    store_dst = {mb.id: mb.store_dst for mb in data.buffers}
    return any(t.src == data.compute_level and store_dst.get(t.buffer) not in (None, t.dst)
               for t in plan.transfers)


__all__ = ["infeasible_message", "lower_solution"]
