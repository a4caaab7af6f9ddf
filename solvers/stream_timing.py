"""DMA schedules other than plan order for plans that stream weights (``docs/timing.md``,
"Weight streams" and "Scheduling the streams").

``timing.estimate`` queues every copy on the DMA channels in plan order: a step's weight
slices wait behind the spills and stores listed before them.  ``timing.TimeGraph`` lets a
schedule reorder the activations' copies, but its steps have fixed busy times, which a
weight stream does not: the engine waits for its slices.  This module states the same time
model, weight streams included, as *difference constraints* ``T_v >= T_u + lag`` over time
points, so that any queue order (``replay``) or a CP-SAT model
(``exact.latency_model.best_schedule``) can time it:

* per step, its start ``S`` and end ``E`` (``E >= S + busy``), the ``TimeGraph``'s edges
  between steps and copies (a node waits for the *end* of each predecessor);
* per transfer, its start (its end is start + its copy time);
* per streamed member (``timing.Stream``), its start ``M`` and end ``F``, and per slice the
  start of its copy ``L_k`` and of its reading ``R_k``: the member starts ``offset`` into its
  step, after the members before it; ``L_0 >= M - hide`` (Vela's prefetch under the previous
  operator); ``L_k >= L_{k-1} + copy_{k-1}`` (one DMA command, in order); ``R_k >= M``,
  ``R_k >= L_k + copy_k``, ``R_k >= R_{k-1} + read_{k-1}``; ``F >= M + floor`` and ``F >=
  R_last + read_last``; the step ends ``busy - offset - duration`` after its last member;
* **bytes**: a slice copied into bytes an earlier slice (any member, any step) lands in waits
  until that slice has been read (``L_b >= R_a + read_a``; the double buffer's ``k - 2`` rule
  is one case);
* **channels**: a stream occupies its channel from its first copy's start to its last copy's
  end (its slices are one DMA command, so nothing else runs in its gaps: exactly
  ``estimate``'s queue); the transfers and the streams of one channel run one after another.

With ``estimate``'s own queues the earliest times of these constraints are ``estimate``'s
timeline (every constraint is one ``estimate`` applies, and it takes each time as early as they
allow), so a schedule found here is never compared against a different model.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from stowage.ir.graph import Graph
from stowage.plan import Plan, WeightLoad
from stowage.solvers.timing import (
    StepTime,
    Stream,
    TimedTransfer,
    Timeline,
    latency_bound,
    plan_index,
    step_times,
    time_graph,
)
from stowage.targets.hierarchy import Hierarchy

log = logging.getLogger(__name__)

__all__ = ["Span", "StreamNet", "earliest", "estimate_queues", "recorded_queues", "replay", "stream_net"]


@dataclass(frozen=True)
class Span:
    """One streamed member of step ``step``: its ``Stream``, the nodes of its start and end
    (``member_start``, ``member_end``) and, per slice, of its copy's and its reading's start.
    On the DMA it occupies one channel from ``loads[0]`` to ``loads[-1] + copies[-1]``."""

    step: int
    stream: Stream
    member_start: int
    member_end: int
    loads: tuple[int, ...]
    reads: tuple[int, ...]

    @property
    def length_after_last(self) -> float:
        return self.stream.copies[-1]


@dataclass(frozen=True)
class StreamNet:
    """The difference constraints of one plan with weight streams (module docstring).

    Nodes: ``0 .. n-1`` the steps' starts, ``n .. 2n-1`` their ends, ``2n + i`` the start of
    ``plan.transfers[i]``, then the spans' nodes.  ``edges``: ``(u, v, lag)``, ``T_v >= T_u +
    lag``.  Queue items (``replay``): ``i < len(durations)`` is transfer ``i``, ``len(durations)
    + j`` is span ``j``.  ``busy``: each step's busy time with nothing delaying a stream."""

    nsteps: int
    nodes: int
    edges: tuple[tuple[int, int, float], ...]
    durations: tuple[float, ...]
    spans: tuple[Span, ...]
    busy: tuple[float, ...]
    channels: int

    def item_start(self, item: int) -> int:
        m = len(self.durations)
        return 2 * self.nsteps + item if item < m else self.spans[item - m].loads[0]

    def item_end(self, item: int) -> tuple[int, float]:
        """The node and lag whose sum is the end of a queue item."""
        m = len(self.durations)
        if item < m:
            return 2 * self.nsteps + item, self.durations[item]
        sp = self.spans[item - m]
        return sp.loads[-1], sp.length_after_last


