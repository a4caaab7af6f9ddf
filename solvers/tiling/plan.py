"""Tiled plans: choose cascades, plan the macro graph with a whole-tensor solver, attach rows.

``plan_tiled`` is the heuristic of the design notes (section 9.3):

1. a DP over cut points along the file order chooses cascades and band heights
   (``stowage.solvers.tiling.partition``);
2. the cascades become steps of a macro graph (``stowage.ir.tiling.macro_graph``) whose rings
   are buffers; any whole-tensor solver (``auto`` by default) plans it: order, offsets, spills;
3. the stripe programs are attached to the plan with the home placements of streamed graph
   inputs and outputs and their row transfers (compulsory traffic, counted in the metrics).

The plan is then checked by the one validator, rows included.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from stowage.errors import CapacityError
from stowage.ir.graph import Graph, TensorKind
from stowage.ir.tiling import CascadeSpec, buffer_row_bytes, macro_graph
from stowage.plan import Cascade, CascadeTensor, Metrics, Placement, Plan
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.budgets import m_r_cached
from stowage.solvers.problem import Problem
from stowage.solvers.tiling.partition import Partitioner, Segment
from stowage.solvers.tiling.program import Program
from stowage.targets.hierarchy import Hierarchy

log = logging.getLogger(__name__)


def choose_segments(problem: Problem) -> list[Segment]:
    """The cascades for the problem's capacity (see ``partition``), or a ``CapacityError``
    naming the step that cannot be made to fit."""
    g, cap = problem.graph, problem.capacity
    align = problem.target.compute.alignment
    part = Partitioner(g, problem.weights_in_compute_level, align)
    if cap is None:
        return [part.plain(i) for i in range(part.n)]
    segs = part.fewest_stripes(cap)
    if segs is not None:
        return segs
    untiled = m_r_cached(g, problem.weights_in_compute_level, align)
    peak, segs = part.min_peak(bystanders=False)
    log.info("tiling: no partition fits %d B with its bystanders: the planner will spill (largest cascade %d B)",
             cap, peak)
    for s in segs:
        own = s.peak - part.bystanders(part.order.index(s.ops[0]), part.order.index(s.ops[-1]))
        if own > cap:
            op = g.operators[s.ops[0]]
            pos = part.order.index(s.ops[0])
            if s.stripe_rows:
                what = f"a stripe of 1 row of the cascade from '{op.name}' ({len(s.ops)} steps)"
            elif part.tileable[pos]:
                what = (f"operator '{op.name}' ({op.op_type}) with its operands and results whole (streaming "
                        "intermediate tensors through off-chip memory is not supported yet)")
            else:
                what = f"operator '{op.name}' ({op.op_type}), which cannot run in stripes,"
            raise CapacityError(f"capacity {cap} bytes is below M_R = {untiled} bytes and too small even when "
                                f"tiled: {what} needs {own} bytes")
    return segs


def plan_tiled(problem: Problem, solver: str = "auto", params: Any = None) -> Plan:
    from stowage.solvers.registry import solve

    g = problem.graph
    segs = choose_segments(problem)
    part = Partitioner(g, problem.weights_in_compute_level, problem.target.compute.alignment)
    programs: list[Program] = []
    for s in segs:
        if s.stripe_rows:
            i, j = part.order.index(s.ops[0]), part.order.index(s.ops[-1])
            programs.append(part.program(i, j, s.stripe_rows, record=True))
    specs = [CascadeSpec(p.ops, rings=p.rings, streamed=p.streamed) for p in programs]
    macro, ring_of = macro_graph(g, specs)
    align = problem.target.compute.alignment
    if problem.capacity is not None and m_r_cached(macro, problem.weights_in_compute_level, align) > problem.capacity:
        raise CapacityError(f"capacity {problem.capacity} bytes is too small even when tiled: the largest cascade "
                            f"needs {m_r_cached(macro, problem.weights_in_compute_level, align)} bytes")
    log.info("tiling: %d cascades (%s)", len(programs),
             ", ".join(f"{len(p.ops)} steps x {p.stripe_rows} rows" for p in programs))
    macro_plan = solve(replace(problem, graph=macro), solver, params)
    return attach(g, macro_plan, programs, ring_of, problem.target)


def attach(graph: Graph, plan: Plan, programs: list[Program], ring_of: dict[tuple[int, int], int],
           target: Hierarchy) -> Plan:
    """The macro plan plus the cascades: stripe programs, streamed home placements, metrics."""
    pos = {st.index: s for s, st in enumerate(plan.steps)}
    placements = list(plan.placements)
    peaks = dict(plan.metrics.peak_bytes)
    compulsory = plan.metrics.compulsory_bytes
    homes = {pb.id: pb.home for pb in plan.buffers}
    buffers = list(plan.buffers)
    nsteps = len(plan.steps)
    cascades = []
    for k, p in enumerate(programs):
        step = pos[p.ops[0]]
        tensors: list[CascadeTensor] = []
        home_of: dict[str, str] = {}
        for b in p.whole_in + p.whole_out:
            tensors.append(CascadeTensor(graph.buffers[b].tensors[0], "whole", b))
        for b, rows in p.rings.items():
            tensors.append(CascadeTensor(graph.buffers[b].tensors[0], "ring", ring_of[(k, b)], rows,
                                         buffer_row_bytes(graph, b)))
        for b, rows in p.streamed.items():
            home = homes.get(b) or (target.inputs_home if graph.buffers[b].kind is TensorKind.INPUT
                                    else target.outputs_home)
            tname = graph.buffers[b].tensors[0]
            home_of[tname] = home
            tensors.append(CascadeTensor(tname, "streamed", ring_of[(k, b)], rows, buffer_row_bytes(graph, b), home))
            lv = plan.target.level(home)
            covered = [pl for pl in placements if pl.buffer == b and pl.level == home]
            if not covered:
                # The whole tensor lives in its home for the whole run (as an input's or an
                # output's home placement does in a whole-tensor plan).
                off = align_up(peaks.get(home, 0), lv.alignment if lv else 1)
                placements.append(Placement(b, home, off, 0, nsteps - 1))
                peaks[home] = max(peaks.get(home, 0), off + graph.buffers[b].bytes)
            buffers[b] = replace(buffers[b], home=home)
        compulsory += p.load_bytes + p.store_bytes
        stripes = tuple(
            replace(st, transfers=tuple(replace(x, level=home_of.get(x.tensor, x.level)) for x in st.transfers))
            if st.transfers else st for st in p.stripes)
        cascades.append(Cascade(step=step, ops=p.ops, end=p.end,
                                stripe_rows=p.stripe_rows, tensors=tuple(tensors), stripes=stripes))
    placements.sort(key=lambda pl: (pl.first, pl.level, pl.offset, pl.buffer))
    metrics = Metrics(compulsory, plan.metrics.noncompulsory_bytes, peaks)
    return replace(plan, placements=tuple(placements), buffers=tuple(buffers), metrics=metrics,
                   cascades=tuple(cascades))


__all__ = ["attach", "choose_segments", "plan_tiled"]

