"""Occupancy of one memory level over time: which address ranges are taken during which steps.

Why one implementation: the spill engine decides off-chip addresses while it simulates (so a
bounded spill level never overflows, and the plan holds exactly what the engine assumed), and
plan assembly places every off-chip range a solver did not fix.  Both ask the same question --
the lowest aligned offset whose byte range misses every reservation sharing a step with the
request (``interval.first_fit``) -- so they share this class instead of keeping two copies of
the rule in step by docstrings.

A reservation is a rectangle: bytes ``[offset, end)`` x steps ``first..last`` (inclusive).  With
a ``horizon`` (the last step of the run), rectangles that reach it are merged into plain offset
ranges and conflict with every later request: valid only for a caller whose requests never
end before the first step of an earlier reservation (the engine: a request always reaches at
least the current step).  Thousands of stored outputs then cost a few ranges per query, not
thousands of rectangles.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable

from stowage.solvers.alloc.interval import align_up, first_fit

#: Rectangles kept before ``prune`` bothers filtering (a short list is cheaper to scan).
PRUNE_ABOVE = 16


class Occupancy:
    """The reservations of one level (``name``, ``capacity`` bytes or unbounded, placements at
    multiples of ``alignment``)."""

    def __init__(self, name: str, capacity: int | None, alignment: int, horizon: int | None = None) -> None:
        self.name = name
        self.capacity = capacity
        self.alignment = max(1, alignment)
        self.horizon = horizon
        self.items: list[tuple[int, int, int, int]] = []  # (offset, end, first, last), sorted
        self.perm: list[tuple[int, int]] = []  # merged (offset, end) of rectangles reaching the horizon
        self.top = 0  # aligned end of the highest reservation

    def copy(self) -> Occupancy:
        """An independent copy (the engine forks its state)."""
        other = Occupancy(self.name, self.capacity, self.alignment, self.horizon)
        other.items = list(self.items)
        other.perm = list(self.perm)
        other.top = self.top
        return other

    def _busy(self, first: int, last: int) -> Iterable[tuple[int, int]]:
        """Byte ranges of the rectangles meeting steps ``first..last``, ascending.  The merged
        ranges meet every request, so without time-limited rectangles they are the answer as
        they are (the engine places all home data that way: no generator, no merge)."""
        if not self.items:
            return self.perm
        meeting = ((o, e) for o, e, f, last_step in self.items if not (last_step < first or f > last))
        return heapq.merge(meeting, self.perm) if self.perm else meeting

    def find(self, size: int, first: int, last: int) -> int | None:
        """First fit for ``size`` bytes over steps ``first..last``; ``None`` past the capacity."""
        off = first_fit(self._busy(first, last), size, self.alignment, presorted=True)
        if self.capacity is not None and off + size > self.capacity:
            return None
        return off

    def fits(self, size: int, first: int, last: int) -> bool:
        """Whether ``find`` would succeed; O(1) when the level is unbounded or its top has room."""
        if self.capacity is None or self.top + size <= self.capacity:
            return True
        return self.find(size, first, last) is not None

    def take(self, offset: int, size: int, first: int, last: int) -> None:
        """Reserve ``[offset, offset + size)`` over steps ``first..last`` (no check: the caller
        found the offset, or a solver fixed it)."""
        if self.horizon is not None and last >= self.horizon:
            _merge(self.perm, offset, offset + size)
        else:
            bisect.insort(self.items, (offset, offset + size, first, last))
        self.top = max(self.top, align_up(offset + size, self.alignment))

    def prune(self, before: int) -> None:
        """Forget rectangles that end before step ``before`` (the caller promises no later
        request starts earlier), keeping ``find`` linear in what can still conflict."""
        if len(self.items) > PRUNE_ABOVE:
            self.items = [it for it in self.items if it[3] >= before]


def _merge(blocks: list[tuple[int, int]], o: int, e: int) -> None:
    """Insert ``[o, e)`` into sorted disjoint ranges, merging what it touches."""
    k = bisect.bisect_left(blocks, (o, e))
    if k > 0 and blocks[k - 1][1] >= o:
        k -= 1
        o = blocks[k][0]
        e = max(e, blocks[k][1])
        blocks.pop(k)
    while k < len(blocks) and blocks[k][0] <= e:
        e = max(e, blocks[k][1])
        blocks.pop(k)
    blocks.insert(k, (o, e))


__all__ = ["Occupancy"]
