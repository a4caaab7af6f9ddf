"""Other operator orders for the cascade search below M_R (``auto``, ``heuristic`` and ``exact``).

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

``ORDERS`` is the one list of these orders: the default of ``--param reorder`` of ``auto``,
``heuristic`` and ``exact`` (whose partition model runs in each of them too,
``stowage.solvers.exact.tiled_search``).  A tiled plan names the order its cascades are runs
of in ``solver.cascade_order`` (``order_label``).
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass, field

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
#: argument, which sets beam widths and local-search moves; no wall-clock stop); ``exact``
#: below M_R takes its orders from here too (``stowage.solvers.exact.tiled_search``).
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


def check_names(names: tuple[str, ...]) -> None:
    """A one-line error for a name in ``reorder`` that is not one of ``ORDERS``."""
    for name in names:
        if name not in ORDERS:
            raise SolverError(f"unknown order '{name}' in reorder; choose from {', '.join(ORDERS)}")


def distinct_orders(problem: Problem, part: Partitioner, names: tuple[str, ...]) -> list[str]:
    """The names of ``names`` whose order differs from ``part``'s and from every one before
    it: the orders worth a search of their own (an order equal to one searched adds nothing)."""
    check_names(names)
    seen = {part.order}
    out: list[str] = []
    for name in names:
        order = order_named(name, problem.graph, problem.weights_in_compute_level, problem.seed)
        if order in seen:
            log.info("tiling: the %s order is an order already searched", name)
            continue
        seen.add(order)
        out.append(name)
    return out


def order_label(problem: Problem, part: Partitioner) -> str:
    """Which order ``part`` cuts into cascades: ``file`` or a name of ``ORDERS`` (the first
    whose order it is), else ``other``; ``solver.cascade_order`` of a tiled plan."""
    if part.file:
        return "file"
    for name in ORDERS:
        if order_named(name, problem.graph, problem.weights_in_compute_level, problem.seed) == part.order:
            return name
    return "other"


@dataclass(frozen=True)
class SearchMemo:
    """What one tiled search of a problem leaves for another of the same problem: ``exact``
    below M_R starts from ``auto``'s run (``plan.plan_tiled``) and takes its heuristic
    searches from here instead of repeating them.  ``searched`` maps (order, capacity) to the
    partitioner that searched it (its walks, shared by every order, and its slot layouts,
    which a plan of its partitions needs) and the candidate partitions it found."""

    searched: dict[tuple[tuple[OpIndex, ...], int | None], tuple[Partitioner, list[list[Segment]]]] = \
        field(default_factory=dict)


def order_search(problem: Problem, part: Partitioner, name: str, deadline: float, memo: SearchMemo | None = None
                 ) -> tuple[Partitioner, list[list[Segment]]]:
    """The heuristic's candidate partitions (``plan.choose_candidates``; none when no partition
    fits) in the order ``name``, with the partitioner that searched them: its own work budget
    (``partition.WORK_BUDGET``), ``deadline`` as its safety net, ``part``'s walks
    (``Partitioner.shared``: a run another order shares with ``part``'s costs no work again).
    Taken from ``memo`` when an earlier run of the same problem searched that order (and kept
    there otherwise); a search the clock cut sets ``part.stopped_by``."""
    from stowage.solvers.tiling.plan import choose_candidates

    g, weights = problem.graph, problem.weights_in_compute_level
    order = order_named(name, g, weights, problem.seed)
    key = (order, problem.capacity)
    if memo is not None and key in memo.searched:
        alt, found = memo.searched[key]
    else:
        alt = Partitioner(g, weights, problem.target.compute.alignment, deadline=deadline,
                          work=partition.WORK_BUDGET, order=order, shared=part.shared)
        try:
            found = choose_candidates(problem, alt)
        except CapacityError:
            found = []
        if memo is not None:
            memo.searched[key] = (alt, found)
        log.info("tiling: %d candidate partitions in the %s order (%d walks)", len(found), name, alt.walks)
    if alt.stopped_by:
        part.stopped_by = alt.stopped_by
    return alt, list(found)


def reorder_candidates(problem: Problem, part: Partitioner, names: tuple[str, ...], deadline: float,
                       memo: SearchMemo | None = None) -> list[tuple[Partitioner, list[Segment], str]]:
    """The heuristic's candidate partitions (``order_search``) in each order of ``names`` that
    differs from ``part``'s and from those before it, with their partitioners and
    ``found_by``'s prefix (``tiling (min-peak order)``); when no time is left to start one,
    ``part.stopped_by`` becomes ``"time"``."""
    out: list[tuple[Partitioner, list[Segment], str]] = []
    for name in distinct_orders(problem, part, names):
        if time.monotonic() > deadline:
            log.warning("tiling: no time left to search cascades in the %s order", name)
            part.stopped_by = "time"
            break
        alt, found = order_search(problem, part, name, deadline, memo)
        out += [(alt, segs, f"tiling ({name} order)") for segs in found]
    return out


__all__ = ["ORDERS", "ORDER_BUDGET", "SEARCH_SHARE", "SearchMemo", "branch_order", "check_names", "distinct_orders",
           "order_label", "order_named", "order_search", "reorder_candidates"]
