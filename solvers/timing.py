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

The lower bound (``latency_bound``) holds for every order and placement of the same graph,
options and target: the steps' busy times do not depend on the plan, and every compulsory copy
(graph inputs in, graph outputs out, weights in when they must be resident) must run on some
channel, so the makespan is at least ``max(sum of busy times, compulsory copy time /
dma_channels)``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from stowage.ir.graph import Graph, Operator
from stowage.plan import Placement, Plan, Transfer
from stowage.targets.hierarchy import Compute, Hierarchy, Level

log = logging.getLogger(__name__)

__all__ = ["PER_LAYER_COLUMNS", "StepTime", "TimedTransfer", "Timeline", "annotate", "estimate", "latency_bound",
           "op_class", "per_layer_csv", "step_busy_seconds", "transfer_seconds"]

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
    return seconds, macs, op_class(graph, members[0]) if members else "other"


def step_busy_seconds(graph: Graph, plan: Plan, target: Hierarchy) -> list[tuple[float, float, int, str]] | None:
    """Per step ``(busy, compute, MACs, class)``; None when the target has no compute engine or
    a bandwidth the access terms need is unknown.  Depends only on the graph, the options and
    the target (not on the order or offsets), which is what makes ``latency_bound`` a bound."""
    engine = target.compute_engine
    if engine is None:
        return None
    compute = target.compute
    by_level = {lv.name: lv for lv in target.levels}
    kinds = {b.id: b for b in plan.buffers}
    in_place_weights = not plan.options.weights_in_compute_level
    out: list[tuple[float, float, int, str]] = []
    for s, step in enumerate(plan.steps):
        members = _members(graph, plan, s)
        comp, macs, cls = _engine_seconds(graph, members, engine)
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


def latency_bound(graph: Graph, plan: Plan, target: Hierarchy) -> float | None:
    """``max(sum of step busy times, compulsory copy time / dma_channels)`` (module docstring)."""
    busy = step_busy_seconds(graph, plan, target)
    engine = target.compute_engine
    if busy is None or engine is None:
        return None
    dma = 0.0
    for n, src, dst in _compulsory(plan, target):
        t = transfer_seconds(n, target.level(src), target.level(dst), engine)
        if t is None:
            return None
        dma += t
    return max(sum(b for b, _, _, _ in busy), dma / engine.dma_channels)


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


def estimate(graph: Graph, plan: Plan, target: Hierarchy) -> Timeline | None:
    """The timeline of ``plan`` on ``target`` (module docstring), or None when the target has no
    ``[compute]`` table or a bandwidth a copy or a step needs is unknown.

    ``graph`` is the graph the plan's steps index (the model's graph, fused or not: steps are
    matched by operator index); ``target`` the hierarchy with its levels' bandwidths."""
    busy = step_busy_seconds(graph, plan, target)
    engine = target.compute_engine
    if busy is None or engine is None:
        return None
    bound = latency_bound(graph, plan, target)
    if bound is None:
        return None  # a level's bandwidth is unknown: the time is unknown, never invented
    by_level = {lv.name: lv for lv in target.levels}
    size = {b.id: b.bytes for b in plan.buffers}
    compute = target.compute_level
    # Placements by (buffer, level), for "the placement covering step s".
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
        end = ready + busy[s][0]
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
                              compute=busy[s][1], busy=busy[s][0], start=ready, end=end,
                              stall=ready - prev_end, moved=moved))
        log.debug("step %d (%s): %.3g..%.3g s", s, step.op, ready, end)
        prev_end = end
    done = [t for t in timed if t is not None]
    makespan = max([prev_end, *(t.end for t in done)])
    return Timeline(steps=tuple(steps), transfers=tuple(done), makespan=makespan, lower_bound=bound)


def annotate(plan: Plan, timeline: Timeline | None) -> Plan:
    """``plan`` with each transfer's channel, start and end and ``metrics.estimated_seconds``
    from ``timeline`` (None: the same plan with unknown time)."""
    if timeline is None:
        return replace(plan, metrics=replace(plan.metrics, estimated_seconds=None))
    by_index = {t.index: t for t in timeline.transfers}
    transfers = tuple(
        replace(t, channel=by_index[i].channel, start=by_index[i].start, end=by_index[i].end) if i in by_index else t
        for i, t in enumerate(plan.transfers)
    )
    return replace(plan, transfers=transfers, metrics=replace(plan.metrics, estimated_seconds=timeline.makespan))


#: ``compile --per-layer`` columns, before one ``bytes_<level>`` column per level.
PER_LAYER_COLUMNS = ("step", "operator", "op_type", "class", "macs", "compute_s", "busy_s", "start_s", "end_s",
                     "stall_s")


def per_layer_csv(graph: Graph, plan: Plan, timeline: Timeline | None) -> str:
    """One row per step, like Vela's per-layer performance table: the operator, its MACs, the
    compute time, the busy time (compute or memory, whichever is longer), start and end, the
    stall before it, and the bytes its ``before``/``after`` copies move in or out of each
    level.  Times are empty when the target has no compute description (unknown, not 0)."""
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
        w.writerow([s, step.op, step.op_type, cls, macs, *cells, *(moved[s].get(lv, 0) for lv in levels)])
    return buf.getvalue()
