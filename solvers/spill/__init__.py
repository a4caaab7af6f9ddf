"""Residency and replacement for a fixed operator order: the spill engine and its parts.

``engine`` (``SpillEngine``, ``simulate``), ``config`` (``Config``, ``SpillResult``),
``policies`` (victim choice), ``arena`` (the compute arena of online mode), ``offchip``
(off-chip occupancy), ``uses`` (next-use queries), ``packing`` (offline packing of
byte-count mode).  This module is the seam other solvers use (``heuristic``, ``divide``,
the baselines); the parts are the engine's own."""

from stowage.solvers.spill.config import Config, SpillResult
from stowage.solvers.spill.engine import EngineState, OutOfTime, SpillEngine, simulate
from stowage.solvers.spill.uses import uses_for

__all__ = ["Config", "EngineState", "OutOfTime", "SpillEngine", "SpillResult", "simulate", "uses_for"]
