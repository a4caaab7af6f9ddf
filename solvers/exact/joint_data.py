"""The joint planning instance and its solutions, shared by the CP-SAT and MIP backends.

Both exact backends (``joint_model`` for CP-SAT, ``joint_mip`` for PuLP)
decide the same things for the compute level:

* an order of the computing operators (``pos[op]``, one operator per step);
* for every buffer, its *residency segments*: maximal step ranges during which it occupies
  the compute level, each at its own offset.  The first segment starts when the buffer is
  produced (activations) or first loaded (inputs, weights); every further segment is a
  reload (non-compulsory), and an activation with a reload must have been stored once.

Why segments and not per-step residency: a segment is one interval in time and one in
address, so CP-SAT can use ``NoOverlap2D`` directly and a reload may land at a different
address.  There is always an optimal plan whose segments start and end at steps that touch
the buffer, so a buffer touched by ``m`` operators never needs more than ``m`` segments: with
``max_segments`` at least that, the model is exact (``JointData.exact``).

Prices come from the one cost model (``solvers.costs``): inputs and weights come back from
their homes, graph outputs from where they are stored anyway, and any other activation is
stored to and reloaded from the cheapest spill level that can ever hold it
(``CostModel.store_level``).  That price is the least any plan pays for that spill, so the
model stays a relaxation and its bounds stay valid; the assembler may still have to put a
spill farther away when that level is full at the time (see ``lower.lower_solution``).

This module imports no solver library on purpose: the HiGHS path runs in a subprocess that
must not load OR-Tools (both ship a ``libhighs``), and it unpickles these types.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from stowage.errors import InfeasibleError
from stowage.ir.graph import Graph, OpIndex, TensorKind
from stowage.ir.lifetimes import op_buffers
from stowage.plan import Plan, Transfer
from stowage.solvers.alloc.interval import Interval, align_up, first_fit
from stowage.solvers.budgets import m_r_cached, m_r_operator_aligned
from stowage.solvers.costs import CostModel, home_level
from stowage.solvers.problem import Problem

MODES = ("joint", "fixed-schedule", "min-peak")


@dataclass(frozen=True)
class ModelBuffer:
    """A buffer that occupies the compute level at some step.

    ``users`` are the operators touching it (producer first when there is one).
    ``reload_cost`` is paid per segment after the first; ``store_cost`` once when an
    activation has any reload (it must be spilled first).  Both are byte-hops."""

    id: int
    size: int
    producer: OpIndex | None
    users: tuple[OpIndex, ...]
    max_segments: int
    reload_cost: int
    store_cost: int
    reload_src: str | None   # level a reload copies from (None: cannot be reloaded)
    store_dst: str | None    # level a spill copies to (None: no store needed / possible)
    load_src: str | None     # level the first segment is loaded from (inputs/weights)


@dataclass(frozen=True)
class JointData:
    """Everything a backend needs, as plain picklable values (no mapping proxies)."""

    ops: tuple[OpIndex, ...]
    preds: tuple[tuple[OpIndex, tuple[OpIndex, ...]], ...]   # op -> direct predecessors
    buffers: tuple[ModelBuffer, ...]
    scratch: tuple[tuple[OpIndex, int], ...]                 # op -> working-memory bytes
    capacity: int
    capacity_given: bool
    alignment: int
    order: tuple[OpIndex, ...] | None                        # fixed order, or None (joint)
    mode: str
    exact: bool                                              # no buffer's segments capped
    compute_level: str

    @property
    def nsteps(self) -> int:
        return len(self.ops)

    def pred_map(self) -> dict[OpIndex, tuple[OpIndex, ...]]:
        return dict(self.preds)


@dataclass(frozen=True)
class Segment:
    buffer: int
    start: int
    end: int
    offset: int


@dataclass(frozen=True)
class JointSolution:
    order: tuple[OpIndex, ...]
    segments: tuple[Segment, ...]       # per buffer in time order
    scratch_offsets: tuple[tuple[OpIndex, int], ...] = ()


@dataclass(frozen=True)
class SolveResult:
    """Outcome of one backend run.  ``bound`` is a proven lower bound on the primary
    objective (traffic byte-hops, or the peak in min-peak mode); ``value`` the solution's."""

    solution: JointSolution | None
    status: str          # optimal | feasible | infeasible | unknown
    value: int | None
    bound: int | None
    seconds: float
    backend: str