def stream_net(graph: Graph, plan: Plan, target: Hierarchy) -> StreamNet | None:
    """The plan's ``StreamNet``; None when its time is unknown (as for ``estimate``)."""
    tg = time_graph(graph, plan, target)
    got = step_times(graph, plan, target)
    if tg is None or got is None:
        return None
    busy, streams = got
    n, m = tg.nsteps, len(tg.duration)
    edges: list[tuple[int, int, float]] = []

    def end_of(u: int) -> tuple[int, float]:
        return (n + u, 0.0) if u < n else (2 * n + (u - n), tg.duration[u - n])

    for v, ps in enumerate(tg.preds):
        target_node = v if v < n else 2 * n + (v - n)
        for u in ps:
            node, lag = end_of(u)
            edges.append((node, target_node, lag))
    nodes = 2 * n + m
    spans: list[Span] = []
    for s in range(n):
        b = busy[s][0]
        edges.append((s, n + s, b))
        prev: tuple[int, float] = (s, 0.0)          # node and lag the next member starts after
        nominal = 0.0                               # where that node is in the nominal schedule
        for st in streams[s]:
            ms, me = nodes, nodes + 1
            nodes += 2
            k = len(st.copies)
            loads = tuple(range(nodes, nodes + k))
            reads = tuple(range(nodes + k, nodes + 2 * k))
            nodes += 2 * k
            edges.append((prev[0], ms, prev[1] + (st.offset - nominal)))
            edges.append((ms, loads[0], -st.hide))
            for j in range(k):
                if j:
                    edges.append((loads[j - 1], loads[j], st.copies[j - 1]))
                    edges.append((reads[j - 1], reads[j], st.reads[j - 1]))
                edges.append((ms, reads[j], 0.0))
                edges.append((loads[j], reads[j], st.copies[j]))
            edges.append((ms, me, st.floor))
            edges.append((reads[-1], me, st.reads[-1]))
            prev, nominal = (me, 0.0), st.offset + st.duration
            spans.append(Span(step=s, stream=st, member_start=ms, member_end=me, loads=loads, reads=reads))
        if streams[s]:
            edges.append((prev[0], n + s, max(0.0, b - nominal)))
    # Bytes: a slice waits until every earlier slice in bytes it lands in has been read.
    slices = [(sp, j) for sp in spans for j in range(len(sp.loads))]
    for (sa, a), (sb, b) in itertools.combinations(slices, 2):
        lo_a = sa.stream.base + (a % 2) * sa.stream.half
        lo_b = sb.stream.base + (b % 2) * sb.stream.half
        if lo_a < lo_b + sb.stream.nbytes[b] and lo_b < lo_a + sa.stream.nbytes[a]:
            edges.append((sa.reads[a], sb.loads[b], sa.stream.reads[a]))
    engine = target.compute_engine
    assert engine is not None  # time_graph exists
    return StreamNet(nsteps=n, nodes=nodes, edges=tuple(edges), durations=tg.duration, spans=tuple(spans),
                     busy=tuple(x[0] for x in busy), channels=engine.dma_channels)


def earliest(net: StreamNet, queues: Sequence[Sequence[int]], lag_of: Sequence[float] | None = None,
             item_lag: Sequence[float] | None = None) -> list[float] | None:
    """The earliest time of every node (all at least 0) when channel ``k`` runs ``queues[k]``
    in order; None when the queues do not hold every item once or contradict a constraint (a
    cycle).  ``lag_of`` replaces the edges' lags and ``item_lag`` each queue item's lag from
    its end node (``item_end``) to its end (the exact model's integer grid)."""
    items = len(net.durations) + len(net.spans)
    if sorted(i for q in queues for i in q) != list(range(items)):
        return None
    edges = [(u, v, lag_of[e] if lag_of is not None else lag) for e, (u, v, lag) in enumerate(net.edges)]
    for q in queues:
        for a, b in itertools.pairwise(q):
            node, lag = net.item_end(a)
            if item_lag is not None:
                lag = item_lag[a]
            edges.append((node, net.item_start(b), lag))
    succ: list[list[tuple[int, float]]] = [[] for _ in range(net.nodes)]
    indeg = [0] * net.nodes
    for u, v, lag in edges:
        succ[u].append((v, lag))
        indeg[v] += 1
    t = [0.0] * net.nodes
    ready = [v for v in range(net.nodes) if indeg[v] == 0]
    seen = 0
    while ready:
        u = ready.pop()
        seen += 1
        for v, lag in succ[u]:
            if t[u] + lag > t[v]:
                t[v] = t[u] + lag
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    return t if seen == net.nodes else None


