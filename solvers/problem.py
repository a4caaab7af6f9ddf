"""The planning problem: an immutable IR + target + options.  Solvers only read it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from stowage.ir.graph import Graph
from stowage.targets.hierarchy import Hierarchy


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Problem:
    """What every solver receives.

    ``target`` already carries the compute-level capacity to plan for (``None`` = unbounded).
    ``weights_in_compute_level`` is COSMA's "activations + weights" setting: weights must be
    resident in the compute level while an operator reads them; otherwise they are read in
    place from their home level and cost nothing.

    ``on_progress`` receives one-line progress reports (best so far, bound, elapsed) from
    long-running solvers.  It is a callback the caller gives rather than a module the solvers
    import, so solvers stay below the CLI that draws the line; it is not part of the problem's
    identity (equality, hashing).
    """

    graph: Graph
    target: Hierarchy
    weights_in_compute_level: bool = False
    time_limit: float = 10.0
    seed: int = 0
    workers: int = 1
    on_progress: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def report_progress(self, line: str) -> None:
        """Pass ``line`` to ``on_progress`` when the caller asked for progress reports."""
        if self.on_progress is not None:
            self.on_progress(line)

    @property
    def capacity(self) -> int | None:
        return self.target.compute.capacity
