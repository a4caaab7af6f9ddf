"""Memory-aware scheduling: a topological order of the computing operators that minimises
peak live bytes (the ``ir.lifetimes`` conventions).

Why several methods: the peak of an order is decided at a handful of branch points
(Inception blocks, residual shortcuts, NAS cells).  Greedy list scheduling gets chain-like
CNNs right in linear time; a beam search over "which operators have run" fixes the branch
choices greedy gets wrong; for graphs whose reachable-state count is tractable an exact
dynamic program over those states (Serenity, Ahn et al. 2020) proves optimality; a seeded
local search polishes what is left.

The state of a partial schedule is the *set* of executed operators: the carried bytes (live
buffers between steps) depend only on that set, so two partial orders reaching the same set
are interchangeable and the DP keeps the one with the smaller peak.  Sets are Python ints
used as bitmasks over operators in file order.

Determinism: every search is bounded by a work budget (beam widths, state caps, move
counts) derived from the graph size, so the result does not depend on machine speed; the
time limit is only a safety stop that should not trigger with the defaults.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace

from stowage.ir.graph import Graph, OpIndex
from stowage.solvers.analysis.steps import step_table
from stowage.solvers.cache import graph_cached

log = logging.getLogger(__name__)

#: Largest number of distinct states the exact DP keeps in one layer before giving up.
DP_MAX_LAYER_STATES = 5_000
#: Largest total number of states the exact DP expands before giving up.
DP_MAX_TOTAL_STATES = 100_000
#: The exact DP's work budget per second of the scheduler's time limit, in states kept
#: (``_Work.states``; at most ``DP_MAX_TOTAL_STATES``).  Calibrated on the 2-core reference VM:
#: 25,000-45,000 states per second at load average 10 (graphs of 40-676 operators, suite and
#: synthetic), three to four times that idle, so the budget ends the DP in about a third of
#: the limit at load 2-3 -- what its former wall share (30% of the time left) allowed on an idle
#: machine, but counted in work: the same graph and limit stop it at the same state on any
#: machine, and the wall clock (the scheduler's deadline) is only the safety net (issue 14,
#: item 6: a 40-operator graph's DP needs 11,322 states, which the 30% wall share of a 0.5 s
#: budget cut at load 2-3).
DP_STATES_PER_SECOND = 30_000
#: Work budgets per second of time limit, calibrated on the 2-core reference machine so that
#: the deterministic budgets end well inside the limit: beam width x ops, and local-search
#: moves x ops.
BEAM_WORK_PER_SECOND = 8_000
#: The safety stop's largest multiple of the work budget (``safety_seconds``), where the
#: caller has that much room: a threefold slowdown (load 6 on the 2-core VM) then still ends
#: on the budgets.
SAFETY_FACTOR = 3.0
LS_WORK_PER_SECOND = 300_000


@dataclass(frozen=True)
class ScheduleModel:
    """The scheduling problem in local ids (0..n-1 = computing ops in file order)."""

    ops: tuple[OpIndex, ...]
    preds: tuple[tuple[int, ...], ...]
    succs: tuple[tuple[int, ...], ...]
    op_bufs: tuple[tuple[int, ...], ...]  # local buffer ids touched by each op
    extra: tuple[int, ...]
    buf_bytes: tuple[int, ...]
    buf_touch: tuple[int, ...]  # number of ops touching each buffer
    buf_ops: tuple[tuple[int, ...], ...]  # ops touching each buffer
    footprint: tuple[int, ...]  # bytes each op needs at its own step

    @property
    def n(self) -> int:
        return len(self.ops)


def build_model(graph: Graph, weights_in_compute_level: bool) -> ScheduleModel:
    ops = graph.file_order()
    local = {idx: i for i, idx in enumerate(ops)}
    deps = graph.op_dependencies()
    preds = tuple(tuple(sorted(local[p] for p in deps[idx])) for idx in ops)
    succ_lists: list[list[int]] = [[] for _ in ops]
    for i, ps in enumerate(preds):
        for p in ps:
            succ_lists[p].append(i)
    buf_local: dict[int, int] = {}
    buf_bytes: list[int] = []
    buf_ops: list[list[int]] = []
    op_bufs: list[tuple[int, ...]] = []
    needs = step_table(graph, weights_in_compute_level).needs
    for i, idx in enumerate(ops):
        mine = []
        for b in needs[idx]:
            if b not in buf_local:
                buf_local[b] = len(buf_bytes)
                buf_bytes.append(graph.buffers[b].bytes)
                buf_ops.append([])
            lb = buf_local[b]
            buf_ops[lb].append(i)
            mine.append(lb)
        op_bufs.append(tuple(mine))
    extra = tuple(graph.operators[idx].extra_bytes for idx in ops)
    return ScheduleModel(
        ops=ops,
        preds=preds,
        succs=tuple(tuple(s) for s in succ_lists),
        op_bufs=tuple(op_bufs),
        extra=extra,
        buf_bytes=tuple(buf_bytes),
        buf_touch=tuple(len(o) for o in buf_ops),
        buf_ops=tuple(tuple(o) for o in buf_ops),
        footprint=tuple(sum(buf_bytes[b] for b in op_bufs[i]) + extra[i] for i in range(len(ops))),
    )


# -- evaluation -----------------------------------------------------------------------------

def _run_op(v: int, done: list[int], op_bufs: tuple[tuple[int, ...], ...], touch: tuple[int, ...],
            size: tuple[int, ...]) -> tuple[int, int]:
    """Execute op ``v`` on the touch counts ``done``: ``(bytes it allocates, bytes it frees)``.
    The one copy of the live-byte bookkeeping every evaluation and the list scheduler share."""
    new = freed = 0
    for b in op_bufs[v]:
        d = done[b]
        if d == 0:
            new += size[b]
        d += 1
        done[b] = d
        if d == touch[b]:
            freed += size[b]
    return new, freed


def local_live_bytes(model: ScheduleModel, order: list[int] | tuple[int, ...]) -> list[int]:
    """Live bytes at every step of a local order (same numbers as ``ir.lifetimes``)."""
    done = [0] * len(model.buf_bytes)
    touch, size, op_bufs, extra = model.buf_touch, model.buf_bytes, model.op_bufs, model.extra
    carried = 0
    live = []
    for v in order:
        new, freed = _run_op(v, done, op_bufs, touch, size)
        live.append(carried + new + extra[v])
        carried += new - freed
    return live


def local_peak(model: ScheduleModel, order: list[int] | tuple[int, ...]) -> int:
    return max(local_live_bytes(model, order), default=0)


def _score(live: list[int]) -> tuple[int, int, int]:
    """Peak first; then fewer steps at the peak and less total pressure (lets search drift
    across plateaus towards orders whose peak is easier to lower)."""
    peak = max(live, default=0)
    return (peak, sum(1 for x in live if x == peak), sum(live))


# -- greedy list scheduling -----------------------------------------------------------------

def greedy_order(model: ScheduleModel, rule: int = 0) -> list[int]:
    """List scheduling with incremental live-byte bookkeeping.

    Among ready ops pick by (rule 0) the smallest resulting peak, then the largest net
    release (freed - allocated), then file position; rule 1 prefers net release first;
    rule 2 prefers the smallest step footprint first.  Look-ahead: an op that allocates
    nothing new and frees bytes is always taken first (it can never hurt)."""
    n = model.n
    done = [0] * len(model.buf_bytes)
    touch, size, op_bufs, extra, succs = (model.buf_touch, model.buf_bytes, model.op_bufs,
                                          model.extra, model.succs)
    indeg = [len(p) for p in model.preds]
    ready = {i for i in range(n) if indeg[i] == 0}
    carried = peak = 0
    order: list[int] = []
    while ready:
        best_key: tuple[int, ...] | None = None
        best = -1
        for v in ready:
            new = freed = 0
            for b in op_bufs[v]:
                d = done[b]
                if d == 0:
                    new += size[b]
                if d == touch[b] - 1:
                    freed += size[b]
            step = carried + new + extra[v]
            key: tuple[int, ...]                 # rules 1 and 2 rank by three numbers, rule 0 by four
            if rule == 0:
                key = (max(peak, step), new - freed, step, v)
            elif rule == 1:
                key = (new - freed, max(peak, step), v)
            else:
                key = (step, new - freed, v)
            if best_key is None or key < best_key:
                best_key, best = key, v
        v = best
        ready.discard(v)
        new, freed = _run_op(v, done, op_bufs, touch, size)
        peak = max(peak, carried + new + extra[v])
        carried += new - freed
        order.append(v)
        for u in succs[v]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.add(u)
    if len(order) != n:
        raise ValueError("dependency cycle among computing operators")
    return order


def model_for(graph: Graph, weights_in_compute_level: bool) -> ScheduleModel:
    """``build_model``, memoised per graph (``solvers.cache``): the min-peak scheduler, the
    greedy orders of the planners and the baselines all start from the same model, and on a
    10,000-operator graph each build cost 0.3-0.5 s (issue 14, on time)."""
    return graph_cached("schedule.model", graph, weights_in_compute_level,
                        lambda: build_model(graph, weights_in_compute_level))


def _forward_greedy(graph: Graph, weights_in_compute_level: bool) -> tuple[tuple[int, ...], ...]:
    """The three forward list-scheduling orders (local ids), memoised per graph: both
    ``greedy_orders`` and the scheduler's first stage need them, and each costs a pass of
    operators x ready operators."""
    def compute() -> tuple[tuple[int, ...], ...]:
        model = model_for(graph, weights_in_compute_level)
        return tuple(tuple(greedy_order(model, r)) for r in (0, 1, 2))

    return graph_cached("schedule.greedy", graph, weights_in_compute_level, compute)


def greedy_orders(graph: Graph, weights_in_compute_level: bool) -> list[tuple[OpIndex, ...]]:
    """The three list-scheduling variants (rules 0, 1, 2 of ``greedy_order``) as graph orders:
    cheap alternatives to the min-peak order that the planners also simulate, since a lower
    peak does not always mean less traffic."""
    model = model_for(graph, weights_in_compute_level)
    return [_to_graph_order(model, list(o)) for o in _forward_greedy(graph, weights_in_compute_level)]


# -- state-space search (exact DP and beam) -------------------------------------------------

@dataclass
class _State:
    peak: int
    carried: int
    mask: int
    ready: frozenset[int]
    path: tuple | None  # (op, parent_path) linked list


def _masks(model: ScheduleModel) -> tuple[list[int], list[int]]:
    pred_mask = [0] * model.n
    for i, ps in enumerate(model.preds):
        m = 0
        for p in ps:
            m |= 1 << p
        pred_mask[i] = m
    buf_mask = [0] * len(model.buf_bytes)
    for b, ops in enumerate(model.buf_ops):
        m = 0
        for o in ops:
            m |= 1 << o
        buf_mask[b] = m
    return pred_mask, buf_mask


def _last_op(st: _State) -> int:
    """The operator ``st`` ran last.  Only the start state has no path, and it is never
    compared: every state of a layer after the first step has run an operator."""
    assert st.path is not None
    return st.path[0]


def _unwind(path: tuple | None) -> list[int]:
    out = []
    while path is not None:
        out.append(path[0])
        path = path[1]
    out.reverse()
    return out


@dataclass
class _Work:
    """What a search did: ``states`` kept over all layers (the DP's work unit), and whether
    the wall clock (``clock``), not a budget, stopped it."""

    states: int = 0
    clock: bool = False


def _search(model: ScheduleModel, width: int | None, upper: int | None, deadline: float,
            max_layer: int = DP_MAX_LAYER_STATES, max_total: int = DP_MAX_TOTAL_STATES,
            work: _Work | None = None) -> tuple[list[int] | None, bool]:
    """Layered search over executed-op sets.

    ``width=None`` is the exact DP: every distinct set is kept (the one with the smallest
    peak so far), states whose peak reaches ``upper`` are pruned (they cannot beat the known
    order), and the search aborts -- returning ``(None, False)`` -- past the state caps or
    the deadline.  Returns ``(order or None, complete)``; for the DP, complete with no order
    means no order beats ``upper``.  With a width it is a beam search keeping the ``width``
    best states per layer by (peak, carried)."""
    n = model.n
    pred_mask, buf_mask = _masks(model)
    size, op_bufs, extra, succs = model.buf_bytes, model.op_bufs, model.extra, model.succs
    start = _State(0, 0, 0, frozenset(i for i in range(n) if not model.preds[i]), None)
    layer = [start]
    total = 0
    work = work if work is not None else _Work()
    for _depth in range(n):
        if time.perf_counter() > deadline:
            work.clock = True
            return None, False
        children: dict[int, _State] = {}
        for st in layer:
            mask, carried = st.mask, st.carried
            for v in st.ready:
                nmask = mask | (1 << v)
                inv = ~nmask
                new = freed = 0
                for b in op_bufs[v]:
                    bm = buf_mask[b]
                    if bm & mask == 0:
                        new += size[b]
                    if bm & inv == 0:
                        freed += size[b]
                step = carried + new + extra[v]
                peak = st.peak if st.peak >= step else step
                if upper is not None and peak >= upper:
                    continue
                old = children.get(nmask)
                if old is not None:
                    assert old.path is not None      # a child has always run an operator
                    if (old.peak, old.path[0]) <= (peak, v):
                        continue
                    old.peak, old.path = peak, (v, st.path)
                    continue
                ready = set(st.ready)
                ready.discard(v)
                for u in succs[v]:
                    if pred_mask[u] & inv == 0:
                        ready.add(u)
                children[nmask] = _State(peak, carried + new - freed, nmask, frozenset(ready), (v, st.path))
        if not children:
            return None, width is None
        layer = list(children.values())
        total += len(layer)
        work.states = total
        if width is None:
            if len(layer) > max_layer or total > max_total:
                log.debug("exact DP gave up at depth %d (%d states in layer)", _depth, len(layer))
                return None, False
        elif len(layer) > width:
            layer.sort(key=lambda s: (s.peak, s.carried, _last_op(s)))
            layer = layer[:width]
    best = min(layer, key=lambda s: (s.peak, _last_op(s)))
    return _unwind(best.path), True


# -- local search ---------------------------------------------------------------------------

def _local_search(model: ScheduleModel, order: list[int], moves: int, seed: int,
                  deadline: float) -> list[int]:
    """Move single ops within their dependency window; keep a move if the (peak, #peak
    steps, total pressure) score does not get worse.  Moves are biased towards ops around
    a peak step, where the peak can change."""
    n = model.n
    if n < 3:
        return order
    rng = random.Random(seed)
    cur = list(order)
    live = local_live_bytes(model, cur)
    cur_score = _score(live)
    preds, succs = model.preds, model.succs
    for it in range(moves):
        if it % 16 == 0 and time.perf_counter() > deadline:
            break
        pos = {v: i for i, v in enumerate(cur)}
        if rng.random() < 0.75:
            peak = cur_score[0]
            peaks = [s for s, x in enumerate(live) if x == peak]
            centre = rng.choice(peaks)
            i = min(n - 1, max(0, centre + rng.randint(-4, 4)))
        else:
            i = rng.randrange(n)
        v = cur[i]
        lo = max((pos[p] for p in preds[v]), default=-1) + 1
        hi = min((pos[s] for s in succs[v]), default=n) - 1
        if hi <= lo:
            continue
        j = rng.randint(lo, hi)
        if j == i:
            continue
        cand = cur[:i] + cur[i + 1:]
        cand.insert(j, v)
        cand_live = local_live_bytes(model, cand)
        sc = _score(cand_live)
        if sc <= cur_score:
            cur, live, cur_score = cand, cand_live, sc
    return cur


# -- public API -----------------------------------------------------------------------------

def _to_graph_order(model: ScheduleModel, order: list[int]) -> tuple[OpIndex, ...]:
    return tuple(model.ops[v] for v in order)


def exact_min_peak_order(graph: Graph, weights_in_compute_level: bool, time_limit: float = 2.0,
                         ) -> tuple[tuple[OpIndex, ...], bool]:
    """The exact DP (bounded by the state caps and ``time_limit``), seeded with the greedy
    orders as upper bound.  Returns ``(order, proven_optimal)``; when the DP gives up, the
    best greedy/file order and ``False``."""
    model = model_for(graph, weights_in_compute_level)
    order, proven = _exact(model, time.perf_counter() + time_limit)
    return _to_graph_order(model, order), proven


def _lower_bound(model: ScheduleModel) -> int:
    """No order has a smaller peak than the largest single-op footprint (M_R)."""
    return max(model.footprint, default=0)


def reversed_model(model: ScheduleModel) -> ScheduleModel:
    """The same problem with every dependency reversed.  Live ranges run from first to last
    touch, so an order and its reverse have the same live bytes step for step: a greedy order
    of the reversed model, reversed, is a valid order of the original.  Forward list scheduling
    runs producers as early as possible; this one runs them as late as possible (the suite
    Transformer: the decoder's cross-attention projections of the encoder output, computed up
    front in file order, wait live for their layer -- peak 622,592 B forward, 327,680 B here)."""
    return replace(model, preds=model.succs, succs=model.preds)


#: List scheduling costs operators x ready operators; the reversed model of a graph with many
#: outputs has thousands ready at once (10,000 operators: 100 s, issue 14), so above this many
#: operators only the forward variants run (a decision by size, not by the clock).
REVERSED_GREEDY_MAX_OPS = 3000


def _best_greedy(model: ScheduleModel, forward: tuple[tuple[int, ...], ...] | None = None) -> list[int]:
    """The best of file order and the list-scheduling orders; ``forward`` (the three forward
    orders of this model, when the caller has them memoised) saves recomputing them."""
    rev = reversed_model(model)
    fwd = [list(o) for o in forward] if forward is not None else [greedy_order(model, r) for r in (0, 1, 2)]
    cands = ([list(range(model.n))] + fwd
             + ([greedy_order(rev, r)[::-1] for r in (0, 1, 2)] if model.n <= REVERSED_GREEDY_MAX_OPS else []))
    return min(cands, key=lambda o: _score(local_live_bytes(model, o)))


def _exact(model: ScheduleModel, deadline: float) -> tuple[list[int], bool]:
    best = _best_greedy(model)
    ub = local_peak(model, best)
    if ub <= _lower_bound(model):
        return best, True
    found, complete = _search(model, None, ub, deadline)
    if found is not None:
        return found, True
    return best, complete


def min_peak_order(graph: Graph, weights_in_compute_level: bool, time_limit: float = 2.0,
                   seed: int = 0, *, safety_stop: bool = True) -> tuple[OpIndex, ...]:
    """A topological order of the computing ops (graph op indices) with small peak live bytes,
    never worse than file order.  See the module docstring for the stages."""
    return min_peak_order_ex(graph, weights_in_compute_level, time_limit, seed, safety_stop=safety_stop)[0]


def min_peak_order_ex(graph: Graph, weights_in_compute_level: bool, time_limit: float = 2.0,
                      seed: int = 0, *, safety_stop: bool = True) -> tuple[tuple[OpIndex, ...], bool]:
    """``min_peak_order`` that also says whether the order is proven optimal.

    ``time_limit`` sets the work budgets (beam width, local-search moves) and, with
    ``safety_stop``, a deadline that cuts the search short on a slow machine.
    ``safety_stop=False`` drops the deadline, so only the work budgets and the DP's state caps
    bound the search and the result cannot depend on the machine's speed or load (tests,
    reproducible benchmarks)."""
    run = min_peak_run(graph, weights_in_compute_level, time_limit, seed, safety_stop=safety_stop)
    return run.order, run.proven


def dp_budget(time_limit: float) -> int:
    """The exact DP's state budget for a scheduler time limit (``DP_STATES_PER_SECOND``)."""
    return max(0, min(DP_MAX_TOTAL_STATES, int(DP_STATES_PER_SECOND * max(0.0, time_limit))))


