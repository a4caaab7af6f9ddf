"""``--solver exact`` below M_R: the partitions the exact solver adds to the heuristic's.

``plan_tiled`` calls ``exact_candidates`` when the heuristic partition search found no
partition without cut traffic.  It runs the CP-SAT partition model
(``stowage.solvers.exact.tiled_model``) in two orders:

1. the file order, warm-started with the heuristic's least-traffic partition;
2. the min-peak order (``stowage.solvers.analysis.schedule.min_peak_order_ex``, work budgets
   only, so the order does not depend on load), when it differs from the file order: its
   own heuristic partitions (``choose_candidates`` on a ``Partitioner`` of that order) and
   its model.  A run of that order is a cascade only where the macro graph stays in
   topological file order (``Partitioner.macro_safe``); residual blocks the order keeps
   together may be one cascade, as in the file order.

Every partition found is returned with its partitioner; ``plan_tiled`` plans each on its
macro graph and keeps the plan moving the fewest bytes (so the result is never worse than the
heuristic's).  The bound returned is the smallest of the models' proven bounds on cut
traffic: valid over the union of their candidate sets, and only there
(``solver.partition_bound``).

Between the two orders, the joint model (``stowage.solvers.exact.tiled_joint``) packs the file
order's candidates with whole tensors and spills in one CP-SAT model (``--param joint=off``
skips it); its partition is planned like the others, and its relaxation's proven bound on
non-compulsory traffic over every plan into those candidates in the file order is
``solver.joint_bound``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from stowage.errors import CapacityError
from stowage.ir.graph import Graph
from stowage.solvers.exact.tiled_model import PartitionResult, exact_partition
from stowage.solvers.problem import Problem, default_workers
from stowage.solvers.tiling import partition
from stowage.solvers.tiling.partition import Partitioner, Segment

log = logging.getLogger(__name__)

#: Share of the time left that the partition models (both orders together, the min-peak
#: order's heuristic search included) may take on the wall clock: a safety net (the work
#: budgets, ``tiled_model.CANDIDATE_WORK`` and ``MODEL_WORK``, normally end them first); the
#: rest is for planning the macro graphs.
MODEL_WALL_SHARE = 0.3
#: The min-peak order is tried only while this share of the models' window is left.
ALT_ORDER_SHARE = 0.5
#: Share of the time left that the joint model (``tiled_joint``: its relaxation and its address
#: model) may take on the wall clock, after the file order's partition model: a safety net,
#: its work budgets (``RELAX_WORK``, ``PACK_WORK``) normally end it first.
JOINT_WALL_SHARE = 0.4
#: Work budget of the min-peak order's search (its ``time_limit`` argument, which sets beam
#: widths and local-search moves; no wall-clock stop).
ORDER_BUDGET = 2.0


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
             "file" if part.file else "min-peak", res.traffic, res.bound, res.status, res.candidates,
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
                     joint: bool = True) -> ExactPartitions:
    """Partitions to plan besides the heuristic's and the proven bounds (``ExactPartitions``);
    ``joint``: also run the joint model on the file order's candidates."""
    now = time.monotonic()
    window = MODEL_WALL_SHARE * max(1.0, end - now)
    out: list[tuple[Partitioner, list[Segment], str]] = []
    bounds: list[int | None] = []
    # The file order's model first, in at most half the window (the min-peak order's turn next).
    found, bound, res = _search(problem, part, heuristic, now + ALT_ORDER_SHARE * window)
    out += [(part, s, "tiling model") for s in found]
    bounds.append(bound)
    if time.monotonic() > now + ALT_ORDER_SHARE * window:
        log.warning("tiled model: no time left for the min-peak order")
        part.stopped_by = "time"
    else:
        out += _min_peak_order(problem, part, now + window, bounds)
    # The joint model last, in its own window (it improves on the partitions above, and its
    # bound is about the file order's candidates).
    joint_bound: int | None = None
    if joint:
        jfound, joint_bound = _joint(problem, part, res, heuristic, end)
        out += jfound
    # A bound over both candidate sets is the smaller of the two; a model that ended without
    # one (or an order not searched) leaves its set unbounded, so then only the file order's
    # set is claimed.
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


def _min_peak_order(problem: Problem, part: Partitioner, deadline: float, bounds: list[int | None]
                    ) -> list[tuple[Partitioner, list[Segment], str]]:
    """The heuristic's and the partition model's partitions along the min-peak order (when it
    differs from the file order); appends the model's bound to ``bounds``."""
    from stowage.solvers.analysis.schedule import min_peak_order_ex
    from stowage.solvers.tiling.plan import choose_candidates

    out: list[tuple[Partitioner, list[Segment], str]] = []
    order, _proven = min_peak_order_ex(problem.graph, problem.weights_in_compute_level, ORDER_BUDGET,
                                       problem.seed, safety_stop=False)
    if tuple(order) != part.order:
        alt = Partitioner(problem.graph, problem.weights_in_compute_level, problem.target.compute.alignment,
                          deadline=deadline, work=partition.WORK_BUDGET,
                          order=tuple(order))
        try:
            alt_heuristic = choose_candidates(problem, alt)
        except CapacityError:
            alt_heuristic = []
        out += [(alt, s, "tiling (min-peak order)") for s in alt_heuristic]
        found, alt_bound, _res = _search(problem, alt, alt_heuristic, deadline)
        out += [(alt, s, "tiling model (min-peak order)") for s in found]
        bounds.append(alt_bound)
        if alt.stopped_by:
            part.stopped_by = alt.stopped_by
    else:
        log.info("tiled model: the min-peak order is the file order")
    return out


__all__ = ["JOINT_WALL_SHARE", "MODEL_WALL_SHARE", "ORDER_BUDGET", "ExactPartitions", "exact_candidates"]
