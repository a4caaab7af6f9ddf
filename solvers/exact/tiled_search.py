"""``--solver exact`` below M_R: the partitions the exact solver adds to the heuristic's.

``plan_tiled`` calls ``exact_candidates`` when the heuristic partition search found no
partition without cut traffic.  It runs the CP-SAT partition model
(``stowage.solvers.exact.tiled_model``) in the file order and in each other order that
``auto`` searches (``--param reorder``, by default ``stowage.solvers.tiling.orders.ORDERS``:
the min-peak and the depth-first "branch" order; the one list of orders):

1. the file order, warm-started with the heuristic's least-traffic partition;
2. each other order that differs from those before it: its own heuristic partitions
   (``orders.reorder_candidates``, the very search ``auto`` runs, on the walks the file order
   made) and its model, warm-started with them.  A run of another order is a cascade only
   where the macro graph stays in topological file order (``Partitioner.macro_safe``).

Every partition found is returned with its partitioner; ``plan_tiled`` plans each on its
macro graph and keeps the plan moving the fewest bytes (and ``auto``'s tiled plan when it
moves fewer, so the result is never worse than the heuristic's or ``auto``'s).  The bound
returned is the smallest of the models' proven bounds on cut traffic: valid over the union
of their candidate sets, and only there (``solver.partition_bound``); an order whose model
ended without a bound leaves that union unbounded, and then none is claimed.

After the orders' models, the joint model (``stowage.solvers.exact.tiled_joint``) packs the
file order's candidates with whole tensors and spills in one CP-SAT model (``--param
joint=off`` skips it); its partition is planned like the others, and its relaxation's proven
bound on non-compulsory traffic over every plan into those candidates *in the file order* is
``solver.joint_bound``: a per-order bound, not one over the other orders' plans (a plan of
another order may move less; ``plan_tiled`` then withholds it) and not over every tiling
(``solver.lower_bound``, ``stowage.solvers.tiling.bound``, is that one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from stowage.ir.graph import Graph
from stowage.solvers.exact.tiled_model import PartitionResult, exact_partition
from stowage.solvers.problem import Problem, default_workers
from stowage.solvers.tiling.orders import ORDERS, SearchMemo, order_label
from stowage.solvers.tiling.partition import Partitioner, Segment

log = logging.getLogger(__name__)

#: Share of the time left that the partition models (every order together, the other orders'
#: heuristic searches included) may take on the wall clock: a safety net (the work budgets,
#: ``tiled_model.CANDIDATE_WORK`` and ``MODEL_WORK``, normally end them first); the rest is
#: for planning the macro graphs.
MODEL_WALL_SHARE = 0.3
#: Share of the models' window the file order's model may take; the other orders share the
#: rest equally (the wall-clock safety net of each; their work budgets normally end them).
ALT_ORDER_SHARE = 0.5
#: Share of the time left that the joint model (``tiled_joint``: its relaxation and its address
#: model) may take on the wall clock, after the file order's partition model: a safety net,
#: its work budgets (``RELAX_WORK``, ``PACK_WORK``) normally end it first.
JOINT_WALL_SHARE = 0.4


def _warm(cands: list[list[Segment]], cap: int) -> list[Segment] | None:
    """The heuristic's partition whose every segment fits with its bystanders (the
    least-traffic one), the model's warm start; None when there is none."""
    ok = [segs for segs in cands if all(s.peak <= cap for s in segs)]
    return min(ok, key=lambda segs: sum(s.traffic for s in segs)) if ok else None


def _search(problem: Problem, part: Partitioner, heuristic: list[list[Segment]], deadline: float
            ) -> tuple[list[list[Segment]], int | None, PartitionResult | None]:
    cap = problem.capacity
    assert cap is not None
    workers = problem.workers or default_workers()
    res = exact_partition(part, cap, _warm(heuristic, cap), deadline, workers, problem.seed, keep_pool=True)
    if res is None or not res.segments:
        return [], None, res
    log.info("tiled model (%s order): cut traffic %d, bound %d (%s, %d candidates%s)",
             order_label(problem, part), res.traffic, res.bound, res.status, res.candidates,
             "" if res.complete else ", budget-limited")
    return [list(res.segments)], res.bound, res


@dataclass(frozen=True)
class ExactPartitions:
    """What ``exact_candidates`` adds: the partitions (with their partitioners and who found
    them, ``found_by``'s prefix), the partition models' proven bound on cut traffic over their
    candidate sets (``solver.partition_bound``; None when a model ended without one), and the
    joint model's proven bound on non-compulsory traffic over every plan into the file order's
    candidates in that order (``solver.joint_bound``; None when it did not run)."""

    partitions: list[tuple[Partitioner, list[Segment], str]]
    partition_bound: int | None
    joint_bound: int | None = None


def _joint(problem: Problem, part: Partitioner, res: PartitionResult | None, heuristic: list[list[Segment]],
           end: float) -> tuple[list[tuple[Partitioner, list[Segment], str]], int | None]:
    """The joint model's phase (``stowage.solvers.exact.tiled_joint``) on the file order's
    candidates, warm-started with the partition model's partition (else the heuristic's)."""
    from stowage.solvers.exact.tiled_joint import joint_partition

    cap = problem.capacity
    if res is None or not res.pool or cap is None:
        return [], None
    now = time.monotonic()
    deadline = now + JOINT_WALL_SHARE * max(1.0, end - now)
    warm = list(res.segments) if res.segments else _warm(heuristic, cap)
    workers = problem.workers or default_workers()
    got = joint_partition(part, cap, res.pool, warm, deadline, workers, problem.seed)
    if got is None:
        return [], None
    if got.timed:
        part.stopped_by = "time"
    found = [(part, list(got.segments), "tiling joint model")] if got.segments else []
    return found, got.bound


