"""The parameters of the two exact solvers, and the one rule that resolves ``mode="auto"``.

Kept apart from the pipeline so that the registry (which documents every field from the
docstring under it) and the tests can name them without loading a solver library.
"""

from __future__ import annotations

from dataclasses import dataclass

from stowage.errors import SolverError
from stowage.solvers.exact.joint_data import MODES
from stowage.solvers.problem import Problem

#: Above this many computing operators ``mode="auto"`` uses a fixed schedule: the
#: order-free model grows quadratically (positions x coverage) and stops proving.
AUTO_JOINT_MAX_OPS = 40

@dataclass(frozen=True)
class ExactParams:
    mode: str = "auto"
    """joint | fixed-schedule | min-peak | auto (joint up to 40 operators, else fixed-schedule)"""
    time_limit: float | None = None
    """seconds; default: the problem's time limit"""
    workers: int | None = None
    """CP-SAT workers; default: the machine's cores"""
    max_segments: int | None = None
    """cap on residency segments per buffer (default: exact, as many as the buffer's users)"""
    warm_start: bool = True
    """hint the solver with the best heuristic plan available"""
    seed: int | None = None
    """random seed; default: the problem's seed"""
    deterministic: bool = True
    """same answer for the same seed and workers (CP-SAT interleaved search)"""
    objective: str = "traffic"
    """traffic | latency (the fastest timing of exact's plan and the heuristic's, proven for the fixed order by
    stowage.solvers.exact.latency_model; docs/timing.md)"""
    latency_residency: bool = True
    """with objective latency: also let CP-SAT choose which buffers to spill and when, for time, on the candidates'
    orders (stowage.solvers.exact.latency_residency); false keeps only the DMA schedule of fixed plans"""
    partition: str = "model"
    """tiled plans (below M_R): model (the CP-SAT partition model over candidate cascades, in the file order and each
    order of reorder, besides the heuristic partitions; docs/tiling.md) | heuristic (the heuristic partition search
    only)"""
    joint: bool = True
    """tiled plans with partition model: also pack the file order's candidate cascades jointly with whole tensors
    and spills in one CP-SAT model (stowage.solvers.exact.tiled_joint; solver.joint_bound, a bound over the file
    order's plans only); false skips it"""
    reorder: tuple[str, ...] = ("min-peak", "branch")
    """tiled plans (below M_R): the orders whose cascades are searched besides the file order's, by the heuristic
    partition search and the partition model alike (stowage.solvers.tiling.orders.ORDERS: min-peak, branch; empty =
    the file order only); the plan moving the fewest bytes is kept, and auto's tiled plan when it moves fewer"""


@dataclass(frozen=True)
class ExactMipParams:
    mode: str = "auto"
    """joint | fixed-schedule | min-peak | auto (joint up to 40 operators, else fixed-schedule)"""
    backend: str = "cbc"
    """cbc (bundled with PuLP) | highs (runs in a subprocess: its libhighs clashes with OR-Tools')"""
    time_limit: float | None = None
    """seconds; default: the problem's time limit"""
    max_segments: int | None = None
    """cap on residency segments per buffer (default: exact)"""
    warm_start: bool = True
    """use the best heuristic plan as the fallback answer and as the fixed order"""


def resolve_mode(problem: Problem, mode: str) -> str:
    """The model a one-shot solve builds: ``auto`` is ``joint`` on small graphs, else
    ``fixed-schedule`` (the bound-and-pack pipeline of ``exact`` does not come here)."""
    if mode == "auto":
        return "joint" if len(problem.graph.computing_ops) <= AUTO_JOINT_MAX_OPS else "fixed-schedule"
    if mode not in MODES:
        raise SolverError(f"exact: unknown mode '{mode}'; choose joint, fixed-schedule, min-peak or auto")
    return mode


__all__ = ["AUTO_JOINT_MAX_OPS", "ExactMipParams", "ExactParams", "resolve_mode"]
