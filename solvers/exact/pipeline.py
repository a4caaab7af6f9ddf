"""The exact solvers: ``exact`` (CP-SAT) and ``exact-mip`` (the same model through PuLP).

Pipeline: derive the instance (``joint_data``: fails early with the capacity an operator
needs), collect warm starts (our greedy on good orders, and the plans of the registered
heuristic solvers when they exist), pick the order for ``fixed-schedule``, build and solve
the model, lower the best solution to a ``Plan`` with the proven bound.

Mode ``auto`` (the default) is a bound-and-pack pipeline, every phase with a fixed work
budget (``AUTO_SHARES``; the wall clock is a safety stop only -- see ``_Auto``):

1. two lower bounds valid over ALL orders: ``solvers.traffic_bound`` and the crossing-cover
   IP (``solvers.cover_bound``); an incumbent at the bound is optimal at once;
2. for good orders (min-peak, file order, each first sunk by ``sink_order``) the order's
   optimum without addresses (``solvers.residency_model``, a compact gap model) packed into
   addresses; a bound for every plan when the graph has a single topological order
   (steps 1-2 are cheap proofs, held to ``PRE_REFERENCE_SHARE`` of the limit in wall time);
   unless that proved optimality: the *reference*, a standalone ``heuristic`` run on the
   same problem -- registered default parameters, the same time limit and seed -- whose
   plan becomes the incumbent and stays a candidate for the final answer;
3. the chain-cut IP (``cover_bound.chain_bound``): an order-aware bound along a chain of
   tight operators, then a descent over ``window_orders`` of the incumbent's order scored by
   the gap model;
4. the other warm starts (``minpeak``, greedy orders) and the gap model on the
   incumbent's order;
5. the joint model *without addresses* (``JointCpModel(addresses=False)``, order free,
   cumulative capacity only), hinted with the incumbent and floored at the bound: its
   proven bound is a lower bound for the full problem, and its optimum is packed into
   addresses for the residency it chose (``solvers.allocate``, then the exact packer
   ``solvers.exact_alloc``); a packing that fits makes the relaxed optimum a true optimum;
6. with time left, the full model with addresses (order free up to 40 operators, the
   incumbent's order above) tries to improve the incumbent.

**Never worse than the heuristic.**  For the same problem (time limit, seed), exact's
non-compulsory traffic <= heuristic's (mode ``auto``, ``warm_start`` on; both defaults).  By
construction: the heuristic derives all its budgets from the time limit and seed (scheduler
``order_time = min(2 s, 40%)``, packings of ``pack_time`` with fixed move budgets,
``improve_iters`` local-search iterations; its wall-clock stop at 75% of the limit, counted
from its own start, is a safety stop), so the reference run inside exact is the very run a
user gets from ``--solver heuristic``, and the answer is the best candidate: exact's
incumbent (which starts from the reference's plan) or the reference plan itself (``_final``,
for plans the model cannot read back; and when ``max_segments`` makes the model
infeasible).  Only an optimum proven in steps 1-2 skips the reference, and nothing beats
it.  The one caveat is shared with the heuristic's own determinism: a run that hits its
wall-clock stop (an overloaded machine, or a limit too short for the graph) may differ from
run to run.  Cost: up to 75% of the limit goes to the reference when steps 1-2 do not
prove optimality; the later phases use what is left.

Statuses are about the primary objective (non-compulsory byte-hops; the peak in
``min-peak`` mode).  ``joint`` proves global optimality.  ``fixed-schedule`` proves
optimality for its order only, so its plan says ``feasible`` with no bound unless the traffic
is 0 (which nothing can beat).  When the solver finds nothing better than the warm start
within the time limit, the warm start is returned with the solver's proven bound.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

# OR-Tools must be loaded before anything imports pulp (pulp imports highspy when it can,
# and OR-Tools cannot load after highspy: both ship a libhighs).
from ortools.sat.python import cp_model  # noqa: F401  (import order matters)

from stowage.errors import InfeasibleError, SolverError, StowageError
from stowage.ir.graph import OpIndex
from stowage.plan import Plan
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.exact.joint_data import (
    JointData, JointSolution, SolveResult, check_solution, compute_placements_and_transfers, greedy_solution,
    joint_data, peak_of, solution_from_plan, traffic_of,
)
from stowage.solvers.alloc.greedy import Interval, allocate_offsets
from stowage.solvers.exact.cover_bound import chain_bound, cover_bound
from stowage.solvers.exact.joint_data import Segment, tighten
from stowage.solvers.exact.joint_model import JointCpModel
from stowage.solvers.exact.residency_model import solve_residency, unique_order
from stowage.solvers.spill.engine import exact_pack
from stowage.solvers.analysis.traffic_bound import traffic_lower_bound
from stowage.solvers.problem import Problem, default_workers
from stowage.solvers.registry import available, register

log = logging.getLogger(__name__)

#: Above this many computing operators ``mode="auto"`` uses a fixed schedule: the
#: order-free model grows quadratically (positions x coverage) and stops proving.
AUTO_JOINT_MAX_OPS = 40

#: Registered solvers whose plans are tried as warm starts, when they exist.
WARM_START_SOLVERS = ("heuristic", "minpeak")


@dataclass(frozen=True)
class ExactParams:
    mode: str = "auto"
    """joint | fixed-schedule | min-peak | auto (joint up to 40 operators, else fixed-schedule)"""
    time_limit: float | None = None
    """seconds; default: the problem's time limit"""
    workers: int | None = None
    """CP-SAT workers; default: the machine's cores"""
    max_segments: int | None = None
    """cap on residency segments per buffer (default: exact, as many as the buffer's users)"""
    warm_start: bool = True
    """hint the solver with the best heuristic plan available"""
    seed: int | None = None
    """random seed; default: the problem's seed"""
    deterministic: bool = True
    """same answer for the same seed and workers (CP-SAT interleaved search)"""


