"""An exact packer for a cascade's rows, for when the greedy one misses by a little.

A slot-addressed cascade (``docs/tiling.md``, "Rows by slot") needs its rows' lifetimes
packed into one region.  The greedy interval allocator (``alloc.greedy``) leaves 5-12%
fragmentation on MobileNetV2's long cascades: the stem to block 3 at 64 KiB has 62,944 B
live at its busiest stripe and packs greedily into 70,560 B; blocks 4-5 have 39,872 B of
rows live, 40,448 B of room and pack into 42,112 B.  Rows are a thousand small buffers with
a periodic pattern, where greedy orders and local search stall.

The buffers' exact packer (``alloc.exact``, MiniMalloc's search) was tried first on those
two instances and found no packing in 60 s (0.9 and 2.1 million nodes; it is complete, but
its canonical dives do not recover from early choices on a thousand near-identical rows).
CP-SAT's ``NoOverlap2D`` over (stripe, address), the formulation the joint model below M_R
uses (``exact.tiled_joint``), packs both within the capacity in under 0.2 units of
deterministic time: time intervals are fixed, so the constraint reduces to one disjunctive
resource per set of rows live together, which its propagation handles well.

Sizes are counted in units of their greatest common divisor (every row size of a cascade is
a multiple of its narrowest row's width: 224 B on MobileNetV2's early blocks), which keeps
the domains small.  The search is deterministic: one worker and a budget in CP-SAT's
deterministic time (``work``); the wall clock is only a safety net, and a run it ends is
counted (``alloc.greedy.note_wall_cut``) so the plan says ``stopped_by=time``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from stowage.solvers.alloc.greedy import note_wall_cut
from stowage.solvers.alloc.interval import Interval, peak_live

log = logging.getLogger(__name__)

#: The wall-clock safety net of one packing, in seconds (the work budget normally ends it;
#: CP-SAT's presolve of a thousand rows takes about 1.5 s of CPU).
SAFETY_SECONDS = 60.0


def exact_rows(ivs: Sequence[Interval], capacity: int, work: float, alignment: int = 1,
               wall: float | None = None) -> dict[int, int] | None:
    """Offsets (by interval id, multiples of ``alignment``) packing ``ivs`` within
    ``capacity`` bytes, or None when none was found within ``work`` (CP-SAT deterministic
    time) or none exists.  Offsets never overlap for two intervals live at a common step.
    ``wall``: the wall-clock safety net (``SAFETY_SECONDS`` when None; the partition search
    passes what is left of its time limit)."""
    ivs = [iv for iv in ivs]
    if not ivs:
        return {}
    if peak_live(ivs) > capacity:
        return None
    unit = 0
    for iv in ivs:
        unit = math.gcd(unit, iv.size)
    unit = math.lcm(max(1, unit), max(1, alignment)) if unit else max(1, alignment)
    cap = capacity // unit
    sizes = [-(-iv.size // unit) for iv in ivs]
    if any(s > cap for s in sizes):
        return None
    from ortools.sat.python import cp_model

    from stowage.solvers.exact.joint_model import configure

    m = cp_model.CpModel()
    ys = [m.new_int_var(0, cap - s, f"y{k}") for k, s in enumerate(sizes)]
    xs = [m.new_fixed_size_interval_var(iv.first, iv.last - iv.first + 1, f"x{k}") for k, iv in enumerate(ivs)]
    yi = [m.new_fixed_size_interval_var(y, s, f"o{k}") for k, (y, s) in enumerate(zip(ys, sizes))]
    m.add_no_overlap_2d(xs, yi)
    solver = cp_model.CpSolver()
    safety = SAFETY_SECONDS if wall is None else min(SAFETY_SECONDS, wall)
    configure(solver, safety, work, 1, 0)
    status = solver.solve(m)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return {iv.id: int(solver.value(y)) * unit for iv, y in zip(ivs, ys)}
    if status == cp_model.UNKNOWN and solver.deterministic_time < work * 0.99:
        note_wall_cut()   # the clock, not the work budget, ended it
    log.debug("rowpack: %d rows within %d B: %s after %.2f deterministic s", len(ivs), capacity,
              solver.status_name(status), solver.deterministic_time)
    return None


__all__ = ["SAFETY_SECONDS", "exact_rows"]
