"""Lowering a solver's decisions to a ``Plan``.

Solvers decide the order, the compute-level placements (offsets and step ranges) and the
transfers.  Everything else is mechanical and shared here: home placements for weights,
inputs and outputs, placements in the spill levels (first-fit offsets), the buffer and step
tables, and the metrics.  The validator recomputes the metrics independently.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stowage.errors import CapacityError
from stowage.ir.graph import Graph, OpIndex, TensorKind
from stowage.ir.lifetimes import Lifetimes
from stowage.plan import (
    LevelRef, Metrics, ModelRef, Placement, Plan, PlanBuffer, PlanOptions, PlanStep, SolverInfo,
    TargetRef, Transfer,
)
from stowage.solvers.problem import Problem
from stowage.targets.hierarchy import Hierarchy


@dataclass(frozen=True)
class ComputePlacement:
    buffer: int
    offset: int
    first: int
    last: int


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def home_of(graph: Graph, target: Hierarchy, buffer_id: int) -> str | None:
    b = graph.buffers[buffer_id]
    if b.kind is TensorKind.INPUT:
        return target.inputs_home
    if b.kind is TensorKind.WEIGHT:
        return target.weights_home
    if b.is_output:
        return target.outputs_home
    return None


def target_ref(target: Hierarchy) -> TargetRef:
    return TargetRef(
        name=target.name,
        compute_level=target.compute_level,
        levels=tuple(LevelRef(lv.name, lv.capacity, lv.alignment) for lv in target.levels),
    )


class _FirstFit:
    """Offsets for placements in one off-chip level: first fit over time-overlapping ones."""

    def __init__(self, name: str, capacity: int | None, alignment: int) -> None:
        self.name, self.capacity, self.alignment = name, capacity, alignment
        self.taken: list[tuple[int, int, int, int]] = []  # (first, last, offset, end)

    def place(self, size: int, first: int, last: int, what: str) -> int:
        busy = sorted((o, e) for f, l, o, e in self.taken if not (l < first or f > last))
        offset = 0
        for o, e in busy:
            if offset + size <= o:
                break
            offset = max(offset, align_up(e, self.alignment))
        if self.capacity is not None and offset + size > self.capacity:
            raise CapacityError(
                f"level '{self.name}' ({self.capacity} bytes) cannot also hold {what} ({size} bytes)"
            )
        self.taken.append((first, last, offset, offset + size))
        return offset


def compute_metrics(graph: Graph, target: Hierarchy, weights_in_compute_level: bool,
                    steps_order: Sequence[OpIndex], placements: Iterable[Placement],
                    transfers: Iterable[Transfer]) -> Metrics:
    compute = target.compute_level
    read_bufs = {b for idx in steps_order for b in graph.op_reads(graph.operators[idx])}
    written = {b for idx in steps_order for b in graph.op_writes(graph.operators[idx])}
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
    compute_placements: Iterable[ComputePlacement],
    transfers: Sequence[Transfer],
    solver_name: str,
    status: str,
    lower_bound: int | None,
    started: float,
    objective: int | None = None,
    plan_capacity: int | None | bool = False,
    offchip_offsets: Mapping[tuple[int, str], int] | None = None,
) -> Plan:
    """Build the full plan.  ``transfers`` must list every transfer (loads, spills, reloads,
    output stores) in execution order within each (step, phase).  Off-chip placements are
    derived: home data lives at home for the whole run; a buffer stored to a level stays
    there from that step until its last reload from that level (outputs: to the end).
    ``plan_capacity`` (when not False) overrides the compute capacity written to the plan.
    ``offchip_offsets`` ((buffer, level) -> offset) fixes the offsets of those off-chip
    placements (a solver that decided them, e.g. the spill engine, so that a bounded level
    holds exactly what it planned); they are reserved first and the rest are first-fitted
    around them."""
    graph, target = problem.graph, problem.target
    nsteps = len(order)
    end = max(0, nsteps - 1)
    placements: list[Placement] = [
        Placement(p.buffer, target.compute_level, p.offset, p.first, p.last) for p in compute_placements
    ]
    allocators = {lv.name: _FirstFit(lv.name, lv.capacity, lv.alignment) for lv in target.levels}
    home_ranges: dict[tuple[int, str], tuple[int, int]] = {}
    for b in graph.buffers:
        home = home_of(graph, target, b.id)
        if home is not None and b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            home_ranges[(b.id, home)] = (0, end)

    # Off-chip residency from stores: a store at step s to level L keeps the buffer there
    # until its last transfer out of L (a later store to L starts a new range).
    open_ranges: dict[tuple[int, str], list[int]] = {}
    spill_ranges: list[tuple[int, str, int, int]] = []
    for t in transfers:
        key = (t.buffer, t.src)
        if t.src != target.compute_level and key not in home_ranges and key in open_ranges:
            open_ranges[key][1] = t.step
        if t.dst != target.compute_level:
            dkey = (t.buffer, t.dst)
            if dkey in open_ranges:
                f, l = open_ranges.pop(dkey)
                spill_ranges.append((t.buffer, t.dst, f, l))
            open_ranges[dkey] = [t.step, t.step]
    for (bid, level), (f, l) in open_ranges.items():
        if graph.buffers[bid].is_output and level == target.outputs_home:
            l = end
        spill_ranges.append((bid, level, f, l))

    ranges = [(bid, level, f, l) for (bid, level), (f, l) in sorted(home_ranges.items(), key=lambda kv: kv[0][0])]
    ranges += sorted(spill_ranges, key=lambda r: (r[2], r[0]))
    fixed = offchip_offsets or {}
    for bid, level, f, l in ranges:
        if (bid, level) in fixed:
            off = fixed[(bid, level)]
            allocators[level].taken.append((f, l, off, off + graph.buffers[bid].bytes))
            placements.append(Placement(bid, level, off, f, l))
    for bid, level, f, l in ranges:
        if (bid, level) not in fixed:
            off = allocators[level].place(graph.buffers[bid].bytes, f, l, f"'{graph.buffers[bid].tensors[0]}'")
            placements.append(Placement(bid, level, off, f, l))

    buffers = tuple(
        PlanBuffer(b.id, b.tensors, b.bytes, b.kind.value if not (b.is_output and b.kind is TensorKind.ACTIVATION) else "output",
                   home_of(graph, target, b.id))
        for b in graph.buffers
    )
    steps = tuple(
        PlanStep(graph.operators[i].name, graph.operators[i].op_type,
                 graph.op_reads(graph.operators[i]), graph.op_writes(graph.operators[i]))
        for i in order
    )
    placements.sort(key=lambda p: (p.first, p.level, p.offset, p.buffer))
    metrics = compute_metrics(graph, target, problem.weights_in_compute_level, order, placements, transfers)
    tref = target_ref(target)
    if plan_capacity is not False:
        tref = target_ref(target.with_capacity(plan_capacity))  # type: ignore[arg-type]
    return Plan(
        model=ModelRef(graph.source_path, graph.source_sha256),
        target=tref,
        options=PlanOptions(graph.element_bytes, problem.weights_in_compute_level, dict(graph.dims)),
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
) -> tuple[list[ComputePlacement], list[Transfer]]:
    """Placements and transfers of a plan that never spills: each buffer occupies
    ``offsets[b]`` over its whole lifetime; inputs and weights are loaded from home just before
    their first use, outputs stored home right after their last touch.  Shared by every solver
    whose only decisions are the order and the offsets (naive, minpeak, exact-alloc)."""
    before: dict[int, list[Transfer]] = {}
    after: dict[int, list[Transfer]] = {}
    placements: list[ComputePlacement] = []
    for bid in sorted(lt.first, key=lambda b: (lt.first[b], b)):
        b = graph.buffers[bid]
        first, last = lt.first[bid], lt.last[bid]
        if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            before.setdefault(first, []).append(
                Transfer(bid, home_of(graph, target, bid), target.compute_level, first, "before"))
        elif b.is_output:
            after.setdefault(last, []).append(
                Transfer(bid, target.compute_level, target.outputs_home, last, "after"))
        placements.append(ComputePlacement(bid, offsets[bid], first, last))
    transfers = [t for s in range(len(lt.order)) for t in (*before.get(s, []), *after.get(s, []))]
    return placements, transfers