@dataclass(frozen=True)
class ExactMipParams:
    mode: str = "auto"
    """joint | fixed-schedule | min-peak | auto (joint up to 40 operators, else fixed-schedule)"""
    backend: str = "cbc"
    """cbc (bundled with PuLP) | highs (runs in a subprocess: its libhighs clashes with OR-Tools')"""
    time_limit: float | None = None
    """seconds; default: the problem's time limit"""
    max_segments: int | None = None
    """cap on residency segments per buffer (default: exact)"""
    warm_start: bool = True
    """use the best heuristic plan as the fallback answer and as the fixed order"""


# -- warm starts -----------------------------------------------------------------------------
def sink_order(order: Sequence[OpIndex], preds: dict[OpIndex, tuple[OpIndex, ...]]) -> tuple[OpIndex, ...]:
    """``order`` with every operator moved as late as it can go (just before its first
    consumer), last operator first.  Why: schedulers that minimise the peak step by step
    run cheap producers early when their results are small *locally*; a producer whose
    result waits for a far consumer (the Transformer decoder's key/value projections of
    the encoder output, computed for all six layers right after the encoder) keeps that
    result live across everything in between.  Sinking it keeps one shared input live
    instead of many derived results: on the Transformer the min-peak order's peak drops
    from 19 to 10 x 32 KiB.  Deterministic and O(n^2) list moves."""
    succs: dict[OpIndex, list[OpIndex]] = {op: [] for op in order}
    for op, ps in preds.items():
        for p in ps:
            if p in succs and op in succs:
                succs[p].append(op)
    out = list(order)
    for op in reversed(tuple(order)):
        if not succs[op]:
            continue
        out.remove(op)
        later = set(succs[op])
        j = next(i for i, o in enumerate(out) if o in later)
        out.insert(j, op)
    return tuple(out)


def window_orders(data: JointData, order: Sequence[OpIndex]) -> list[tuple[OpIndex, ...]]:
    """Neighbours of ``order`` that clear a buffer's live window, largest buffers first.

    For a buffer live from step ``a`` to step ``z``: *hoist* the operators inside the window
    that do not depend on the operator at ``a`` to before it, or *sink* those that the
    operator at ``z`` does not depend on to after it.  Both keep the order topological
    (the moved sets are closed under predecessors, resp. successors, inside the window) and
    shorten that buffer's life without touching anything outside the window.  On the
    Transformer at M_R, hoisting the decoder's first self-attention above the key/value
    projection of its cross-attention frees two buffers during it: the step from the sunk
    min-peak order's 31 x 32 KiB to the optimum 30 x 32 KiB."""
    preds = data.pred_map()
    step = {op: s for s, op in enumerate(order)}
    order = tuple(order)
    out: list[tuple[OpIndex, ...]] = []
    for mb in sorted(data.buffers, key=lambda b: (-b.size, b.id)):
        ts = sorted(step[u] for u in mb.users)
        a, z = ts[0], ts[-1]
        if z - a < 2:
            continue
        desc = {order[a]}
        for t in range(a + 1, z + 1):
            if any(p in desc for p in preds[order[t]]):
                desc.add(order[t])
        move = [order[t] for t in range(a + 1, z) if order[t] not in desc]
        if move:
            ms = set(move)
            out.append(order[:a] + tuple(move) + tuple(o for o in order[a:] if o not in ms))
        anc = {order[z]}
        for t in range(z, a, -1):
            if order[t] in anc:
                anc.update(preds[order[t]])
        move = [order[t] for t in range(a + 1, z) if order[t] not in anc]
        if move:
            ms = set(move)
            out.append(tuple(o for o in order[:z + 1] if o not in ms) + tuple(move) + order[z + 1:])
    return out


