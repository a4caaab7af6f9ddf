"""The four baselines of COSMA's evaluation (Li, Gupta, Malik, arXiv 2311.18246).

Each is the TensorFlow Lite arena allocator -- offsets chosen online, as buffers become
resident, in the best-fitting gap among resident buffers (``SimpleMemoryArena``'s rule), with
no capacity awareness of its own -- combined with an operator order and a replacement policy:

* order ``fileorder``: the framework's operator order (ONNX file order, a topological order);
* order ``minpeak``: the order that minimises peak live bytes (``solvers.analysis.schedule.min_peak_order``);
* ``belady``: when a request does not fit, evict the resident buffer whose next use is
  furthest in the future, repeatedly until a gap fits; victims that do not overlap the gap
  finally used are kept (so the baseline never evicts more than the hole it uses needs);
* ``greedy``: per decision, among every contiguous window of the arena that holds no buffer
  the current operator needs, evict the one whose victims add the least traffic (clean
  victims cost their reload, dirty ones a store and a reload); ties go to fewer bytes, then
  to victims needed latest.

These are the strongest honest versions of each idea: both replacement policies are
allocation-aware enough never to evict a buffer that does not help the allocation, clean
buffers are dropped without a store, outputs are stored once right after production.  What
they do not do (by design, since that is what the heuristic planner adds): re-pack offsets
offline, look at reload distance and traffic together, or search over orders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from stowage.ir.graph import OpIndex
from stowage.plan import Plan
from stowage.solvers.analysis.schedule import MinPeakRun, min_peak_run_cached, safety_seconds
from stowage.solvers.analysis.traffic_bound import traffic_lower_bound
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.problem import Problem
from stowage.solvers.registry import register
from stowage.solvers.spill import Config, SpillResult, simulate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineParams:
    """Options of the four baselines.

    ``fit``: gap choice of the arena, ``best`` (TFLite's rule, default) or ``first``.
    ``order_time``: seconds for the min-peak scheduler (min-peak baselines only; capped by
    the problem's time limit)."""

    fit: str = "best"
    order_time: float = 2.0


#: The share of the time limit the min-peak baselines' scheduler may take before its safety
#: stop, when that is more than its budget (``analysis.schedule.safety_seconds``).
BASELINE_ORDER_ROOM = 0.5


def _order(problem: Problem, params: BaselineParams, order_kind: str) -> tuple[OpIndex, ...]:
    if order_kind == "fileorder":
        return problem.graph.file_order()
    return minpeak_run(problem, params).order


def minpeak_run(problem: Problem, params: BaselineParams | None = None) -> MinPeakRun:
    """The min-peak baselines' order and whether a wall-clock stop cut it (``MinPeakRun.cut``),
    memoised per graph, setting, budget and seed (``min_peak_run_cached``, the memo the
    planners' own min-peak order comes from).  The memo keeps the cut flag, so a later call in
    the same process that reuses an order a loaded machine cut short says so too
    (``solver.stopped_by = "time"``), instead of passing a load-dependent order as its own."""
    budget = baseline_order_budget(problem, params)
    # The safety stop: up to three times the budget within half the time limit
    # (``safety_seconds``: at limits of 4 s and less it is the budget itself).
    return min_peak_run_cached(problem.graph, problem.weights_in_compute_level, budget, problem.seed,
                               safety=safety_seconds(budget, BASELINE_ORDER_ROOM * problem.time_limit))


def minpeak_order_cut(problem: Problem, params: BaselineParams | None = None) -> bool:
    """Whether the min-peak baselines' order (``minpeak_run``) was cut by the wall clock."""
    return minpeak_run(problem, params).cut


def _simulated(problem: Problem, params: BaselineParams, policy: str, order: tuple[OpIndex, ...]) -> SpillResult:
    res = simulate(problem, order, Config(policy=policy, alloc="online", fit=params.fit))
    assert res is not None  # online mode always returns a result
    return res


def baseline_plan(problem: Problem, name: str, res: SpillResult, started: float | None = None) -> Plan:
    """The plan of baseline ``name`` from its simulation ``res`` (``baseline_results``)."""
    started = time.perf_counter() if started is None else started
    return assemble_plan(problem, res.order, res.placements, res.transfers, name, "feasible",
                         traffic_lower_bound(problem), started, offchip_offsets=res.offchip_offsets())


def _run(problem: Problem, params: BaselineParams, order_kind: str, policy: str, name: str,
         order: tuple[OpIndex, ...] | None = None) -> Plan:
    started = time.perf_counter()
    if order is None:
        order = _order(problem, params, order_kind)
    return baseline_plan(problem, name, _simulated(problem, params, policy, order), started)


#: The four baselines: (order, replacement policy, what the policy is in words).
_TABLE = (
    ("fileorder", "belady", "Belady replacement"),
    ("fileorder", "greedy", "greedy least-traffic replacement"),
    ("minpeak", "belady", "Belady replacement"),
    ("minpeak", "greedy", "greedy least-traffic replacement"),
)


def _register(order_kind: str, policy: str, what: str) -> str:
    name = f"baseline-{order_kind}-{policy}"
    order_words = "file order" if order_kind == "fileorder" else "min-peak order"

    def solve(problem: Problem, params: BaselineParams) -> Plan:
        if order_kind != "minpeak":
            return _run(problem, params, order_kind, policy, name)
        # The min-peak order's work budget has a wall-clock safety stop: when it fired, the
        # order (and so the plan) may differ under another load, and the plan says so.
        run = minpeak_run(problem, params)
        plan = _run(problem, params, order_kind, policy, name, run.order)
        return replace(plan, solver=replace(plan.solver, stopped_by="time")) if run.cut else plan

    solve.__name__ = solve.__qualname__ = name.replace("-", "_")
    register(name, BaselineParams, f"COSMA baseline: TFLite arena (best fit) + {order_words} + {what}")(solve)
    return name


BASELINES = tuple(_register(*row) for row in _TABLE)


def baseline_plans(problem: Problem, params: BaselineParams | None = None,
                   minpeak_order: tuple[OpIndex, ...] | None = None,
                   deadline: float | None = None, estimate: float = 0.0) -> list[tuple[str, Plan]]:
    """The four baselines' plans for ``problem``, as ``(name, plan)`` in ``BASELINES`` order:
    the very plans ``--solver NAME`` returns with the same parameters (the registered
    defaults unless given), so a planner that keeps the best of its own and these is never
    worse than any baseline (``stowage.solvers.portfolio``).  The min-peak order is computed
    once for both min-peak baselines; a caller that already has it with the same budget
    (``min(order_time, time_limit)``, the same seed) passes it as ``minpeak_order``.  The
    baselines run in milliseconds to a second; on very large graphs ``deadline`` (a
    ``time.perf_counter`` value) skips those that would not end in time -- each is expected to
    take as long as the previous one, the first ``estimate`` seconds -- and fewer than four
    plans then come back (the caller says so in ``solver.stopped_by``)."""
    params = params or BaselineParams()
    return _each(problem, params, minpeak_order, deadline, estimate,
                 lambda kind, policy, name, order: _run(problem, params, kind, policy, name, order))


def baseline_results(problem: Problem, params: BaselineParams | None = None,
                     minpeak_order: tuple[OpIndex, ...] | None = None,
                     deadline: float | None = None, estimate: float = 0.0) -> list[tuple[str, SpillResult]]:
    """``baseline_plans`` before assembly: each baseline's simulation, as ``(name, result)``,
    with the same skipping rule.  A caller that compares results first assembles only the one
    that wins (``stowage.solvers.portfolio.keep_best_of_baselines``; on 10,000 operators an
    assembly costs about as much as a simulation)."""
    params = params or BaselineParams()
    return _each(problem, params, minpeak_order, deadline, estimate,
                 lambda kind, policy, name, order: _simulated(problem, params, policy, order))


_T = TypeVar("_T")


def _each(problem: Problem, params: BaselineParams, minpeak_order: tuple[OpIndex, ...] | None,
          deadline: float | None, estimate: float,
          make: Callable[[str, str, str, tuple[OpIndex, ...]], _T]) -> list[tuple[str, _T]]:
    """``make(order kind, policy, name, order)`` for each baseline in ``BASELINES`` order, the
    orders computed once, skipping the rest when the next would pass ``deadline`` (each is
    expected to take as long as the previous one, the first ``estimate`` seconds)."""
    orders: dict[str, tuple[OpIndex, ...]] = {}
    if minpeak_order is not None:
        orders["minpeak"] = minpeak_order
    out: list[tuple[str, _T]] = []
    for (order_kind, policy, _what), name in zip(_TABLE, BASELINES, strict=True):
        t0 = time.perf_counter()
        if deadline is not None and t0 + estimate > deadline:
            return out
        if order_kind not in orders:
            orders[order_kind] = _order(problem, params, order_kind)
        out.append((name, make(order_kind, policy, name, orders[order_kind])))
        estimate = time.perf_counter() - t0
    return out


def baseline_order_budget(problem: Problem, params: BaselineParams | None = None) -> float:
    """The min-peak scheduler's budget the min-peak baselines use (so that a planner can tell
    whether its own min-peak order is theirs)."""
    return min((params or BaselineParams()).order_time, problem.time_limit)


__all__ = ["BASELINES", "BASELINE_ORDER_ROOM", "BaselineParams", "baseline_order_budget", "baseline_plan",
           "baseline_plans", "baseline_results", "minpeak_order_cut", "minpeak_run"]