def replay(graph: Graph, plan: Plan, target: Hierarchy, queues: Sequence[Sequence[int]],
           net: StreamNet | None = None) -> Timeline | None:
    """The timeline of ``plan`` (weight streams included) when channel ``k`` runs the queue
    items ``queues[k]`` in order (``StreamNet``), everything as early as the constraints allow;
    None when the time is unknown or the queues are not a schedule of this plan."""
    net = net if net is not None else stream_net(graph, plan, target)
    if net is None or len(queues) > net.channels:
        return None
    t = earliest(net, queues)
    if t is None:
        return None
    n, m = net.nsteps, len(net.durations)
    channel = {i: k for k, q in enumerate(queues) for i in q}
    timed = tuple(TimedTransfer(i, channel[i], t[2 * n + i], t[2 * n + i] + net.durations[i]) for i in range(m))
    buf_of = {name: b.id for b in plan.buffers for name in b.tensors}
    compute = target.compute_level
    loads: list[WeightLoad] = []
    wbytes: dict[int, int] = defaultdict(int)
    wdma: dict[int, float] = defaultdict(float)
    wstall: dict[int, float] = defaultdict(float)
    for j, sp in enumerate(net.spans):
        st = sp.stream
        wbytes[sp.step] += sum(st.nbytes)
        wdma[sp.step] += sum(st.copies)
        wstall[sp.step] += t[sp.reads[-1]] + st.reads[-1] - t[sp.member_start] - sum(st.reads)
        bid = buf_of.get(st.weight)
        if bid is None:
            continue
        for k, (lo, hi) in enumerate(st.channels):
            loads.append(WeightLoad(step=sp.step, op=st.op, buffer=bid, src=st.src, dst=compute, channels_lo=lo,
                                    channels_hi=hi, bytes=st.nbytes[k], offset=st.base + (k % 2) * st.half,
                                    channel=channel[m + j], start=t[sp.loads[k]], end=t[sp.loads[k]] + st.copies[k],
                                    read_start=t[sp.reads[k]], read_end=t[sp.reads[k]] + st.reads[k]))
    size = {b.id: b.bytes for b in plan.buffers}
    _, _, before, after = plan_index(plan)
    from stowage.solvers.timing import step_busy_seconds

    busy = step_busy_seconds(graph, plan, target)
    assert busy is not None  # the net exists
    steps = []
    prev = 0.0
    for s, step in enumerate(plan.steps):
        moved: dict[str, int] = defaultdict(int)
        for i in (*before.get(s, ()), *after.get(s, ())):
            tr = plan.transfers[i]
            moved[tr.src] += size[tr.buffer]
            moved[tr.dst] += size[tr.buffer]
        _, comp, macs, cls = busy[s]
        start, end = t[s], t[n + s]
        steps.append(StepTime(step=s, op=step.op, op_type=step.op_type, op_class=cls, macs=macs, compute=comp,
                              busy=end - start, start=start, end=end, stall=start - prev, moved=moved,
                              weight_bytes=wbytes[s], weight_dma=wdma[s], weight_stall=wstall[s]))
        prev = end
    makespan = max([prev, *(x.end for x in timed), *(w.end for w in loads)])
    bound = latency_bound(graph, plan, target)
    assert bound is not None
    return Timeline(steps=tuple(steps), transfers=timed, makespan=makespan, lower_bound=bound,
                    weight_loads=tuple(sorted(loads, key=lambda w: (w.start, w.step))))


def _queues_by_start(net: StreamNet, transfers: Sequence[tuple[int, float]], spans: Sequence[tuple[int, float]]
                     ) -> list[list[int]] | None:
    m = len(net.durations)
    queues: list[list[tuple[float, int, int]]] = [[] for _ in range(net.channels)]
    for i, (ch, start) in enumerate(transfers):
        if not 0 <= ch < net.channels:
            return None
        queues[ch].append((start, 0, i))
    for j, (ch, start) in enumerate(spans):
        if not 0 <= ch < net.channels:
            return None
        queues[ch].append((start, 1, m + j))
    return [[i for _, _, i in sorted(q)] for q in queues]


def estimate_queues(net: StreamNet, tl: Timeline) -> list[list[int]] | None:
    """The queue items of a timeline with weight loads (``estimate``'s or a replay's), per
    channel by start: its transfers and, per span, its slices' channel and first start."""
    return _span_queues(net, [(x.channel, x.start) for x in sorted(tl.transfers, key=lambda x: x.index)],
                        tl.weight_loads)


def recorded_queues(net: StreamNet, plan: Plan) -> list[list[int]] | None:
    """The queue items a timed plan records (its transfers' and weight loads' channels and
    starts); None when something is untimed or the loads are not this plan's streams."""
    if any(x.channel is None or x.start is None for x in plan.transfers):
        return None
    return _span_queues(net, [(x.channel, x.start) for x in plan.transfers], plan.weight_loads)  # type: ignore[misc]


def _span_queues(net: StreamNet, transfers: Sequence[tuple[int, float]], loads: Sequence[WeightLoad]
                 ) -> list[list[int]] | None:
    if len(transfers) != len(net.durations):
        return None
    by_member: dict[tuple[int, str], list[WeightLoad]] = defaultdict(list)
    for w in loads:
        by_member[(w.step, w.op)].append(w)
    spans: list[tuple[int, float]] = []
    for sp in net.spans:
        ws = by_member.pop((sp.step, sp.stream.op), None)
        if ws is None or len(ws) != len(sp.loads) or len({w.channel for w in ws}) != 1:
            return None
        spans.append((ws[0].channel, min(w.start for w in ws)))
    if by_member:
        return None
    return _queues_by_start(net, transfers, spans)
