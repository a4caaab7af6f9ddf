"""The vocabulary of allocation: one interval type, one alignment rule, one first fit.

Convention, stated once: an interval's step range is **inclusive** (``first..last``, the
plan file's convention: a buffer resident from before step ``first`` to after step ``last``)
and its byte range is half-open (``[offset, offset + size)``).  The only half-open step ranges
in the project are MiniMalloc's CSV rows (``stowage.solvers.alloc.minimalloc_csv``), converted
at that boundary.

Every place that needs "the lowest aligned offset that misses these busy byte ranges" (the
off-chip occupancy of the spill engine and of plan assembly, the greedy packer's first-fit
branch, the exact model's greedy start) calls ``first_fit``; every "most bytes live at once"
is ``peak_live``.  (The spill engine's compute arena keeps its own gap search: it places
zero-byte requests differently, see ``spill/arena.py``.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Interval:
    """Buffer ``id`` needs ``size`` bytes over steps ``first..last`` (inclusive); ``offset``
    is its address once placed (``None`` while it is only a lifetime)."""

    id: int
    first: int
    last: int
    size: int
    offset: int | None = None

    @property
    def end(self) -> int:
        """One past the last byte (``offset + size``); only for a placed interval."""
        if self.offset is None:
            raise ValueError(f"interval of buffer {self.id} has no offset")
        return self.offset + self.size


def align_up(x: int, alignment: int) -> int:
    """``x`` rounded up to a multiple of ``alignment`` (>= 1)."""
    return (x + alignment - 1) // alignment * alignment


def first_fit(busy: Iterable[tuple[int, int]], size: int, alignment: int = 1, start: int = 0, *,
              presorted: bool = False) -> int:
    """The lowest offset ``>= start``, a multiple of ``alignment``, where ``[offset, offset +
    size)`` misses every busy byte range ``(offset, end)`` (half-open, any order; an empty range
    still blocks the offsets below it that would straddle it).  Never fails: past the last busy
    range everything is free; the caller checks the result against a capacity.

    ``presorted=True``: ``busy`` already comes in ascending ``(offset, end)`` order and is read
    lazily, only up to the first gap that fits (the off-chip occupancy streams its sorted
    reservations through here without building a list)."""
    a = alignment
    off = (start + a - 1) // a * a
    for o, e in (busy if presorted else sorted(busy)):
        if off + size <= o:
            break
        if e > off:
            off = (e + a - 1) // a * a  # align_up, inlined: this loop is the planners' hot path
    return off


class Lifetime(Protocol):
    """Anything with an inclusive step range and a size (an ``Interval``, a MiniMalloc CSV row)."""

    @property
    def first(self) -> int: ...
    @property
    def last(self) -> int: ...
    @property
    def size(self) -> int: ...


def peak_live_at(intervals: Iterable[Lifetime]) -> tuple[int, int | None]:
    """``(most bytes live at one step, the first step where that many are live)``; the step is
    ``None`` when nothing is ever live (infeasibility messages name it)."""
    events: dict[int, int] = {}
    for iv in intervals:
        events[iv.first] = events.get(iv.first, 0) + iv.size
        events[iv.last + 1] = events.get(iv.last + 1, 0) - iv.size
    peak, at, running = 0, None, 0
    for step in sorted(events):
        running += events[step]
        if running > peak:
            peak, at = running, step
    return peak, at


def peak_live(intervals: Iterable[Lifetime]) -> int:
    """The most bytes live at one step: no offset assignment can have a lower peak address."""
    return peak_live_at(intervals)[0]


def peak_address(intervals: Iterable[Interval]) -> int:
    """The highest byte any placed interval reaches (0 for none)."""
    return max((iv.end for iv in intervals), default=0)


__all__ = ["Interval", "Lifetime", "align_up", "first_fit", "peak_address", "peak_live", "peak_live_at"]
