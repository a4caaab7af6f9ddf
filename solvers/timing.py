"""The one time model: how long a plan's steps and copies take on a target, and when each runs.

Planning for bytes never reads this module; it turns a plan (whatever solver made it) into a
timeline and an estimated makespan, for the plan file (``metrics.estimated_seconds``, the
times of every transfer), ``compile``'s summary and ``--per-layer`` table, and the latency
objective of ``heuristic``.  ``docs/timing.md`` states the model; in short:

* **Compute.**  A step runs its operator and the in-place operators fused into it.  Each
  member's work (``Operator.cost``: MACs, FLOPs, or bytes touched where the IR has no count)
  runs at ``macs_per_cycle * efficiency * clock_hz`` items per second, the efficiency being
  the op type's ``[compute.op_types]`` entry, else its class's ``[compute.efficiency]`` entry
  (``op_class``), else 1.  While it computes, the engine reads its operands and writes its
  results: per level, ``bytes read / read_bandwidth + bytes written / write_bandwidth``
  (operands in the compute level, weights read in place from their home when
  ``weights_in_compute_level`` is off, the row copies of a tiled cascade).  The step's busy
  time is the largest of the compute time and those access times -- Vela's per-pass rule
  (``npu_performance.py``: compute and each memory overlap within an operator).
* **Copies.**  A transfer of ``n`` bytes from ``src`` to ``dst`` takes
  ``latency + ceil(n / burst) * burst / min(read_bandwidth(src), write_bandwidth(dst))``, with
  the larger latency and burst of the two levels (a level without them: 0 and 1 byte).
* **Overlap.**  Compute overlaps copies; the target's ``dma_channels`` copies run at once, each
  at its full rate (channels do not share bandwidth: exact with one channel, optimistic with
  more); copies on one channel run one after another, in plan order (a DMA command queue).
  Steps run one after another in plan order.
* **When a copy may run.**  Its source data must be valid (a graph input or weight at home
  from time 0; a buffer in the compute level once the step that writes it ends or the copy
  that brings it there ends; a spilled copy once the store that made it ends), and its
  destination bytes must be free: every earlier placement of the destination level that
  shares a byte with the destination placement must have been *released*.  A placement is
  released when the last step of its range ends and every copy from or to it has ended (so a
  spill's source bytes are free when its copy ends).  A reload may therefore start long
  before its step (a prefetch) as soon as its bytes are free; double buffering falls out.
  A step starts when the previous one has ended, its ``before`` copies have ended and the
  bytes of the placements it writes into are free.

* **Weight streams.**  On a target with ``[compute.blocks]`` whose weights are read at home,
  the slices the block model streams into a double buffer above the plan's placements are
  copies too (``WeightLoad``, ``Timeline.weight_loads``): queued on the DMA channels in plan
  order with the activations' copies, each operator's first slice issued under the previous
  operator (Vela's slack), the NPU reading a slice once its copy has ended (``_double_buffer``);
  a stream the channel delays delays its step.  Other queue orders of the copies and the
  streams: ``stream_timing`` (the exact latency model's schedule; a plan recording one keeps
  it here when it is faster).

The lower bound (``latency_bound``) holds for every order and placement of the same graph,
options and target: the steps' busy times do not depend on the plan, and every compulsory copy
(graph inputs in, graph outputs out, weights in when they must be resident) must run on some
channel, so the makespan is at least ``max(sum of busy times, compulsory copy time /
dma_channels)``.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from stowage.ir.graph import Graph, Operator, TensorKind
from stowage.plan import Placement, Plan, Transfer, WeightLoad
from stowage.solvers import block_model, block_ops
from stowage.targets.hierarchy import Compute, Hierarchy, Level

log = logging.getLogger(__name__)

__all__ = [
    "PER_LAYER_COLUMNS",
    "StepTime",
    "Stream",
    "TimeGraph",
    "TimedTransfer",
    "Timeline",
    "annotate",
    "earliest_starts",
    "estimate",
    "latency_bound",
    "op_class",
    "per_layer_csv",
    "plan_index",
    "record_latency",
    "recorded_queues",
    "replay",
    "step_busy_seconds",
    "step_times",
    "time_graph",
    "transfer_seconds",
]

_CONV = frozenset({"Conv", "QLinearConv", "ConvInteger", "ConvTranspose"})
_MATMUL = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "QGemm"})
_POOL = frozenset({"MaxPool", "AveragePool", "QLinearAveragePool", "GlobalAveragePool", "GlobalMaxPool",
                   "QLinearGlobalAveragePool", "LpPool", "GlobalLpPool"})


def op_class(graph: Graph, op: Operator) -> str:
    """The operator class whose ``[compute.efficiency]`` entry applies (``OP_CLASSES``).

    A convolution is ``depthwise`` when each group has one input channel and there is more
    than one group (the weight's dim 1 is ``C_in / group``); NPUs run those far below their
    MAC rate (Vela's MobileNetV2 table: 6.8% against 32% for ordinary convolutions)."""
    if op.domain == "tflite":
        # TFLite builtins (``stowage.ir.tflite_import``): the kind is in the name.
        t = op.op_type
        if t == "DEPTHWISE_CONV_2D":
            return "depthwise"
        if t in ("CONV_2D", "TRANSPOSE_CONV", "CONV_3D"):
            return "conv"
        if t in ("FULLY_CONNECTED", "BATCH_MATMUL"):
            return "matmul"
        if t.endswith("_POOL_2D") or t in ("MEAN", "SUM", "REDUCE_MAX"):
            return "pool"
        return "elementwise" if op.cost_unit == "FLOPs" else "other"
    if op.op_type in _CONV:
        group = op.attributes.get("group", 1)
        w_name = op.inputs[3] if op.op_type == "QLinearConv" and len(op.inputs) > 3 else \
            (op.inputs[1] if len(op.inputs) > 1 else "")
        w = graph.tensors.get(w_name)
        if isinstance(group, int) and group > 1 and w is not None and len(w.shape) > 1 and w.shape[1] == 1:
            return "depthwise"
        return "conv"
    if op.op_type in _MATMUL:
        return "matmul"
    if op.op_type in _POOL:
        return "pool"
    if op.cost_unit == "FLOPs":
        return "elementwise"
    return "other"


def _latency(level: Level, engine: Compute) -> float:
    if level.latency_s is not None:
        return level.latency_s
    if level.latency_cycles is not None:
        return level.latency_cycles / engine.clock_hz
    return 0.0


def transfer_seconds(nbytes: int, src: Level, dst: Level, engine: Compute) -> float | None:
    """Duration of one copy of ``nbytes`` from ``src`` to ``dst`` (module docstring), or None
    when a bandwidth it needs is unknown."""
    rd, wr = src.read_bandwidth, dst.write_bandwidth
    if rd is None or wr is None:
        return None
    burst = max(src.burst_bytes or 1, dst.burst_bytes or 1)
    moved = -(-nbytes // burst) * burst
    return max(_latency(src, engine), _latency(dst, engine)) + moved / min(rd, wr)


@dataclass(frozen=True)
class StepTime:
    """One step of the timeline.  ``busy`` = max(``compute``, the access time of each level);
    ``stall``: time the engine waited before ``start`` (for copies or free bytes)."""

    step: int
    op: str
    op_type: str
    op_class: str
    macs: int
    compute: float
    busy: float
    start: float
    end: float
    stall: float
    moved: Mapping[str, int] = field(default_factory=dict)   # bytes copied in or out of each level
    #: Weight streams (``WeightLoad``): the bytes the step's weight slices move, the seconds of
    #: their copies, and the NPU's wait for them (within ``busy``).
    weight_bytes: int = 0
    weight_dma: float = 0.0
    weight_stall: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "moved", MappingProxyType(dict(self.moved)))


@dataclass(frozen=True)
class TimedTransfer:
    """``plan.transfers[index]`` on DMA channel ``channel`` from ``start`` to ``end`` (seconds)."""

    index: int
    channel: int
    start: float
    end: float


@dataclass(frozen=True)
class Timeline:
    steps: tuple[StepTime, ...]
    transfers: tuple[TimedTransfer, ...]
    makespan: float
    lower_bound: float
    #: Every weight slice the engine streams through the DMA (empty when none does).
    weight_loads: tuple[WeightLoad, ...] = ()

    @property
    def stall(self) -> float:
        return sum(s.stall for s in self.steps)


def _members(graph: Graph, plan: Plan, s: int) -> list[Operator]:
    """The model operators step ``s`` runs: a cascade's operators, else the step's operator
    (by index, else by name) and the in-place operators fused into it."""
    for c in plan.cascades:
        if c.step == s:
            return [m for i in c.ops for m in graph.step_members(graph.operators[i])]
    step = plan.steps[s]
    if step.index is not None and 0 <= step.index < len(graph.operators):
        op = graph.operators[step.index]
    else:
        op = next((o for o in graph.operators if o.name == step.op), None)  # type: ignore[assignment]
        if op is None:
            return []
    members = list(graph.step_members(op))
    if step.fused and len(members) == 1:
        by_name = {o.name: o for o in graph.operators}
        members += [by_name[n] for n in step.fused if n in by_name]
    return members


def _engine_seconds(graph: Graph, members: Sequence[Operator], engine: Compute) -> tuple[float, int, str]:
    """Compute time of the members, their MACs (cost in MACs only) and the first member's class."""
    seconds = 0.0
    macs = 0
    for m in members:
        cls = op_class(graph, m)
        rate = engine.macs_per_cycle * engine.efficiency_of(m.op_type, cls) * engine.clock_hz
        seconds += m.cost / rate
        if m.cost_unit == "MACs":
            macs += m.cost
    # The class of the step's own operator (not of a folded QDQ group's leading DequantizeLinear).
    own = [m for m in members if not block_ops.folded_qdq(graph, m)] or list(members)
    return seconds, macs, op_class(graph, own[0]) if own else "other"


def _memory(level: Level, engine: Compute) -> block_model.Memory | None:
    """A level as the block model sees it: bytes per compute-clock cycle (the read bandwidth,
    as Vela uses one figure per memory), first-access latency in cycles and burst length."""
    if level.read_bandwidth is None or level.write_bandwidth is None:
        return None
    return block_model.Memory(bytes_per_cycle=level.read_bandwidth / engine.clock_hz,
                              latency=_latency(level, engine) * engine.clock_hz, burst=level.burst_bytes or 1)


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment if alignment > 1 else n


@dataclass(frozen=True)
class Stream:
    """One member of a step that streams its weights (``_block_step``), as the timeline needs
    it: the member ``op`` and its weight tensor, the weights' level ``src``; ``offset`` its start
    after the step's (when nothing delays it); the first copy is issued ``hide`` before that.
    Per slice: output ``channels`` ``(lo, hi)``, ``nbytes``, the ``copies``' and the NPU's
    ``reads``' seconds.  The double buffer: halves of ``half`` bytes, ``buffer`` in all, at
    ``base`` in the compute level (``_place_streams``).  ``floor``: the member's time bound by
    its compute-level accesses; ``duration``: its time with nothing delaying a copy."""

    op: str
    weight: str
    src: str
    offset: float
    hide: float
    channels: tuple[tuple[int, int], ...]
    nbytes: tuple[int, ...]
    copies: tuple[float, ...]
    reads: tuple[float, ...]
    half: int
    buffer: int
    floor: float
    duration: float
    base: int = 0


def _double_buffer(t0: float, copies: Sequence[float], reads: Sequence[float]
                   ) -> tuple[list[float], list[float], list[float], list[float]]:
    """The schedule of a double-buffered weight stream, relative to the operation's start (0):
    the starts and ends of each slice's copy and of the NPU's reading of it.  The copies run
    one after another on one channel from ``t0``; with two or more slices slice ``k`` goes to
    half ``k mod 2``, so its copy also waits until slice ``k - 2`` has been read; the NPU reads
    slice ``k`` once its copy has ended, after slice ``k - 1``, and not before 0.  (One slice:
    one buffer, the copy then the reading.)  Vela's closed form ``max(all copies - slack + the
    last slice's reading, the readings + max(first copy - slack, 0))`` assumes the copies never
    wait for a free half; they do when both halves are full, e.g. after the first slices were
    copied under the previous operation, or when a short last slice's copy ends before the
    slice before it has been read: then this schedule is slower (``docs/timing.md``, "Weight
    streams")."""
    ls: list[float] = []
    le: list[float] = []
    rs: list[float] = []
    re: list[float] = []
    for k, (d, p) in enumerate(zip(copies, reads, strict=True)):
        start = t0 if k == 0 else le[-1]
        if k >= 2:
            start = max(start, re[k - 2])
        ls.append(start)
        le.append(start + d)
        r = max(le[-1], re[-1] if re else 0.0, 0.0)
        rs.append(r)
        re.append(r + p)
    return ls, le, rs, re


def _weight_tensor(graph: Graph, op: Operator, sides: Mapping[str, str]) -> str | None:
    """The weight tensor a streamed operator reads (its largest constant operand with a buffer;
    in a folded QDQ group the integer weight the ``DequantizeLinear`` reads)."""
    names = [sides.get(n, n) for n in op.inputs if n]
    ws = [graph.tensors[n] for n in names if n in graph.tensors and n in graph.tensor_buffer
          and graph.tensors[n].kind is TensorKind.WEIGHT]
    return max(ws, key=lambda t: t.bytes).name if ws else None


def _block_step(graph: Graph, members: Sequence[Operator], engine: Compute, arch: block_model.BlockArch,
                fm: tuple[Level, block_model.Memory], const: tuple[Level, block_model.Memory],
                formats: Mapping[str, str], sides: Mapping[str, str], stream_room: int | None,
                slack: tuple[float, int], *, exact: bool = True, alignment: int = 1,
                streams: list[Stream] | None = None
                ) -> tuple[float, float, dict[str, float], tuple[float, int]] | None:
    """Busy and compute time of a step with at least one member the block model describes (None
    otherwise), and the seconds each level spends on its accesses.  A member it does not
    describe (a float graph input's ``QuantizeLinear`` in a cascade, ...) gets the efficiency
    model with its own operands and results read and written once; the ``DequantizeLinear`` and
    ``QuantizeLinear`` of a folded QDQ group cost nothing (the group is one integer operation).

    Per member, Vela's per-operation rule (``npu_performance.estimate_full_op_performance``):
    the larger of its NPU cycles and, per level, its block-wise accesses -- the input re-read
    once per block of output channels and the weights once per block of output positions, the
    feature-map streams scaled by their burst efficiency -- over that level's bandwidth.  The
    members of a step (a cascade's operators, a fused activation) run one after another, so the
    step's busy time is the sum over its members.  An ONNX activation fused after a modelled
    operator runs in that operator's output stage (Vela fuses it) and costs nothing itself; so
    does a TFLite activation right after the operator making its operand, under Vela's own
    conditions (``block_ops.tflite_fused_activation``).

    **Weight streaming** (Vela's buffered weights, ``scheduler.propose_weight_buffering`` and the
    double-buffer rule of ``estimate_full_op_performance``): a convolution whose weights are read
    in place from a slower level may instead have them copied once, in slices of one OFM block's
    depth, into a double buffer in the compute level, the copy of slice ``k + 1`` overlapping the
    computation of slice ``k``: ``max(all slices' copy + the last slice's compute, compute + the
    first slice's copy)`` (one slice: copy, then compute), the compute level also taking the
    copy's writes and the engine's re-reads.  It needs ``stream_room`` bytes (free above the
    plan's highest address) for the double buffer (None: never); each member gets the faster
    of the two (Vela likewise buffers per operation).  Fully connected layers are read in place,
    as Vela does.

    **Prefetch under the previous operation** (Vela's ``slack_buffering_cycles``): the first
    slice's copy may run while the operation before it computes -- during its last slice when
    that one streamed in slices, else during all of it -- when the room holds both operations'
    buffers.  ``slack`` is ``(seconds, buffer bytes)`` the previous operation leaves (the caller
    passes the previous step's; infinite for the bound, which holds for every order); the
    returned one is this step's last member's.

    With ``exact`` (every plan's timeline) a streamed member takes the time of its double
    buffer's schedule (``_double_buffer``), which the recorded weight loads follow; without it
    (the bound) Vela's closed form, which is never slower.  The halves of the double buffer
    are ``alignment``-aligned.  ``streams`` collects each streamed member's ``Stream``."""
    busy = comp = 0.0
    per_level: dict[str, float] = defaultdict(float)
    fm_level, fm_mem = fm
    const_level, const_mem = const
    fm_rd, fm_wr = fm_level.read_bandwidth or 1.0, fm_level.write_bandwidth or 1.0
    c_rd = const_level.read_bandwidth or 1.0
    members = [m for m in members if not block_ops.folded_qdq(graph, m)]   # the integer kernel's own work
    any_modelled = False    # a step with no modelled member keeps the efficiency model
    for i, m in enumerate(members):
        nxt = members[i + 1] if i + 1 < len(members) else None
        if i > 0 and m.domain != "tflite" and m.op_type in block_ops.ONNX_ACTIVATIONS \
                and block_ops.block_kind(members[i - 1]) not in (None, block_model.ELEMENTWISE):
            continue
        if i > 0 and block_ops.tflite_fused_activation(graph, members[i - 1], m, arch) is not None:
            continue    # in the previous member's output stage (Vela's fused activation)
        act = block_ops.ONNX_ACTIVATIONS.get(nxt.op_type) if nxt is not None and nxt.domain != "tflite" else None
        if nxt is not None and nxt.domain == "tflite":
            act = block_ops.tflite_fused_activation(graph, m, nxt, arch) or act
        got = block_ops.query(graph, m, fm_mem, const_mem, formats, act, sides)
        cost = block_model.op_cost(arch, got[0]) if got is not None else None
        if got is None or cost is None:
            # A member the block model does not describe (a float graph input's QuantizeLinear
            # in a cascade, ...): the efficiency model, its own operands and results once.
            t_eff = m.cost / (engine.macs_per_cycle * engine.efficiency_of(m.op_type, op_class(graph, m))
                              * engine.clock_hz)
            acc: dict[str, float] = defaultdict(float)
            for names, bw in ((m.inputs, fm_rd), (m.outputs, fm_wr)):
                for n in names:
                    tt = graph.tensors.get(sides.get(n, n)) if n else None
                    if tt is None or tt.name not in graph.tensor_buffer:
                        continue
                    if tt.kind is TensorKind.WEIGHT and const_level.name != fm_level.name:
                        acc[const_level.name] += tt.bytes / c_rd
                    else:
                        acc[fm_level.name] += tt.bytes / bw
            busy += max(t_eff, *acc.values(), 0.0)
            comp += t_eff
            for name, x in acc.items():
                per_level[name] += x
            slack = (t_eff, 0)
            continue
        any_modelled = True
        q, wbytes, bbytes, const_bytes = got
        t_npu = cost.cycles / engine.clock_hz
        fm_read = cost.ifm_read * q.ifm.bits / 8 * cost.ifm_scale
        if q.ifm2 is not None:
            fm_read += cost.ifm2_read * q.ifm2.bits / 8 * cost.ifm2_scale
        fm_write = cost.ofm_write * q.ofm.bits / 8 * cost.ofm_scale
        refetch = cost.weight_read * wbytes + cost.scale_read * bbytes
        times: dict[str, float] = defaultdict(float)
        times[fm_level.name] += fm_read / fm_rd + fm_write / fm_wr
        if refetch:
            times[const_level.name] += refetch / c_rd
        t = max(t_npu, *times.values())
        next_slack = (t_npu, 0)
        stream: Stream | None = None
        if stream_room is not None and const_bytes and q.kind in (block_model.CONV, block_model.DEPTHWISE):
            cout = q.ofm.shape.c
            slice_c = min(cout, max(arch.ofm_split_depth, cost.config.ofm_block.c))
            n_slices = -(-cout // slice_c)
            slice_bytes = -(-const_bytes * slice_c // cout)
            half = _align(slice_bytes if n_slices > 1 else const_bytes, alignment)
            buffer = 2 * half if n_slices > 1 else half
            if buffer <= stream_room:
                lat = const_mem.latency / engine.clock_hz
                bw = min(c_rd, fm_wr)
                full = lat + const_bytes / bw
                first = lat + slice_bytes / bw
                tail = t_npu * (cout - (n_slices - 1) * slice_c) / cout
                hide = slack[0] if buffer + slack[1] <= stream_room else 0.0
                # The slices: output channels [lo, hi), their share of the constant bytes, the
                # copy (the first one pays the latency) and the NPU's time on them.
                chans = tuple((k * slice_c, min(cout, (k + 1) * slice_c)) for k in range(n_slices))
                nbytes = tuple(-(-const_bytes * hi // cout) - (-(-const_bytes * lo // cout)) for lo, hi in chans)
                copies = tuple((lat if k == 0 else 0.0) + b / bw for k, b in enumerate(nbytes))
                reads = tuple(t_npu * (hi - lo) / cout for lo, hi in chans)
                if exact:
                    # The double buffer's own schedule (``_double_buffer``), the first copy
                    # issued ``hide`` before the operation starts: never faster than Vela's
                    # closed form below, the same when the last slice is a full one.
                    npu = _double_buffer(-hide, copies, reads)[3][-1]
                elif n_slices > 1:  # double buffer: max(full - slack + tail, op + max(first - slack, 0))
                    npu = max(full - hide + tail, t_npu + max(first - hide, 0.0))
                else:               # one buffer: the copy, less what ran under the previous operation
                    npu = t_npu + full - min(first, hide)
                fm_t = times[fm_level.name] + const_bytes / fm_wr + refetch / fm_rd
                ts = max(npu, fm_t)
                if ts < t * (1 - 1e-9):    # faster, not a tie broken by the last bits of a sum
                    t = ts
                    times = defaultdict(float, {fm_level.name: fm_t, const_level.name: full})
                    next_slack = (tail if n_slices > 1 else t_npu, buffer)
                    weight = _weight_tensor(graph, m, sides)
                    if weight is not None:
                        stream = Stream(op=m.name, weight=weight, src=const_level.name, offset=busy, hide=hide,
                                         channels=chans, nbytes=nbytes, copies=copies, reads=reads, half=half,
                                         buffer=buffer, floor=fm_t, duration=ts)
        if stream is not None and streams is not None:
            streams.append(stream)
        slack = next_slack
        busy += t
        comp += t_npu
        for name, x in times.items():
            per_level[name] += x
    if not any_modelled:
        return None
    return busy, comp, per_level, slack


def step_busy_seconds(graph: Graph, plan: Plan, target: Hierarchy, bound: bool = False
                      ) -> list[tuple[float, float, int, str]] | None:
    """Per step ``(busy, compute, MACs, class)`` (``step_times``, which says how)."""
    got = step_times(graph, plan, target, bound)
    return None if got is None else got[0]


def step_times(graph: Graph, plan: Plan, target: Hierarchy, bound: bool = False
                ) -> tuple[list[tuple[float, float, int, str]], list[tuple[Stream, ...]]] | None:
    """Per step ``(busy, compute, MACs, class)``; None when the target has no compute engine or
    a bandwidth the access terms need is unknown.  Depends only on the graph, the options and
    the target (not on the order or offsets), which is what makes ``latency_bound`` a bound.

    With ``[compute.blocks]`` a step whose members the block model describes gets Vela's
    per-operation times (``_block_step``); every other step the efficiency model: its members'
    work at ``macs_per_cycle x efficiency``, overlapped with each operand read once.  With
    ``bound`` the busy times hold for every plan of the graph: weight streaming is assumed to
    have room (``_block_step``), which only makes a step faster.

    Also, per step, the members that stream their weights (``Stream``, empty without), their
    double buffers placed above the plan's highest compute-level address (``_place_streams``)."""
    engine = target.compute_engine
    if engine is None:
        return None
    compute = target.compute
    by_level = {lv.name: lv for lv in target.levels}
    kinds = {b.id: b for b in plan.buffers}
    in_place_weights = not plan.options.weights_in_compute_level
    blocks = None
    if engine.blocks is not None:
        const_level = by_level.get(target.weights_home, compute) if in_place_weights else compute
        fm_mem, const_mem = _memory(compute, engine), _memory(const_level, engine)
        room: int | None = None
        if in_place_weights and const_level.name != compute.name:
            top = max((p.offset + kinds[p.buffer].bytes for p in plan.placements
                       if p.level == compute.name and p.buffer in kinds), default=0)
            lo = _align(top, compute.alignment)
            room = (1 << 62) if (bound or compute.capacity is None) else \
                max(compute.capacity // compute.alignment * compute.alignment - lo, 0)
        if fm_mem is not None and const_mem is not None:
            blocks = (engine.blocks, (compute, fm_mem), (const_level, const_mem), block_ops.feature_map_formats(graph),
                      block_ops.integer_sides(graph), room)
    out: list[tuple[float, float, int, str]] = []
    streams: list[tuple[Stream, ...]] = []
    slack = (0.0, 0)
    for s, step in enumerate(plan.steps):
        members = _members(graph, plan, s)
        comp, macs, cls = _engine_seconds(graph, members, engine)
        if bound:
            slack = (float("inf"), 0)
        found: list[Stream] = []
        modelled = _block_step(graph, members, engine, *blocks, slack, exact=not bound, alignment=compute.alignment,
                               streams=None if bound else found) if blocks is not None and members else None
        streams.append(tuple(found) if modelled is not None else ())
        slack = (comp, 0)
        if modelled is not None:
            busy_b, comp, level_t, slack = modelled
            rows: dict[str, int] = defaultdict(int)
            for c in plan.cascades:
                if c.step == s:
                    for st in c.stripes:
                        for x in st.transfers:
                            ct = c.tensor(x.tensor)
                            rows[x.level] += (x.hi - x.lo) * (ct.row_bytes if ct else 0)
            for name, n in rows.items():
                lv = by_level.get(name)
                if lv is None or lv.read_bandwidth is None or lv.write_bandwidth is None:
                    return None
                # A cascade's row copies overlap its operators, within the level's bandwidth.
                busy_b = max(busy_b, level_t.get(name, 0.0) + n / min(lv.read_bandwidth, lv.write_bandwidth))
            out.append((busy_b, comp, macs, cls))
            continue
        read: dict[str, int] = defaultdict(int)
        written: dict[str, int] = defaultdict(int)
        for b in step.reads:
            pb = kinds.get(b)
            if pb is None:
                continue
            level = pb.home if (in_place_weights and pb.kind == "weight" and pb.home) else compute.name
            read[level] += pb.bytes
        for b in step.writes:
            pb = kinds.get(b)
            if pb is not None:
                written[compute.name] += pb.bytes
        for c in plan.cascades:
            if c.step != s:
                continue
            for st in c.stripes:
                for x in st.transfers:
                    ct = c.tensor(x.tensor)
                    n = (x.hi - x.lo) * (ct.row_bytes if ct else 0)
                    (read if x.direction == "load" else written)[x.level] += n
        busy = comp
        for name in set(read) | set(written):
            lv = by_level.get(name)
            if lv is None:
                continue
            if (read.get(name) and lv.read_bandwidth is None) or (written.get(name) and lv.write_bandwidth is None):
                return None
            t = read.get(name, 0) / (lv.read_bandwidth or 1.0) + written.get(name, 0) / (lv.write_bandwidth or 1.0)
            busy = max(busy, t)
        out.append((busy, comp, macs, cls))
    return out, _place_streams(plan, compute, streams)


def _place_streams(plan: Plan, compute: Level, streams: list[tuple[Stream, ...]]) -> list[tuple[Stream, ...]]:
    """Each double buffer's address: above the plan's highest byte of the compute level,
    alternately at the bottom and at the top of a window that leaves, so that a buffer whose
    first slice is copied while the previous operation still reads its own (``hide`` > 0:
    ``_block_step`` allows it only when both buffers fit in the room) shares no byte with it.
    Buffers further apart in time may share bytes: the one before has been read by then.  The
    window is as small as that allows (the largest buffer, and the largest pair of buffers
    one of which is prefetched under the other), so the bytes to allocate stay few."""
    if not any(streams):
        return streams
    size = {b.id: b.bytes for b in plan.buffers}
    top = max((p.offset + size[p.buffer] for p in plan.placements
               if p.level == compute.name and p.buffer in size), default=0)
    lo = _align(top, compute.alignment)
    flat = [st for sts in streams for st in sts]
    window = max([*(st.buffer for st in flat),
                  *(a.buffer + b.buffer for a, b in itertools.pairwise(flat) if b.hide > 0)])
    end = lo + window
    if compute.capacity is not None:
        end = min(end, compute.capacity // compute.alignment * compute.alignment)
    out: list[tuple[Stream, ...]] = []
    side = 0
    for sts in streams:
        placed = []
        for st in sts:
            placed.append(replace(st, base=lo if side == 0 else end - st.buffer))
            side ^= 1
        out.append(tuple(placed))
    return out


def _compulsory(plan: Plan, target: Hierarchy) -> Iterable[tuple[int, str, str]]:
    """``(bytes, src, dst)`` of the copies every plan of this graph and setting must make."""
    compute = target.compute_level
    for b in plan.buffers:
        if b.home is None or b.home == compute:
            continue
        if b.kind == "input" or (b.kind == "weight" and plan.options.weights_in_compute_level):
            yield b.bytes, b.home, compute
        elif b.kind == "output":
            yield b.bytes, compute, b.home


def _copies_seconds(copies: Iterable[tuple[int, str, str]], target: Hierarchy, engine: Compute) -> list[float] | None:
    out = []
    for n, src, dst in copies:
        t = transfer_seconds(n, target.level(src), target.level(dst), engine)
        if t is None:
            return None
        out.append(t)
    return out


def _ends(plan: Plan, target: Hierarchy, engine: Compute) -> tuple[float, float] | None:
    """The least time every plan must spend before its first step and after its last one.

    Some step runs first in every order.  A step can be first only when it reads no buffer
    another step writes; before it starts, every operand it reads from the compute level whose
    home is elsewhere (a graph input; a weight when weights must be resident) must have been
    copied in: on ``dma_channels`` channels that takes at least the longest such copy and at
    least their sum over the channels.  The least of that over the steps that can be first is a
    valid head.  Likewise some step runs last; it can be last only when no other step reads
    what it writes, and the graph outputs it writes must then be copied home after it ends: the
    least over those steps is a valid tail.  (A step that can be first with nothing to load
    makes the head 0, so the bound never assumes a particular order.)"""
    compute = target.compute_level
    by_id = {b.id: b for b in plan.buffers}
    writers: dict[int, set[int]] = defaultdict(set)
    readers: dict[int, set[int]] = defaultdict(set)
    for s, st in enumerate(plan.steps):
        for b in st.writes:
            writers[b].add(s)
        for b in st.reads:
            readers[b].add(s)
    channels = engine.dma_channels

    def need(copies: list[tuple[int, str, str]]) -> float | None:
        ts = _copies_seconds(copies, target, engine)
        if ts is None:
            return None
        return max(max(ts, default=0.0), sum(ts) / channels)

    heads: list[float] = []
    tails: list[float] = []
    for s, st in enumerate(plan.steps):
        if not any(writers[b] - {s} for b in st.reads):
            ins = []
            for b in st.reads:
                pb = by_id.get(b)
                if pb is None or pb.home is None or pb.home == compute:
                    continue
                if pb.kind == "input" or (pb.kind == "weight" and plan.options.weights_in_compute_level):
                    ins.append((pb.bytes, pb.home, compute))
            h = need(ins)
            if h is None:
                return None
            heads.append(h)
        if not any(readers[b] - {s} for b in st.writes):
            outs = [(by_id[b].bytes, compute, by_id[b].home) for b in st.writes
                    if b in by_id and by_id[b].kind == "output" and by_id[b].home not in (None, compute)]
            t = need(outs)  # type: ignore[arg-type]
            if t is None:
                return None
            tails.append(t)
    return min(heads, default=0.0), min(tails, default=0.0)


def latency_bound(graph: Graph, plan: Plan, target: Hierarchy) -> float | None:
    """``max(head + sum of step busy times + tail, compulsory copy time / dma_channels)``.

    Valid for every order, placement and spill choice of the same graph, setting and target
    (for a tiled plan: of the same partition into cascades, whose row copies are part of the
    steps' busy times): the steps run one after another and each is busy for a time that does
    not depend on the plan (``step_busy_seconds``); the first step waits for its own compulsory
    loads and the last step's graph outputs are stored after it ends (``_ends``); and every
    compulsory copy (graph inputs in, graph outputs out, weights in when they must be resident)
    runs on one of ``dma_channels`` channels."""
    busy = step_busy_seconds(graph, plan, target, bound=True)
    engine = target.compute_engine
    if busy is None or engine is None:
        return None
    dma = _copies_seconds(_compulsory(plan, target), target, engine)
    ends = _ends(plan, target, engine)
    if dma is None or ends is None:
        return None
    # Summed in the order a stall-free timeline adds them (head, each step, tail), so that a
    # plan meeting the bound shows a gap of exactly 0, not -1e-18.
    path = ends[0]
    for b, _, _, _ in busy:
        path += b
    return max(path + ends[1], sum(dma) / engine.dma_channels)


class _Bytes:
    """Released placements of one level: ``(lo, hi, released at)``, an entry dropped when a
    later one covers its bytes and was released no earlier."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int, float]] = []

    def free_at(self, lo: int, hi: int) -> float:
        return max((t for a, b, t in self.ranges if a < hi and lo < b), default=0.0)

    def release(self, lo: int, hi: int, t: float) -> None:
        self.ranges = [r for r in self.ranges if not (lo <= r[0] and r[1] <= hi and r[2] <= t)]
        self.ranges.append((lo, hi, t))


def plan_index(plan: Plan) -> tuple[Callable[[int, str, int], Placement | None], dict[int, list[Placement]],
                                     dict[int, list[int]], dict[int, list[int]]]:
    """What both time models look up in a plan: the placement of (buffer, level) covering a
    step, the placements ending at each step, and each step's transfers before and after it
    (indices into ``plan.transfers``)."""
    pls: dict[tuple[int, str], list[Placement]] = defaultdict(list)
    for p in plan.placements:
        pls[(p.buffer, p.level)].append(p)

    def covering(b: int, level: str, s: int) -> Placement | None:
        return next((p for p in pls.get((b, level), ()) if p.first <= s <= p.last), None)

    ending: dict[int, list[Placement]] = defaultdict(list)
    for p in plan.placements:
        ending[p.last].append(p)
    before: dict[int, list[int]] = defaultdict(list)
    after: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(plan.transfers):
        (before if t.phase == "before" else after)[t.step].append(i)
    return covering, ending, before, after


def estimate(graph: Graph, plan: Plan, target: Hierarchy) -> Timeline | None:
    """The timeline of ``plan`` on ``target`` (module docstring), or None when the target has no
    ``[compute]`` table or a bandwidth a copy or a step needs is unknown.

    ``graph`` is the graph the plan's steps index (the model's graph, fused or not: steps are
    matched by operator index); ``target`` the hierarchy with its levels' bandwidths."""
    got = step_times(graph, plan, target)
    engine = target.compute_engine
    if got is None or engine is None:
        return None
    busy, streams = got
    bound = latency_bound(graph, plan, target)
    if bound is None:
        return None  # a level's bandwidth is unknown: the time is unknown, never invented
    by_level = {lv.name: lv for lv in target.levels}
    size = {b.id: b.bytes for b in plan.buffers}
    compute = target.compute_level
    covering, ending, before, after = plan_index(plan)

    if any(transfer_seconds(1, by_level[t.src], by_level[t.dst], engine) is None for t in plan.transfers):
        return None
    free = {name: _Bytes() for name in by_level}
    touched: dict[Placement, float] = {}          # latest end of a copy from or to a placement
    acquire: dict[Placement, float] = {}          # when a placement's bytes are free
    valid: dict[tuple[int, str], float] = {}      # when buffer data is valid at a level
    for b in plan.buffers:
        if b.home is not None and b.kind in ("input", "weight"):
            valid[(b.id, b.home)] = 0.0
    channels = [0.0] * engine.dma_channels
    timed: list[TimedTransfer | None] = [None] * len(plan.transfers)

    def bytes_free(p: Placement) -> float:
        if p not in acquire:
            acquire[p] = free[p.level].free_at(p.offset, p.offset + size[p.buffer])
        return acquire[p]

    def run_copy(i: int, s: int) -> float:
        t: Transfer = plan.transfers[i]
        src_p = covering(t.buffer, t.src, s)
        dst_p = covering(t.buffer, t.dst, s)
        ready = valid.get((t.buffer, t.src), 0.0)
        if dst_p is not None:
            ready = max(ready, bytes_free(dst_p))
        dur = transfer_seconds(size[t.buffer], by_level[t.src], by_level[t.dst], engine)
        assert dur is not None  # every copy's bandwidths were checked above
        ch = min(range(len(channels)), key=lambda k: (max(channels[k], ready), k))
        start = max(channels[ch], ready)
        end = start + dur
        channels[ch] = end
        timed[i] = TimedTransfer(i, ch, start, end)
        valid[(t.buffer, t.dst)] = end
        for p in (src_p, dst_p):
            if p is not None:
                touched[p] = max(touched.get(p, 0.0), end)
        return end

    buf_of = {name: b.id for b in plan.buffers for name in b.tensors}
    loads: list[WeightLoad] = []

    def run_streams(s: int, ready: float) -> tuple[float, float, float, int]:
        """Queue step ``s``'s weight streams (it starts at ``ready``) on the DMA channels: each
        member's first copy is issued ``hide`` before the member starts, on the channel free
        first, once the copies queued before it have ended.  Returns how much later the step
        ends than with nothing delaying a copy, the seconds of weight copies, the NPU's wait
        for slices (its member's double-buffer schedule less its reading) and the bytes."""
        shift = dma = wait = 0.0
        nbytes = 0
        for st in streams[s]:
            start = ready + st.offset + shift
            want = start - st.hide
            ch = min(range(len(channels)), key=lambda k: (max(channels[k], want), k))
            t0 = max(channels[ch], want)
            late = t0 - want > 1e-12 * max(1.0, abs(want))     # not just the last bits of a sum
            ls, le, rs, re = _double_buffer(t0 - start if late else -st.hide, st.copies, st.reads)
            if late:
                shift += max(re[-1], st.floor) - st.duration
            channels[ch] = start + le[-1]
            dma += sum(st.copies)
            wait += re[-1] - sum(st.reads)
            nbytes += sum(st.nbytes)
            bid = buf_of.get(st.weight)
            if bid is None:
                continue
            for k, (lo, hi) in enumerate(st.channels):
                loads.append(WeightLoad(step=s, op=st.op, buffer=bid, src=st.src, dst=compute, channels_lo=lo,
                                        channels_hi=hi, bytes=st.nbytes[k],
                                        offset=st.base + (k % 2) * st.half, channel=ch, start=start + ls[k],
                                        end=start + le[k], read_start=start + rs[k], read_end=start + re[k]))
        return shift, dma, wait, nbytes

    steps: list[StepTime] = []
    prev_end = 0.0
    for s, step in enumerate(plan.steps):
        ready = prev_end
        for i in before.get(s, ()):
            ready = max(ready, run_copy(i, s))
        for bid in step.writes:
            q = covering(bid, compute, s)
            if q is not None and q.first == s:
                ready = max(ready, bytes_free(q))
        shift, w_dma, w_stall, w_bytes = run_streams(s, ready)
        end = ready + busy[s][0] + shift
        for bid in step.writes:
            valid[(bid, compute)] = end
        moved: dict[str, int] = defaultdict(int)
        for i in (*before.get(s, ()), *after.get(s, ())):
            t = plan.transfers[i]
            moved[t.src] += size[t.buffer]
            moved[t.dst] += size[t.buffer]
        for i in after.get(s, ()):
            run_copy(i, s)
        for p in ending.get(s, ()):
            released = touched.get(p, 0.0)
            if p.level == compute or p not in touched:
                released = max(released, end)
            free[p.level].release(p.offset, p.offset + size[p.buffer], released)
        steps.append(StepTime(step=s, op=step.op, op_type=step.op_type, op_class=busy[s][3], macs=busy[s][2],
                              compute=busy[s][1], busy=busy[s][0] + shift, start=ready, end=end,
                              stall=ready - prev_end, moved=moved, weight_bytes=w_bytes, weight_dma=w_dma,
                              weight_stall=w_stall))
        log.debug("step %d (%s): %.3g..%.3g s", s, step.op, ready, end)
        prev_end = end
    done = [t for t in timed if t is not None]
    makespan = max([prev_end, *(t.end for t in done), *(w.end for w in loads)])
    greedy = Timeline(steps=tuple(steps), transfers=tuple(done), makespan=makespan, lower_bound=bound,
                      weight_loads=tuple(sorted(loads, key=lambda w: (w.start, w.step))))
    if loads:
        # A plan that records a schedule of its transfers and weight loads (the exact latency
        # model's, ``stream_timing``) keeps it when it is faster than the queue in plan order.
        if plan.weight_loads and all(t.channel is not None and t.start is not None for t in plan.transfers):
            from stowage.solvers import stream_timing

            net = stream_timing.stream_net(graph, plan, target)
            queues = stream_timing.recorded_queues(net, plan) if net is not None else None
            if queues is not None and net is not None and queues != stream_timing.estimate_queues(net, greedy):
                recorded = stream_timing.replay(graph, plan, target, queues, net)
                if recorded is not None and recorded.makespan < greedy.makespan * (1 - 1e-12):
                    return recorded
        return greedy
    if plan.transfers and all(t.channel is not None and t.start is not None for t in plan.transfers):
        # A plan that records its DMA schedule (the exact latency model's) keeps it when it is
        # faster than the queue in plan order; one that records this very queue (an earlier
        # estimate's) needs no replay.
        queues = recorded_queues(plan, engine.dma_channels)
        if queues is not None and queues != _queues(greedy, engine.dma_channels):
            recorded = replay(graph, plan, target, queues)
            if recorded is not None and recorded.makespan < greedy.makespan * (1 - 1e-12):
                return recorded
    return greedy


def _queues(tl: Timeline, channels: int) -> list[list[int]]:
    """The DMA queues of a timeline: per channel, its copies by start (then plan index)."""
    queues: list[list[tuple[float, int]]] = [[] for _ in range(channels)]
    for t in tl.transfers:
        queues[t.channel].append((t.start, t.index))
    return [[i for _, i in sorted(q)] for q in queues]


@dataclass(frozen=True)
class TimeGraph:
    """The time model of one plan as precedences, for schedules other than plan order.

    Nodes ``0 .. len(busy) - 1`` are the steps, ``len(busy) + i`` is ``plan.transfers[i]``;
    ``duration[v]`` is the busy time of a step or the time of a copy; a node starts no earlier
    than every node of ``preds[v]`` has ended.  The edges are exactly the rules ``estimate``
    applies (module docstring) except the DMA queue: steps in plan order; a step after its
    ``before`` copies and after the release of the bytes it writes into; a copy after the
    event that made its source valid (the writing step or the copy that brought it there) and
    after the release of its destination bytes (every copy from or to an earlier placement of
    the level sharing a byte, and the last step of such a compute-level placement).  Which
    copies share a channel and in which order is the schedule's choice (``replay``, the exact
    latency model), so ``estimate``'s own timeline is one feasible schedule of this graph."""

    busy: tuple[float, ...]
    duration: tuple[float, ...]
    preds: tuple[tuple[int, ...], ...]
    channels: int

    @property
    def nsteps(self) -> int:
        return len(self.busy)


def time_graph(graph: Graph, plan: Plan, target: Hierarchy) -> TimeGraph | None:
    """The plan's ``TimeGraph`` (None when its time is unknown, as for ``estimate``)."""
    busy = step_busy_seconds(graph, plan, target)
    engine = target.compute_engine
    if busy is None or engine is None:
        return None
    by_level = {lv.name: lv for lv in target.levels}
    size = {b.id: b.bytes for b in plan.buffers}
    compute = target.compute_level
    durations: list[float] = []
    for t in plan.transfers:
        d = transfer_seconds(size[t.buffer], by_level[t.src], by_level[t.dst], engine)
        if d is None:
            return None
        durations.append(d)
    n = len(plan.steps)
    covering, ending, before, after = plan_index(plan)
    preds: list[set[int]] = [set() for _ in range(n + len(plan.transfers))]
    valid: dict[tuple[int, str], int] = {}           # the node that last made (buffer, level) valid
    touched: dict[Placement, set[int]] = defaultdict(set)
    released: dict[str, list[tuple[int, int, frozenset[int], int]]] = defaultdict(list)  # lo, hi, copies, step
    acquire: dict[Placement, tuple[frozenset[int], int]] = {}

    def free_after(p: Placement) -> tuple[frozenset[int], int]:
        """The copy nodes and the latest step node whose ends free ``p``'s bytes."""
        if p not in acquire:
            lo, hi = p.offset, p.offset + size[p.buffer]
            copies: set[int] = set()
            last = -1
            for a, b, cs, st in released[p.level]:
                if a < hi and lo < b:
                    copies |= cs
                    last = max(last, st)
            acquire[p] = (frozenset(copies), last)
        return acquire[p]

    def wait_free(v: int, p: Placement) -> None:
        copies, last = free_after(p)
        preds[v] |= copies
        if last >= 0:
            preds[v].add(last)

    def copy(i: int, s: int) -> None:
        t = plan.transfers[i]
        v = n + i
        src_p, dst_p = covering(t.buffer, t.src, s), covering(t.buffer, t.dst, s)
        if (t.buffer, t.src) in valid:
            preds[v].add(valid[(t.buffer, t.src)])
        if dst_p is not None:
            wait_free(v, dst_p)
        valid[(t.buffer, t.dst)] = v
        for p in (src_p, dst_p):
            if p is not None:
                touched[p].add(v)

    for s, step in enumerate(plan.steps):
        if s:
            preds[s].add(s - 1)
        for i in before.get(s, ()):
            copy(i, s)
            preds[s].add(n + i)
        for bid in step.writes:
            q = covering(bid, compute, s)
            if q is not None and q.first == s:
                wait_free(s, q)
        for bid in step.writes:
            valid[(bid, compute)] = s
        for i in after.get(s, ()):
            copy(i, s)
        for p in ending.get(s, ()):
            cs = frozenset(touched.get(p, ()))
            st = s if (p.level == compute or not cs) else -1
            lo, hi = p.offset, p.offset + size[p.buffer]
            if p in acquire:
                # An earlier placement inside p's bytes freed them before p was acquired, and
                # p's release comes after its acquisition (its first step or copy waited for
                # it): whoever waits for p's release waits for that one too (transitively).
                released[p.level] = [r for r in released[p.level] if not (lo <= r[0] and r[1] <= hi)]
            released[p.level].append((lo, hi, cs, st))
    for v, ps in enumerate(preds):
        ps.discard(v)
    return TimeGraph(busy=tuple(b for b, _, _, _ in busy), duration=tuple(durations),
                     preds=tuple(tuple(sorted(ps)) for ps in preds), channels=engine.dma_channels)


def earliest_starts(tg: TimeGraph, queues: Sequence[Sequence[int]],
                    duration: Sequence[float] | None = None) -> list[float] | None:
    """The earliest start of every node when channel ``k`` runs the copies ``queues[k]`` (plan
    transfer indices) in that order: the longest path through the time graph plus the queue
    chains.  None when the queues do not cover every copy once or create a cycle (a queue
    order that contradicts a precedence).  ``duration`` replaces ``tg``'s node durations
    (the exact model's integer grid uses it)."""
    n, m = tg.nsteps, len(tg.duration)
    dur = list(duration) if duration is not None else [*tg.busy, *tg.duration]
    if sorted(i for q in queues for i in q) != list(range(m)):
        return None
    preds = [list(p) for p in tg.preds]
    for q in queues:
        for a, b in itertools.pairwise(q):
            preds[n + b].append(n + a)
    succ: list[list[int]] = [[] for _ in preds]
    indeg = [len(p) for p in preds]
    for v, ps in enumerate(preds):
        for u in ps:
            succ[u].append(v)
    start = [0.0] * len(preds)
    ready = [v for v, d in enumerate(indeg) if d == 0]
    seen = 0
    while ready:
        u = ready.pop()
        seen += 1
        end = start[u] + dur[u]
        for v in succ[u]:
            if end > start[v]:
                start[v] = end
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    return start if seen == len(preds) else None


def replay(graph: Graph, plan: Plan, target: Hierarchy, queues: Sequence[Sequence[int]] | None = None
           ) -> Timeline | None:
    """The timeline of ``plan`` with a given DMA schedule: channel ``k`` runs ``queues[k]`` in
    order, every step and copy as early as the time graph allows.  Without ``queues``, the
    schedule the plan records (each transfer's ``channel``, in order of ``start``).  None when
    the time is unknown or the schedule is not one of this plan and target (a channel beyond
    ``dma_channels``, a copy without a time, a queue order contradicting a precedence)."""
    tg = time_graph(graph, plan, target)
    if tg is None:
        return None
    if queues is None:
        queues = recorded_queues(plan, tg.channels)
        if queues is None:
            return None
    if len(queues) > tg.channels:
        return None
    starts = earliest_starts(tg, queues)
    if starts is None:
        return None
    return _timeline_of(graph, plan, target, tg, starts, queues)


def recorded_queues(plan: Plan, channels: int) -> list[list[int]] | None:
    """The DMA queues a timed plan records (None when a transfer has no time or channel, or
    a channel is beyond ``channels``)."""
    queues: list[list[tuple[float, int]]] = [[] for _ in range(channels)]
    for i, t in enumerate(plan.transfers):
        if t.channel is None or t.start is None or not 0 <= t.channel < channels:
            return None
        queues[t.channel].append((t.start, i))
    return [[i for _, i in sorted(q)] for q in queues]


def _timeline_of(graph: Graph, plan: Plan, target: Hierarchy, tg: TimeGraph, starts: Sequence[float],
                 queues: Sequence[Sequence[int]]) -> Timeline:
    n = tg.nsteps
    size = {b.id: b.bytes for b in plan.buffers}
    busy = step_busy_seconds(graph, plan, target)
    assert busy is not None  # tg exists
    channel = {i: k for k, q in enumerate(queues) for i in q}
    timed = tuple(TimedTransfer(i, channel[i], starts[n + i], starts[n + i] + tg.duration[i])
                  for i in range(len(tg.duration)))
    moved: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in plan.transfers:
        moved[t.step][t.src] += size[t.buffer]
        moved[t.step][t.dst] += size[t.buffer]
    steps = []
    prev = 0.0
    for s, step in enumerate(plan.steps):
        b, comp, macs, cls = busy[s]
        steps.append(StepTime(step=s, op=step.op, op_type=step.op_type, op_class=cls, macs=macs, compute=comp,
                              busy=b, start=starts[s], end=starts[s] + b, stall=starts[s] - prev,
                              moved=moved.get(s, {})))
        prev = starts[s] + b
    makespan = max([prev, *(t.end for t in timed)])
    bound = latency_bound(graph, plan, target)
    assert bound is not None
    return Timeline(steps=tuple(steps), transfers=timed, makespan=makespan, lower_bound=bound)


def annotate(plan: Plan, timeline: Timeline | None) -> Plan:
    """``plan`` with each transfer's channel, start and end and ``metrics.estimated_seconds``
    from ``timeline`` (None: the same plan with unknown time)."""
    if timeline is None:
        return replace(plan, metrics=replace(plan.metrics, estimated_seconds=None), weight_loads=())
    by_index = {t.index: t for t in timeline.transfers}
    transfers = tuple(
        replace(t, channel=by_index[i].channel, start=by_index[i].start, end=by_index[i].end) if i in by_index else t
        for i, t in enumerate(plan.transfers)
    )
    return replace(plan, transfers=transfers, metrics=replace(plan.metrics, estimated_seconds=timeline.makespan),
                   weight_loads=timeline.weight_loads)


def record_latency(graph: Graph, plan: Plan, target: Hierarchy, timeline: Timeline | None = None,
                   proven: bool = False) -> Plan:
    """``plan`` timed by ``timeline`` (default: ``estimate``) with ``solver.latency_bound`` (the
    bound valid for every plan, ``latency_bound``) and ``solver.latency_status``: ``optimal``
    when the makespan meets the bound, ``order-optimal`` when ``proven`` (the exact latency
    model proved no timing of this order, placements and copies faster), else ``feasible``.
    The plan as it is when its time is unknown."""
    tl = timeline if timeline is not None else estimate(graph, plan, target)
    if tl is None:
        return plan
    timed = annotate(plan, tl)
    bound = tl.lower_bound
    status = "optimal" if tl.makespan <= bound * (1 + 1e-9) else ("order-optimal" if proven else "feasible")
    return replace(timed, solver=replace(timed.solver, latency_bound=bound, latency_status=status))


#: ``compile --per-layer`` columns, before one ``bytes_<level>`` column per level.
PER_LAYER_COLUMNS = ("step", "operator", "op_type", "class", "macs", "compute_s", "busy_s", "start_s", "end_s",
                     "stall_s", "weight_bytes", "weight_dma_s", "weight_stall_s")


def per_layer_csv(graph: Graph, plan: Plan, timeline: Timeline | None) -> str:
    """One row per step, like Vela's per-layer performance table: the operator, its MACs, the
    compute time, the busy time (compute or memory, whichever is longer), start and end, the
    stall before it, its weight streams (bytes of weight slices copied, the seconds of those
    copies, the NPU's wait for them inside the busy time), and the bytes its
    ``before``/``after`` copies move in or out of each level.  Times are empty when the target
    has no compute description (unknown, not 0)."""
    import csv
    import io

    levels = [lv.name for lv in plan.target.levels]
    size = {b.id: b.bytes for b in plan.buffers}
    moved: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in plan.transfers:
        moved[t.step][t.src] += size[t.buffer]
        moved[t.step][t.dst] += size[t.buffer]
    for c in plan.cascades:  # a cascade's row copies: its level and the compute level's ring
        for stripe in c.stripes:
            for x in stripe.transfers:
                ct = c.tensor(x.tensor)
                n = (x.hi - x.lo) * (ct.row_bytes if ct else 0)
                moved[c.step][x.level] += n
                moved[c.step][plan.target.compute_level] += n
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*PER_LAYER_COLUMNS, *(f"bytes_{lv}" for lv in levels)])
    times = {st.step: st for st in timeline.steps} if timeline is not None else {}
    for s, step in enumerate(plan.steps):
        st = times.get(s)
        members = _members(graph, plan, s)
        macs = sum(m.cost for m in members if m.cost_unit == "MACs")
        cls = op_class(graph, members[0]) if members else ""
        cells = ["" if st is None else f"{v:.9g}" for v in
                 ((st.compute, st.busy, st.start, st.end, st.stall) if st is not None else (0, 0, 0, 0, 0))]
        weights = ["", "", ""] if st is None else [st.weight_bytes, f"{st.weight_dma:.9g}", f"{st.weight_stall:.9g}"]
        w.writerow([s, step.op, step.op_type, cls, macs, *cells, *weights, *(moved[s].get(lv, 0) for lv in levels)])
    return buf.getvalue()
