"""Divide and conquer for graphs of thousands of operators (``divide``).

Why: the heuristic planner's strongest moves -- offline packing of every placement, a
portfolio of whole-graph simulations, local search over the order -- each cost at least
linear time in the graph *per evaluation*, and the best replacement policy differs between
parts of a large graph.  Cutting the run into pieces lets every piece get its own choice at a
cost linear in the graph overall.

Method:

1. **Orders.**  The minimum-peak order of the whole graph (``solvers.analysis.schedule``; it scales to
   10,000 operators in about a second and a half), the greedy list-scheduling orders and file
   order.  A lower peak does not always mean less traffic, so each is simulated with the
   default policy (the min-peak order with the whole portfolio, step 5) and the stitching
   uses the order of the best of those runs.
2. **Zero spill.**  If that order's peak live bytes fit the capacity, its lifetimes are packed
   offline in one go (``solvers.spill`` bytes mode); when the packing fits, nothing spills and
   the plan is returned (optimal traffic).
3. **Cuts at narrow points.**  The order is cut into pieces of about ``piece_ops`` operators.
   Each cut goes where the bytes live across the boundary are smallest within a window of
   +-``piece_ops / 4`` around the nominal position (``cut_points``).  A cut vertex of the
   operator graph (an articulation point) is the special case where a single buffer crosses;
   measuring crossing bytes on the order finds those and also the narrow points of graphs
   with no articulation point (residual ladders, DenseNet blocks).
4. **Pieces, stitched by carrying the residency.**  The spill engine runs piece by piece with
   its state carried across each cut (``SpillEngine.fork`` / ``run_steps``): a buffer live across a
   cut is either still resident at the same fixed offset range (its compute placement simply
   continues into the next piece) or has been spilled (its off-chip placement and the reload
   in a later piece continue from the stored copy).  For each piece every policy of the
   portfolio (cost-aware with several distance exponents, greedy, Belady; all with the
   allocation-aware arena) is tried from the carried state and scored by the traffic after
   the piece *and* ``lookahead`` further pieces run with the default policy, so a piece does
   not win by leaving a mess for the next one.  The best continuation is committed.
5. **Safety net.**  The same policies run uniformly over the whole order (linear time each),
   and, while time is left, residency on byte counts with one offline packing of the whole
   run (raising a capacity slack until it packs); the plan is the best of those and the
   stitched one, so ``divide`` is never worse than its best uniform policy on the same order.
   The stitched plan goes through the validator like every plan (``registry.solve``).

What it does not do: re-order operators inside a piece (the order is one global order), or
pack the stitched plan offline (its pieces use the online arena); ``heuristic`` searches
orders and packings more widely and is the better choice when the time limit allows
(``auto``'s rule).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from stowage.ir.graph import Graph, OpIndex
from stowage.plan import Plan
from stowage.solvers.alloc.greedy import wall_cuts
from stowage.solvers.analysis.schedule import greedy_orders, min_peak_run_cached, order_peak
from stowage.solvers.analysis.traffic_bound import traffic_lower_bound
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.baselines import baseline_order_budget
from stowage.solvers.budgets import check_capacity
from stowage.solvers.portfolio import baseline_deadline, keep_best, keep_best_of_baselines, warm_up_jit
from stowage.solvers.problem import Problem
from stowage.solvers.registry import register
from stowage.solvers.spill import Config, OutOfTime, SpillEngine, SpillResult, simulate, uses_for

log = logging.getLogger(__name__)


#: What follows the search, in units of one whole-order simulation measured at the start of
#: the run: the plan's assembly (~1.5), the registry's validation (~2.5) and the baselines'
#: simulations that the portfolio did not already run (~2).  The search stops that much
#: before the time limit, so the passes that cannot shrink with the limit still end inside
#: it on a loaded machine (issue 14, on time: on 10,000 operators under load 10 the run took
#: 24.6 s for a 10 s limit when the search always took 75% of the limit).
POST_SEARCH_PASSES = 6.0
#: The registry's validation of the plan, in the same unit: the baselines end before it.
VALIDATION_PASSES = 2.5


@dataclass(frozen=True)
class DivideParams:
    """Options of the divide-and-conquer planner.

    ``piece_ops``: nominal operators per piece (cuts move by up to a quarter of this to the
    narrowest boundary).  ``lookahead``: pieces simulated with the default policy after a
    candidate piece to score it (0 = myopic).  ``betas``: distance exponents of the cost-aware
    policy in the per-piece portfolio.  ``order_time``: seconds for the min-peak scheduler
    (at most 40% of the time limit).  ``pack_time``: seconds for each offline packing.
    ``slacks``: capacity fractions held back, in turn, for the byte-count candidate (step 5)."""

    piece_ops: int = 400
    lookahead: int = 1
    betas: tuple[float, ...] = (1.0, 2.0, 0.5)
    order_time: float = 2.0
    pack_time: float = 2.0
    slacks: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)


def crossing_bytes(graph: Graph, order: Sequence[OpIndex], weights_in_compute_level: bool) -> list[int]:
    """``cross[k]`` = bytes of buffers needed both before step ``k`` and at or after it (live
    across the boundary between steps ``k - 1`` and ``k``); ``cross[0] = 0``."""
    uses = uses_for(graph, tuple(order), weights_in_compute_level)
    n = len(order)
    delta = [0] * (n + 1)
    for b, steps in uses.uses.items():
        first, last = steps[0], steps[-1]
        if last > first:
            size = graph.buffers[b].bytes
            delta[first + 1] += size
            delta[last + 1] -= size
    cross = [0] * n
    run = 0
    for k in range(n):
        run += delta[k]
        cross[k] = run
    return cross


def cut_points(cross: Sequence[int], piece_ops: int) -> list[int]:
    """Boundaries (step indices, increasing, excluding 0 and n) about ``piece_ops`` apart, each
    at the smallest crossing bytes within +-``piece_ops // 4`` of its nominal place (ties: the
    nearest to it)."""
    n = len(cross)
    if piece_ops <= 0 or n <= piece_ops:
        return []
    cuts: list[int] = []
    slack = max(1, piece_ops // 4)
    nominal = piece_ops
    while nominal < n - slack:
        prev = cuts[-1] if cuts else 0
        lo = max(prev + 1, nominal - slack)
        hi = min(n - 1, nominal + slack)
        if lo > hi:
            break
        k = min(range(lo, hi + 1), key=lambda j: (cross[j], abs(j - nominal), j))
        cuts.append(k)
        nominal = k + piece_ops
    return cuts


def _portfolio(params: DivideParams) -> list[Config]:
    cfgs = [Config(policy="cost", alloc="online", beta=b) for b in params.betas]
    return cfgs + [Config(policy="greedy", alloc="online"), Config(policy="belady", alloc="online")]


def stitched(problem: Problem, order: tuple[OpIndex, ...], bounds: Sequence[int], params: DivideParams,
             deadline: float) -> SpillResult | None:
    """Piece-by-piece simulation with the residency carried across the cuts (module doc, 4);
    ``None`` if the deadline passes before the end."""
    configs = _portfolio(params)
    default = configs[0]
    eng = SpillEngine(problem, order, default)
    last = len(bounds) - 1
    for i in range(last):
        lo, hi = bounds[i], bounds[i + 1]
        look = bounds[min(last, i + 1 + max(0, params.lookahead))]
        best: tuple[tuple[int, int, int], SpillEngine] | None = None
        for j, cfg in enumerate(configs):
            if best is not None and time.perf_counter() > deadline:
                break
            cand = eng.fork(cfg)
            try:
                cand.run_steps(lo, hi, None if best is None else deadline)
                score = cand.noncompulsory
                if look > hi:
                    ahead = cand.fork(default)
                    ahead.run_steps(hi, look, None if best is None else deadline)
                    score = ahead.noncompulsory
            except OutOfTime:
                break
            key = (score, cand.noncompulsory, j)
            if best is None or key < best[0]:
                best = (key, cand)
        assert best is not None
        eng = best[1]
        problem.report_progress(f"divide: piece {i + 1}/{last}, non-compulsory so far {eng.noncompulsory} B")
        if time.perf_counter() > deadline and i + 1 < last:
            # Out of time: finish the remaining pieces with the policy just chosen.
            try:
                eng.run_steps(hi, len(order))
            except OutOfTime:  # pragma: no cover - no deadline passed
                return None
            break
    return eng.finish()


def plan_divide(problem: Problem, params: DivideParams, name: str = "divide", label: str | None = None,
                wall_deadline: float | None = None) -> Plan:
    """The divide-and-conquer plan, or a baseline's when that is better
    (``stowage.solvers.portfolio``); ``found_by`` is ``label`` (default ``name``) or the
    winning baseline.  ``wall_deadline`` (a ``time.perf_counter`` value) stops the search
    earlier than its own share of the limit."""
    started = time.perf_counter()
    cuts = wall_cuts()
    g, weights_in_compute_level, cap = problem.graph, problem.weights_in_compute_level, problem.capacity
    check_capacity(g, cap, weights_in_compute_level, problem.target.compute.alignment)
    deadline = started + max(0.05, 0.75 * problem.time_limit)
    if wall_deadline is not None:
        deadline = min(deadline, wall_deadline)
    bound = traffic_lower_bound(problem)
    sched = min_peak_run_cached(g, weights_in_compute_level,
                                time_limit=min(params.order_time, 0.4 * problem.time_limit), seed=problem.seed)
    order = minpeak = sched.order
    orders = [order]
    for o in (*greedy_orders(g, weights_in_compute_level), g.file_order()):
        if o not in orders:
            orders.append(o)
    candidates: list[SpillResult] = []
    #: Wall seconds of one whole-order simulation on this machine now (measured below): the
    #: unit of the passes after the search (``POST_SEARCH_PASSES``).
    t_sim = 0.0
    #: Set when the clock, not the work, left a stage out (``solver.stopped_by``).
    skipped = False
    if cap is None or order_peak(g, order, weights_in_compute_level) <= cap:
        # The exact packer may run: load its kernel now, outside the budgets (the deadline
        # moves by the load time, which is ~0.7 s from numba's disk cache; a cold cache compiles in the background).
        t_jit = time.perf_counter()
        warm_up_jit()
        deadline += time.perf_counter() - t_jit
        pack = min(params.pack_time, max(0.05, deadline - time.perf_counter()))
        res = simulate(problem, order, Config(policy="cost", alloc="bytes", pack_time=pack,
                                              pack_work=params.pack_time, seed=problem.seed,
                                              exact_pack=max(0.05, 0.2 * problem.time_limit),
                                              exact_pack_wall=max(0.05, min(0.2 * problem.time_limit,
                                                                            deadline - time.perf_counter()))))
        if res is not None and res.noncompulsory == 0:
            candidates.append(res)
    if not candidates:
        for k, o in enumerate(orders):  # the full portfolio on the min-peak order, the default elsewhere
            for cfg in _portfolio(params)[: None if k == 0 else 1]:
                # The first run has no deadline (some plan must exist), later ones do.
                first = not candidates
                t0 = time.perf_counter()
                res = simulate(problem, o, cfg, deadline=None if first else deadline)
                if first:
                    # Leave room for what must follow the search, at this machine's speed now.
                    t_sim = time.perf_counter() - t0
                    deadline = min(deadline, started + problem.time_limit - POST_SEARCH_PASSES * t_sim)
                if res is not None:
                    candidates.append(res)
        order = min(candidates, key=lambda r: (r.noncompulsory, r.peak_address)).order
        cross = crossing_bytes(g, order, weights_in_compute_level)
        bounds = [0, *cut_points(cross, params.piece_ops), len(order)]
        log.info("%s: %d pieces, crossing bytes at the cuts %s", name, len(bounds) - 1,
                 [cross[k] for k in bounds[1:-1]][:20])
        if len(bounds) > 2 and time.perf_counter() < deadline:
            res = stitched(problem, order, bounds, params, deadline)
            if res is not None:
                candidates.append(res)
        # Residency on byte counts + one offline packing of the whole run (the heuristic's
        # strongest single configuration; DenseNet-like graphs need it), capacity slack
        # raised until the packing fits, while time is left.
        for slack in params.slacks:
            left = deadline - time.perf_counter()
            if left <= t_sim:  # a whole-order run would end past the deadline
                skipped = True
                break
            res = simulate(problem, order, Config(policy="cost", alloc="bytes", slack=slack,
                                                  pack_time=min(params.pack_time, left),
                                                  pack_work=params.pack_time, seed=problem.seed),
                           deadline=deadline)
            if res is not None:
                candidates.append(res)
                break
    best = min(candidates, key=lambda r: (r.noncompulsory, r.peak_address))
    status = "optimal" if cap is not None and best.noncompulsory <= bound else "feasible"
    if cap is None and best.noncompulsory == 0:
        status = "feasible"
    # A stop by the wall clock: some candidate was cut short or never run (load-dependent).
    stopped = ("time" if time.perf_counter() > deadline or sched.cut or skipped or wall_cuts() > cuts
               else None)
    own = assemble_plan(problem, best.order, best.placements, best.transfers, name, status, bound, started,
                        offchip_offsets=best.offchip_offsets())
    plans = [(label or name, own)]
    if best.noncompulsory > 0 and status != "optimal":
        same = min(params.order_time, 0.4 * problem.time_limit) == baseline_order_budget(problem)
        # The baselines may use the room the search left them (POST_SEARCH_PASSES), up to
        # the validation's share before the limit, or the usual share when that is later.
        until = max(baseline_deadline(problem, started, wall_deadline),
                    started + problem.time_limit - VALIDATION_PASSES * t_sim)
        return keep_best_of_baselines(problem, name, plans, bound, started, stopped,
                                      minpeak_order=minpeak if same else None, deadline=until, estimate=t_sim)
    return keep_best(problem, name, plans, bound, started, stopped)


@register("divide", DivideParams,
          "divide and conquer for large graphs: min-peak order cut at narrow points, per-piece policy, "
          "stitched residency")
def divide(problem: Problem, params: DivideParams) -> Plan:
    return plan_divide(problem, params)


__all__ = ["POST_SEARCH_PASSES", "VALIDATION_PASSES", "DivideParams", "crossing_bytes", "cut_points", "plan_divide",
           "stitched"]