def _best_orders(problem: Problem, budget: float | None = None,
                 preds: dict[OpIndex, tuple[OpIndex, ...]] | None = None) -> list[tuple[OpIndex, ...]]:
    """Good orders for greedy warm starts: the min-peak order when its module exists, and
    the file order; with ``preds``, each sunk (``sink_order``) first.  ``budget`` is the
    scheduler's work budget (its beam widths and local-search moves scale with it), so pass
    a value that depends on the time limit only, never on the time left."""
    orders: list[tuple[OpIndex, ...]] = []
    budget = min(2.0, problem.time_limit) if budget is None else max(0.01, budget)
    base: list[tuple[OpIndex, ...]] = []
    try:
        schedule = importlib.import_module("stowage.solvers.analysis.schedule")
        base.append(tuple(schedule.min_peak_order(problem.graph, problem.weights_in_compute_level,
                                                  budget, problem.seed)))
    except (ImportError, AttributeError) as exc:  # module of another engineer not there yet
        log.debug("no min-peak order available: %s", exc)
    base.append(problem.graph.file_order())
    for order in base:
        for cand in ((sink_order(order, preds), order) if preds is not None else (order,)):
            if cand not in orders:
                orders.append(cand)
    return orders


def _heuristic_plans(problem: Problem, budget: float | None = None,
                     names: Sequence[str] = WARM_START_SOLVERS) -> list[Plan]:
    """Plans of the registered heuristic planners, each run with ``budget`` seconds as its
    time limit (default: a quarter of the time limit, at most 5 s).  The heuristics scale
    their work with their time limit (scheduler beam widths) and stop on work budgets
    (local-search iterations), so each gets the same fixed limit -- not the time left --
    and returns the same plan on a loaded machine as long as it ends by work."""
    plans = []
    specs = available()
    budget = min(problem.time_limit / 4, 5.0) if budget is None else budget
    for name in names:
        if name not in specs or budget <= 0.02:
            continue
        if name == "minpeak" and problem.capacity is not None and plans and \
                plans[0].metrics.noncompulsory_bytes == 0:
            continue  # nothing to gain over a spill-free plan
        short = replace(problem, time_limit=budget)
        try:
            plans.append(specs[name].fn(short, specs[name].params_cls()))
        except Exception as exc:  # a warm start is optional; never let it sink the solve
            log.info("warm start from %s failed: %s", name, exc)
    return plans


def _warm_starts(problem: Problem, data: JointData, use_heuristics: bool,
                 budget: float | None = None,
                 names: Sequence[str] = WARM_START_SOLVERS) -> list[JointSolution]:
    """Feasible solutions of ``data`` (vetted by ``check_solution``), best first, found
    from about ``budget`` seconds of work (default: a quarter of the time limit, at most 5 s;
    the heuristics get 70% of it, the scheduler for the greedy orders 30%)."""
    budget = min(problem.time_limit / 4, 5.0) if budget is None else budget
    cands: list[JointSolution] = []
    if use_heuristics:
        for plan in _heuristic_plans(problem, 0.7 * budget, names):
            order = _plan_order(problem, plan)
            if order is None or (data.order is not None and order != data.order):
                continue
            sol = solution_from_plan(data, plan, order)
            if sol is not None:
                cands.append(sol)
    if not cands or traffic_of(data, min(cands, key=lambda c: _score(data, c))) > 0:
        orders = [data.order] if data.order is not None else _best_orders(problem, 0.3 * budget, data.pred_map())
        for order in orders:
            sol = greedy_solution(data, order)
            if sol is not None:
                cands.append(sol)
    cands = [c for c in cands if check_solution(data, c) is None]
    return sorted(cands, key=lambda s: _score(data, s))


