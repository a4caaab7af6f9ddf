"""The heuristic planner (``heuristic``) and the default solver (``auto``).

Stages (each bounded by a work budget so that a seed gives the same plan; the time limit is
a safety stop):

1. **Orders.**  The minimum-peak order (``solvers.analysis.schedule``: greedy list scheduling, beam
   search, exact DP when small enough), the greedy list-scheduling variants and file order.
2. **Zero spill.**  For every order whose peak live bytes fit, pack its lifetimes offline
   (``solvers.alloc.greedy``).  If the packing fits the capacity the plan spills nothing --
   optimal traffic -- and among those the smallest peak address wins.
3. **Spilling.**  Otherwise a portfolio of replacement configurations for the best orders
   (``solvers.spill``): residency on byte counts with the cost-aware policy (traffic in
   byte-hops over next-use distance ** beta) followed by offline packing, with a ladder of
   capacity slack until the packing fits; then the allocation-aware online variants, whose
   victims are windows of address-adjacent buffers so each eviction opens a usable hole.
   The portfolio includes the baselines' own configurations, so the heuristic is never
   worse than the min-peak and file-order baselines.
4. **Improvement.**  A seeded local search over orders: move one operator inside its
   dependency window (a few at a time), re-run the best configuration, keep the result if
   non-compulsory traffic (then peak address) does not get worse.

Stops early when traffic reaches the lower bound (``solvers.analysis.traffic_bound``); the plan's
status is then ``optimal``, otherwise ``feasible``.

Graphs of thousands of operators go to ``solvers.divide`` under ``auto`` (rule in
``choose``).  For three-level targets the spill engine picks the level (``solvers.spill``:
cheapest in byte-hops with a free address range over the buffer's off-chip lifetime).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from stowage.ir.graph import OpIndex
from stowage.plan import Plan
from stowage.solvers import work_meter
from stowage.solvers.alloc.greedy import wall_cuts
from stowage.solvers.analysis.schedule import greedy_orders, min_peak_run_cached, order_peak
from stowage.solvers.analysis.traffic_bound import traffic_lower_bound
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.baselines import baseline_order_budget, baseline_plans, baseline_results
from stowage.solvers.budgets import m_r_cached, rounded_graph
from stowage.solvers.divide import POST_SEARCH_PASSES, DivideParams, plan_divide
from stowage.solvers.portfolio import (
    at_capacity,
    baseline_deadline,
    keep_best,
    keep_best_of_baselines,
    plan_key,
    warm_up_jit,
)
from stowage.solvers.problem import Problem
from stowage.solvers.registry import register
from stowage.solvers.spill import Config, SpillResult, simulate

if TYPE_CHECKING:   # OR-Tools is loaded only when auto runs
    from stowage.solvers.exact.auto import CheapProofs

log = logging.getLogger(__name__)

#: Graphs with more computing operators than this get the reduced portfolio.
LARGE_GRAPH = 2000

#: The min-peak scheduler's budget is at most this share of the time limit (and
#: ``HeuristicParams.order_time``).  Half was tried, so that from a 4 s limit on the budget
#: is the min-peak baselines' (2 s) and one memoised order serves both (``auto`` runs the
#: baselines first): it saved one 578-operator order on PNASNet-5 (1.4 s at load 9), but
#: the aligned order of the 2 s budget no longer fit M_P there (with weights: 6,370,272 B
#: at M_P where 40% gives 0 B, at load 2.5), so the share stays 40%.
ORDER_SHARE = 0.4

#: The search's work budget (stages 2-4: packings, simulations, local search), in seconds of
#: work (``solvers.work_meter``: packer entries, exact-packer nodes and engine steps at fixed
#: rates, each about a third of the idle machine's) per second of the time limit.  The
#: search stops when it has done this much work, the same on any machine and load; its
#: deadline (75% of the limit) is only the safety stop, and when that ends the search the
#: plan says ``stopped_by = "time"``.  See ``search_work`` for the value.
SEARCH_WORK_PER_SECOND = 0.6

#: The same for the search inside ``auto`` (``auto_once``), which shares the limit with the
#: cheap proofs before it, the window descent after it and, above M_R, a second pass at M_R:
#: its budget is chosen to end well before ``AUTO_SEARCH_SHARE`` of the limit on an idle
#: machine, so that the window there is only a safety stop.
AUTO_SEARCH_WORK_PER_SECOND = 0.35

#: The offline packings' wall-clock safety stop, in units of their work (``pack_time``), and
#: never past the search's deadline.
PACK_SAFETY = 2.0


@dataclass(frozen=True)
class HeuristicParams:
    """Options of the heuristic planner.

    ``order_time``: seconds for the min-peak scheduler (at most ``ORDER_SHARE`` of the time
    limit).
    ``betas``: distance exponents tried by the cost-aware policy.
    ``slacks``: capacity fractions held back, in turn, until the offline packing fits.
    ``improve_iters``: local-search iterations (0 = none); a work budget, not a time.
    ``moves``: operator moves per perturbation of an order.
    ``pack_time``: seconds for each offline packing.
    ``fast``: reduced portfolio (``None`` = decide by graph size, see ``LARGE_GRAPH``).
    ``objective``: ``traffic`` (non-compulsory bytes, then peak address: COSMA's) or
    ``latency`` (the estimated makespan of ``stowage.solvers.timing`` first, traffic as the
    tie-break, among the search's ``LATENCY_CANDIDATES`` best distinct results and the
    baselines; the traffic winner is among them, so the latency plan is never slower).
    ``reorder``: below M_R (tiled plans, traffic objective), the orders whose cascades are
    searched besides the file order's (``stowage.solvers.tiling.orders``: ``min-peak``,
    ``branch``; empty = the file order only); the plan moving the fewest bytes is kept."""

    order_time: float = 2.0
    betas: tuple[float, ...] = (1.0, 2.0, 0.5)
    slacks: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35)
    improve_iters: int = 40
    moves: int = 3
    pack_time: float = 0.5
    fast: bool | None = None
    objective: str = "traffic"
    reorder: tuple[str, ...] = ("min-peak", "branch")


def _score(res: SpillResult) -> tuple[int, int]:
    return (res.noncompulsory, res.peak_address)


class _Search:
    def __init__(self, problem: Problem, params: HeuristicParams, started: float,
                 wall_deadline: float | None = None, work_budget: float | None = None) -> None:
        self.p = problem
        self.params = params
        # A quarter of the limit is left for assembling and validating the plan; a caller
        # running several searches in one limit (``auto``) may stop this one earlier.
        self.deadline = started + max(0.05, 0.75 * problem.time_limit)
        if wall_deadline is not None:
            self.deadline = min(self.deadline, wall_deadline)
        #: Set once the wall clock was seen past the deadline: the search may then have been
        #: cut short, and the plan can depend on the machine's load (``solver.stopped_by``).
        self.hit_wall = False
        #: The min-peak order and its scheduler budget (``orders``), so that the baselines
        #: can reuse it when their budget is the same.
        self.minpeak: tuple[OpIndex, ...] | None = None
        self.minpeak_budget = -1.0
        self.started = started
        #: Wall seconds of the first online simulation (``sim``).
        self.t_sim: float | None = None
        self.best: SpillResult | None = None
        self.bound = traffic_lower_bound(problem)
        n = len(problem.graph.computing_ops)
        self.fast = params.fast if params.fast is not None else n > LARGE_GRAPH
        self.evals = 0
        #: The work meter at the start and the search's work budget (``search_work``).
        self.work0 = work_meter.reading()
        self.work_budget = search_work(problem.time_limit) if work_budget is None else work_budget
        #: With ``objective = latency``: the best distinct results seen, by traffic score.
        self.kept: list[SpillResult] | None = [] if params.objective == "latency" else None

    def time_left(self) -> float:
        left = self.deadline - time.perf_counter()
        if left <= 0:
            self.hit_wall = True
        return left

    def work_used(self) -> float:
        """Seconds of work (``solvers.work_meter``) since the search started."""
        return work_meter.seconds(self.work0)

    def done(self) -> bool:
        """A plan exists and: it meets the bound, or the work budget is spent (the same stop
        on any machine), or -- the safety stop, which ``hit_wall`` records -- the deadline
        passed."""
        if self.best is None:
            return False
        if self.p.capacity is not None and self.best.noncompulsory <= self.bound:
            return True
        return self.work_used() >= self.work_budget or self.time_left() <= 0

    def offer(self, res: SpillResult | None) -> bool:
        self.evals += 1
        if res is None:
            return False
        if self.kept is not None:
            _keep(self.kept, res)
        if self.best is None or _score(res) < _score(self.best):
            self.best = res
            self.p.report_progress(f"heuristic: best non-compulsory {res.noncompulsory} B, bound {self.bound} B, "
                            f"{time.perf_counter() - self.started:.1f}s")
            return True
        return False

    def sim(self, order: Sequence[OpIndex], cfg: Config) -> SpillResult | None:
        """One simulation; cut short at the deadline once some plan exists.  The first
        online one is timed: the search then stops ``POST_SEARCH_PASSES`` such runs before
        the limit, the room the assembly, the baselines and the validation need at this
        machine's speed now (``stowage.solvers.divide``; on 10,000 operators they do not
        shrink with the limit)."""
        t0 = time.perf_counter()
        res = simulate(self.p, order, cfg, deadline=None if self.best is None else self.deadline)
        if res is None and self.best is not None and time.perf_counter() > self.deadline:
            self.hit_wall = True      # the deadline may have cut this run: say so
        if self.t_sim is None and cfg.alloc == "online" and res is not None:
            self.t_sim = time.perf_counter() - t0
            self.deadline = min(self.deadline, self.started + self.p.time_limit - POST_SEARCH_PASSES * self.t_sim)
        return res

    def run_cfg(self, order: Sequence[OpIndex], cfg: Config) -> SpillResult | None:
        # The packing's work is ``pack_time``; its safety stop ``PACK_SAFETY`` times that (it
        # sat at the work itself, which a 1.4x slowdown already cut), within the time left.
        cfg = replace(cfg, pack_time=min(PACK_SAFETY * self.params.pack_time, max(0.05, self.time_left())),
                      pack_work=self.params.pack_time, seed=self.p.seed)
        if cfg.alloc == "online":
            return self.sim(order, cfg)
        for slack in self.params.slacks:
            res = self.sim(order, replace(cfg, slack=slack))
            if res is not None:
                return res
            if self.best is not None and (self.work_used() >= self.work_budget or self.time_left() <= 0):
                break
        return None

    # -- stages -------------------------------------------------------------------------
    def orders(self) -> list[tuple[OpIndex, ...]]:
        g, weights_in_compute_level = self.p.graph, self.p.weights_in_compute_level
        budget = min(self.params.order_time, ORDER_SHARE * self.p.time_limit)
        sched = min_peak_run_cached(g, weights_in_compute_level, budget, self.p.seed)
        self.minpeak = sched.order
        self.minpeak_budget = budget
        cands = [self.minpeak, g.file_order()]
        align = self.p.target.compute.alignment
        if align > 1:  # the order of least peak at this alignment (sizes rounded up): M_P's order
            rounded = min_peak_run_cached(rounded_graph(g, align), weights_in_compute_level, budget, self.p.seed)
            cands.insert(1, rounded.order)
            sched = rounded if rounded.cut else sched
        if sched.cut:   # a wall-clock stop shaped an order: the plan may depend on the load
            self.hit_wall = True
        cands += greedy_orders(g, weights_in_compute_level)
        seen: set[tuple[OpIndex, ...]] = set()
        out = []
        for o in cands:
            if o not in seen:
                seen.add(o)
                out.append(o)
        return out

    def search(self) -> SpillResult:
        orders = self.orders()
        cap = self.p.capacity
        # Stage 2: zero spill when a peak fits and packs.
        peaks = {o: order_peak(self.p.graph, o, self.p.weights_in_compute_level) for o in orders}
        fitting = sorted((o for o in orders if cap is None or peaks[o] <= cap), key=peaks.__getitem__)
        if fitting:
            # The exact packer may run: load its kernel now, outside the budgets (the deadline
            # moves by the load time, ~0.7 s from numba's disk cache; a cold cache compiles in the background).
            t_jit = time.perf_counter()
            warm_up_jit()
            self.deadline += time.perf_counter() - t_jit
        for o in fitting[: 1 if self.fast else len(fitting)]:
            # The exact packer as a fallback: a packing here is the difference between zero
            # spill and spilling (the greedy packer can end several % above peak live).
            self.offer(self.sim(o, Config(policy="cost", alloc="bytes",
                                          pack_time=min(PACK_SAFETY * self.params.pack_time,
                                                        max(0.05, self.time_left())),
                                          pack_work=self.params.pack_time,
                                          seed=self.p.seed,
                                          exact_pack=max(0.05, 0.2 * self.p.time_limit),
                                          exact_pack_wall=max(0.05, min(0.2 * self.p.time_limit,
                                                                        self.time_left())))))
            if self.best is not None and self.best.noncompulsory == 0 and (
                    self.work_used() >= self.work_budget or self.time_left() <= 0):
                break
        if self.best is not None and self.best.noncompulsory == 0 and (cap is not None or self.fast):
            return self.best
        # Stage 3: the spill portfolio over the most promising orders.
        main, rest = orders[0], orders[1:]
        configs = self.portfolio()
        for cfg in configs:
            if self.done():
                return self.best  # type: ignore[return-value]
            self.offer(self.run_cfg(main, cfg))
        for o in rest[: 1 if self.fast else len(rest)]:
            for cfg in configs[: 2 if self.fast else len(configs)]:
                if self.done():
                    return self.best  # type: ignore[return-value]
                self.offer(self.run_cfg(o, cfg))
        if self.best is None:  # every bytes-mode packing failed and the deadline hit
            self.offer(simulate(self.p, main, Config(policy="cost", alloc="online")))
        # Stage 4: local search over orders with the best configuration.
        self.improve()
        assert self.best is not None
        return self.best

    def portfolio(self) -> list[Config]:
        """The configurations tried on the main order: the cost-aware policy on byte counts
        first (a packing ladder: up to ``slacks`` offline packings of ``pack_time`` work, the
        best plans on most graphs), then one online run of the same policy (one pass over the
        steps, 10-30 ms on 250 operators), so that a search whose budget or deadline ends
        during the next ladders has an online plan too (densenet121 with weights at p1, 4 s:
        every ladder fails, 0.4-0.7 s per packing, and the plan came from the online runs
        after them), then the rest in the original order.  Running all the online runs first
        was tried: at load 10-12 the deadline then ended the search before the byte-count
        ladders that give densenet121's and the Transformer's plans (1,003,520 -> 2,207,744 B)."""
        betas = self.params.betas[:1] if self.fast else self.params.betas
        cfgs = [Config(policy="cost", alloc="bytes", beta=b) for b in betas]
        if not self.fast:
            cfgs += [Config(policy="belady", alloc="bytes"), Config(policy="greedy", alloc="bytes")]
        cfgs += [Config(policy="cost", alloc="online", beta=b) for b in betas]
        cfgs += [Config(policy="greedy", alloc="online"), Config(policy="belady", alloc="online")]
        early = cfgs.index(Config(policy="cost", alloc="online", beta=betas[0]))
        return [cfgs[0], cfgs[early], *cfgs[1:early], *cfgs[early + 1:]]

    def improve(self) -> None:
        if self.best is None or self.params.improve_iters <= 0:
            return
        rng = random.Random(self.p.seed)
        g = self.p.graph
        deps = g.op_dependencies()
        succs: dict[OpIndex, list[OpIndex]] = {op: [] for op in deps}
        for op, ds in deps.items():
            for d in ds:
                succs[d].append(op)
        iters = self.params.improve_iters if not self.fast else max(1, self.params.improve_iters // 8)
        for _ in range(iters):
            if self.done():
                return
            cur = self.best
            order = _perturb(list(cur.order), deps, succs, rng, self.params.moves)
            if order == list(cur.order):
                continue
            self.offer(self.run_cfg(order, cur.config))


def search_work(time_limit: float) -> float:
    """The heuristic search's work budget for a time limit: ``SEARCH_WORK_PER_SECOND`` seconds
    of work (``solvers.work_meter``) per second of the limit.  A function of the limit only,
    so a seed gives the same search on any machine whenever the budget, not the deadline,
    ends it."""
    return SEARCH_WORK_PER_SECOND * max(0.0, time_limit)


def _perturb(order: list[OpIndex], deps: dict[OpIndex, frozenset[OpIndex]],
             succs: dict[OpIndex, list[OpIndex]], rng: random.Random, moves: int) -> list[OpIndex]:
    """Move ``moves`` random operators to random positions inside their dependency windows."""
    order = list(order)
    for _ in range(moves):
        pos = {op: i for i, op in enumerate(order)}
        i = rng.randrange(len(order))
        op = order[i]
        lo = max((pos[d] for d in deps[op]), default=-1) + 1
        hi = min((pos[s] for s in succs[op]), default=len(order)) - 1
        if hi <= lo:
            continue
        j = rng.randint(lo, hi)
        order.pop(i)
        order.insert(j, op)
    return order


def plan_heuristic(problem: Problem, params: HeuristicParams, name: str, label: str | None = None,
                   wall_deadline: float | None = None, work_budget: float | None = None) -> Plan:
    """The heuristic's plan, or a baseline's when that is better (``stowage.solvers.portfolio``);
    ``found_by`` is ``label`` (default ``name``) or the winning baseline's name.
    ``wall_deadline`` (a ``time.perf_counter`` value) stops the search earlier than its own
    share of the limit (a safety stop: the plan then says ``stopped_by = "time"``);
    ``work_budget``: the search's seconds of work (``solvers.work_meter``; default
    ``search_work(time_limit)``)."""
    started = time.perf_counter()
    cuts = wall_cuts()
    search = _Search(problem, params, started, wall_deadline, work_budget)
    best = search.search()
    status = "optimal" if problem.capacity is not None and best.noncompulsory <= search.bound else "feasible"
    log.info("%s: %d evaluations, non-compulsory %d, bound %d", name, search.evals, best.noncompulsory, search.bound)
    t_own = time.perf_counter()
    own = assemble_plan(problem, best.order, best.placements, best.transfers, name, status, search.bound, started,
                        offchip_offsets=best.offchip_offsets())
    t_own = time.perf_counter() - t_own
    candidates = [(label or name, own)]
    if params.objective == "latency":
        return _fastest(problem, name, label or name, own, search, started)
    # The search's own clock, or a packing's safety stop (``alloc.greedy.wall_cuts``).
    stopped = "time" if search.hit_wall or wall_cuts() > cuts else None
    if not (status == "optimal" or (problem.capacity is None and best.noncompulsory == 0)):
        mine = search.minpeak if search.minpeak_budget == baseline_order_budget(problem) else None
        return keep_best_of_baselines(problem, name, candidates, search.bound, started, stopped, minpeak_order=mine,
                                      deadline=baseline_deadline(problem, started, wall_deadline), estimate=t_own)
    return keep_best(problem, name, candidates, search.bound, started, stopped)


#: Results the latency objective times, besides the traffic winner and the baselines.
LATENCY_CANDIDATES = 8


def _keep(kept: list[SpillResult], res: SpillResult) -> None:
    """Keep the ``LATENCY_CANDIDATES`` best distinct (order, traffic) results by traffic score."""
    if any(k.order == res.order and _score(k) == _score(res) for k in kept):
        return
    kept.append(res)
    kept.sort(key=_score)
    del kept[LATENCY_CANDIDATES:]


def _fastest(problem: Problem, name: str, label: str, own: Plan, search: _Search, started: float) -> Plan:
    """The candidate with the smallest estimated makespan, then the least traffic: the
    traffic winner ``own``, the kept results and the baselines, each assembled and timed."""
    from stowage.solvers.timing import estimate, record_latency

    first = estimate(problem.graph, own, problem.target)
    if first is not None and first.makespan <= first.lower_bound * (1 + 1e-9):
        # The traffic winner meets the latency bound: no plan of these steps is faster.
        chosen = keep_best(problem, name, [(label, own)], search.bound, started, "time" if search.hit_wall else None)
        return record_latency(problem.graph, chosen, problem.target)
    candidates: list[tuple[str, Plan]] = [(label, own)]
    for res in search.kept or ():
        if res is search.best:
            continue
        if time.perf_counter() - started > 0.85 * problem.time_limit:
            break  # the search already used its share; assembling more would overrun the limit
        candidates.append((f"{label} (latency)", assemble_plan(
            problem, res.order, res.placements, res.transfers, name, "feasible", search.bound, started,
            offchip_offsets=res.offchip_offsets())))
    candidates += baseline_plans(problem)

    def key(plan: Plan) -> tuple[float, int, int]:
        tl = estimate(problem.graph, plan, problem.target)
        return (tl.makespan if tl is not None else float("inf"), plan.metrics.noncompulsory_bytes,
                max(plan.metrics.peak_bytes.values(), default=0))

    scored = [(key(plan), i) for i, (_, plan) in enumerate(candidates)]
    best = min(scored)[1]
    log.info("%s: latency objective, %d candidates, fastest %s (%.6g s)", name, len(candidates),
             candidates[best][0], min(scored)[0][0])
    # keep_best with one candidate: the status, bound and found_by are derived as for traffic;
    # then the timeline with the latency bound (solver.latency_bound, docs/timing.md).
    chosen = keep_best(problem, name, [candidates[best]], search.bound, started, "time" if search.hit_wall else None)
    return record_latency(problem.graph, chosen, problem.target)


@register("heuristic", HeuristicParams,
          "min-peak order + offline packing; cost-aware, allocation-aware spilling; seeded local search")
def heuristic(problem: Problem, params: HeuristicParams) -> Plan:
    return plan_heuristic(problem, params, "heuristic")


@dataclass(frozen=True)
class AutoParams:
    """``auto`` runs ``heuristic`` or ``divide`` with settings chosen by graph size and time
    limit (see ``choose``).

    ``reorder``: below M_R (tiled plans, traffic objective), the orders whose cascades are
    searched besides the file order's (``stowage.solvers.tiling.orders``: ``min-peak``,
    ``branch``; empty = the file order only); the plan moving the fewest bytes is kept."""

    reorder: tuple[str, ...] = ("min-peak", "branch")


#: Seconds of time limit per computing operator below which ``auto`` prefers ``divide``
#: (the heuristic's portfolio needs about 1.5 ms per operator on the reference machine).
SECONDS_PER_OP = 0.002


def choose(problem: Problem) -> tuple[str, HeuristicParams | None]:
    """The rule of ``auto``:

    * more than ``LARGE_GRAPH`` computing operators, or a time limit under
      ``SECONDS_PER_OP`` per operator -> ``divide`` (linear in the graph: one min-peak order,
      a portfolio of whole-run simulations, per-piece policies stitched at narrow points);
    * a time limit under 2 s -> ``heuristic`` with the reduced portfolio and a short local
      search;
    * otherwise the full ``heuristic``.
    The scheduler gets at most ``ORDER_SHARE`` of the time limit in every case."""
    n = len(problem.graph.computing_ops)
    if n > LARGE_GRAPH or problem.time_limit < SECONDS_PER_OP * n:
        return "divide", None
    if problem.time_limit < 2.0:
        return "heuristic", HeuristicParams(fast=True, improve_iters=8, pack_time=0.3)
    return "heuristic", HeuristicParams(fast=False)


#: Share of the time limit (wall clock, from ``auto``'s start) after which the run at M_R
#: (``auto`` above M_R) is cut short; the rest is for assembling and validating the plan.
AUTO_WALL_SHARE = 0.9
#: Share of the time limit (wall clock, from ``auto``'s start: the baselines and the proofs at
#: M_R come first) by which the pass at the capacity ends when a pass at M_R may follow; the
#: heuristic's own stop (75% from its start) alone let auto take 1.9x a 4 s limit at load 7
#: once the proofs before it got their own wall share (``AUTO_CHEAP_WALL_SHARE``).
AUTO_SEARCH_SHARE = 0.75


#: Up to this many computing operators ``auto`` first runs exact's cheap proofs (the cover
#: bound and the gap model on quick orders; ``stowage.solvers.exact.auto.cheap_proofs``); a
#: decision by size, so that it does not depend on the machine.
CHEAP_PROOFS_MAX_OPS = 1000
#: The cheap proofs' work budgets (and wall share) are those of at most this time limit:
#: exact's budgets grow with the limit, so without a cap ``auto`` at 10 s and at 60 s ran
#: different proofs and could return different plans with no wall-clock stop in either run;
#: above this limit (and the scheduler's, ``HeuristicParams.order_time``, reached at 5 s)
#: ``auto``'s plan depends on the seed only, unless ``solver.stopped_by`` says otherwise
#: (issue 14, item 6; ``tests/test_load_independent.py``).
CHEAP_PROOFS_WORK_LIMIT = 10.0


def auto_cheap_proofs(problem: Problem, wall_deadline: float | None,
                      time_limit: float | None = None, stop_at: int | None = None) -> CheapProofs | None:
    """``auto``'s run of exact's cheap proofs (``stowage.solvers.exact.auto.cheap_proofs``):
    bounded capacity, graphs up to ``CHEAP_PROOFS_MAX_OPS`` computing operators (else None),
    the work budgets of at most ``CHEAP_PROOFS_WORK_LIMIT`` seconds of ``time_limit`` (the
    problem's by default), one worker, ``AUTO_CHEAP_WALL_SHARE`` of that limit as their wall
    share (``stowage.solvers.exact.auto``).  ``auto`` runs them at the capacity and at M_R, and
    ``exact`` at M_R (its phase "cheap proofs at M_R"), so that theirs is the plan ``auto``
    returns there.  ``stop_at``: ``cheap_proofs``'s early stop at a bound (exact's incumbent)."""
    if problem.capacity is None or len(problem.graph.computing_ops) > CHEAP_PROOFS_MAX_OPS:
        return None
    # OR-Tools is loaded only when auto runs.
    from stowage.solvers.exact.auto import AUTO_CHEAP_WALL_SHARE, cheap_proofs

    limit = problem.time_limit if time_limit is None else time_limit
    return cheap_proofs(problem, "auto", min(limit, CHEAP_PROOFS_WORK_LIMIT), 1, problem.seed, wall_deadline,
                        stop_at=stop_at, wall_share=AUTO_CHEAP_WALL_SHARE)


def auto_once(problem: Problem, wall_deadline: float | None, descent_deadline: float | None = None) -> Plan:
    """``auto``'s single pass at the problem's capacity (``exact`` runs it at M_R too, its phase
    "plan at M_R"): exact's cheap proofs (small graphs, bounded capacity), then -- unless they proved their
    plan optimal -- ``heuristic`` or ``divide`` by ``choose``, each keeping the baselines'
    plans as candidates, then -- where the cheap proofs ran and the best candidate is not
    proven -- exact's window descent from it (``exact.descent.window_descent``: on work
    budgets, by ``descent_deadline`` at the latest, default ``wall_deadline``); the best plan
    with the best bound.  ``found_by`` says which planner (or baseline, or exact phase) won."""
    started = time.perf_counter()
    proofs = auto_cheap_proofs(problem, wall_deadline)
    if proofs is not None:
        if proofs.plan is not None and proofs.plan.solver.status == "optimal":
            # Proven optimal, but a wall-clock stop (a packer's, the scheduler's) may have
            # chosen which optimal plan: say so.
            return keep_best(problem, "auto", [(proofs.plan.solver.found_by or "exact", proofs.plan)],
                             proofs.bound, started, "time" if proofs.hit_wall else None)
    kind, hparams = choose(problem)
    # The search's share of the limit counts from auto's start, the cheap proofs included.
    stop = started + 0.75 * problem.time_limit
    stop = stop if wall_deadline is None else min(stop, wall_deadline)
    if kind == "divide":
        plan = plan_divide(problem, DivideParams(), "auto", label=kind, wall_deadline=stop)
    else:
        assert hparams is not None
        plan = plan_heuristic(problem, hparams, "auto", label=kind, wall_deadline=stop,
                              work_budget=AUTO_SEARCH_WORK_PER_SECOND * problem.time_limit)
    if proofs is None:
        return plan
    candidates = [(plan.solver.found_by or kind, plan)]
    if proofs.plan is not None:
        candidates.append((proofs.plan.solver.found_by or "exact", proofs.plan))
    bound = max(plan.solver.lower_bound or 0, proofs.bound)
    stopped = plan.solver.stopped_by or ("time" if proofs.hit_wall else None)
    if min(p.metrics.noncompulsory_bytes for _, p in candidates) > bound:
        # Not proven: exact's window descent from the best candidate (NASNet-A at M_R without
        # weights: 517,440 -> 310,464 B in exact), on the cheap proofs' work budgets; a plan
        # only when strictly better, the candidates stay.
        from stowage.solvers.exact.descent import window_descent

        deadline = descent_deadline or wall_deadline or started + AUTO_WALL_SHARE * problem.time_limit
        best_first = sorted(candidates, key=lambda c: plan_key(c[1]))
        descent = window_descent(problem, best_first[:1], bound, min(problem.time_limit, CHEAP_PROOFS_WORK_LIMIT),
                                 deadline, "auto", problem.seed)
        if descent.plan is not None:
            candidates.append((descent.plan.solver.found_by or "exact: window descent", descent.plan))
        if descent.hit_wall:
            stopped = stopped or "time"
    return keep_best(problem, "auto", candidates, bound, started, stopped)


@register("auto", AutoParams, "the default: heuristic, or divide for large graphs / short time limits; "
                              "never worse than a baseline or than its own plan at M_R")
def auto(problem: Problem, params: AutoParams) -> Plan:
    """``auto_once`` at the problem's capacity and, above M_R, at M_R too (a plan for a
    smaller capacity is a plan for a larger one): so for one seed ``auto``'s traffic at any
    capacity is at most its traffic at M_R, as long as neither run was cut by the wall clock
    (``solver.stopped_by`` says when one was).  ``found_by`` gets `` at M_R`` when that plan
    won."""
    started = time.perf_counter()
    cap = problem.capacity
    # The four baselines first, with no deadline (milliseconds to a second up to
    # ``LARGE_GRAPH`` operators; their online runs are memoised, so the planners' own
    # comparisons with them below cost nothing more): the final choice keeps them all, so
    # never worse than a baseline holds on a loaded machine too.  A skipping rule by the
    # wall clock (``portfolio.baseline_deadline``) let densenet121 with weights at 4 s and
    # load 7 return 2,811,648 B where a baseline moves 2,309,632 B.  ``divide``'s graphs keep
    # that rule (10,000 operators: a simulation takes seconds).
    base = (baseline_results(problem) if cap is not None and len(problem.graph.computing_ops) <= LARGE_GRAPH
            else None)
    # Above M_R, exact's cheap proofs at M_R first, in a window of their own: where they prove
    # M_R (densenet121 with weights, 0.3 s) their plan is exactly ``auto_once`` at M_R, which
    # the run at M_R after the pass at the capacity came too late to reach at short limits.
    early: Plan | None = None
    early_cut = False
    low = None if cap is None else m_r_cached(problem.graph, problem.weights_in_compute_level,
                                               problem.target.compute.alignment)
    if low is not None and cap is not None and low < cap:
        # No plan when M_R holds none (a one-level target whose homes need more): the pass
        # at the capacity decides.  No wall deadline of auto's own: the proofs' wall share
        # (``AUTO_CHEAP_WALL_SHARE``, from their start) is the one they have at M_R itself.
        proofs = auto_cheap_proofs(replace(problem, target=problem.target.with_capacity(low)), None)
        if proofs is not None and proofs.plan is not None:
            early, early_cut = proofs.plan, proofs.hit_wall
    proven = early is not None and early.solver.status == "optimal"
    # The pass at the capacity ends by ``AUTO_SEARCH_SHARE`` of the limit from auto's start
    # (the baselines and the proofs at M_R included), or ``AUTO_WALL_SHARE`` when M_R is
    # proven and no pass at M_R follows.
    # The window descent after the search may use the time up to ``AUTO_WALL_SHARE`` when no
    # pass at M_R follows (at M_R itself, or when M_R is proven).
    last = low is None or cap is None or low >= cap or proven
    plan = auto_once(problem, started + (AUTO_WALL_SHARE if proven else AUTO_SEARCH_SHARE) * problem.time_limit,
                     started + AUTO_WALL_SHARE * problem.time_limit if last else None)
    stopped = plan.solver.stopped_by
    own = plan.solver.found_by or "auto"
    candidates = [(own, plan)]
    if early is not None:
        # Proven or not, the proofs' plan at M_R is a plan here (free: it is made already).
        label = f"{early.solver.found_by or 'exact'} at M_R"
        candidates.append((label, at_capacity(early, problem)))
        if early_cut and plan_key(candidates[-1][1]) < plan_key(plan):
            stopped = "time"      # a wall-clock cut at M_R shaped the better candidate
    if (not proven and low is not None and cap is not None and plan.solver.status != "optimal"
            and plan.metrics.noncompulsory_bytes > 0):
        deadline = started + AUTO_WALL_SHARE * problem.time_limit
        if low < cap and time.perf_counter() < deadline:
            sub = auto_once(replace(problem, target=problem.target.with_capacity(low)), deadline)
            stopped = stopped or sub.solver.stopped_by
            candidates.append((f"{sub.solver.found_by or 'auto'} at M_R", at_capacity(sub, problem)))
        elif low < cap:
            stopped = "time"
    if base is None:
        return keep_best(problem, "auto", candidates, plan.solver.lower_bound, started, stopped)
    return keep_best_of_baselines(problem, "auto", candidates, plan.solver.lower_bound, started, stopped,
                                  results=base)


__all__ = ["AUTO_SEARCH_SHARE", "AUTO_SEARCH_WORK_PER_SECOND", "AUTO_WALL_SHARE", "CHEAP_PROOFS_MAX_OPS",
           "CHEAP_PROOFS_WORK_LIMIT", "LARGE_GRAPH", "ORDER_SHARE", "PACK_SAFETY",
           "SEARCH_WORK_PER_SECOND", "SECONDS_PER_OP", "AutoParams", "HeuristicParams", "auto", "auto_cheap_proofs",
           "auto_once", "choose", "heuristic", "plan_heuristic", "search_work"]
