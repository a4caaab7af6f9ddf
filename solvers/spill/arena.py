"""The compute level's arena in online mode: resident buffers sorted by offset, and their gaps.

Why gaps and not ``interval.first_fit``: the arena chooses among *gaps* (best fit, TFLite's
``SimpleMemoryArena`` rule, or first fit), and a gap must be strictly non-empty, so a
zero-byte request goes to the first real gap rather than onto another buffer's offset.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

from stowage.solvers.alloc.interval import align_up

INF = math.inf

#: A resident block: (offset, end, key); key is a buffer id, or -1 for an operator's working memory.
Block = tuple[int, int, int]


class Arena:
    """Resident blocks of the compute level, sorted by offset."""

    def __init__(self, capacity: int | None, alignment: int) -> None:
        self.capacity = capacity
        self.alignment = alignment
        self.blocks: list[Block] = []
        self.where: dict[int, Block] = {}

    def copy(self) -> Arena:
        """An independent copy (the engine forks its state)."""
        other = Arena(self.capacity, self.alignment)
        other.blocks = list(self.blocks)
        other.where = dict(self.where)
        return other

    def gaps(self, blocks: Sequence[Block]) -> Iterator[tuple[int, float]]:
        """Free ``(start, end)`` ranges between ``blocks`` (aligned starts), the last one up to
        the capacity (``inf`` when unbounded)."""
        start = 0
        for off, end, _ in blocks:
            if off > start:
                yield start, off
            start = max(start, align_up(end, self.alignment))
        yield start, self.capacity if self.capacity is not None else INF

    def find(self, size: int, fit: str, blocks: Sequence[Block] | None = None) -> int | None:
        """An offset for ``size`` bytes among ``blocks`` (default: the resident ones) by ``fit``
        (``best`` or ``first``), or ``None`` when no gap is large enough."""
        best: tuple[float, int] | None = None
        for lo, hi in self.gaps(self.blocks if blocks is None else blocks):
            if hi - lo >= size:
                if fit == "first":
                    return lo
                cand = (hi - lo, lo)
                if best is None or cand < best:
                    best = cand
        return None if best is None else best[1]

    def insert(self, key: int, off: int, size: int) -> None:
        blk = (off, off + size, key)
        bisect.insort(self.blocks, blk)
        self.where[key] = blk

    def remove(self, key: int) -> None:
        blk = self.where.pop(key)
        k = bisect.bisect_left(self.blocks, blk)
        self.blocks.pop(k)


__all__ = ["Arena", "Block"]