def _transitive_bounds(ops: Sequence[OpIndex],
                       preds: dict[OpIndex, tuple[OpIndex, ...]]) -> dict[OpIndex, tuple[int, int]]:
    """Earliest/latest step of every op: #ancestors and N-1-#descendants."""
    anc: dict[OpIndex, set[OpIndex]] = {}
    for op in ops:  # ops are in a topological order
        s: set[OpIndex] = set()
        for p in preds[op]:
            s.add(p)
            s |= anc[p]
        anc[op] = s
    ndesc = {op: 0 for op in ops}
    for op in ops:
        for a in anc[op]:
            ndesc[a] += 1
    n = len(ops)
    return {op: (len(anc[op]), n - 1 - ndesc[op]) for op in ops}


def _model_buffer(graph: Graph, costs: CostModel, bid: int, users: list[OpIndex], mode: str,
                  max_segments: int | None) -> tuple[ModelBuffer, bool]:
    """The model's view of buffer ``bid``: its users (producer first), where its first
    segment is loaded from and where reloads come from, what each costs, and its segment cap
    (with whether the cap made the model inexact)."""
    b = graph.buffers[bid]
    us = list(users)
    if b.producer is not None and b.producer in us:
        us = [b.producer] + [u for u in us if u != b.producer]
    load_src = reload_src = store_dst = None
    reload_cost = store_cost = 0
    home = home_level(graph, costs.target, bid)
    if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
        load_src = reload_src = home
    elif home is not None:
        reload_src = home                    # a graph output: stored there anyway (compulsory)
    else:
        reload_src = store_dst = costs.store_level(b.bytes)
        store_cost = 0 if store_dst is None else costs.copy_cost(b.bytes, store_dst)
    if reload_src is not None:
        reload_cost = costs.copy_cost(b.bytes, reload_src)
    exact = True
    k = len(us) if reload_src is not None else 1
    if mode == "min-peak":
        k = 1
    elif max_segments is not None and max_segments < k:
        k, exact = max(1, max_segments), False
    return ModelBuffer(bid, b.bytes, b.producer, tuple(us), k, reload_cost, store_cost,
                       reload_src, store_dst, load_src), exact


def _check_m_r(problem: Problem, compute: str, align: int) -> None:
    """Raise ``InfeasibleError`` when the operator that needs the most room alone (M_R at the
    compute level's alignment) does not fit: then no plan exists."""
    capacity, graph, weights = problem.capacity, problem.graph, problem.weights_in_compute_level
    if capacity is None:
        return
    m_r = m_r_cached(graph, weights, align)
    if m_r <= capacity:
        return
    o = m_r_operator_aligned(graph, weights, align)
    assert o is not None
    raise InfeasibleError(
        f"no plan fits in {capacity} bytes of {compute}: operator '{o.name}' ({o.op_type}) "
        f"needs {m_r} bytes resident at once (operands, results"
        f"{', working memory' if o.extra_bytes else ''}, {align}-byte aligned); "
        f"use a capacity of at least {m_r} bytes (M_R = {m_r} bytes)")


