"""``minpeak``: the no-spill planner -- minimum-peak order + offline offset packing.

It is the right plan whenever the capacity is at least M_P (plus any fragmentation the
allocator leaves): zero non-compulsory traffic, the smallest scratchpad we can find.  Below
that it refuses with a ``CapacityError`` that gives the peak it needs, instead of spilling
(the spilling planners are ``heuristic`` and the baselines).

Transfers follow ``solvers.naive``: inputs (and, in the with-weights setting, weights) are
loaded from home 'before' their first use; outputs are stored home 'after' their last step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from stowage.errors import CapacityError, SolverError
from stowage.ir.lifetimes import lifetimes
from stowage.plan import Plan
from stowage.solvers.alloc.greedy import allocate_offsets, peak_address
from stowage.solvers.alloc.interval import Interval
from stowage.solvers.analysis.schedule import min_peak_order_ex
from stowage.solvers.assemble import assemble_plan, no_spill_residency
from stowage.solvers.problem import Problem
from stowage.solvers.registry import register

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinPeakParams:
    """Options of the ``minpeak`` planner.

    ``order_share``: fraction of the problem's time limit given to the ordering search (the
    rest goes to offset packing).  ``order``: ``minpeak`` (the memory-aware order) or
    ``file`` (keep the model's order, only pack offsets).
    """

    order_share: float = 0.6
    order: str = "minpeak"


@register("minpeak", MinPeakParams,
          "minimum-peak order + offline offset packing, no spills (fails below the peak it needs)")
def minpeak(problem: Problem, params: MinPeakParams) -> Plan:
    started = time.perf_counter()
    if params.order not in ("minpeak", "file"):
        raise SolverError(f"minpeak: order must be 'minpeak' or 'file', got {params.order!r}")
    if not 0.0 < params.order_share < 1.0:
        raise SolverError(f"minpeak: order_share must be in (0, 1), got {params.order_share}")
    graph, target = problem.graph, problem.target
    weights_in_compute_level = problem.weights_in_compute_level
    cap = problem.capacity
    if params.order == "file":
        order, proven = graph.file_order(), False
    else:
        order, proven = min_peak_order_ex(graph, weights_in_compute_level, problem.time_limit * params.order_share,
                                          problem.seed)
    lt = lifetimes(graph, order, weights_in_compute_level)
    ivs = [Interval(b, lt.first[b], lt.last[b], graph.buffers[b].bytes) for b in sorted(lt.first)]
    remaining = max(0.05, problem.time_limit - (time.perf_counter() - started))
    offsets = allocate_offsets(ivs, target.compute.alignment, None, remaining, problem.seed)
    assert offsets is not None
    peak = peak_address(offsets, ivs)
    if cap is not None and peak > cap:
        raise CapacityError(
            f"minpeak needs {peak} bytes in '{target.compute_level}' without spilling "
            f"(peak live {lt.peak}), capacity is {cap}; raise --capacity to at least {peak} "
            "or use a spilling solver (heuristic)")

    placements, transfers = no_spill_residency(graph, target, lt, offsets)
    # The objective (non-compulsory traffic) is zero, its lower bound: optimal.  Whether the
    # *peak* is minimal too (proven order, packing at the peak-live bound) is logged.
    log.info("minpeak: peak address %d, peak live %d, order proven minimal: %s", peak, lt.peak, proven)
    return assemble_plan(problem, order, placements, transfers, "minpeak", "optimal", 0, started)


__all__ = ["MinPeakParams", "minpeak"]
