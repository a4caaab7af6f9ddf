"""The "no planning" reference: file order, every buffer at its own offset, no reuse.

It is the simplest correct plan (a test fixture and the baseline every planner must beat),
not a solver to be proud of.  It plans for an unbounded compute level and says so in the plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from stowage.ir.lifetimes import lifetimes
from stowage.plan import Plan
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.assemble import assemble_plan, no_spill_residency
from stowage.solvers.problem import Problem
from stowage.solvers.registry import register


@dataclass(frozen=True)
class NaiveParams:
    """The reference planner has no options."""


@register("naive", NaiveParams, "file order, one offset per buffer, no reuse, unbounded capacity (reference)")
def naive(problem: Problem, params: NaiveParams) -> Plan:
    started = time.perf_counter()
    graph, target = problem.graph, problem.target
    order = graph.file_order()
    lt = lifetimes(graph, order, problem.weights_in_compute_level)
    align = target.compute.alignment
    # No reuse: buffers side by side in order of first use, each at its own aligned offset.
    offsets: dict[int, int] = {}
    offset = 0
    for bid in sorted(lt.first, key=lambda b: (lt.first[b], b)):
        offsets[bid] = offset
        offset = align_up(offset + graph.buffers[bid].bytes, align)
    placements, transfers = no_spill_residency(graph, target, lt, offsets)
    return assemble_plan(problem, order, placements, transfers, "naive", "reference", None, started,
                         plan_capacity=None)


__all__ = ["NaiveParams", "naive"]
