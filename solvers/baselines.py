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
from dataclasses import dataclass

from stowage.plan import Plan
from stowage.solvers.analysis.schedule import min_peak_order
from stowage.solvers.analysis.traffic_bound import traffic_lower_bound
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.problem import Problem
from stowage.solvers.registry import register
from stowage.solvers.spill import Config, simulate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineParams:
    """Options of the four baselines.

    ``fit``: gap choice of the arena, ``best`` (TFLite's rule, default) or ``first``.
    ``order_time``: seconds for the min-peak scheduler (min-peak baselines only; capped by
    the problem's time limit)."""

    fit: str = "best"
    order_time: float = 2.0


def _run(problem: Problem, params: BaselineParams, order_kind: str, policy: str, name: str) -> Plan:
    started = time.perf_counter()
    if order_kind == "fileorder":
        order = problem.graph.file_order()
    else:
        order = min_peak_order(problem.graph, problem.weights_in_compute_level,
                               time_limit=min(params.order_time, problem.time_limit), seed=problem.seed)
    res = simulate(problem, order, Config(policy=policy, alloc="online", fit=params.fit))
    assert res is not None  # online mode always returns a result
    return assemble_plan(problem, res.order, res.placements, res.transfers, name, "feasible",
                         traffic_lower_bound(problem), started, offchip_offsets=res.offchip_offsets())


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
        return _run(problem, params, order_kind, policy, name)

    solve.__name__ = solve.__qualname__ = name.replace("-", "_")
    register(name, BaselineParams, f"COSMA baseline: TFLite arena (best fit) + {order_words} + {what}")(solve)
    return name


BASELINES = tuple(_register(*row) for row in _TABLE)

__all__ = ["BASELINES", "BaselineParams"]