def _plan_order(problem: Problem, plan: Plan) -> tuple[OpIndex, ...] | None:
    index = {}
    for op in problem.graph.computing_ops:
        index.setdefault(op.name, []).append(op.index)
    try:
        return tuple(index[st.op].pop(0) for st in plan.steps)
    except (KeyError, IndexError):
        return None


def _score(data: JointData, sol: JointSolution) -> tuple[int, int]:
    if data.mode == "min-peak":
        return (peak_of(data, sol), 0)
    return (traffic_of(data, sol), peak_of(data, sol))


def _resolve_mode(problem: Problem, mode: str) -> str:
    if mode == "auto":
        return "joint" if len(problem.graph.computing_ops) <= AUTO_JOINT_MAX_OPS else "fixed-schedule"
    if mode not in ("joint", "fixed-schedule", "min-peak"):
        raise SolverError(f"exact: unknown mode '{mode}'; choose joint, fixed-schedule, min-peak or auto")
    return mode


def prepare(problem: Problem, mode: str, max_segments: int | None,
            warm_start: bool, budget: float | None = None) -> tuple[JointData, list[JointSolution]]:
    """Instance + warm starts.  Fixed-schedule takes the order of the best warm start."""
    mode = _resolve_mode(problem, mode)
    if mode == "fixed-schedule":
        free = joint_data(problem, "joint", None, max_segments)
        starts = _warm_starts(problem, free, warm_start, budget)
        order = starts[0].order if starts else _best_orders(problem, budget)[0]
        data = joint_data(problem, mode, order, max_segments)
        return data, [s for s in starts if s.order == order]
    data = joint_data(problem, mode, None, max_segments)
    return data, _warm_starts(problem, data, warm_start, budget)


# -- auto: bound and pack ---------------------------------------------------------------------
def pack_solution(data: JointData, sol: JointSolution, time_limit: float, seed: int = 0) -> JointSolution | None:
    """Give addresses to the residency of ``sol`` (its order and segments are kept; offsets
    are ignored): the offline packer first, then -- byte-granular targets only -- the exact
    packer for the rest of the time.  None when no packing within the capacity was found."""
    t0 = time.perf_counter()
    sol = tighten(data, sol)
    size = {mb.id: mb.size for mb in data.buffers}
    extra = dict(data.scratch)
    step = {op: s for s, op in enumerate(sol.order)}
    items: list[tuple[str, int, int, int, int]] = []       # kind, key, first, last, size
    for seg in sol.segments:
        items.append(("b", seg.buffer, seg.start, seg.end, size[seg.buffer]))
    for op, _off in sol.scratch_offsets or tuple((op, 0) for op in extra):
        items.append(("s", op, step[op], step[op], extra[op]))
    ivs = [Interval(i, f, l, sz) for i, (_k, _b, f, l, sz) in enumerate(items)]
    offs = allocate_offsets(ivs, data.alignment, data.capacity, time_limit=max(0.05, 0.3 * time_limit), seed=seed)
    if offs is None:
        left = time_limit - (time.perf_counter() - t0)
        if left > 0.05:  # sizes in alignment units at alignment > 1 (spill.exact_pack)
            offs = exact_pack(ivs, data.alignment, data.capacity, left)
    if offs is None:
        return None
    segs = tuple(Segment(b, f, l, offs[i]) for i, (k, b, f, l, _sz) in enumerate(items) if k == "b")
    scratch = tuple((b, offs[i]) for i, (k, b, _f, _l, _sz) in enumerate(items) if k == "s")
    out = JointSolution(sol.order, tuple(sorted(segs, key=lambda g: (g.buffer, g.start))), scratch)
    return out if check_solution(data, out) is None else None


#: Shares of the time limit, as work budgets, of the phases of ``auto`` (see ``_Auto``).
#: The chain-cut IP's set-up scans every (operator, buffer) pair in Python; above this many
#: pairs (about 2,000 operators x 2,000 buffers) it is skipped, by size, so that the
#: decision does not depend on the machine's speed.
CHAIN_MAX_PAIRS = 4_000_000

#: Gap-model evaluations of ``window_orders`` neighbours per run of ``_Auto.improve`` (with
#: the CP-SAT deterministic time of ``AUTO_SHARES["improve"]``: first-improvement descent,
#: deterministic).
IMPROVE_EVALS = 200

#: Wall-clock share of the time limit for the cheap proofs that run before the reference
#: heuristic (``_Auto.run``, step 1): the heuristic stops at 75% of the limit after its own
#: start, so the two together stay inside the limit minus exact's reserve.
PRE_REFERENCE_SHARE = 0.15

