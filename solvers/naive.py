"""The "no planning" reference: file order, every buffer at its own offset, no reuse.

It is the simplest correct plan (a test fixture and the baseline every planner must beat),
not a solver to be proud of.  It plans for an unbounded compute level and says so in the plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ir.graph import TensorKind
from ir.lifetimes import lifetimes
from planner.plan import Transfer
from solvers.assemble import ComputePlacement, align_up, assemble_plan, home_of
from solvers.problem import Problem
from solvers.registry import register


@dataclass(frozen=True)
class NaiveParams:
    """The reference planner has no options."""


@register("naive", NaiveParams, "file order, one offset per buffer, no reuse, unbounded capacity (reference)")
def naive(problem: Problem, params: NaiveParams) -> "Plan":  # noqa: F821
    started = time.perf_counter()
    graph, target = problem.graph, problem.target
    order = graph.file_order()
    lt = lifetimes(graph, order, problem.include_weights)
    align = target.compute.alignment
    offset = 0
    placements = []
    before: dict[int, list[Transfer]] = {}
    after: dict[int, list[Transfer]] = {}
    for bid in sorted(lt.first, key=lambda b: (lt.first[b], b)):
        b = graph.buffers[bid]
        first, last = lt.first[bid], lt.last[bid]
        if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            before.setdefault(first, []).append(
                Transfer(bid, home_of(graph, target, bid), target.compute_level, first, "before"))
        elif b.is_output:
            after.setdefault(last, []).append(
                Transfer(bid, target.compute_level, target.outputs_home, last, "after"))
        placements.append(ComputePlacement(bid, offset, first, last))
        offset = align_up(offset + b.bytes, align)
    transfers = [t for s in range(len(order)) for t in (*before.get(s, []), *after.get(s, []))]
    return assemble_plan(problem, order, placements, transfers, "naive", "reference", None, started,
                         plan_capacity=None)
