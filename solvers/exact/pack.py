"""Addresses for a residency: turn a no-address solution into a full one.

The gap model and the no-address joint model decide *when* each buffer is resident, not
*where*; their optimum is a true optimum as soon as some packing of that residency fits the
capacity.  This is the one place that tries: the offline packer (fast, usually enough), then
the exact packer on what time is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stowage.solvers.alloc.exact import exact_pack
from stowage.solvers.alloc.greedy import allocate_offsets
from stowage.solvers.alloc.interval import Interval, peak_live
from stowage.solvers.exact.joint_data import JointData, JointSolution, Segment, check_solution, tighten


def pack_solution(data: JointData, sol: JointSolution, time_limit: float, seed: int = 0,
                  on_cut: Callable[[], None] | None = None, work: float | None = None) -> JointSolution | None:
    """Give addresses to the residency of ``sol`` (its order and segments are kept; offsets
    are ignored): the offline packer first, then the exact packer (sizes in alignment units).
    None when no packing within the capacity was found.  ``work``: seconds of work for the
    exact packer's node budget (``alloc.exact.node_budget``; ``None``: ``time_limit``), so
    pass one that does not depend on the time left; ``time_limit`` is the wall-clock safety
    net of both packers.  ``on_cut`` is called when a wall-clock stop, not the packers' own
    budgets, decided the result (``solver.stopped_by``)."""
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
    ivs = [Interval(i, first, last, sz) for i, (_kind, _key, first, last, sz) in enumerate(items)]
    work = time_limit if work is None else work
    # Both packers' budgets are counted in work (the offline packer's moves, the exact
    # packer's nodes), so the packing does not depend on the load; the wall is the safety net.
    # The wall is the safety net: the offline packer's up to all of it (its moves end it in
    # about a tenth, idle), the exact packer's what is left.
    offs = allocate_offsets(ivs, data.alignment, data.capacity, time_limit=max(0.05, time_limit), seed=seed,
                            on_cut=on_cut, work=0.3 * work)
    if offs is None and peak_live(ivs) <= data.capacity:
        # Always tried (its node budget decides, not the time the offline packer left), with
        # at least 0.05 s of safety net; sizes in alignment units (spill.exact_pack).
        left = time_limit - (time.perf_counter() - t0)
        offs = exact_pack(ivs, data.alignment, data.capacity, max(0.05, left), on_cut=on_cut, work=work)
    if offs is None:
        return None
    segs = tuple(Segment(key, first, last, offs[i]) for i, (kind, key, first, last, _sz) in enumerate(items)
                 if kind == "b")
    scratch = tuple((key, offs[i]) for i, (kind, key, _first, _last, _sz) in enumerate(items) if kind == "s")
    out = JointSolution(sol.order, tuple(sorted(segs, key=lambda g: (g.buffer, g.start))), scratch)
    return out if check_solution(data, out) is None else None


__all__ = ["pack_solution"]