def exact_candidates(problem: Problem, part: Partitioner, heuristic: list[list[Segment]], end: float,
                     joint: bool = True, reorder: tuple[str, ...] = ORDERS,
                     memo: SearchMemo | None = None) -> ExactPartitions:
    """Partitions to plan besides the heuristic's and the proven bounds (``ExactPartitions``);
    ``joint``: also run the joint model on the file order's candidates; ``reorder``: the other
    orders (``stowage.solvers.tiling.orders``) whose heuristic partitions and partition model
    are searched too (their heuristic searches from ``memo`` when ``auto``'s run made them)."""
    now = time.monotonic()
    window = MODEL_WALL_SHARE * max(1.0, end - now)
    out: list[tuple[Partitioner, list[Segment], str]] = []
    bounds: list[int | None] = []
    # The file order's model first, in at most half the window (the other orders' turn next).
    found, bound, res = _search(problem, part, heuristic, now + ALT_ORDER_SHARE * window)
    out += [(part, s, "tiling model") for s in found]
    bounds.append(bound)
    if reorder and time.monotonic() > now + ALT_ORDER_SHARE * window:
        log.warning("tiled model: no time left for the other orders")
        part.stopped_by = "time"
        bounds.append(None)     # an order not searched: its candidates are not bounded
    elif reorder:
        out += _other_orders(problem, part, reorder, now + window, bounds, memo)
    # The joint model last, in its own window (it improves on the partitions above, and its
    # bound is about the file order's candidates).
    joint_bound: int | None = None
    if joint:
        jfound, joint_bound = _joint(problem, part, res, heuristic, end)
        out += jfound
    # A bound over every order's candidate set is the smallest; a model that ended without
    # one (or an order not searched) leaves its set unbounded, and then none is claimed.
    known = [b for b in bounds if b is not None]
    partition_bound = min(known) if known and len(known) == len(bounds) else None
    if joint_bound is not None and partial_loads(problem.graph):
        # The joint model charges an off-chip tensor's bytes in full per load; a cascade that
        # loads only the rows its readers need (a Slice of rows) costs less, so its optimum is
        # then not a bound on plan traffic over its candidates: withheld, not overstated.
        # (``partition_bound`` is defined in the partition search's own measure, which makes
        # the same full charge: docs/plan-format.md.)
        log.info("tiled joint model: an operator reads only part of an operand's rows; its bound is withheld")
        joint_bound = None
    return ExactPartitions(out, partition_bound, joint_bound)


def partial_loads(graph: Graph) -> bool:
    """Whether some operator's whole result needs only part of an operand's rows (rows
    skipped at the top or bottom: a Slice along H, a valid-padded window that never reaches
    the last rows), so a load of that operand may move fewer than its bytes."""
    from stowage.ir.tiling import row_maps, rows  # the tiling IR is heavy; only tiled plans need it

    for op in graph.operators:
        if not op.computing:
            continue
        maps = row_maps(graph, op)
        outs = [graph.tensors[o] for o in op.outputs if o and o in graph.tensors]
        if not maps or len(outs) != 1:
            continue
        try:
            h = rows(graph, outs[0])
        except (IndexError, ValueError, KeyError):
            continue
        for rm in maps.values():
            if h < 1 or rm.in_rows < 1 or rm.accumulate:   # a reduction reads every row
                continue
            lo, hi = rm.need(0, h)[:2]
            if lo > 0 or hi < rm.in_rows:
                return True
    return False


def _other_orders(problem: Problem, part: Partitioner, names: tuple[str, ...], deadline: float,
                  bounds: list[int | None], memo: SearchMemo | None
                  ) -> list[tuple[Partitioner, list[Segment], str]]:
    """The heuristic's and the partition model's partitions along each order of ``names``
    that differs from the file order and the orders before it (``orders.order_search``: the
    search ``auto`` runs, on ``part``'s shared walks, taken from ``memo`` when auto's run
    searched it); appends each model's bound to ``bounds`` (None for an order the clock left
    unsearched).  Each order's model gets an equal
    share of the time left before ``deadline`` as its wall-clock safety net."""
    from stowage.solvers.tiling.orders import distinct_orders, order_search

    todo = distinct_orders(problem, part, names)
    out: list[tuple[Partitioner, list[Segment], str]] = []
    for k, name in enumerate(todo):
        now = time.monotonic()
        share = now + (deadline - now) / (len(todo) - k)
        if now >= deadline:
            log.warning("tiled model: no time left for the %s order", name)
            part.stopped_by = "time"
            bounds.append(None)
            continue
        alt, found = order_search(problem, part, name, share, memo)
        out += [(alt, s, f"tiling ({name} order)") for s in found]
        got, alt_bound, _res = _search(problem, alt, found, share)
        out += [(alt, s, f"tiling model ({name} order)") for s in got]
        bounds.append(alt_bound)
        if alt.stopped_by:
            part.stopped_by = alt.stopped_by
    return out


__all__ = ["ALT_ORDER_SHARE", "JOINT_WALL_SHARE", "MODEL_WALL_SHARE", "ExactPartitions", "exact_candidates"]
