"""Offline offset assignment for buffers with fixed lifetimes (the "arena" problem).

Given intervals (``interval.Interval``: buffer id, first step, last step, bytes), choose an
offset for each so that two intervals whose step ranges intersect never share bytes,
minimising the peak address (max offset + size).  The peak live bytes (``interval.peak_live``)
is a lower bound; the gap is fragmentation.

Method: the greedy family the field uses -- greedy by size (TFLite arena), greedy by breadth
(TFLite: walk steps from the busiest, place what is live there, biggest first) and greedy by
conflict (TVM USMP: most conflicting bytes first) -- each with first-fit and best-fit gap
choice; then a seeded local search that perturbs the best placement order (moving a buffer
that sits on the peak to the front, or swapping two) and re-packs, until the bound is
reached, the move budget is spent or the time limit hits.  Conflicts are computed once by a
sweep, so a pass costs O(sum of conflict-list lengths), not O(n^2).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from stowage.solvers import work_meter
from stowage.solvers.alloc.interval import Interval, align_up, peak_live

log = logging.getLogger(__name__)


def peak_address(offsets: Mapping[int, int], intervals: Sequence[Interval]) -> int:
    """The peak address of ``intervals`` at ``offsets`` (by interval id), as this packer
    returns them (``interval.peak_address`` is the same for intervals that carry offsets)."""
    return max((offsets[iv.id] + iv.size for iv in intervals), default=0)


def _conflicts(ivs: Sequence[Interval]) -> list[list[int]]:
    """Adjacency lists (positions in ``ivs``) of intervals whose step ranges intersect, by a
    sweep over first steps (the active list is pruned lazily)."""
    adj: list[list[int]] = [[] for _ in ivs]
    by_first = sorted(range(len(ivs)), key=lambda i: (ivs[i].first, ivs[i].last))
    active: list[int] = []
    for i in by_first:
        f = ivs[i].first
        if len(active) > 32:
            active = [j for j in active if ivs[j].last >= f]
        for j in active:
            if ivs[j].last >= f:
                adj[i].append(j)
                adj[j].append(i)
        active.append(i)
    return adj


def _pack(order: Sequence[int], ivs: Sequence[Interval], adj: list[list[int]], align: int,
          best_fit: bool) -> tuple[list[int], int]:
    """Place intervals in ``order``: each goes into a gap among already placed conflicting
    intervals (lowest fitting gap, or the tightest one with ``best_fit``), else on top."""
    # The hot loop of every offline packing (10 passes and up to thousands of moves per call;
    # on 10,000 operators ~0.4 s of each bytes-mode simulation): sizes and ends are read from
    # plain lists, and ``end[j] > 0`` marks a placed interval of non-zero size (the only ones
    # that take bytes), so no attribute is read in the inner loop.  First-fit is
    # ``interval.first_fit`` from offset 0, inlined.
    sizes = [iv.size for iv in ivs]
    offset = [-1] * len(ivs)
    end = [0] * len(ivs)
    peak = 0
    for i in order:
        size = sizes[i]
        if size == 0:
            offset[i] = 0
            continue
        busy = sorted([(offset[j], end[j]) for j in adj[i] if end[j]])
        if best_fit:
            chosen = _best_fit(busy, size, align)
        else:
            chosen = 0
            for o, e in busy:
                if chosen + size <= o:
                    break
                if e > chosen:
                    chosen = (e + align - 1) // align * align
        offset[i] = chosen
        end[i] = top = chosen + size
        if top > peak:
            peak = top
    return offset, peak


def _best_fit(busy: Sequence[tuple[int, int]], size: int, align: int) -> int:
    """The start of the tightest gap among sorted ``busy`` ranges that holds ``size`` bytes
    (the lowest such gap on ties), else the top."""
    cand = 0
    chosen = -1
    chosen_gap = -1
    for o, e in busy:
        if cand + size <= o:
            gap = o - cand
            if chosen < 0 or gap < chosen_gap:
                chosen, chosen_gap = cand, gap
        if e > cand:
            cand = align_up(e, align)
    return cand if chosen < 0 else chosen


def _initial_orders(ivs: Sequence[Interval], adj: list[list[int]]) -> list[list[int]]:
    n = len(ivs)
    length = [iv.last - iv.first + 1 for iv in ivs]
    by_size = sorted(range(n), key=lambda i: (-ivs[i].size, -length[i], ivs[i].first, ivs[i].id))
    conflict_bytes = [sum(ivs[j].size for j in adj[i]) + ivs[i].size for i in range(n)]
    by_conflict = sorted(range(n), key=lambda i: (-conflict_bytes[i], -ivs[i].size, ivs[i].id))
    by_area = sorted(range(n), key=lambda i: (-ivs[i].size * length[i], ivs[i].id))
    # Greedy by breadth: walk steps from the busiest and place what is live there, biggest
    # first.  Equivalently, order each interval by the busiest step it covers.
    lo = min(iv.first for iv in ivs)
    hi = max(iv.last for iv in ivs)
    delta = np.zeros(hi - lo + 2, dtype=np.int64)
    for iv in ivs:
        delta[iv.first - lo] += iv.size
        delta[iv.last - lo + 1] -= iv.size
    load = np.cumsum(delta)[:-1]
    busiest = []
    for iv in ivs:
        seg = load[iv.first - lo: iv.last - lo + 1]
        k = int(np.argmax(seg))
        busiest.append((-int(seg[k]), iv.first - lo + k))
    by_breadth = sorted(range(n), key=lambda i: (busiest[i], -ivs[i].size, ivs[i].id))
    # By start step: first-fit in this order is optimal when all sizes are equal (interval
    # graph colouring), and good on chain-like schedules.
    by_start = sorted(range(n), key=lambda i: (ivs[i].first, -ivs[i].size, ivs[i].id))
    return [by_size, by_breadth, by_conflict, by_area, by_start]


#: How many times this process's packings -- this packer's and the exact packer's
#: (``alloc.exact``) -- were ended by their wall-clock safety stop.  A planner reads it
#: before and after its search (``wall_cuts``): when it grew, a packing -- and so the plan --
#: may differ on another machine or load (``solver.stopped_by``).
_WALL_CUTS = [0]


def wall_cuts() -> int:
    """The count of ``allocate_offsets`` and exact-packer searches ended by their safety stop so far."""
    return _WALL_CUTS[0]


def note_wall_cut() -> None:
    """Count one packing ended by its wall-clock safety stop (``wall_cuts``)."""
    _WALL_CUTS[0] += 1


#: The local search's work per second of ``allocate_offsets(work=...)``, in conflict-list
#: entries re-packed (one move re-packs every interval against its conflicts: the sum of the
#: conflict lists plus the intervals).  ``_pack`` runs 4-6 million entries/s at load 5 on the
#: 2-core reference VM (densenet121's zero-spill packings, 134-444 intervals), so a third of
#: that keeps the move budget inside the time it stands for up to a threefold slowdown.
ENTRIES_PER_SECOND = 2_000_000


def allocate_offsets(intervals: Sequence[Interval], alignment: int = 1, capacity: int | None = None,
                     time_limit: float = 1.0, seed: int = 0,
                     on_cut: Callable[[], None] | None = None, work: float | None = None) -> dict[int, int] | None:
    """Offsets (by interval id) minimising the peak address; ``None`` when ``capacity`` is set
    and no packing within it was found.  With a capacity the search stops at the first
    packing that fits (it does not go on shrinking the peak below the capacity), and returns
    ``None`` at once when the peak live bytes alone exceed it.  Deterministic for a seed (the move budget is fixed;
    the time limit is a safety stop, and ``on_cut`` is called when it ends the search: the
    result may then differ on another machine or load, which the caller reports).  ``work``:
    seconds of work that cap the move budget (``ENTRIES_PER_SECOND``), for a caller whose
    safety stop is shorter than the default budget takes (``exact.pack.pack_solution``: the
    exact packer follows, and a 0.06 s stop cut the local search every time, idle too)."""
    t0 = time.perf_counter()
    ivs = list(intervals)
    if len({iv.id for iv in ivs}) != len(ivs):
        raise ValueError("interval ids must be unique")
    if not ivs:
        return {}
    align = max(1, alignment)
    # Stop searching at the peak-live bound of the sizes rounded up to the alignment: with
    # aligned offsets that is the best a packing can be expected to reach.
    bound = peak_live([Interval(iv.id, iv.first, iv.last, align_up(iv.size, align)) for iv in ivs])
    if capacity is not None:
        if peak_live(ivs) > capacity:
            return None  # more bytes live at one step than fit: no packing exists
        # Feasibility is what a capacity asks: stop at the first packing within it.
        bound = max(bound, capacity)
    adj = _conflicts(ivs)
    entries = max(1, sum(len(a) for a in adj) + len(ivs))
    best_order: list[int] | None = None
    best_off: list[int] = []
    best_peak = -1
    for order in _initial_orders(ivs, adj):
        for fit in (False, True):
            off, peak = _pack(order, ivs, adj, align, fit)
            work_meter.add_entries(entries)
            if best_peak < 0 or peak < best_peak:
                best_order, best_off, best_peak = order, off, peak
            if best_peak <= bound:
                break
        if best_peak <= bound:
            break
    assert best_order is not None
    deadline = t0 + max(0.0, time_limit)
    if best_peak > bound:
        best_order, best_off, best_peak, cut = _improve(ivs, adj, align, best_order, best_off, best_peak,
                                                        bound, seed, deadline, work)
        if cut:
            _WALL_CUTS[0] += 1
            if on_cut is not None:
                on_cut()
    log.debug("allocate_offsets: %d intervals, peak %d, bound %d, %.3fs", len(ivs), best_peak, bound,
              time.perf_counter() - t0)
    if capacity is not None and best_peak > capacity:
        return None
    return {iv.id: best_off[i] for i, iv in enumerate(ivs)}


def _improve(ivs: Sequence[Interval], adj: list[list[int]], align: int, order: list[int],
             off: list[int], peak: int, bound: int, seed: int, deadline: float, work: float | None = None,
             ) -> tuple[list[int], list[int], int, bool]:
    """Seeded local search over the placement order.  A move either pulls a buffer that
    reaches the peak address (or one of its conflicts) to the front, or swaps two random
    positions; the re-packed order is kept when its peak is not worse.  The last value says
    whether the deadline, not the move budget or the bound, ended it."""
    rng = random.Random(seed)
    n = len(ivs)
    entries = max(1, sum(len(a) for a in adj) + n)
    moves = min(3000, max(200, 2_000_000 // entries))
    if work is not None:
        moves = min(moves, int(ENTRIES_PER_SECOND * max(0.0, work)) // entries)
    fits = (False, True)
    for it in range(moves):
        if peak <= bound:
            break
        if it % 8 == 0 and time.perf_counter() > deadline:
            return order, off, peak, True
        work_meter.add_entries(entries)     # one re-pack below (``solvers.work_meter``)
        cand = list(order)
        r = rng.random()
        if r < 0.6:
            top = [i for i in range(n) if off[i] + ivs[i].size == peak]
            i = rng.choice(top)
            if rng.random() < 0.5 and adj[i]:
                i = rng.choice(adj[i])
            pos = cand.index(i)
            del cand[pos]
            cand.insert(rng.randrange(0, pos + 1), i)
        else:
            a, b = rng.randrange(n), rng.randrange(n)
            cand[a], cand[b] = cand[b], cand[a]
        fit = fits[it % 2]
        c_off, c_peak = _pack(cand, ivs, adj, align, fit)
        if c_peak <= peak:
            order, off, peak = cand, c_off, c_peak
    return order, off, peak, False


__all__ = ["ENTRIES_PER_SECOND", "Interval", "allocate_offsets", "note_wall_cut", "peak_address", "wall_cuts"]
