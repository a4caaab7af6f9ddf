"""Whether a cascade whose rings do not fit fits with its rows addressed by slot.

A plan holds each ring at its largest window for the whole cascade; addressed by slot
(``CascadeTensor.slots``, ``docs/tiling.md`` "Rows by slot") the cascade needs only a region
holding its rows *per instant*, packed by their lifetimes (``stowage.solvers.tiling.slots``).
The partition search (``Partitioner._fit``) asks here when a segment's ring footprint misses
the capacity by at most ``SLACK``: the segment's recorded program is walked, its rows' live
bytes at the busiest stripe bound the region from below (no packing is tried when even that
misses), and the greedy packer gets a small deterministic move budget (``SEARCH_WORK``) to
fit the region into what the capacity leaves beside the cascade's whole buffers, weights and
bystanders.  Every layout found is kept (``layout``), so the plan uses the packing the search
judged, never a larger one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stowage.ir.graph import BufferId
from stowage.solvers.alloc.interval import align_up
from stowage.solvers.tiling.program import Program
from stowage.solvers.tiling.slots import RowLifetimes, SlotLayout, row_lifetimes, slot_layout

if TYPE_CHECKING:
    from stowage.solvers.tiling.partition import Partitioner, Segment

log = logging.getLogger(__name__)

#: Only a segment whose ring footprint is at most this many times the capacity is tried by
#: slot: MobileNetV2's blocks 5-7 at 64 KiB take 70,784 B in rings (1.08x) and 59,136 B packed;
#: its stem-to-block-3 segment 83,104 B (1.27x).  Further over, per-instant packing has never
#: closed the gap on the suite, and each try walks and packs a recorded program.
SLACK = 1.35
#: The packer's move budget per try, in seconds of work (``alloc.greedy.ENTRIES_PER_SECOND``):
#: deterministic, so the search's choice does not depend on load.
SEARCH_WORK = 0.05
#: The exact row packer's budget per segment (``rowpack.exact_rows``, CP-SAT deterministic
#: time): MobileNetV2's stem-to-block-3 cascade at 64 KiB packs in 0.07, blocks 4-5 in 0.15.
EXACT_WORK = 2.0
#: How many times ``least_traffic_packed`` runs the search again after a segment it took on
#: its live rows alone did not pack (each run excludes the segments that failed).
PACK_ROUNDS = 4

Key = tuple[int, int, int, int, frozenset[BufferId]]


@dataclass
class SlotCache:
    """A partitioner's memo of slot tries: per segment key ``(i, j, h, pace, dram)`` its base
    footprint (weights, working memory, whole buffers; None: not slottable), its recorded
    program, and the smallest layout found."""

    base: dict[Key, int | None] = field(default_factory=dict)
    programs: dict[Key, Program] = field(default_factory=dict)
    layouts: dict[Key, SlotLayout] = field(default_factory=dict)
    #: While True (``least_traffic_packed``), a segment whose greedy packing misses but whose
    #: rows live at one stripe fit is taken on those live rows (``pending``), to be packed
    #: exactly once a partition has chosen it.
    optimistic: bool = False
    #: Segments taken on their live rows: key -> those rows' bytes, aligned.
    pending: dict[Key, int] = field(default_factory=dict)
    #: Segments the exact packer could not fit: key -> the largest room it failed in.
    failed: dict[Key, int] = field(default_factory=dict)
    #: Row lifetimes of each recorded program (``slots.row_lifetimes``).
    lives: dict[Key, RowLifetimes] = field(default_factory=dict)
    #: Segments the greedy packer could not fit: key -> the largest room it missed.
    missed: dict[Key, int] = field(default_factory=dict)


def slot_peak(part: Partitioner, i: int, j: int, h: int, pace: int, dram: frozenset[BufferId],
              ring_peak: int, bystanders: int, capacity: int) -> int | None:
    """The footprint (bystanders included) of segment ``[i..j]`` in bands ``(h, pace)`` with
    ``dram`` off-chip when its rows are addressed by slot and packed within ``capacity``, or
    None when that is not tried or no packing fits.  ``ring_peak``: its footprint with rings."""
    if ring_peak <= capacity or ring_peak > SLACK * capacity:
        return None
    w = part.windows(i, j, h, pace)
    if w is None:
        return None
    cache = part.slot_cache
    key: Key = (i, j, h, pace, dram)
    if part.deadline is not None and time.monotonic() > part.deadline:
        from stowage.solvers.tiling.partition import OutOfTime

        raise OutOfTime("the tiling search ran out of time")
    if key not in cache.base:
        # Charged as a second walk of the segment (the recorded one).
        cost = part._weight(i, j) * -(-max(pace, part._end_rows(part.order[j])) // h)
        if part.work is not None and part.spent + cost > part.work:
            from stowage.solvers.tiling.partition import OutOfWork

            raise OutOfWork(f"the tiling search used its work budget ({part.work} member stripes)")
        part.spent += cost
        prog = part.program(i, j, h, record=True, dram=dram, pace=pace)
        if prog.staged:
            cache.base[key] = None
        else:
            g = part.g
            whole = sum(part._a(g.buffers[b].bytes) for b in (*prog.whole_in, *prog.whole_out))
            cache.base[key] = w.fixed + whole
            cache.programs[key] = prog
    base = cache.base[key]
    if base is None:
        return None
    layouts = cache.layouts
    room = capacity - bystanders - base
    room -= room % part.align   # the region's placement is aligned
    have = layouts.get(key)
    if have is not None and align_up(have.region, part.align) <= room:
        return base + align_up(have.region, part.align) + bystanders
    prog = cache.programs[key]
    lives = cache.lives.get(key)
    if lives is None:
        lives = cache.lives[key] = row_lifetimes(part.g, prog)
    if room <= 0 or lives.peak > room:
        return None
    if cache.optimistic:
        # Taken on its live rows; ``finish`` packs it if a partition chooses it (no packing
        # here: the search tries hundreds of segments and chooses a dozen).
        if room <= cache.failed.get(key, -1):
            return None
        cache.pending[key] = align_up(lives.peak, part.align)
        return base + cache.pending[key] + bystanders
    # A greedy packing that missed a room misses a smaller one too (its search is the same up
    # to the stop at the room): not packed again.
    lay = None if room <= cache.missed.get(key, -1) else slot_layout(part.g, prog, capacity=room,
                                                                     work=SEARCH_WORK, lives=lives)
    if lay is None:
        cache.missed[key] = max(room, cache.missed.get(key, -1))
        return None
    if have is None or lay.region < have.region:
        layouts[key] = lay
    return base + align_up(lay.region, part.align) + bystanders


def layout(part: Partitioner, i: int, j: int, h: int, pace: int, dram: frozenset[BufferId]) -> SlotLayout | None:
    """The smallest slot layout the search found for that segment (None: none)."""
    return part.slot_cache.layouts.get((i, j, h, pace, dram))


def finish(part: Partitioner, segs: list[Segment], capacity: int) -> bool:
    """Pack, with the exact row packer, every slotted segment of ``segs`` that the search took
    on its live rows alone (``SlotCache.pending``), within the room its footprint left under
    ``capacity``; True when all of them now have a layout.  A segment that does not pack is
    remembered (``SlotCache.failed``) so the next search does not take it again."""
    cache = part.slot_cache
    ok = True
    for seg in segs:
        if not seg.slotted:
            continue
        i, j = part.pos[seg.ops[0]], part.pos[seg.ops[-1]]
        key: Key = (i, j, seg.stripe_rows, seg.pace_rows, seg.dram)
        have = cache.layouts.get(key)
        rows = cache.pending.get(key)
        if rows is None or (have is not None and align_up(have.region, part.align) <= rows):
            continue
        room = capacity - (seg.peak - rows)   # what the rest of its footprint leaves
        room -= room % part.align
        if have is not None and align_up(have.region, part.align) <= room:
            continue
        if part.deadline is not None and time.monotonic() > part.deadline:
            from stowage.solvers.tiling.partition import OutOfTime

            raise OutOfTime("the tiling search ran out of time")
        lay = slot_layout(part.g, cache.programs[key], capacity=room, work=SEARCH_WORK, lives=cache.lives.get(key),
                          exact_work=EXACT_WORK,
                          exact_wall=None if part.deadline is None else max(0.5, part.deadline - time.monotonic()))
        if lay is None:
            log.info("tiling: cascade %d..%d's rows do not pack within %d B (%d B live at once)", i, j, room, rows)
            cache.failed[key] = max(room, cache.failed.get(key, -1))
            ok = False
        else:
            cache.layouts[key] = lay
    return ok


def least_traffic_packed(part: Partitioner, capacity: int) -> list[Segment] | None:
    """``part.least_traffic(capacity)`` where a segment whose rows, addressed by slot, pack
    only with the exact row packer may be chosen: the search takes such segments on their
    live rows, the chosen partition's are packed (``finish``), and when one does not pack the
    search runs again without it (at most ``PACK_ROUNDS`` times; the walks are memoised).
    Deterministic: every budget is work, not time.  None when no round found a partition
    whose every segment packs (the caller keeps the greedy packer's, ``plan.choose_candidates``)."""
    cache = part.slot_cache
    cache.optimistic = True
    try:
        for _ in range(PACK_ROUNDS):
            segs = part.least_traffic(capacity)
            if segs is None or finish(part, segs, capacity):
                return segs
    finally:
        cache.optimistic = False
    return None


__all__ = ["EXACT_WORK", "PACK_ROUNDS", "SEARCH_WORK", "SLACK", "SlotCache", "finish", "layout",
           "least_traffic_packed", "slot_peak"]
