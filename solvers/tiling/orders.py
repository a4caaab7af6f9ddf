"""Other operator orders for the cascade search below M_R (``auto`` and ``heuristic``).

The partition search (``stowage.solvers.tiling.partition``) cuts one order into cascades, and a
cascade is a run of that order.  The file order is what the exporter wrote: a detector converted
from Paddle or TensorFlow lists the two paths of a branch breadth-first (both first convs, then
both second convs), so no run of it holds one path, and a tensor a far reader needs stays a
bystander of every cascade between.  Two more orders are offered, each searched on its own
``Partitioner`` with its own work budget, and ``plan_tiled`` keeps the plan moving the fewest
bytes (the file order's candidates come first and win ties, so the result is never worse):

- ``min-peak``: the min-peak schedule (``stowage.solvers.analysis.schedule``, work budgets only,
  no wall-clock stop, so it does not depend on load), which runs a short side branch early
  (LR-ASPP's low-level classifier) and so holds fewer bystanders;
- ``branch``: a depth-first order (``branch_order``) that follows each path to its end before
  the next starts, so the two paths of a residual branch and their join are one run, which a
  cascade may span: its stripe walk then interleaves the paths stripe by stripe.

A run of another order is a cascade only where the macro graph stays in topological file order
(``Partitioner.macro_safe``).
"""

from __future__ import annotations

import heapq
import logging
import time

from stowage.errors import CapacityError, SolverError
from stowage.ir.graph import Graph, OpIndex
from stowage.solvers.cache import graph_cached
from stowage.solvers.problem import Problem
from stowage.solvers.tiling import partition
from stowage.solvers.tiling.partition import Partitioner, Segment

log = logging.getLogger(__name__)

#: The orders tried besides the file order, in this sequence (``HeuristicParams.reorder``).
ORDERS = ("min-peak", "branch")
#: Work budget of the min-peak scheduler for the ``min-peak`` order (its ``time_limit``
#: argument, which sets beam widths and local-search moves; no wall-clock stop), as exact's
#: (``stowage.solvers.exact.tiled_search.ORDER_BUDGET``).
ORDER_BUDGET = 2.0
#: Share of the time limit (from ``plan_tiled``'s start) by which the other orders' searches must
#: end (the wall-clock safety net: the work budgets normally end them first); the rest is for the
#: macro solves.  A search the clock cuts sets ``solver.stopped_by = "time"``.
SEARCH_SHARE = 0.8


def branch_order(graph: Graph) -> tuple[OpIndex, ...]:
    """A depth-first topological order: among the steps ready to run, the one whose latest
    operand was made last, ties in file order.  A path is followed until its next step waits
    for another path (a join), then the newest fork's next path runs, so each branch's paths
    and its join are consecutive unless a path also needs a step from outside the branch."""
    deps = graph.op_dependencies()
    file = graph.file_order()
    pos = {op: p for p, op in enumerate(file)}
    succs: dict[OpIndex, list[OpIndex]] = {op: [] for op in file}
    waiting = {op: len(deps[op]) for op in file}
    for op in file:
        for q in deps[op]:
            succs[q].append(op)
    when: dict[OpIndex, int] = {}
    ready = [(1, pos[op], op) for op in file if not waiting[op]]
    heapq.heapify(ready)
    out: list[OpIndex] = []
    while ready:
        _newest, _p, op = heapq.heappop(ready)
        when[op] = len(out)
        out.append(op)
        for s in succs[op]:
            waiting[s] -= 1
            if not waiting[s]:
                heapq.heappush(ready, (-max(when[q] for q in deps[s]), pos[s], s))
    assert len(out) == len(file), "the dependency graph has a cycle"
    return tuple(out)


def _min_peak(graph: Graph, weights: bool, seed: int) -> tuple[OpIndex, ...]:
    from stowage.solvers.analysis.schedule import min_peak_order_ex

    return graph_cached("tiling.orders.min_peak", graph, (weights, seed),
                        lambda: min_peak_order_ex(graph, weights, ORDER_BUDGET, seed, safety_stop=False)[0])


def order_named(name: str, graph: Graph, weights: bool, seed: int = 0) -> tuple[OpIndex, ...]:
    """The order ``name`` of ``ORDERS`` (or ``file``) of ``graph``."""
    if name == "file":
        return graph.file_order()
    if name == "min-peak":
        return tuple(_min_peak(graph, weights, seed))
    if name == "branch":
        return graph_cached("tiling.orders.branch", graph, None, lambda: branch_order(graph))
    raise SolverError(f"unknown order '{name}' in reorder; choose from {', '.join(ORDERS)}")


def reorder_candidates(problem: Problem, part: Partitioner, names: tuple[str, ...], deadline: float
                       ) -> list[tuple[Partitioner, list[Segment], str]]:
    """The heuristic's candidate partitions (``plan.choose_candidates``) in each order of
    ``names`` that differs from ``part``'s and from those before it, with their partitioners
    and ``found_by``'s prefix (``tiling (min-peak order)``).  Each search has its own work budget
    (``partition.WORK_BUDGET``) and ``deadline`` as its safety net; when the clock cuts one, or
    no time is left to start one, ``part.stopped_by`` becomes ``"time"``.  They reuse the walks
    ``part`` made (``Partitioner.shared``): a run another order shares with the file order (a
    residual block the reordering left in place) costs no work again."""
    from stowage.solvers.tiling.plan import choose_candidates

    g, weights = problem.graph, problem.weights_in_compute_level
    for name in names:
        if name not in ORDERS:
            raise SolverError(f"unknown order '{name}' in reorder; choose from {', '.join(ORDERS)}")
    seen = {part.order}
    out: list[tuple[Partitioner, list[Segment], str]] = []
    for name in names:
        order = order_named(name, g, weights, problem.seed)
        if order in seen:
            log.info("tiling: the %s order is an order already searched", name)
            continue
        seen.add(order)
        if time.monotonic() > deadline:
            log.warning("tiling: no time left to search cascades in the %s order", name)
            part.stopped_by = "time"
            break
        alt = Partitioner(g, weights, problem.target.compute.alignment, deadline=deadline,
                          work=partition.WORK_BUDGET, order=order, shared=part.shared)
        try:
            found = choose_candidates(problem, alt)
        except CapacityError:
            found = []
        if alt.stopped_by:
            part.stopped_by = alt.stopped_by
        log.info("tiling: %d candidate partitions in the %s order (%d walks)", len(found), name, alt.walks)
        out += [(alt, segs, f"tiling ({name} order)") for segs in found]
    return out


__all__ = ["ORDERS", "ORDER_BUDGET", "SEARCH_SHARE", "branch_order", "order_named", "reorder_candidates"]