def joint_data(problem: Problem, mode: str, order: Sequence[OpIndex] | None = None,
               max_segments: int | None = None) -> JointData:
    """Derive the instance; raise ``InfeasibleError`` when an operator alone cannot fit."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    graph, target = problem.graph, problem.target
    compute = target.compute_level
    align = target.compute.alignment
    ops = graph.file_order()
    deps = graph.op_dependencies()
    preds = {op: tuple(sorted(deps[op])) for op in ops}
    costs = CostModel(target)

    users: dict[int, list[OpIndex]] = {}
    for op in ops:
        for b in op_buffers(graph, graph.operators[op], problem.weights_in_compute_level):
            users.setdefault(b, []).append(op)
    buffers: list[ModelBuffer] = []
    exact = True
    for bid in sorted(users):
        mb, uncapped = _model_buffer(graph, costs, bid, users[bid], mode, max_segments)
        buffers.append(mb)
        exact = exact and uncapped
    scratch = tuple((op, graph.operators[op].extra_bytes) for op in ops if graph.operators[op].extra_bytes > 0)
    if ops:
        _check_m_r(problem, compute, align)
    capacity = problem.capacity
    capacity_given = capacity is not None
    if capacity is None:
        capacity = sum(align_up(mb.size, align) for mb in buffers) + sum(align_up(e, align) for _, e in scratch)
        capacity = max(capacity, 1)
    if mode == "joint":
        fixed = None
    else:
        fixed = tuple(order) if order is not None else None
        if mode == "fixed-schedule" and fixed is None:
            raise ValueError("fixed-schedule mode needs an order")
    if fixed is not None and not graph.is_topological(fixed):
        raise ValueError("the fixed order is not a topological order of the computing operators")
    return JointData(tuple(ops), tuple(sorted(preds.items())), tuple(buffers), scratch, capacity,
                     capacity_given, align, fixed, mode, exact, compute)


def step_bounds(data: JointData) -> dict[OpIndex, tuple[int, int]]:
    """Earliest and latest step of every op (a point when the order is fixed)."""
    if data.order is not None:
        return {op: (s, s) for s, op in enumerate(data.order)}
    return _transitive_bounds(data.ops, data.pred_map())


# -- evaluation ----------------------------------------------------------------------------
def segments_by_buffer(sol: JointSolution) -> dict[int, list[Segment]]:
    out: dict[int, list[Segment]] = {}
    for seg in sol.segments:
        out.setdefault(seg.buffer, []).append(seg)
    for segs in out.values():
        segs.sort(key=lambda s: s.start)
    return out


def traffic_of(data: JointData, sol: JointSolution) -> int:
    """Non-compulsory byte-hops of a solution: reloads plus one store per spilled activation."""
    by_buf = segments_by_buffer(sol)
    total = 0
    for mb in data.buffers:
        extra = len(by_buf.get(mb.id, [])) - 1
        if extra > 0:
            total += extra * mb.reload_cost + mb.store_cost
    return total


def score_of(data: JointData, sol: JointSolution) -> tuple[int, int]:
    """The order in which solutions compare: traffic, then peak address (the model's
    lexicographic objective); the peak alone in ``min-peak`` mode."""
    if data.mode == "min-peak":
        return (peak_of(data, sol), 0)
    return (traffic_of(data, sol), peak_of(data, sol))


def peak_of(data: JointData, sol: JointSolution) -> int:
    size = {mb.id: mb.size for mb in data.buffers}
    tops = [s.offset + size[s.buffer] for s in sol.segments if size[s.buffer] > 0]
    extra = dict(data.scratch)
    tops += [off + extra[op] for op, off in sol.scratch_offsets]
    return max(tops, default=0)


def tighten(data: JointData, sol: JointSolution) -> JointSolution:
    """Shrink every segment to the steps that touch the buffer inside it (dominance: this
    only frees memory) and drop segments touching nothing (they only cost traffic)."""
    step = {op: s for s, op in enumerate(sol.order)}
    out: list[Segment] = []
    by_buf = segments_by_buffer(sol)
    for mb in data.buffers:
        touch = sorted(step[u] for u in mb.users)
        first_seg = True
        for seg in by_buf.get(mb.id, []):
            inside = [t for t in touch if seg.start <= t <= seg.end]
            if not inside:
                continue
            start = inside[0]
            if first_seg and mb.producer is not None:
                start = step[mb.producer]
            out.append(Segment(mb.id, start, inside[-1], seg.offset))
            first_seg = False
    return JointSolution(sol.order, tuple(out), sol.scratch_offsets)


def check_solution(data: JointData, sol: JointSolution) -> str | None:
    """An independent feasibility check of a solution in model terms (None when fine);
    used to vet warm starts before they are given to a solver as hints."""
    if sorted(sol.order) != sorted(data.ops):
        return "order is not a permutation of the operators"
    step = {op: s for s, op in enumerate(sol.order)}
    for op, ps in data.preds:
        if any(step[p] >= step[op] for p in ps):
            return f"op {op} runs before a predecessor"
    if data.order is not None and tuple(sol.order) != data.order:
        return "order differs from the fixed order"
    by_buf = segments_by_buffer(sol)
    boxes: list[tuple[int, int, int, int]] = []
    for mb in data.buffers:
        segs = by_buf.get(mb.id, [])
        if not 1 <= len(segs) <= mb.max_segments:
            return f"buffer {mb.id} has {len(segs)} segments (allowed 1..{mb.max_segments})"
        for a, b in itertools.pairwise(segs):
            if a.end >= b.start:
                return f"buffer {mb.id}: segments overlap in time"
        if mb.producer is not None and segs[0].start != step[mb.producer]:
            return f"buffer {mb.id}: first segment does not start at its producer"
        for u in mb.users:
            if not any(s.start <= step[u] <= s.end for s in segs):
                return f"buffer {mb.id} not resident when op {u} runs"
        for s in segs:
            if s.offset % data.alignment or s.offset < 0 or s.offset + mb.size > data.capacity:
                return f"buffer {mb.id}: offset {s.offset} misaligned or out of capacity"
            if mb.size > 0:
                boxes.append((s.start, s.end, s.offset, s.offset + mb.size))
    extra = dict(data.scratch)
    for op, off in sol.scratch_offsets:
        if off % data.alignment or off + extra[op] > data.capacity:
            return f"scratch of op {op} out of capacity"
        boxes.append((step[op], step[op], off, off + extra[op]))
    boxes.sort()
    if not boxes_overlap(boxes):
        return None
    return _first_overlap(boxes)


def _first_overlap(boxes: Sequence[tuple[int, int, int, int]]) -> str | None:
    """The message for the first overlapping pair of sorted ``(first, last, lo, hi)`` boxes
    (the earliest box that overlaps a later one, then the earliest such later one).  This
    scan is quadratic where many boxes live long (weights, inputs): ``check_solution`` runs
    it only once ``boxes_overlap`` found that some pair overlaps."""
    for i, (_f1, l1, o1, e1) in enumerate(boxes):
        for f2, _l2, o2, e2 in boxes[i + 1:]:
            if f2 > l1:
                break
            if o1 < e2 and o2 < e1:
                return f"overlap at step {f2} addresses [{max(o1, o2)}, {min(e1, e2)})"
    return None


def boxes_overlap(boxes: Sequence[tuple[int, int, int, int]]) -> bool:
    """Whether two of the sorted ``(first, last, lo, hi)`` boxes overlap: their step ranges
    ``[first, last]`` intersect and ``lo1 < hi2 and lo2 < hi1`` (so an empty box ``lo == hi``
    overlaps a box that holds its address strictly inside).  A sweep over first steps in
    O(n log n + n * active): the boxes live at the current step are kept sorted by address and
    pairwise disjoint (the first overlap ends the sweep), so a new box can only meet its
    neighbours; empty boxes are kept apart as sorted points.  A box with ``hi < lo`` (no caller
    builds one) answers True: undecided, left to the exact scan.  The pairwise scan it replaces
    is near-quadratic where boxes live long; on the 10,000-operator graph of
    ``tests/test_on_time.py`` (16,661 short boxes) it took 0.30 s of CPU per check, the whole
    ``check_solution`` now 0.11 s (issue 14, on time)."""
    spans: list[tuple[int, int, int]] = []     # (lo, hi, box index) of live non-empty boxes
    points: list[tuple[int, int]] = []         # (address, box index) of live empty boxes
    ending: list[tuple[int, int]] = []         # heap of (last, box index)
    for i, (first, last, lo, hi) in enumerate(boxes):
        while ending and ending[0][0] < first:
            _, j = heapq.heappop(ending)
            _f, _l, jlo, jhi = boxes[j]
            if jhi > jlo:
                del spans[bisect.bisect_left(spans, (jlo, jhi, j))]
            else:
                del points[bisect.bisect_left(points, (jlo, j))]
        if hi > lo:
            k = bisect.bisect_left(spans, (lo, hi, i))
            if k > 0 and spans[k - 1][1] > lo:
                return True
            if k < len(spans) and spans[k][0] < hi:
                return True
            p = bisect.bisect_right(points, (lo, len(boxes)))
            if p < len(points) and points[p][0] < hi:
                return True
            spans.insert(k, (lo, hi, i))
        elif hi == lo:
            # A point inside a live span: the span starting last before it must reach past it.
            k = bisect.bisect_left(spans, (lo, lo, -1))
            if k > 0 and spans[k - 1][1] > lo:
                return True
            bisect.insort(points, (lo, i))
        else:
            # hi < lo: such a box overlaps nothing by the pairwise test unless another box
            # spans from below hi to above lo; leave it to the exact scan.
            return True
        heapq.heappush(ending, (last, i))
    return False


# -- constructive warm start -----------------------------------------------------------------
def greedy_solution(data: JointData, order: Sequence[OpIndex]) -> JointSolution | None:
    """A feasible solution for a given order, built step by step: keep buffers where they
    are, place new ones first-fit, evict the resident buffer used furthest in the future when
    something does not fit, and as a last resort evict everything and re-place the step's
    operands from address 0 (always fits: ``joint_data`` checked each operator alone).
    Returns None when the instance forbids a needed reload (no spill level)."""
    order = tuple(order)
    step = {op: s for s, op in enumerate(order)}
    by_id = {mb.id: mb for mb in data.buffers}
    touch = {mb.id: sorted(step[u] for u in mb.users) for mb in data.buffers}
    need_at: dict[int, list[int]] = {s: [] for s in range(len(order))}
    for mb in data.buffers:
        for t in touch[mb.id]:
            need_at[t].append(mb.id)
    extra = dict(data.scratch)
    cap, align = data.capacity, data.alignment
    resident: dict[int, tuple[int, int]] = {}   # buffer -> (offset, segment start)
    segs: list[Segment] = []
    count: dict[int, int] = {}
    scratch_offsets: list[tuple[OpIndex, int]] = []

    def fit(size: int, taken: list[tuple[int, int]]) -> int | None:
        off = first_fit(taken, size, align)
        return off if off + size <= cap else None

    def close(bid: int, last: int) -> None:
        off, start = resident.pop(bid)
        segs.append(Segment(bid, start, last, off))

    for s, op in enumerate(order):
        needed = sorted(set(need_at[s]), key=lambda b: -by_id[b].size)
        for attempt in range(2):
            placed: dict[int, int] = {}
            taken = [(o, o + by_id[b].size) for b, (o, _) in resident.items()]
            ok = True
            for bid in needed:
                if bid in resident:
                    continue
                size = by_id[bid].size
                while True:
                    off = fit(size, taken)
                    if off is not None:
                        break
                    victims = [b for b in resident if b not in needed]
                    if not victims:
                        ok = False
                        break
                    nxt = {b: next((t for t in touch[b] if t >= s), 10**9) for b in victims}
                    v = max(victims, key=lambda b: (nxt[b], by_id[b].size, b))
                    close(v, s - 1)
                    taken = [(o, o + by_id[b].size) for b, (o, _) in resident.items()]
                    taken += [(o, o + by_id[b].size) for b, o in placed.items()]
                if not ok or off is None:
                    ok = False
                    break
                placed[bid] = off
                taken.append((off, off + size))
            if ok and op in extra:
                off = fit(extra[op], taken)
                if off is None:
                    ok = False
                else:
                    scratch_offsets.append((op, off))
            if ok:
                break
            if attempt == 1:
                return None
            # Fragmentation: start this step from an empty compute level.
            for bid in list(resident):
                close(bid, s - 1)
        for bid, off in placed.items():
            count[bid] = count.get(bid, 0) + 1
            resident[bid] = (off, s)
        # Free what is not touched again.
        for bid in list(resident):
            if touch[bid][-1] <= s:
                close(bid, s)
    sol = JointSolution(order, tuple(sorted(segs, key=lambda g: (g.buffer, g.start))), tuple(scratch_offsets))
    sol = tighten(data, sol)
    return sol if check_solution(data, sol) is None else None


def solution_from_plan(data: JointData, plan: Plan, graph_order: Sequence[OpIndex],
                       check: bool = True) -> JointSolution | None:
    """Read a plan (from any solver) back as a model solution, for use as a hint.  With
    ``check=False`` the caller vets it (``check_solution``) itself: ``exact``'s pipeline checks
    every offer once, and on 10,000 operators one check is 0.3-0.5 s."""
    segs = [Segment(p.buffer, p.first, p.last, p.offset) for p in plan.placements
            if p.level == data.compute_level]
    sol = tighten(data, JointSolution(tuple(graph_order), tuple(segs)))
    return sol if not check or check_solution(data, sol) is None else None


# -- lowering ------------------------------------------------------------------------------
def compute_placements_and_transfers(data: JointData, problem: Problem,
                                     sol: JointSolution) -> tuple[list[Interval], list[Transfer]]:
    """Placements and transfers of a solution: a load before every segment (inputs and
    weights from home, reloads from where the data was stored), one store after the first
    segment of a spilled activation, and the compulsory store of every graph output right
    after it is produced."""
    graph, target = problem.graph, problem.target
    compute = data.compute_level
    step = {op: s for s, op in enumerate(sol.order)}
    placements: list[Interval] = []
    transfers: list[tuple[int, int, int, Transfer]] = []   # (step, phase rank, buffer, t)
    by_buf = segments_by_buffer(sol)
    for mb in data.buffers:
        segs = by_buf[mb.id]
        b = graph.buffers[mb.id]
        for k, seg in enumerate(segs):
            placements.append(Interval(mb.id, seg.start, seg.end, mb.size, seg.offset))
            if k == 0 and mb.load_src is not None:
                transfers.append((seg.start, 0, mb.id, Transfer(mb.id, mb.load_src, compute, seg.start, "before")))
            elif k > 0:
                assert mb.reload_src is not None     # a buffer that cannot be reloaded has one segment
                transfers.append((seg.start, 0, mb.id, Transfer(mb.id, mb.reload_src, compute, seg.start, "before")))
        if b.is_output and mb.producer is not None:
            s = step[mb.producer]
            transfers.append((s, 1, mb.id, Transfer(mb.id, compute, target.outputs_home, s, "after")))
        elif len(segs) > 1 and mb.store_dst is not None:
            s = segs[0].end
            transfers.append((s, 1, mb.id, Transfer(mb.id, compute, mb.store_dst, s, "after")))
    # Graph outputs never touched by a computing op in the compute level are not our concern
    # (inputs passed straight through); buffers outside the compute level need no transfers.
    transfers.sort(key=lambda x: (x[0], x[1], x[2]))
    return placements, [t for *_, t in transfers]
