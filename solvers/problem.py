"""The planning problem: an immutable IR + target + options.  Solvers only read it."""

from __future__ import annotations

import os
from dataclasses import dataclass

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
    """

    graph: Graph
    target: Hierarchy
    weights_in_compute_level: bool = False
    time_limit: float = 10.0
    seed: int = 0
    workers: int = 1

    @property
    def capacity(self) -> int | None:
        return self.target.compute.capacity

    @property
    def include_weights(self) -> bool:
        return self.weights_in_compute_level
