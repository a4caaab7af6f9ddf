"""The no-address relaxation for a FIXED order, as a compact gap model (CP-SAT).

For a fixed order and byte counts only (no addresses), an optimal residency has a simple
shape: between two consecutive steps that touch a buffer (a *gap*), the buffer either stays
resident the whole time or is off-chip the whole time -- being off for part of the gap costs
the same reload at the next touch and frees less memory.  So one boolean ``keep`` per gap is
an exact model of the relaxation:

    minimise   sum_gaps reload_cost * (1 - keep)  +  sum_activations store_cost * stored
    subject to at every step t:  touched bytes(t) + sum_{gaps spanning t} size * keep <= capacity
               stored >= 1 - keep  for every gap of a buffer that has a store cost

(buffers that cannot be reloaded keep every gap).  It is tiny compared with the segment
model (one variable per gap, one knapsack row per step) and CP-SAT closes it in well under
a second on the COSMA networks.  Its optimum is a lower bound for plans with this order;
it is a lower bound over ALL plans when the graph has a single topological order
(``unique_order``).  Its solution, read as residency segments, is what the exact pipeline
then tries to pack into addresses.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from stowage.ir.graph import OpIndex
from stowage.solvers.exact.joint_data import JointData, JointSolution, Segment
from stowage.solvers.exact.joint_model import configure

log = logging.getLogger(__name__)


#: With ``aligned``, movable buffers under this many (aligned) bytes are reloaded at every
#: use instead of staying resident between uses: a few bytes of traffic each, and no small
#: islands that keep a full operator's large operands from packing (PNASNet-5 with weights
#: at M_R: its 1-108 B constants are read by dozens of operators across the network).
SMALL_RELOAD = 256


@dataclass(frozen=True)
class ResidencyResult:
    """``value``/``solution``: best found (None when none); ``bound``: proven lower bound on
    the traffic of this order's no-address relaxation; ``status``: optimal | feasible |
    infeasible | unknown."""

    status: str
    value: int | None
    bound: int
    solution: JointSolution | None
    seconds: float
    work: float = 0.0        # CP-SAT deterministic time spent (0 when no solve was needed)


def unique_order(data: JointData, order: Sequence[OpIndex]) -> bool:
    """True when ``order`` is the graph's only topological order (consecutive operators are
    always linked by a dependency)."""
    preds = data.pred_map()
    return all(a in preds[b] for a, b in itertools.pairwise(order))


def solve_residency(data: JointData, order: Sequence[OpIndex], time_limit: float, workers: int = 1,
                    seed: int = 0, floor: int = 0, hint: JointSolution | None = None,
                    work: float | None = None, aligned: bool = False) -> ResidencyResult:
    """Solve the gap model for ``order``.  ``time_limit``: wall seconds; ``work``: CP-SAT
    deterministic time (``joint_model.configure``).  ``floor``: a known lower bound on the traffic (a
    valid cut that lets CP-SAT stop as soon as it reaches it).  ``hint``: a solution with
    the same order whose residency is used as a warm start.  ``aligned``: count every buffer
    and scratch area rounded up to the compute alignment, as the packer places them, but for
    the padding of one operand of each step (the topmost buffer needs none: the aligned
    M_R's rule) -- no longer a relaxation (its bound is not one), but a residency that packs
    more often where small buffers (weights of a few bytes, each taking 16) sit beside a full
    operator (PNASNet-5 with weights at M_R)."""
    t0 = time.perf_counter()
    order = tuple(order)
    n = len(order)
    step = {op: s for s, op in enumerate(order)}
    fixed = [0] * n
    pad = [0] * n                   # per step: the largest padding of an operand (aligned only)

    def counted(size: int) -> int:
        return -(-size // data.alignment) * data.alignment if aligned else size

    for op, extra in data.scratch:
        fixed[step[op]] += counted(extra)
        pad[step[op]] = max(pad[step[op]], counted(extra) - extra)
    m = cp_model.CpModel()
    # gaps[k] = (buffer index, from touch a, to touch c, keep var or None when forced)
    gaps: list[tuple[int, int, int, cp_model.IntVar | None]] = []
    spanning: list[list[tuple[int, cp_model.IntVar]]] = [[] for _ in range(n)]
    cost_terms = []
    for k, mb in enumerate(data.buffers):
        touches = sorted({step[u] for u in mb.users})
        size = counted(mb.size)
        for t in touches:
            fixed[t] += size
            pad[t] = max(pad[t], size - mb.size)
        stored = None
        for a, c in itertools.pairwise(touches):
            if c == a + 1:
                continue
            if mb.reload_src is None or mb.size == 0:
                for t in range(a + 1, c):
                    fixed[t] += size
                gaps.append((k, a, c, None))
                continue
            keep = m.new_bool_var(f"keep[{mb.id},{a}]")
            if aligned and size < SMALL_RELOAD:
                m.add(keep == 0)          # reloaded at each use: no small island in the way
            gaps.append((k, a, c, keep))
            for t in range(a + 1, c):
                spanning[t].append((size, keep))
            if mb.reload_cost:
                cost_terms.append(mb.reload_cost * (1 - keep))
            if mb.store_cost:
                if stored is None:
                    stored = m.new_bool_var(f"stored[{mb.id}]")
                    cost_terms.append(mb.store_cost * stored)
                m.add_implication(keep.negated(), stored)
    for t in range(n):
        room = data.capacity - fixed[t] + pad[t]
        if room < 0:
            return ResidencyResult("infeasible", None, 0, None, time.perf_counter() - t0)
        if spanning[t] and sum(sz for sz, _ in spanning[t]) > room:
            m.add(sum(sz * v for sz, v in spanning[t]) <= room)
    traffic = sum(cost_terms) if cost_terms else 0
    if isinstance(traffic, int):
        sol = _solution(data, order, gaps, lambda v: True)
        return ResidencyResult("optimal", 0, 0, sol, time.perf_counter() - t0)
    if floor > 0:
        m.add(traffic >= floor)
    m.minimize(traffic)
    if hint is not None:
        kept = _kept_gaps(hint, step)
        for k, a, _c, v in gaps:
            if v is not None:
                m.add_hint(v, int((data.buffers[k].id, a) in kept))
    solver = cp_model.CpSolver()
    configure(solver, time_limit - (time.perf_counter() - t0), work, workers, seed)
    status = solver.solve(m)
    seconds = time.perf_counter() - t0
    work = solver.deterministic_time
    if status == cp_model.INFEASIBLE:
        return ResidencyResult("infeasible", None, 0, None, seconds, work)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ResidencyResult("unknown", None, max(0, math.ceil(solver.best_objective_bound - 1e-6)), None, seconds,
                               work)
    value = round(solver.objective_value)
    bound = value if status == cp_model.OPTIMAL else max(0, math.ceil(solver.best_objective_bound - 1e-6))
    sol = _solution(data, order, gaps, lambda v: solver.boolean_value(v))
    log.info("residency model: %s traffic %d bound %d (%d gaps, %.2fs)",
             "optimal" if status == cp_model.OPTIMAL else "feasible", value, bound, len(gaps), seconds)
    return ResidencyResult("optimal" if status == cp_model.OPTIMAL else "feasible", value, bound, sol, seconds, work)


def _kept_gaps(sol: JointSolution, step: dict[OpIndex, int]) -> set[tuple[int, int]]:
    """(buffer id, step) pairs where a segment of ``sol`` continues past a touch."""
    out = set()
    for seg in sol.segments:
        for t in range(seg.start, seg.end):
            out.add((seg.buffer, t))
    return out


def _solution(data: JointData, order: tuple[OpIndex, ...], gaps, kept) -> JointSolution:
    """Residency segments (offsets 0) from the gap decisions: runs of touches joined by kept
    (or adjacent) gaps."""
    step = {op: s for s, op in enumerate(order)}
    broken: set[tuple[int, int]] = {(k, a) for k, a, _c, v in gaps if v is not None and not kept(v)}
    segs: list[Segment] = []
    for k, mb in enumerate(data.buffers):
        touches = sorted({step[u] for u in mb.users})
        start = touches[0]
        for a, c in itertools.pairwise(touches):
            if (k, a) in broken:
                segs.append(Segment(mb.id, start, a, 0))
                start = c
        segs.append(Segment(mb.id, start, touches[-1], 0))
    scratch = tuple((op, 0) for op, _e in data.scratch)
    return JointSolution(order, tuple(segs), scratch)


__all__ = ["ResidencyResult", "solve_residency", "unique_order"]
