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
VERSION = 2
#: Versions this stowage reads (version 1 plans, written before steps carried operator indices
#: and in-place operators, still load: their steps are matched to operators by name).
READABLE_VERSIONS = (1, 2)
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
    #: Whether the graph was planned with in-place operators fused (``--in-place on``);
    #: ``validate`` and ``simulate`` rebuild the same graph from it.  False for version 1.
    in_place: bool = False

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
    """One step: operator ``op`` (its node name; ``index`` is its position among the model's
    nodes in file order, which identifies it even when ONNX node names repeat), then the
    in-place operators ``fused`` into the step (names, in execution order)."""

    op: str
    op_type: str
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    index: int | None = None
    fused: tuple[str, ...] = ()


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


RING_MODES = ("ring", "whole", "streamed")


@dataclass(frozen=True)
class RowTransfer:
    """Rows ``[lo, hi)`` of ``tensor`` copied between its placement in ``level`` (the whole
    tensor, NCHW as everywhere) and its ring in the compute level: ``load`` level -> ring
    before the stripe runs, ``store`` ring -> level after it."""

    tensor: str
    lo: int
    hi: int
    level: str
    direction: str  # "load" | "store"


@dataclass(frozen=True)
class Stripe:
    """One operator run on a band of output rows.  ``op`` is the operator's index in the model
    (an in-place operator fused into a step is a stripe of its own, right after its host's);
    it writes rows ``[out_lo, out_hi)`` of its output after reading rows ``[lo, hi)`` of each
    spatial operand named in ``inputs`` (operands without rows, such as weights or a per-channel
    scale, are read whole), with ``pad_top`` / ``pad_bottom`` rows of zero padding, non-zero
    only at the tensor's border.  ``transfers`` run around it: loads before, stores after."""

    op: int
    out_lo: int
    out_hi: int
    inputs: tuple[tuple[str, int, int], ...]   # (tensor, lo, hi) per spatial operand
    pad_top: int
    pad_bottom: int
    transfers: tuple[RowTransfer, ...] = ()


@dataclass(frozen=True)
class CascadeTensor:
    """How a tensor a cascade touches is held.  ``ring``: a ring of ``ring_rows`` rows of
    ``row_bytes`` each, in plan buffer ``buffer`` (row ``r`` at byte ``(r mod ring_rows) *
    row_bytes`` of it; a row is the tensor's ``[:, :, r, :]`` slice, channel-major);
    ``whole``: the tensor's own buffer (``buffer``), read and written row by row in place;
    ``streamed``: the whole tensor stays in ``level`` (its home) and moves through a ring
    (``buffer``, ``ring_rows``) by row transfers."""

    tensor: str
    mode: str
    buffer: int
    ring_rows: int = 0
    row_bytes: int = 0
    level: str | None = None


@dataclass(frozen=True)
class Cascade:
    """A run of operators executed stripe by stripe as plan step ``step``.  ``ops`` are the
    steps' operators (model indices, in order), ``end`` the tensor whose row bands drive the
    stripes, ``stripe_rows`` the band height; ``stripes`` is the program in execution order."""

    step: int
    ops: tuple[int, ...]
    end: str
    stripe_rows: int
    tensors: tuple[CascadeTensor, ...]
    stripes: tuple[Stripe, ...]

    def tensor(self, name: str) -> CascadeTensor | None:
        return next((t for t in self.tensors if t.tensor == name), None)


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
    #: Tiled execution (version 2): the cascades, each one plan step.  Empty for a plan of
    #: whole tensors.  Its steps, buffers (rings included) and placements are those of the
    #: *macro graph* (``stowage.ir.tiling.macro_graph``) the cascades define.
    cascades: tuple[Cascade, ...] = ()

    @property
    def traffic_bytes(self) -> int:
        return self.metrics.compulsory_bytes + self.metrics.noncompulsory_bytes
