"""Residency and replacement for a fixed operator order: the spill engine and its parts.

``engine`` (``SpillEngine``, ``simulate``), ``config`` (``Config``, ``SpillResult``),
``policies`` (victim choice), ``arena`` (the compute arena of online mode), ``offchip``
(off-chip occupancy), ``uses`` (next-use queries), ``packing`` (offline packing of
byte-count mode)."""

from stowage.solvers.spill.config import ALLOCS, FITS, POLICIES, Config, SpillResult
from stowage.solvers.spill.engine import EngineState, OutOfTime, PackFailed, SpillEngine, simulate
from stowage.solvers.spill.packing import exact_pack, pack
from stowage.solvers.spill.uses import Uses, uses_for

__all__ = ["ALLOCS", "FITS", "POLICIES", "Config", "EngineState", "OutOfTime", "PackFailed", "SpillEngine",
           "SpillResult", "Uses", "exact_pack", "pack", "simulate", "uses_for"]