AUTO_SHARES = {"order": 0.05, "cover": 0.1, "gap": 0.05, "chain": 0.15, "improve": 0.1, "pack": 0.05, "warm": 0.3, "gap_warm": 0.1,
               "relaxed": 0.35, "full": 0.25}


class _Auto:
    """State of the bound-and-pack pipeline: the incumbent, the best proven bound and the
    clock.

    Determinism: every phase gets a *work* budget that is a fixed share of the time limit
    (``AUTO_SHARES``) -- CP-SAT's deterministic time for the models, the scheduler's and the
    heuristics' own work budgets for the warm start -- never a share of the time left.  So
    the same problem, seed and worker count give the same plan on a quiet or a loaded
    machine.  The wall clock is only a safety stop (the time limit minus a reserve for
    lowering the plan and for the registry's validation); a run that hits it (an
    overloaded machine) returns the best plan so far with its proven bound, which may then
    differ between runs."""

    def __init__(self, problem: Problem, params: ExactParams, started: float, time_limit: float,
                 workers: int, seed: int) -> None:
        self.problem, self.params, self.workers, self.seed = problem, params, workers, seed
        self.started, self.time_limit = started, time_limit
        reserve = min(2.0, max(0.1, 0.1 * time_limit))
        self.deadline = started + max(0.05, time_limit - reserve)
        self.data = joint_data(problem, "joint", None, params.max_segments)
        self.preds = self.data.pred_map()
        self.best: JointSolution | None = None
        self.best_value: int | None = None
        self.lb = traffic_lower_bound(problem) if problem.capacity is not None else 0
        self.how = "traffic bound"
        self.reference_plan: Plan | None = None

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def work(self, phase: str) -> float:
        """The phase's deterministic work budget (CP-SAT deterministic time ~ seconds)."""
        return AUTO_SHARES[phase] * self.time_limit

    def proven(self) -> bool:
        return self.best_value is not None and self.best_value <= self.lb

    def offer(self, sol: JointSolution | None, source: str) -> None:
        if sol is None or check_solution(self.data, sol) is not None:
            return
        if self.best is None or _score(self.data, sol) < _score(self.data, self.best):
            self.best, self.best_value = sol, traffic_of(self.data, sol)
            log.info("exact: incumbent %d from %s", self.best_value, source)

    def raise_bound(self, value: int | None, how: str) -> None:
        if value is not None and value > self.lb:
            self.lb, self.how = value, how

    def infeasible(self) -> InfeasibleError:
        return InfeasibleError(_infeasible_message(self.problem, self.data))

    def pack(self, sol: JointSolution, source: str) -> None:
        """Give addresses to a no-address solution better than the incumbent."""
        if self.best_value is not None and traffic_of(self.data, sol) >= self.best_value:
            return
        if self.left() > 0.02:
            # The packers are bounded by the wall clock: a fixed share, so that failed
            # packings (fragmentation) cannot eat the time of the later phases.
            wall = min(0.5 * self.left(), self.work("pack"))
            self.offer(pack_solution(self.data, sol, max(0.05, wall), self.seed), source)

    # -- phases ------------------------------------------------------------------------
    def cover(self) -> None:
        cb = cover_bound(self.data, max(0.05, self.left()), self.workers, self.seed, work=min(self.work("cover"), 10.0))
        if cb.infeasible:
            raise InfeasibleError(f"no plan fits in {self.problem.capacity} bytes of {self.data.compute_level}: "
                                  "buffers that cannot leave it are live together with an operator's operands")
        self.raise_bound(cb.bound, "cover bound")

    def chain(self) -> None:
        """The chain-cut IP: a bound that sees buffers live in some orders only."""
        hint = self.best if self.best is not None else None
        # One worker on purpose: the IP is small and closes through its LP (full
        # linearization); interleaved multi-worker search spends its turns on other subsolvers
        # (the Transformer at M_R closes in 0.15 s with one worker, not in 3 s with two).
        if len(self.data.ops) * len(self.data.buffers) > CHAIN_MAX_PAIRS:
            return
        for sometimes in (False, True):       # the small chain first, then the wider one
            if self.proven() or self.left() <= 0.05:
                return
            wall = min(self.left(), max(0.05, 2 * self.work("chain")))
            cb = chain_bound(self.data, max(0.05, wall), 1, self.seed, work=self.work("chain"), hint=hint,
                             sometimes_tight=sometimes)
            if cb.infeasible:
                raise self.infeasible()
            self.raise_bound(cb.bound, "chain bound")

    def improve(self) -> None:
        """Descent over ``window_orders`` of the incumbent's order, each neighbour scored by
        its gap-model optimum; the best is packed into addresses."""
        if self.best is None:
            return
        order, value = self.best.order, self.best_value
        found: JointSolution | None = None
        evals, moved, spent = 0, True, 0.0
        budget = self.work("improve")

        def exhausted() -> bool:
            return evals >= IMPROVE_EVALS or spent >= budget or self.left() <= 0.1

        while moved and value is not None and value > self.lb and not exhausted():
            moved = False
            for cand in window_orders(self.data, order):
                evals += 1
                res = solve_residency(self.data, cand, max(0.01, self.left()), 1, self.seed, self.lb,
                                      work=max(0.01, min(self.work("gap"), budget - spent)))
                spent += res.work
                if res.value is not None and res.value < value and res.solution is not None:
                    order, value, found, moved = cand, res.value, res.solution, True
                    break
                if exhausted():
                    break
        log.info("exact: window descent %d evaluations (%.2f deterministic s), best %s", evals, spent, value)
        if found is not None:
            self.pack(found, "window descent")

    def gap_model(self, order: tuple[OpIndex, ...], phase: str, hint: JointSolution | None) -> None:
        """The order's no-address optimum (gap model), packed into addresses; its bound holds
        for every plan when the order is the graph's only one."""
        only = unique_order(self.data, order)
        res = solve_residency(self.data, order, max(0.01, self.left()), self.workers, self.seed, self.lb, hint,
                              work=self.work(phase))
        if res.status == "infeasible" and only:
            raise self.infeasible()
        if only:
            self.raise_bound(res.bound, "gap model (the only order)")
        if res.solution is not None and res.value is not None:
            self.pack(res.solution, "gap model")

    def quick_orders(self) -> list[tuple[OpIndex, ...]]:
        return _best_orders(self.problem, min(1.0, self.work("order")), self.preds)

    def relaxed_joint(self) -> None:
        """The order-free model without addresses: a bound for every plan; its solution is
        packed like the gap model's."""
        relaxed = JointCpModel(self.data, addresses=False)
        if self.lb > 0 and not isinstance(relaxed.traffic, int):
            relaxed.model.Add(relaxed.traffic >= self.lb)
        if self.best is not None:
            relaxed.add_hint(self.best)
        if self.left() <= 0.1:
            return
        res = relaxed.solve(self.left(), self.workers, self.seed, self.params.deterministic,
                            label="exact[no addresses]", work=self.work("relaxed"),
                            on_progress=self.problem.on_progress)
        if res.status == "infeasible":
            raise self.infeasible()
        self.raise_bound(res.bound, "no-address model")
        if res.solution is not None:
            self.pack(res.solution, "no-address model")

    def full_model(self) -> None:
        """The model with addresses: order free up to 40 operators, else the incumbent's order."""
        small = len(self.data.ops) <= AUTO_JOINT_MAX_OPS
        if not small and self.best is None:
            return
        full = self.data if small else joint_data(self.problem, "fixed-schedule", self.best.order,
                                                  self.params.max_segments)
        model = JointCpModel(full)
        if self.best is not None:
            model.add_hint(self.best)
        if self.left() <= 0.1:
            return
        res = model.solve(self.left(), self.workers, self.seed, self.params.deterministic,
                          label=f"exact[{full.mode}]", work=self.work("full"),
                          on_progress=self.problem.on_progress)
        if small and res.status == "infeasible":
            raise self.infeasible()
        if small:
            self.raise_bound(res.bound, "joint model")
        self.offer(res.solution, f"{full.mode} model")

    def reference(self) -> None:
        """The plan of a standalone ``heuristic`` run on this problem: the same parameters
        (the registered defaults), time limit and seed, so -- the heuristic's search being
        bounded by work -- the same plan a user gets from ``--solver heuristic``.  It is
        offered as the incumbent and kept as a candidate for the final answer (``run``)."""
        spec = available().get("heuristic")
        if spec is None or not self.params.warm_start:
            return
        same = replace(self.problem, time_limit=self.time_limit, seed=self.seed)
        try:
            plan = spec.fn(same, spec.params_cls())
        except StowageError as exc:   # the heuristic found no plan: nothing to match
            log.info("exact: reference heuristic failed: %s", exc)
            return
        self.reference_plan = plan
        order = _plan_order(self.problem, plan)
        if order is not None:
            self.offer(solution_from_plan(self.data, plan, order), "heuristic")

    def _final(self, plan: Plan | None) -> Plan:
        """The best candidate: exact's plan, or the reference heuristic plan when that has
        less non-compulsory traffic (when the model could not read the heuristic's plan
        back as a solution), relabelled as exact's with exact's proven bound."""
        ref = self.reference_plan
        if ref is None or (plan is not None
                           and plan.metrics.noncompulsory_bytes <= ref.metrics.noncompulsory_bytes):
            if plan is None:
                raise SolverError(f"exact: no plan found within {self.time_limit:g}s (raise the time limit)")
            return plan
        value = ref.metrics.noncompulsory_bytes
        status = "optimal" if value <= self.lb else "feasible"
        log.info("exact[auto]: the reference heuristic plan (%d) is the best candidate", value)
        info = replace(ref.solver, name="exact", status=status, lower_bound=self.lb,
                       seconds=time.perf_counter() - self.started)
        return replace(ref, solver=info)

    def run(self) -> Plan:
        try:
            return self._run()
        except InfeasibleError:
            if self.data.exact:
                raise     # proven for every plan: the heuristic cannot have one either
            # Infeasible with at most ``max_segments`` segments per buffer only: the
            # reference heuristic's plan, when there is one, is still a plan.
            if self.reference_plan is None:
                self.reference()
            if self.reference_plan is None:
                raise
            self.lb = min(self.lb, self.reference_plan.solver.lower_bound or 0)
            return self._final(None)

    def _run(self) -> Plan:
        # 1. Cheap proofs first, within a small wall-clock share (the reference heuristic
        # run needs up to 75% of the limit): the cover bound, then the gap model on good
        # orders (min-peak and file order, each sunk first).  A proof here makes the
        # heuristic run unnecessary (nothing beats an optimum).
        final_deadline = self.deadline
        self.deadline = min(final_deadline, self.started + PRE_REFERENCE_SHARE * self.time_limit)
        self.cover()
        for order in self.quick_orders():
            if self.proven() or self.left() <= 0.05:
                break
            self.gap_model(order, "gap", None)
        self.deadline = final_deadline
        # 2. The reference: the standalone heuristic's own plan, which exact never loses to.
        if not self.proven():
            self.reference()
        # 3. An order-aware bound along the chain of tight operators.
        if not self.proven() and self.left() > 0.05:
            self.chain()
        if not self.proven() and self.left() > 0.1:
            self.improve()
        # 4. The other warm starts (minpeak, greedy orders; the heuristic ran in step 2),
        # then the gap model on the incumbent's order (sunk, then as is).
        before = self.best.order if self.best is not None else None
        if not self.proven() and self.left() > 0.05:
            # A fixed share (deterministic), but never past the deadline.
            for sol in _warm_starts(self.problem, self.data, self.params.warm_start,
                                    min(self.work("warm"), 0.8 * self.left()),
                                    tuple(n for n in WARM_START_SOLVERS if n != "heuristic")):
                self.offer(sol, "warm start")
            if not self.proven() and self.best is not None and self.left() > 0.05:
                order = self.best.order
                sunk = sink_order(order, self.preds)
                if sunk != order:
                    self.gap_model(sunk, "gap", None)
                if not self.proven() and self.left() > 0.05:
                    self.gap_model(order, "gap_warm", self.best if self.best.order == order else None)
                if not self.proven() and self.best.order != before and self.left() > 0.1:
                    self.improve()
        # 5. Bounds over all orders and better plans from the order-free relaxation.
        if not self.proven() and self.data.exact and self.left() > 0.1:
            self.relaxed_joint()
        # 6. The full model with what is left.
        if not self.proven() and self.left() > 0.2:
            self.full_model()
        if self.best is None and self.reference_plan is None:
            if self.left() <= 0:
                raise SolverError(f"exact: no plan found within {self.time_limit:g}s (raise the time limit)")
            self.offer(greedy_solution(self.data, self.problem.graph.file_order()), "greedy")
        if self.best is None:
            return self._final(None)
        status = "optimal" if self.proven() else "feasible"
        log.info("exact[auto]: traffic %d, lower bound %d (%s), %s", self.best_value, self.lb, self.how, status)
        placements, transfers = compute_placements_and_transfers(self.data, self.problem, self.best)
        plan = assemble_plan(self.problem, self.best.order, placements, transfers, "exact", status, self.lb,
                             self.started)
        if plan.metrics.noncompulsory_bytes != self.best_value:
            raise SolverError(f"exact: internal error: model traffic {self.best_value} != plan traffic "
                              f"{plan.metrics.noncompulsory_bytes}")
        return self._final(plan)


