"""What one spill simulation is asked to do (``Config``) and what it returns (``SpillResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stowage.ir.graph import OpIndex
from stowage.plan import Transfer
from stowage.solvers.alloc.interval import Interval

POLICIES = ("belady", "greedy", "cost")
ALLOCS = ("online", "bytes")
FITS = ("best", "first")


@dataclass(frozen=True)
class Config:
    """How one simulation decides.

    ``policy``: ``belady`` | ``greedy`` | ``cost`` (see ``stowage.solvers.spill.policies``).
    ``alloc``: ``online`` (arena, allocation-aware eviction) | ``bytes`` (byte counts, then
    offline packing).  ``fit``: gap choice of the online arena, ``best`` (TFLite) or ``first``.
    ``beta``: distance exponent of the ``cost`` policy (0 = pure least traffic).
    ``slack``: fraction of the capacity held back in ``bytes`` mode so that the offline
    packing has room for fragmentation.  ``pack_time``: seconds for that packing (its
    wall-clock safety stop).  ``pack_work``: seconds of work that cap its move budget
    (``alloc.greedy.ENTRIES_PER_SECOND``; 0 = the packer's default budget), so give it a value
    that does not depend on the time left: the packing is then the same at any load.
    ``exact_pack``: seconds of work for the exact (MiniMalloc-style) packer when the offline
    packer finds no packing within the capacity (0 = never): its node budget
    (``alloc.exact.node_budget``), so give it a value that does not depend on the time left;
    worth it where one packing decides between zero spill and spilling (the M_P order's
    lifetimes often pack exactly at M_P when the greedy packer ends 6-10% above it).
    ``exact_pack_wall``: that packer's wall-clock safety net in seconds (0 = ``exact_pack``);
    a packing it cuts counts in ``alloc.greedy.wall_cuts`` (``solver.stopped_by``)."""

    policy: str = "belady"
    alloc: str = "online"
    fit: str = "best"
    beta: float = 1.0
    slack: float = 0.0
    pack_time: float = 0.5
    pack_work: float = 0.0
    seed: int = 0
    exact_pack: float = 0.0
    exact_pack_wall: float = 0.0

    def check(self) -> None:
        """Raise ``ValueError`` for a policy, allocation mode or fit this engine does not know."""
        if self.policy not in POLICIES or self.alloc not in ALLOCS or self.fit not in FITS:
            raise ValueError(f"bad spill config {self}")


@dataclass(frozen=True)
class SpillResult:
    """A completed simulation: the order, the compute-level placements (intervals with their
    offsets), every transfer in execution order, and the off-chip offsets the engine reserved."""

    order: tuple[OpIndex, ...]
    placements: tuple[Interval, ...]
    transfers: tuple[Transfer, ...]
    noncompulsory: int          # byte-hops of reloads and spill stores
    peak_address: int           # highest end offset in the compute level
    config: Config = field(default_factory=Config)
    #: (buffer, level, offset) of every off-chip placement (homes, outputs, spills); pass as
    #: ``assemble_plan(..., offchip_offsets=result.offchip_offsets())``.
    offchip: tuple[tuple[int, str, int], ...] = ()

    def offchip_offsets(self) -> dict[tuple[int, str], int]:
        return {(b, lvl): off for b, lvl, off in self.offchip}


__all__ = ["ALLOCS", "FITS", "POLICIES", "Config", "SpillResult"]
