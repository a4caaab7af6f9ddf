"""Off-chip occupancy as the spill engine sees it: one ``alloc.occupancy.Occupancy`` per level
slower than the compute level, plus a version number that moves on every reservation (the
engine memoises its spill-level choices against it)."""

from __future__ import annotations

from stowage.solvers.alloc.occupancy import Occupancy
from stowage.targets.hierarchy import Hierarchy


class OffChip:
    """The levels below the compute level of ``target`` over a run whose last step is ``end``.

    Reservations reaching ``end`` (home data, stored outputs) are merged into offset ranges:
    the engine's requests always reach at least the current step (``Occupancy``'s horizon)."""

    def __init__(self, target: Hierarchy, end: int) -> None:
        ci = target.index(target.compute_level)
        self.levels = {lv.name: Occupancy(lv.name, lv.capacity, lv.alignment, horizon=end)
                       for lv in target.levels[ci + 1:]}
        self.version = 0

    def copy(self) -> OffChip:
        """An independent copy (the engine forks its state)."""
        other = object.__new__(OffChip)
        other.levels = {name: occ.copy() for name, occ in self.levels.items()}
        other.version = self.version
        return other

    def __contains__(self, level: str) -> bool:
        return level in self.levels

    def capacity(self, level: str) -> int | None:
        return self.levels[level].capacity

    def find(self, level: str, size: int, first: int, last: int) -> int | None:
        return self.levels[level].find(size, first, last)

    def fits(self, level: str, size: int, first: int, last: int) -> bool:
        return self.levels[level].fits(size, first, last)

    def take(self, level: str, off: int, size: int, first: int, last: int) -> None:
        """Reserve ``size`` bytes at ``off``.  An empty reservation holds no bytes and is not
        recorded, so it never blocks a later request (the validator ignores empty placements
        too); the plan still gets its offset from the engine."""
        if size > 0:
            self.levels[level].take(off, size, first, last)
        self.version += 1

    def prune(self, before: int) -> None:
        """Forget reservations that end before step ``before`` (the engine passes the oldest
        last touch among resident buffers: no later request starts earlier)."""
        for occ in self.levels.values():
            occ.prune(before)


__all__ = ["OffChip"]
