"""Operator orders for the exact pipeline: good starting orders, and moves between orders.

The fixed-order models (the gap model, ``fixed-schedule``) are only as good as the order
they get, so the pipeline starts from the scheduler's min-peak order and the file order,
each first *sunk* (``sink_order``), and then walks to neighbours that shorten one large
buffer's life (``window_orders``).  Every order produced here is topological.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stowage.ir.graph import OpIndex
from stowage.solvers.analysis.schedule import min_peak_run
from stowage.solvers.exact.joint_data import JointData, JointSolution
from stowage.solvers.problem import Problem

Preds = dict[OpIndex, tuple[OpIndex, ...]]


def sink_order(order: Sequence[OpIndex], preds: Preds) -> tuple[OpIndex, ...]:
    """``order`` with every operator moved as late as it can go (just before its first
    consumer), last operator first.  Why: schedulers that minimise the peak step by step
    run cheap producers early when their results are small *locally*; a producer whose
    result waits for a far consumer (the Transformer decoder's key/value projections of
    the encoder output, computed for all six layers right after the encoder) keeps that
    result live across everything in between.  Sinking it keeps one shared input live
    instead of many derived results (on the Transformer at M_R it roughly halves the
    min-peak order's peak).  Deterministic; list moves are O(n) each (in C), and the search
    for the first consumer starts at the operator's own position: the list stays topological
    after every move, so no consumer lies before it (10,000 operators: 7 s -> well under 1 s)."""
    succs: dict[OpIndex, list[OpIndex]] = {op: [] for op in order}
    for op, ps in preds.items():
        for p in ps:
            if p in succs and op in succs:
                succs[p].append(op)
    out = list(order)
    for op in reversed(tuple(order)):
        if not succs[op]:
            continue
        i0 = out.index(op)
        del out[i0]
        later = set(succs[op])
        j = next(i for i in range(i0, len(out)) if out[i] in later)
        out.insert(j, op)
    return tuple(out)


def window_orders(data: JointData, order: Sequence[OpIndex],
                  focus: frozenset[int] | None = None) -> list[tuple[OpIndex, ...]]:
    """Neighbours of ``order`` that clear a buffer's live window, largest buffers first;
    with ``focus`` (steps of ``order``), the windows that contain a focus step first (each
    group largest buffers first): ``spill_steps`` of the incumbent, where a shorter life can
    pay -- on NASNet-A at M_R the improving neighbour is the 55th in size order, the 28th
    with the spills' steps as the focus.

    For a buffer live from step ``a`` to step ``z``: *hoist* the operators inside the window
    that do not depend on the operator at ``a`` to before it, or *sink* those that the
    operator at ``z`` does not depend on to after it.  Both keep the order topological
    (the moved sets are closed under predecessors, resp. successors, inside the window) and
    shorten that buffer's life without touching anything outside the window.  On the
    Transformer at M_R, hoisting the decoder's first self-attention above the key/value
    projection of its cross-attention frees two buffers during it, which is the last step
    from the sunk min-peak order to the optimum."""
    preds = data.pred_map()
    step = {op: s for s, op in enumerate(order)}
    order = tuple(order)
    out: list[tuple[OpIndex, ...]] = []
    later: list[tuple[OpIndex, ...]] = []
    seen = [0] * (len(order) + 1)       # focus steps before each step
    for t in range(len(order)):
        seen[t + 1] = seen[t] + (focus is not None and t in focus)
    for mb in sorted(data.buffers, key=lambda b: (-b.size, b.id)):
        ts = sorted(step[u] for u in mb.users)
        a, z = ts[0], ts[-1]
        if z - a < 2:
            continue
        near = focus is None or seen[z + 1] > seen[a]
        _window_moves(order, preds, a, z, out if near else later)
    return out + later


def _window_moves(order: tuple[OpIndex, ...], preds: Preds, a: int, z: int,
                  out: list[tuple[OpIndex, ...]]) -> None:
    """Append the hoist and the sink of the window ``[a, z]`` of ``order`` to ``out``."""
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


def cone_orders(data: JointData, order: Sequence[OpIndex], focus: frozenset[int],
                limit: int | None = None) -> list[tuple[OpIndex, ...]]:
    """Neighbours of ``order`` that move a whole *cone* past a tight operator: for the
    operator ``v`` at a focus step ``a`` (``spill_steps`` of the incumbent: where it pays),
    and for each buffer live across ``a`` (touched before and after it, not by ``v``):

    * *finish before*: the operators in ``(a, z]`` that do not depend on ``v`` move, in their
      order, to just before ``v``, where ``z`` is the step before the buffer's last use --
      work that consumes what is live at ``v`` runs before it instead of after;
    * *start after*: the operators in ``[f + 1, a)`` that ``v`` does not depend on move, in
      their order, to just after ``v``, where ``f`` is the buffer's first use -- work that
      produces what is live at ``v`` runs after it instead of before.

    Pivots are tried largest footprint first (the bytes an operator touches, scratch
    included), each pivot's moves shortest first; at most ``limit`` neighbours are built (the
    caller's evaluations left: each pivot scans every buffer).  Both moves keep
    the order topological: a moved operator's predecessors inside the range are moved too
    (a predecessor that depends on ``v`` would make it depend on ``v``), and ``v``'s are not
    moved.  Why: ``window_orders`` shortens one buffer's life inside its own window; on a
    NAS stem the optimal order finishes a whole cell (two dozen operators, four buffers
    beside a 2.6 MB Pad/Slice chain) before the chain starts -- PNASNet-5 at M_H, 8-bit:
    the heuristic's 3,684,312 B, 2,976,048 B (the group bound: optimal) after one such
    move, which no window of one buffer reaches."""
    order = tuple(order)
    preds = data.pred_map()
    step = {op: s for s, op in enumerate(order)}
    n = len(order)
    footprint = dict.fromkeys(order, 0)
    for op, extra in data.scratch:
        footprint[op] += extra
    for mb in data.buffers:
        for u in mb.users:
            footprint[u] += mb.size
    spans = []
    for mb in data.buffers:
        ts = sorted(step[u] for u in mb.users)
        if ts[-1] - ts[0] >= 2:
            spans.append((ts[0], ts[-1], frozenset(mb.users)))
    out: list[tuple[OpIndex, ...]] = []
    seen = {order}
    for a in sorted((t for t in focus if 0 <= t < n), key=lambda t: (-footprint[order[t]], t)):
        if limit is not None and len(out) >= limit:
            break
        v = order[a]
        moves: set[tuple[int, int]] = set()     # (kind, end): 0 finish before by z, 1 start after from f
        for first, last, users in spans:
            if first < a < last and v not in users:
                if last - 1 > a:
                    moves.add((0, last - 1))
                if first + 1 < a:
                    moves.add((1, first + 1))
        for kind, end in sorted(moves, key=lambda m: (abs(m[1] - a), m)):
            cand = _finish_before(order, preds, a, end) if kind == 0 else _start_after(order, preds, end, a)
            if cand is not None and cand not in seen:
                seen.add(cand)
                out.append(cand)
    return out if limit is None else out[:limit]


def _finish_before(order: tuple[OpIndex, ...], preds: Preds, a: int, z: int) -> tuple[OpIndex, ...] | None:
    """``order`` with the operators of ``(a, z]`` that do not depend on ``order[a]`` moved,
    in order, to just before it (None when none moves)."""
    desc = {order[a]}
    for t in range(a + 1, z + 1):
        if any(p in desc for p in preds[order[t]]):
            desc.add(order[t])
    move = [order[t] for t in range(a + 1, z + 1) if order[t] not in desc]
    if not move:
        return None
    ms = set(move)
    return order[:a] + tuple(move) + tuple(o for o in order[a:z + 1] if o not in ms) + order[z + 1:]


def _start_after(order: tuple[OpIndex, ...], preds: Preds, f: int, a: int) -> tuple[OpIndex, ...] | None:
    """``order`` with the operators of ``[f, a)`` that ``order[a]`` does not depend on moved,
    in order, to just after it (None when none moves)."""
    anc = {order[a]}
    for t in range(a, f - 1, -1):
        if order[t] in anc:
            anc.update(preds[order[t]])
    move = [order[t] for t in range(f, a) if order[t] not in anc]
    if not move:
        return None
    ms = set(move)
    return order[:f] + tuple(o for o in order[f:a + 1] if o not in ms) + tuple(move) + order[a + 1:]


def spill_steps(data: JointData, sol: JointSolution) -> frozenset[int]:
    """The steps of ``sol``'s order at which some buffer is live but not in the compute
    level (between its segments): where the pressure made the plan pay.  Linear in the
    steps, buffers and segments (a difference array): it runs before every descent round,
    also on 10,000-operator graphs."""
    n = len(sol.order)
    step = {op: s for s, op in enumerate(sol.order)}
    diff = [0] * (n + 1)
    span: dict[int, tuple[int, int]] = {}
    for mb in data.buffers:
        ts = [step[u] for u in mb.users]
        a, z = min(ts), max(ts)
        span[mb.id] = (a, z)
        diff[a] += 1
        diff[z + 1] -= 1
    for sg in sol.segments:
        a, z = span.get(sg.buffer, (sg.start, sg.end))
        lo, hi = max(a, sg.start), min(z, sg.end)
        if lo <= hi:
            diff[lo] -= 1
            diff[hi + 1] += 1
    hot, live = set(), 0
    for t in range(n):
        live += diff[t]
        if live > 0:
            hot.add(t)
    return frozenset(hot)


def best_orders(problem: Problem, budget: float | None = None,
                preds: Preds | None = None, on_cut: Callable[[], None] | None = None,
                safety: float | None = None) -> list[tuple[OpIndex, ...]]:
    """Good orders for greedy warm starts and the gap model: the min-peak order and the file
    order; with ``preds``, each sunk (``sink_order``) first.  ``budget`` is the scheduler's
    work budget (its beam widths and local-search moves scale with it), so pass a value that
    depends on the time limit only, never on the time left.  ``on_cut`` is called when the
    scheduler's wall-clock safety stop cut it (the order may then differ under another load);
    ``safety``: that stop's wall seconds (``analysis.schedule.safety_seconds``; default the
    budget)."""
    budget = min(2.0, problem.time_limit) if budget is None else max(0.01, budget)
    run = min_peak_run(problem.graph, problem.weights_in_compute_level, budget, problem.seed, safety=safety)
    if run.cut and on_cut is not None:
        on_cut()
    base = [tuple(run.order), problem.graph.file_order()]
    orders: list[tuple[OpIndex, ...]] = []
    for order in base:
        for cand in ((sink_order(order, preds), order) if preds is not None else (order,)):
            if cand not in orders:
                orders.append(cand)
    return orders


__all__ = ["best_orders", "cone_orders", "sink_order", "spill_steps", "window_orders"]