# -- results to plans -------------------------------------------------------------------------
def _infeasible_message(problem: Problem, data: JointData) -> str:
    cap = problem.capacity
    where = f"{cap} bytes of {data.compute_level}"
    if data.mode == "min-peak":
        return (f"no spill-free plan fits in {where}: every operator order needs a higher peak "
                "(the minimum, M_P, is above the capacity); allow spilling (mode joint) or add capacity")
    if not data.exact:
        return (f"no plan fits in {where} with at most the given max_segments residency segments per "
                "buffer; raise max_segments (unset = exact) or add capacity")
    if data.order is not None:
        return f"no plan fits in {where} with the fixed operator order"
    return f"no plan fits in {where} (proven by the solver)"


def finish(problem: Problem, data: JointData, result: SolveResult, starts: list[JointSolution],
           solver_name: str, started: float) -> Plan:
    """Choose the better of the solver's answer and the warm start; lower it to a plan."""
    if result.status == "infeasible":
        raise InfeasibleError(_infeasible_message(problem, data))
    sol, status, bound = result.solution, result.status, result.bound
    if starts and (sol is None or _score(data, starts[0]) < _score(data, sol)):
        sol, status = starts[0], "feasible"
    if sol is None:
        raise SolverError(f"{solver_name}: no plan found within {problem.time_limit:g}s "
                          "(raise the time limit or use mode fixed-schedule)")
    value = _score(data, sol)[0]
    if bound is not None and value <= bound:
        status = "optimal"
    if data.mode == "fixed-schedule" or not data.exact:
        # Proofs hold for the restricted model only; traffic 0 is optimal regardless.
        if value == 0 and data.mode != "min-peak":
            status, bound = "optimal", 0
        else:
            status, bound = "feasible", None
    placements, transfers = compute_placements_and_transfers(data, problem, sol)
    objective = value if data.mode == "min-peak" else None
    plan = assemble_plan(problem, sol.order, placements, transfers, solver_name, status, bound,
                         started, objective=objective)
    if data.mode != "min-peak" and plan.metrics.noncompulsory_bytes != value:
        raise SolverError(f"{solver_name}: internal error: model traffic {value} != plan traffic "
                          f"{plan.metrics.noncompulsory_bytes}")
    return plan


