"""``exact-alloc``: the model's own operator order, no spills, offsets with a proven minimum peak.

Pure allocation applied to a model: the order is fixed to the file order, so lifetimes are
fixed (``ir.lifetimes``) and only offsets are decided, by the exact branch and bound of
``solvers.alloc.exact`` in minimum-peak mode.  Transfers follow
``solvers.naive``: inputs (and, with weights, weights) are loaded 'before' their first use,
outputs are stored 'after' their last step.

Offsets must be multiples of the compute level's alignment, so sizes are counted in
alignment units (an aligned packing of the real sizes is exactly a packing of the rounded
sizes); the objective is therefore the *aligned* peak address, ``units * alignment``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from stowage.errors import CapacityError, SolverError
from stowage.ir.lifetimes import lifetimes
from stowage.plan import Plan
from stowage.solvers.alloc.exact import solve_allocation
from stowage.solvers.alloc.interval import Interval
from stowage.solvers.assemble import assemble_plan, no_spill_residency
from stowage.solvers.problem import Problem
from stowage.solvers.registry import register

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExactAllocParams:
    """Options of ``exact-alloc``.

    ``time_limit``: seconds for the offset search (``None`` = the problem's time limit).
    When it runs out, the best packing found is returned with status ``feasible`` and the
    proven lower bound.
    """

    time_limit: float | None = None


@register("exact-alloc", ExactAllocParams,
          "file order, no spill: offsets with a proven minimum (aligned) peak, MiniMalloc-style search")
def exact_alloc(problem: Problem, params: ExactAllocParams) -> Plan:
    started = time.perf_counter()
    limit = problem.time_limit if params.time_limit is None else params.time_limit
    if limit <= 0:
        raise SolverError(f"exact-alloc: time_limit must be positive, got {limit}")
    graph, target = problem.graph, problem.target
    align = max(1, target.compute.alignment)
    cap = problem.capacity
    order = graph.file_order()
    lt = lifetimes(graph, order, problem.weights_in_compute_level)
    bids = sorted(lt.first)
    units = [Interval(b, lt.first[b], lt.last[b], -(-graph.buffers[b].bytes // align)) for b in bids]
    res = solve_allocation(units, None, limit, problem.seed, problem.workers, minimize_peak=True)
    if res.offsets is None:  # minimum-peak mode always finds a packing (greedy first dive)
        raise SolverError(f"exact-alloc: no packing found ({res.reason})")
    offsets = {b: o * align for b, o in zip(bids, res.offsets)}
    peak = max((offsets[b] + graph.buffers[b].bytes for b in bids), default=0)
    aligned_peak = (res.peak or 0) * align
    bound = res.lower_bound * align
    if cap is not None and peak > cap:
        proof = "proven minimum" if res.status == "optimal" else f"best found; proven >= {bound}"
        raise CapacityError(
            f"exact-alloc: the file order needs {aligned_peak} bytes in '{target.compute_level}' "
            f"without spilling ({proof}; peak live {lt.peak}), capacity is {cap}; raise --capacity "
            "or use a solver that reorders or spills")

    placements, transfers = no_spill_residency(graph, target, lt, offsets)
    log.info("exact-alloc: aligned peak %d (bound %d, %s), peak live %d, %d nodes in %.2fs",
             aligned_peak, bound, res.status, lt.peak, res.nodes, res.seconds)
    return assemble_plan(problem, order, placements, transfers, "exact-alloc", res.status, bound,
                         started, objective=aligned_peak)


__all__ = ["ExactAllocParams", "exact_alloc"]