@dataclass(frozen=True)
class MinPeakRun:
    """A min-peak order, whether it is proven optimal, and whether the wall clock (the
    scheduler's safety deadline) cut some stage short -- then another machine or load could
    have given another order (``solver.stopped_by``).  Every stage has a work budget (beam
    widths, the DP's states, local-search moves), so without a cut the order depends on the
    graph, the limit and the seed only."""

    order: tuple[OpIndex, ...]
    proven: bool
    cut: bool


def safety_seconds(time_limit: float, room: float | None) -> float:
    """The scheduler's wall-clock safety stop for a work budget of ``time_limit`` seconds when
    its caller has ``room`` seconds to give it: up to ``SAFETY_FACTOR`` times the budget, never
    less than the budget, never more than the room (``None``: the budget itself, the stop every
    caller without a deadline of its own keeps).  The budgets end the stages in a third to
    four fifths of the budget idle (the Transformer's 339 operators: 0.6-1.3 s of a 1.6 s
    budget at load 1-5), so a stop *at* the budget fired on any load above idle and the plan
    said ``stopped_by = "time"`` (issue 14, item 6)."""
    budget = max(0.0, time_limit)
    if room is None:
        return budget
    return max(budget, min(SAFETY_FACTOR * budget, room))


def min_peak_run(graph: Graph, weights_in_compute_level: bool, time_limit: float = 2.0,
                 seed: int = 0, *, safety_stop: bool = True, safety: float | None = None) -> MinPeakRun:
    """The stages of the module docstring, as ``min_peak_order_ex``, with ``MinPeakRun.cut``.
    ``safety``: the wall seconds of the safety stop (default ``time_limit``; see
    ``safety_seconds``); the work budgets depend on ``time_limit`` only."""
    t0 = time.perf_counter()
    stop = max(0.0, time_limit) if safety is None else max(0.0, safety)
    deadline = t0 + stop if safety_stop else math.inf
    model = model_for(graph, weights_in_compute_level)
    n = model.n
    if n == 0:
        return MinPeakRun((), True, False)
    best = _best_greedy(model, _forward_greedy(graph, weights_in_compute_level))
    best_score = _score(local_live_bytes(model, best))
    lb = _lower_bound(model)
    if best_score[0] <= lb:
        return MinPeakRun(_to_graph_order(model, best), True, False)
    cut = False

    # Beam search with growing width (deterministic widths; the deadline is a safety stop).
    width = 4
    max_width = max(4, min(256, int(BEAM_WORK_PER_SECOND * time_limit) // n))
    while width <= max_width:
        if time.perf_counter() >= deadline:
            cut = True
            break
        found, _ = _search(model, width, None, deadline)
        if found is None:       # a beam always completes unless the deadline stopped it
            cut = True
        else:
            sc = _score(local_live_bytes(model, found))
            if sc < best_score:
                best, best_score = found, sc
        log.debug("beam width %d: peak %d at %.2fs", width, best_score[0], time.perf_counter() - t0)
        width *= 4
    if best_score[0] <= lb:
        return MinPeakRun(_to_graph_order(model, best), True, cut)

    # Exact DP, pruned by the best peak so far; it gives up on its state caps and its work
    # budget (``dp_budget``); the scheduler's deadline is only its safety stop.
    if n <= 5000:
        dp = _Work()
        found, complete = _search(model, None, best_score[0], deadline, max_total=dp_budget(time_limit), work=dp)
        if found is not None:
            return MinPeakRun(_to_graph_order(model, found), True, cut)
        if complete:
            return MinPeakRun(_to_graph_order(model, best), True, cut)
        cut = cut or dp.clock
        log.debug("exact DP gave up after %d states at %.2fs%s", dp.states, time.perf_counter() - t0,
                  " (the wall clock)" if dp.clock else "")

    # Seeded local search.
    moves = min(5000, max(100, int(LS_WORK_PER_SECOND * time_limit) // n))
    improved = _local_search(model, best, moves, seed, deadline)
    cut = cut or time.perf_counter() > deadline
    sc = _score(local_live_bytes(model, improved))
    if sc < best_score:
        best, best_score = improved, sc
    log.info("min_peak_order: %d ops, peak %d (bound %d) in %.2fs%s", n, best_score[0], lb,
             time.perf_counter() - t0, " (cut by the wall clock)" if cut else "")
    return MinPeakRun(_to_graph_order(model, best), best_score[0] <= lb, cut)


def order_peak(graph: Graph, order: tuple[OpIndex, ...], weights_in_compute_level: bool) -> int:
    """``ir.lifetimes.peak_live`` of a graph order, on the memoised model (the same numbers,
    without another pass over every step's buffers)."""
    model = model_for(graph, weights_in_compute_level)
    local = graph_cached("schedule.local", graph, weights_in_compute_level,
                         lambda: {idx: i for i, idx in enumerate(model.ops)})
    return local_peak(model, [local[idx] for idx in order])


def min_peak_run_cached(graph: Graph, weights_in_compute_level: bool, time_limit: float = 2.0,
                        seed: int = 0, safety: float | None = None) -> MinPeakRun:
    """``min_peak_run`` memoised like ``min_peak_order_cached`` (which returns its order); the
    memo key is the work (``time_limit``, seed), not the safety stop (``safety``)."""
    return graph_cached("schedule.min_peak", graph, (weights_in_compute_level, time_limit, seed),
                        lambda: min_peak_run(graph, weights_in_compute_level, time_limit, seed, safety=safety))


def min_peak_order_cached(graph: Graph, weights_in_compute_level: bool, time_limit: float = 2.0,
                          seed: int = 0) -> tuple[OpIndex, ...]:
    """``min_peak_order``, memoised per graph, setting, budget and seed: ``auto`` above M_R
    plans twice (at the capacity and at M_R) and the planners' baselines want the same order;
    on 10,000 operators each computation costs 1-2 s of the limit (issue 14, on time).  Within
    one process the order is then the same for every caller, also when the first one's
    safety stop cut it short (``docs/solvers.md``, "On time and load")."""
    return min_peak_run_cached(graph, weights_in_compute_level, time_limit, seed).order


__all__ = ["BEAM_WORK_PER_SECOND", "DP_MAX_LAYER_STATES", "DP_MAX_TOTAL_STATES", "DP_STATES_PER_SECOND",
           "LS_WORK_PER_SECOND", "SAFETY_FACTOR", "MinPeakRun", "ScheduleModel", "build_model", "dp_budget",
           "exact_min_peak_order", "greedy_order", "greedy_orders", "local_live_bytes", "local_peak", "min_peak_order",
           "min_peak_order_cached", "min_peak_order_ex", "min_peak_run", "min_peak_run_cached", "model_for",
           "order_peak", "reversed_model", "safety_seconds"]