# -- registered solvers ---------------------------------------------------------------------
@register("exact", ExactParams, "CP-SAT joint order + spill + offsets model; proven optimal or gap (modes: joint, fixed-schedule, min-peak)")
def exact(problem: Problem, params: ExactParams) -> Plan:
    started = time.perf_counter()
    time_limit = problem.time_limit if params.time_limit is None else params.time_limit
    workers = params.workers or problem.workers or default_workers()
    seed = problem.seed if params.seed is None else params.seed
    if params.mode == "auto":
        return _Auto(problem, params, started, time_limit, workers, seed).run()
    budget = min(5.0, 0.25 * time_limit)
    data, starts = prepare(problem, params.mode, params.max_segments, params.warm_start, budget)
    model = JointCpModel(data)
    if starts:
        model.add_hint(starts[0])
    reserve = min(2.0, max(0.1, 0.1 * time_limit))
    remaining = max(0.05, time_limit - reserve - (time.perf_counter() - started))
    result = model.solve(remaining, workers, seed, params.deterministic, label=f"exact[{data.mode}]",
                         on_progress=problem.on_progress)
    return finish(problem, data, result, starts, "exact", started)


@register("exact-mip", ExactMipParams, "the exact joint model as a MIP through PuLP (CBC, or HiGHS in a subprocess)")
def exact_mip(problem: Problem, params: ExactMipParams) -> Plan:
    from stowage.solvers.exact.joint_mip import solve_mip

    started = time.perf_counter()
    time_limit = problem.time_limit if params.time_limit is None else params.time_limit
    data, starts = prepare(problem, params.mode, params.max_segments, params.warm_start)
    remaining = max(0.5, time_limit - (time.perf_counter() - started))
    result = solve_mip(data, params.backend, remaining)
    return finish(problem, data, result, starts, "exact-mip", started)
