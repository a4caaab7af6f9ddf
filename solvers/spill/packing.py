"""Offline packing of byte-count mode's placements: their step ranges are fixed once the
simulation ends, so offsets are an arena problem (``alloc.greedy``), with the exact packer
(``alloc.exact``) as a fallback where one packing decides between spilling and not."""

from __future__ import annotations

from collections.abc import Sequence

from stowage.solvers.alloc.exact import exact_pack
from stowage.solvers.alloc.greedy import allocate_offsets
from stowage.solvers.alloc.interval import Interval
from stowage.solvers.problem import Problem
from stowage.solvers.spill.config import Config


def pack(problem: Problem, placements: Sequence[Interval], cfg: Config) -> dict[int, int] | None:
    """Offsets for placements (index in ``placements`` -> offset) within the capacity, or None."""
    align = problem.target.compute.alignment
    cap = problem.capacity
    ivs = [Interval(i, p.first, p.last, p.size) for i, p in enumerate(placements)]
    offsets = allocate_offsets(ivs, alignment=align, capacity=cap, time_limit=cfg.pack_time, seed=cfg.seed,
                               work=cfg.pack_work or None)
    if offsets is None and cap is not None and cfg.exact_pack > 0:
        offsets = exact_pack(ivs, align, cap, cfg.exact_pack_wall or cfg.exact_pack, work=cfg.exact_pack)
    return offsets


__all__ = ["pack"]
