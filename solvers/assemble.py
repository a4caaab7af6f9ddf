"""Lowering a solver's decisions to a ``Plan``.

Solvers decide the order, the compute-level placements (``alloc.interval.Interval`` with
offsets) and the transfers.  Everything else is mechanical and shared here: home placements
for weights, inputs and outputs, placements in the spill levels (first fit over the level's
occupancy, ``alloc.occupancy`` -- the rule the spill engine reserves by), the buffer and step
tables, and the metrics.  The validator recomputes the metrics independently.

When a spilled buffer's store level has no free address range for its off-chip lifetime, the
next level of ``CostModel.spill_candidates`` is tried (its store and reloads are rewritten to
that level) before a ``CapacityError``: a solver that priced every spill at the cheapest level
(the exact model) still gets a plan when that level is full, at the traffic it really costs.

**Homes in the compute level** (a one-level target, a compute level that is the slowest level,
SRAM plus only read-only flash for the outputs' home, or a file that says so): such a buffer is
never copied anywhere, it simply stays in the compute level -- an input from step 0 to its last
use (its data is there before the run), a weight for the whole run (weights persist between
runs; this holds in both weights settings, since there is no other level to read them from),
an output from its producer to the end.  ``_resident_homes`` rewrites every solver's decisions
to that shape, whatever the solver assumed: the buffer's transfers are dropped (a copy of it
from or to its own home level would be a transfer ``sram -> sram``), its compute placements are
merged into one over that span, and when the longer spans collide with the solver's offsets the
compute level is re-packed (``alloc.greedy``).  When that cannot fit the capacity the result is
a ``CapacityError`` naming the bytes that must be resident at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from stowage.errors import CapacityError
from stowage.ir.graph import Graph, OpIndex, TensorKind
from stowage.ir.lifetimes import Lifetimes
from stowage.plan import (
    LevelRef,
    Metrics,
    ModelRef,
    Placement,
    Plan,
    PlanBuffer,
    PlanOptions,
    PlanStep,
    SolverInfo,
    TargetRef,
    Transfer,
)
from stowage.plan.model import PlanSlice
from stowage.solvers.alloc.exact import check_packing
from stowage.solvers.alloc.greedy import allocate_offsets
from stowage.solvers.alloc.interval import Interval, peak_live_at
from stowage.solvers.alloc.occupancy import Occupancy
from stowage.solvers.analysis.steps import step_table
from stowage.solvers.costs import CostModel, home_level
from stowage.solvers.problem import Problem
from stowage.targets.hierarchy import Hierarchy

#: Steps between two prunings of the off-chip occupancy while stays are placed.
PRUNE_EVERY = 32


def target_ref(target: Hierarchy) -> TargetRef:
    return TargetRef(
        name=target.name,
        compute_level=target.compute_level,
        levels=tuple(LevelRef(lv.name, lv.capacity, lv.alignment) for lv in target.levels),
    )


@dataclass
class _OffChipRange:
    """One stay of a buffer in an off-chip level: steps ``first..last`` and the indices (in
    the plan's transfer list) of the transfers into and out of the level that make it."""

    buffer: int
    level: str
    first: int
    last: int
    transfers: list[int] = field(default_factory=list)


def _offchip_ranges(graph: Graph, target: Hierarchy, transfers: Sequence[Transfer], end: int) -> list[_OffChipRange]:
    """Home data at home for the whole run (buffer order), then every stay a store starts
    (by first step, then buffer): a store at step s to level L keeps the buffer there until
    its last transfer out of L (a later store to L starts a new stay; outputs at their home
    stay to the end)."""
    compute = target.compute_level
    homes: dict[tuple[int, str], _OffChipRange] = {}
    for b in graph.buffers:
        home = home_level(graph, target, b.id)
        if home is not None and home != compute and b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            homes[(b.id, home)] = _OffChipRange(b.id, home, 0, end)
    open_ranges: dict[tuple[int, str], _OffChipRange] = {}
    stays: list[_OffChipRange] = []
    for i, t in enumerate(transfers):
        key = (t.buffer, t.src)
        if t.src != compute and key not in homes and key in open_ranges:
            open_ranges[key].last = t.step
            open_ranges[key].transfers.append(i)
        if t.dst != compute:
            dkey = (t.buffer, t.dst)
            if dkey in open_ranges and graph.buffers[t.buffer].writers:
                # A Concat-in-place buffer stored again after a later writer (the spill
                # engine's write-through): the new bytes replace the old copy in its stay.
                open_ranges[dkey].last = t.step
                open_ranges[dkey].transfers.append(i)
                continue
            if dkey in open_ranges:
                stays.append(open_ranges.pop(dkey))
            open_ranges[dkey] = _OffChipRange(t.buffer, t.dst, t.step, t.step, [i])
    for (bid, level), r in open_ranges.items():
        if graph.buffers[bid].is_output and level == target.outputs_home:
            r.last = end
        stays.append(r)
    return ([r for _, r in sorted(homes.items(), key=lambda kv: kv[0][0])]
            + sorted(stays, key=lambda r: (r.first, r.buffer)))


class _Placer:
    """First fit of off-chip stays into the levels' occupancy, with the spill-level fallback."""

    def __init__(self, problem: Problem, transfers: list[Transfer], horizon: int | None = None) -> None:
        self.graph, self.target = problem.graph, problem.target
        self.costs = CostModel(self.target)
        self.transfers = transfers
        # ``horizon``: stays reaching it become plain ranges (``Occupancy``); valid when every
        # request comes in order of first step, as ``assemble_plan`` places them.
        self.occupancy = {lv.name: Occupancy(lv.name, lv.capacity, lv.alignment, horizon) for lv in self.target.levels}

    def fix(self, r: _OffChipRange, offset: int) -> Placement:
        self.occupancy[r.level].take(offset, self.graph.buffers[r.buffer].bytes, r.first, r.last)
        return Placement(r.buffer, r.level, offset, r.first, r.last)

    def place(self, r: _OffChipRange) -> Placement:
        b = self.graph.buffers[r.buffer]
        occ = self.occupancy[r.level]
        off = occ.find(b.bytes, r.first, r.last)
        if off is not None:
            return self.fix(r, off)
        for level in self._fallbacks(r):
            off = self.occupancy[level].find(b.bytes, r.first, r.last)
            if off is not None:
                self._move(r, level)
                return self.fix(r, off)
        raise CapacityError(
            f"level '{occ.name}' ({occ.capacity} bytes) cannot also hold '{b.tensors[0]}' ({b.bytes} bytes)")

    def _fallbacks(self, r: _OffChipRange) -> tuple[str, ...]:
        """The spill levels after ``r.level`` in cost order, when ``r`` is a spill (not home
        data, not an output at its home)."""
        b = self.graph.buffers[r.buffer]
        if r.level == home_level(self.graph, self.target, r.buffer) or b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            return ()
        cands = self.costs.spill_candidates(b.bytes)
        return cands[cands.index(r.level) + 1:] if r.level in cands else ()

    def _move(self, r: _OffChipRange, level: str) -> None:
        """Send the stay's store and reloads to ``level`` instead."""
        for i in r.transfers:
            t = self.transfers[i]
            self.transfers[i] = replace(t, dst=level) if t.dst == r.level else replace(t, src=level)
        r.level = level


def resident_span(graph: Graph, target: Hierarchy, order: Sequence[OpIndex], buffer_id: int,
                  touched: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The steps ``first..last`` a buffer whose home is the compute level stays there (module
    docstring); ``None`` when its home is elsewhere, or when no step of ``order`` touches it (an
    unused input or weight needs no room at all).  ``touched`` (the first and last step of
    ``order`` that reads or writes the buffer, ``_touches``) saves a pass over the order."""
    if home_level(graph, target, buffer_id) != target.compute_level or not order:
        return None
    if touched is None:
        touched = _touches(graph, order).get(buffer_id)
    if touched is None:
        return None
    b = graph.buffers[buffer_id]
    end = len(order) - 1
    first = 0 if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT) else touched[0]
    last = end if b.kind is TensorKind.WEIGHT or b.is_output else touched[1]
    return first, last


def _touches(graph: Graph, order: Sequence[OpIndex]) -> dict[int, tuple[int, int]]:
    """Buffer -> (first, last) step of ``order`` that reads or writes it: one pass over the
    order for all buffers (asked per buffer, the scan was operators x buffers: quadratic on a
    target whose compute level is the home of thousands of weights)."""
    table = step_table(graph, False)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for s, i in enumerate(order):
        for b in (*table.reads[i], *table.writes[i]):
            first.setdefault(b, s)
            last[b] = s
    return {b: (f, last[b]) for b, f in first.items()}


def _resident_homes(problem: Problem, order: Sequence[OpIndex], compute_placements: list[Interval],
                    transfers: list[Transfer]) -> tuple[list[Interval], list[Transfer]]:
    """Rewrite a solver's decisions for buffers whose home is the compute level (module
    docstring): no transfers of them, one compute placement over ``resident_span``, and the
    compute level re-packed when those spans collide with the solver's offsets."""
    graph, target = problem.graph, problem.target
    compute = target.compute_level
    if not any(home_level(graph, target, b.id) == compute for b in graph.buffers):
        return compute_placements, transfers
    touches = _touches(graph, order)
    spans = {b.id: sp for b in graph.buffers
             if b.id in touches and (sp := resident_span(graph, target, order, b.id, touches[b.id])) is not None}
    if not spans:
        return compute_placements, transfers
    kept = [t for t in transfers if t.buffer not in spans and t.src != t.dst]
    first_offset: dict[int, int] = {}
    placed: list[Interval] = []
    for iv in compute_placements:
        if iv.id in spans:
            first_offset.setdefault(iv.id, iv.offset if iv.offset is not None else 0)
        else:
            placed.append(iv)
    for bid, (first, last) in sorted(spans.items()):
        placed.append(Interval(bid, first, last, graph.buffers[bid].bytes, first_offset.get(bid)))
    capacity, alignment = target.compute.capacity, target.compute.alignment
    offsets = [iv.offset for iv in placed]
    if None not in offsets and check_packing(placed, offsets, capacity) is None:  # type: ignore[arg-type]
        return placed, kept
    # Re-pack: ids of the interval list are positions (a buffer may have several placements).
    by_pos = [Interval(k, iv.first, iv.last, iv.size) for k, iv in enumerate(placed)]
    packed = allocate_offsets(by_pos, alignment, capacity, time_limit=min(1.0, max(0.1, problem.time_limit / 10)))
    if packed is None:
        need, at = peak_live_at(by_pos)
        pinned = sum(graph.buffers[b].bytes for b in spans)
        raise CapacityError(
            f"capacity {capacity} bytes of level '{compute}' cannot hold the inputs, weights and outputs "
            f"whose home it is ({pinned} bytes, resident for good) together with the rest of the plan "
            f"({need} bytes live at step {at}); raise the capacity or give them a home in a slower level")
    return [replace(iv, offset=packed[k]) for k, iv in enumerate(placed)], kept


def compute_metrics(graph: Graph, target: Hierarchy, weights_in_compute_level: bool,
                    steps_order: Sequence[OpIndex], placements: Iterable[Placement],
                    transfers: Iterable[Transfer]) -> Metrics:
    compute = target.compute_level
    table = step_table(graph, weights_in_compute_level)
    read_bufs = {b for idx in steps_order for b in table.reads[idx]}
    written = {b for idx in steps_order for b in table.writes[idx]}
    compulsory = 0
    for b in graph.buffers:
        if b.kind is TensorKind.INPUT and b.id in read_bufs:
            compulsory += b.bytes * target.hops(target.inputs_home, compute)
        elif b.kind is TensorKind.WEIGHT and b.id in read_bufs and weights_in_compute_level:
            compulsory += b.bytes * target.hops(target.weights_home, compute)
        if b.is_output and b.id in written:
            compulsory += b.bytes * target.hops(compute, target.outputs_home)
    total = sum(graph.buffers[t.buffer].bytes * target.hops(t.src, t.dst) for t in transfers)
    peak = {lv.name: 0 for lv in target.levels}
    for p in placements:
        peak[p.level] = max(peak[p.level], p.offset + graph.buffers[p.buffer].bytes)
    return Metrics(compulsory_bytes=compulsory, noncompulsory_bytes=total - compulsory, peak_bytes=peak)


def assemble_plan(
    problem: Problem,
    order: Sequence[OpIndex],
    compute_placements: Iterable[Interval],
    transfers: Sequence[Transfer],
    solver_name: str,
    status: str,
    lower_bound: int | None,
    started: float,
    objective: int | None = None,
    plan_capacity: int | bool | None = False,
    offchip_offsets: Mapping[tuple[int, str], int] | None = None,
) -> Plan:
    """Build the full plan.  ``compute_placements`` are placed intervals (``offset`` set);
    ``transfers`` must list every transfer (loads, spills, reloads, output stores) in
    execution order within each (step, phase).  Off-chip placements are derived: home data
    lives at home for the whole run; a buffer stored to a level stays there from that step
    until its last reload from that level (outputs: to the end); a spill whose level is full
    moves to the next spill candidate (module docstring).
    ``plan_capacity`` (when not False) overrides the compute capacity written to the plan.
    ``offchip_offsets`` ((buffer, level) -> offset) fixes the offsets of those off-chip
    placements (a solver that decided them, e.g. the spill engine, so that a bounded level
    holds exactly what it planned); they are reserved first and the rest are first-fitted
    around them."""
    graph, target = problem.graph, problem.target
    end = max(0, len(order) - 1)
    compute_ivs, transfers = _resident_homes(problem, order, list(compute_placements), list(transfers))
    placements: list[Placement] = [
        Placement(p.id, target.compute_level, p.offset, p.first, p.last) for p in compute_ivs  # type: ignore[arg-type]
    ]
    fixed = offchip_offsets or {}
    # Without fixed offsets every stay is placed in order of first step, so stays reaching the
    # end (homes, stored outputs) can be merged into plain ranges: scanning them one by one
    # made placing n stays O(n^2) (issue 14: exact's lowering on 10,000 operators, 9 s).
    placer = _Placer(problem, transfers, None if fixed else end)
    ranges = _offchip_ranges(graph, target, transfers, end)
    for r in ranges:
        if (r.buffer, r.level) in fixed:
            placements.append(placer.fix(r, fixed[(r.buffer, r.level)]))
    pruned: dict[str, int] = {}
    for r in ranges:   # in order of first step (homes from step 0 first)
        if (r.buffer, r.level) not in fixed:
            if r.first >= pruned.get(r.level, 0) + PRUNE_EVERY:
                # No later range starts before r.first: stays that ended earlier cannot
                # conflict, and scanning them made placing n spills O(n^2) (issue 14: exact's
                # lowering on 10,000 operators spent 22 s here).
                for occ in placer.occupancy.values():
                    occ.prune(r.first)
                pruned = dict.fromkeys(placer.occupancy, r.first)
            placements.append(placer.place(r))

    buffers = tuple(
        PlanBuffer(b.id, b.tensors, b.bytes,
                   b.kind.value if not (b.is_output and b.kind is TensorKind.ACTIVATION) else "output",
                   home_level(graph, target, b.id),
                   slices=tuple(PlanSlice(*sl) for sl in graph.buffer_slices(b.id)))
        for b in graph.buffers
    )
    table = step_table(graph, problem.weights_in_compute_level)
    steps = tuple(
        PlanStep(graph.operators[i].name, graph.operators[i].op_type, table.reads[i], table.writes[i],
                 index=i, fused=tuple(graph.operators[f].name for f in graph.operators[i].fused))
        for i in order
    )
    placements.sort(key=lambda p: (p.first, p.level, p.offset, p.buffer))
    metrics = compute_metrics(graph, target, problem.weights_in_compute_level, order, placements, transfers)
    tref = target_ref(target)
    if plan_capacity is not False:
        tref = target_ref(target.with_capacity(plan_capacity))
    return Plan(
        model=ModelRef(graph.source_path, graph.source_sha256),
        target=tref,
        options=PlanOptions(graph.element_bytes, problem.weights_in_compute_level, dict(graph.dims),
                            in_place=graph.in_place, concat_in_place=graph.without_concats is not None,
                            channel_split=dict(graph.channel_splits),
                            qdq="fold" if graph.qdq else "off",
                            input_values=dict(graph.input_values)),
        solver=SolverInfo(solver_name, status,
                          metrics.noncompulsory_bytes if objective is None else objective,
                          lower_bound, round(time.perf_counter() - started, 4)),
        buffers=buffers,
        steps=steps,
        placements=tuple(placements),
        transfers=tuple(transfers),
        metrics=metrics,
    )


def no_spill_residency(
    graph: Graph, target: Hierarchy, lt: Lifetimes, offsets: Mapping[int, int]
) -> tuple[list[Interval], list[Transfer]]:
    """Placements and transfers of a plan that never spills: each buffer occupies
    ``offsets[b]`` over its whole lifetime; inputs and weights are loaded from home just before
    their first use, outputs stored home right after their last touch.  Shared by every solver
    whose only decisions are the order and the offsets (naive, minpeak, exact-alloc)."""
    before: dict[int, list[Transfer]] = {}
    after: dict[int, list[Transfer]] = {}
    placements: list[Interval] = []
    for bid in sorted(lt.first, key=lambda b: (lt.first[b], b)):
        b = graph.buffers[bid]
        first, last = lt.first[bid], lt.last[bid]
        if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            before.setdefault(first, []).append(
                Transfer(bid, home_level(graph, target, bid), target.compute_level, first, "before"))  # type: ignore[arg-type]
        elif b.is_output:
            after.setdefault(last, []).append(
                Transfer(bid, target.compute_level, target.outputs_home, last, "after"))
        placements.append(Interval(bid, first, last, b.bytes, offsets[bid]))
    transfers = [t for s in range(len(lt.order)) for t in (*before.get(s, []), *after.get(s, []))]
    return placements, transfers


__all__ = ["assemble_plan", "compute_metrics", "no_spill_residency", "resident_span", "target_ref"]
