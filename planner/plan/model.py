"""The plan: an immutable record of schedule, placements and transfers.

The plan refers to the IR by ids (buffer ids, operator names) and never modifies it; solvers
build one through ``stowage.solvers.assemble`` and nothing writes into it afterwards.  Its
JSON form is ``stowage.plan.json_format``; key names are fixed because tools outside this project
read them (``docs/plan-format.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

FORMAT = "stowage-plan"
VERSION = 1
PHASES = ("before", "after")
BUFFER_KINDS = ("input", "output", "weight", "activation")
STATUSES = ("optimal", "feasible", "infeasible", "unknown", "reference")


@dataclass(frozen=True)
class ModelRef:
    path: str | None
    sha256: str | None


@dataclass(frozen=True)
class LevelRef:
    name: str
    capacity: int | None
    alignment: int


@dataclass(frozen=True)
class TargetRef:
    name: str
    compute_level: str
    levels: tuple[LevelRef, ...]

    def level(self, name: str) -> LevelRef | None:
        return next((lv for lv in self.levels if lv.name == name), None)

    def index(self, name: str) -> int:
        return [lv.name for lv in self.levels].index(name)


@dataclass(frozen=True)
class PlanOptions:
    element_bytes: int | None
    weights_in_compute_level: bool
    dims: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", MappingProxyType(dict(self.dims)))


@dataclass(frozen=True)
class SolverInfo:
    """Who made the plan and what they proved.

    ``name`` is the solver that was asked (``exact``); ``found_by`` says which solver and phase
    produced these placements (``heuristic``, ``exact: joint model``), so a plan that an exact
    solver took over from its reference heuristic is not presented as the model's own work.
    """

    name: str
    status: str
    objective: int | None
    lower_bound: int | None
    seconds: float
    found_by: str | None = None


@dataclass(frozen=True)
class PlanBuffer:
    id: int
    tensors: tuple[str, ...]
    bytes: int
    kind: str
    home: str | None


@dataclass(frozen=True)
class PlanStep:
    op: str
    op_type: str
    reads: tuple[int, ...]
    writes: tuple[int, ...]


@dataclass(frozen=True)
class Placement:
    """Reserves ``[offset, offset + bytes)`` of ``level`` from before step ``first`` runs
    until after step ``last`` has run (both inclusive)."""

    buffer: int
    level: str
    offset: int
    first: int
    last: int


@dataclass(frozen=True)
class Transfer:
    buffer: int
    src: str
    dst: str
    step: int
    phase: str  # "before" | "after"


@dataclass(frozen=True)
class Metrics:
    compulsory_bytes: int
    noncompulsory_bytes: int
    peak_bytes: Mapping[str, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "peak_bytes", MappingProxyType(dict(self.peak_bytes)))


@dataclass(frozen=True)
class Plan:
    model: ModelRef
    target: TargetRef
    options: PlanOptions
    solver: SolverInfo
    buffers: tuple[PlanBuffer, ...]
    steps: tuple[PlanStep, ...]
    placements: tuple[Placement, ...]
    transfers: tuple[Transfer, ...]
    metrics: Metrics
    format: str = FORMAT
    version: int = VERSION

    @property
    def traffic_bytes(self) -> int:
        return self.metrics.compulsory_bytes + self.metrics.noncompulsory_bytes
