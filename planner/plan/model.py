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
from typing import Any

FORMAT = "stowage-plan"
VERSION = 2
#: Versions this stowage reads (version 1 plans, written before steps carried operator indices
#: and in-place operators, still load: their steps are matched to operators by name).
READABLE_VERSIONS = (1, 2)
PHASES = ("before", "after")
BUFFER_KINDS = ("input", "output", "weight", "activation")
STATUSES = ("optimal", "feasible", "infeasible", "unknown", "reference")
#: ``SolverInfo.latency_status`` values.
LATENCY_STATUSES = ("optimal", "order-optimal", "feasible")


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
    #: Whether Concats were run in place too (``stowage.ir.concat_inplace``; the plan has
    #: buffers with ``slices``).  False in plans written before that existed, whose in-place
    #: graph had no Concat in place: ``validate`` and ``simulate`` rebuild the same graph.
    concat_in_place: bool = False
    #: Operators split along their output channels to fit the capacity with their weights
    #: (``stowage.ir.channel_split``): name -> number of channel groups; empty when none.
    channel_split: Mapping[str, int] = field(default_factory=dict)
    #: ``"fold"`` when the graph was planned with its QDQ groups folded into int8 steps
    #: (``--qdq fold``, ``stowage.ir.qdq``), ``"off"`` when as written (and for older plans).
    qdq: str = "off"
    #: Graph inputs whose values the plan assumed (``--input-value``; flat, C order): the
    #: graph planned is the model specialised to them (``stowage.ir.onnx_values``).
    input_values: Mapping[str, tuple[int | float | bool, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", MappingProxyType(dict(self.dims)))
        object.__setattr__(self, "input_values", MappingProxyType(dict(self.input_values)))
        object.__setattr__(self, "channel_split", MappingProxyType(dict(self.channel_split)))


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
    #: ``"time"`` when a wall-clock stop (not a work budget) ended the search, so the same
    #: seed may give another plan on another machine or load; ``None`` otherwise.
    stopped_by: str | None = None
    #: With the latency objective (``docs/timing.md``): a lower bound in seconds on the
    #: estimated makespan (``metrics.estimated_seconds``) of every plan with these steps: every
    #: whole-tensor plan of the graph, setting and target (any order, placement, spills), or for
    #: a tiled plan every plan of its partition into cascades; ``None`` otherwise.
    latency_bound: float | None = None
    #: With the latency objective: ``"optimal"`` (the makespan meets ``latency_bound``),
    #: ``"order-optimal"`` (no timing of this plan's order, placements and copies is faster,
    #: proven on the latency model's time grid) or ``"feasible"``; ``None`` otherwise.
    latency_status: str | None = None
    #: A plan without cascades returned with ``--tiling auto``: its solver's bound over
    #: whole-tensor plans (COSMA's model), when the bound over every tiling (``lower_bound``)
    #: is smaller: ``status`` is then "optimal" only if the plan meets the tiled bound.
    whole_tensor_bound: int | None = None
    #: A tiled plan of ``--solver exact``: CP-SAT's proven lower bound on the cut traffic (the
    #: bytes its partition moves through off-chip memory at cascade boundaries) over every
    #: partition into its candidate cascades, in the orders it searched
    #: (``stowage.solvers.exact.tiled_model``).  Valid for that candidate set only, not over
    #: every tiling: ``lower_bound`` stays the bound over every tiling.
    partition_bound: int | None = None
    #: A tiled plan of ``--solver exact``: the joint model's proven lower bound on
    #: non-compulsory traffic (cut traffic plus whole-tensor spills) over every plan whose
    #: macro steps are its candidate cascades run in the file order, any addresses
    #: (``stowage.solvers.exact.tiled_joint``); absent when above the plan's traffic (the plan
    #: then lies outside that class).  Not over every tiling: ``lower_bound`` stays that.
    joint_bound: int | None = None
    #: A tiled plan: the operator order whose runs are its cascades (``file``, or an order of
    #: ``stowage.solvers.tiling.orders.ORDERS``: ``min-peak``, ``branch``), i.e. which order's
    #: search won; ``None`` on a plan without cascades.
    cascade_order: str | None = None


@dataclass(frozen=True)
class PlanSlice:
    """A tensor that is bytes ``[offset, offset + bytes)`` of its buffer: an operand of a
    Concat run in place, written there by its producer (``stowage.ir.concat_inplace``)."""

    tensor: str
    offset: int
    bytes: int


@dataclass(frozen=True)
class PlanBuffer:
    id: int
    tensors: tuple[str, ...]
    bytes: int
    kind: str
    home: str | None
    #: The buffer's slices, by offset (empty: every tensor is the whole buffer).
    slices: tuple[PlanSlice, ...] = ()


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
    #: The timeline (``stowage.solvers.timing``, validator rule 9): seconds from the start of
    #: the run and the DMA channel (0-based); None when the target has no compute description.
    start: float | None = None
    end: float | None = None
    channel: int | None = None


@dataclass(frozen=True)
class WeightLoad:
    """One slice of an operator's weights streamed into the compute level (``docs/timing.md``,
    "Weight streams"): the engine reads its weights through the DMA into a double buffer in
    the compute level, one slice (the weights and bias of output channels ``[channels_lo,
    channels_hi)``, ``bytes`` bytes) at a time, as Vela's buffered weights do.

    The copy runs on DMA ``channel`` from ``start`` to ``end`` from ``src`` (the weights' home)
    into ``[offset, offset + bytes)`` of ``dst`` (the compute level); step ``step`` reads the
    slice (its operator ``op``, weight buffer ``buffer``) from ``read_start`` to ``read_end``.
    Only timed plans have them, and only when weights are not planned into the compute level
    (``options.weights_in_compute_level`` off): the bytes lie above every placement the plan
    makes there, so the plan's placements do not list them."""

    step: int
    op: str
    buffer: int
    src: str
    dst: str
    channels_lo: int
    channels_hi: int
    bytes: int
    offset: int
    channel: int
    start: float
    end: float
    read_start: float
    read_end: float


RING_MODES = ("ring", "whole", "streamed", "staged")


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
    only at the tensor's border.  ``transfers`` run around it: loads before, stores after.
    ``output`` names the result it writes when the operator has several (a Split: one stripe
    per result and band); empty for an operator with one result."""

    op: int
    out_lo: int
    out_hi: int
    inputs: tuple[tuple[str, int, int], ...]   # (tensor, lo, hi) per spatial operand
    pad_top: int
    pad_bottom: int
    transfers: tuple[RowTransfer, ...] = ()
    output: str = ""


@dataclass(frozen=True)
class CascadeTensor:
    """How a tensor a cascade touches is held.  ``ring``: a ring of ``ring_rows`` rows of
    ``row_bytes`` each, in plan buffer ``buffer`` (row ``r`` at byte ``(r mod ring_rows) *
    row_bytes`` of it; a row is the tensor's ``[:, :, r, :]`` slice, channel-major);
    ``whole``: the tensor's own buffer (``buffer``), read and written row by row in place;
    ``streamed``: the whole tensor stays in ``level`` (its home) and moves through a ring
    (``buffer``, ``ring_rows``) by row transfers; ``staged``: as streamed (loads only), but the
    buffer is a staging area of ``ring_rows`` slots: each stripe reading the tensor loads every
    row it reads, the ``j``-th row its loads move into slot ``j`` (byte ``j * row_bytes``), and
    nothing staged survives into the next stripe (a dilated convolution's tap rows,
    ``docs/tiling.md``).

    ``slots`` (optional; ``ring`` and ``streamed`` only): the cascade addresses this tensor's
    rows by slot instead of ring modulo: row ``r`` sits at byte ``slots[r]`` of ``buffer`` (the
    cascade's row region, shared by all its slot-addressed tensors), ``-1`` for a row the
    cascade never holds.  The offsets come from packing the rows' lifetimes
    (``stowage.solvers.tiling.slots``), so two rows may share bytes when never live at once;
    ``ring_rows`` is then the most rows of the tensor held at one time (informative)."""

    tensor: str
    mode: str
    buffer: int
    ring_rows: int = 0
    row_bytes: int = 0
    level: str | None = None
    slots: tuple[int, ...] = ()

    def row_offset(self, r: int) -> int:
        """Byte offset of row ``r`` in ``buffer``: its slot when slot-addressed (``-1``: not
        held), else ``(r mod ring_rows) * row_bytes`` (``ring_rows`` must be positive)."""
        if self.slots:
            return self.slots[r] if 0 <= r < len(self.slots) else -1
        return (r % self.ring_rows) * self.row_bytes


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

    @property
    def slotted(self) -> bool:
        """Whether the cascade addresses its rows by slot (``CascadeTensor.slots``)."""
        return any(t.slots for t in self.tensors)


@dataclass(frozen=True)
class Metrics:
    compulsory_bytes: int
    noncompulsory_bytes: int
    peak_bytes: Mapping[str, int]
    #: The estimated makespan (``stowage.solvers.timing``); None when time is unknown.
    estimated_seconds: float | None = None

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
    #: Timed plans on a target whose engine streams weights (``WeightLoad``): every weight
    #: slice copied into the compute level, in order of ``start``.  Empty otherwise.
    weight_loads: tuple[WeightLoad, ...] = ()

    @property
    def traffic_bytes(self) -> int:
        return self.metrics.compulsory_bytes + self.metrics.noncompulsory_bytes

    def steps_table(self) -> list[dict[str, Any]]:
        """One dict per step: operator, in-place operators, live bytes per level
        (``live_<level>``) and the bytes loaded, reloaded, spilled and stored around it
        (``stowage.plan.tables.step_rows``; what ``stowage show --steps`` prints)."""
        from stowage.plan.tables import step_rows

        return step_rows(self)

    def to_dataframe(self, table: str = "steps") -> Any:
        """A table of the plan as a pandas DataFrame (integer columns stay integers):
        ``steps`` (``steps_table``), ``allocation`` or ``transfers`` (with the transfer kind
        load/reload/spill/store/move).  pandas is optional: imported here, and a
        ``ModuleNotFoundError`` names it when it is missing."""
        from stowage.plan import tables

        makers = {"steps": tables.step_rows, "allocation": tables.allocation_rows,
                  "transfers": tables.transfer_rows}
        if table not in makers:
            raise ValueError(f"table must be one of {', '.join(makers)}, not {table!r}")
        import pandas as pd

        return pd.DataFrame(makers[table](self))
