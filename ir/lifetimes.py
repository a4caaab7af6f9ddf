"""Lifetime analysis: pure functions of a ``Graph`` and an operator order.

Conventions (the same ones the plan validator enforces):

* step ``s`` is the ``s``-th computing operator of the order;
* a buffer is live from the first step that touches it (writes it, or reads it for inputs and
  weights, which are loaded on demand) to the last step that touches it, inclusive; a graph
  output leaves the scratchpad right after it is produced unless a later step reads it;
* memory freed after step ``s`` is reusable from step ``s + 1``: an operator's inputs and
  outputs never share bytes, which is why M_R sums both.

``weights_in_compute_level=False`` is COSMA's "activations only" setting: weights are read in place
from their home level and never occupy the compute level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from stowage.ir.graph import BufferId, Graph, Operator, OpIndex, TensorKind


@dataclass(frozen=True)
class Lifetimes:
    order: tuple[OpIndex, ...]
    weights_in_compute_level: bool
    first: Mapping[BufferId, int]
    last: Mapping[BufferId, int]
    live_bytes: tuple[int, ...]

    @property
    def peak(self) -> int:
        return max(self.live_bytes, default=0)


def counts_in_compute_level(graph: Graph, buffer_id: BufferId, weights_in_compute_level: bool) -> bool:
    """Whether a buffer ever occupies the compute level in this setting."""
    return weights_in_compute_level or graph.buffers[buffer_id].kind is not TensorKind.WEIGHT


def op_buffers(graph: Graph, op: Operator, weights_in_compute_level: bool) -> tuple[BufferId, ...]:
    """Distinct buffers an operator needs in the compute level while it runs.  Memoised per
    graph object and setting (asked once per step by every simulation, M_R and model build)."""
    memo = graph._memo()
    key = "op_buffers_weights" if weights_in_compute_level else "op_buffers"
    table: tuple[tuple[BufferId, ...], ...] | None = memo.get(key)
    if table is None:
        table = memo[key] = tuple(_op_buffers(graph, o, weights_in_compute_level) for o in graph.operators)
    i = op.index
    if 0 <= i < len(table) and graph.operators[i] is op:
        return table[i]
    return _op_buffers(graph, op, weights_in_compute_level)


def _op_buffers(graph: Graph, op: Operator, weights_in_compute_level: bool) -> tuple[BufferId, ...]:
    seen: dict[BufferId, None] = {}
    for b in (*graph.op_reads(op), *graph.op_writes(op)):
        if counts_in_compute_level(graph, b, weights_in_compute_level):
            seen.setdefault(b, None)
    return tuple(seen)


def op_footprint(graph: Graph, op: Operator, weights_in_compute_level: bool = True) -> int:
    """Bytes an operator needs resident at once: operands + results + working memory."""
    return sum(graph.buffers[b].bytes for b in op_buffers(graph, op, weights_in_compute_level)) + op.extra_bytes


def m_r(graph: Graph, weights_in_compute_level: bool = True) -> int:
    """M_R: the smallest capacity at which any plan exists (no operator is split)."""
    return max((op_footprint(graph, op, weights_in_compute_level) for op in graph.computing_ops), default=0)


def lifetimes(
    graph: Graph, order: Sequence[OpIndex] | None = None, weights_in_compute_level: bool = True
) -> Lifetimes:
    if order is None:
        order = graph.file_order()
    order = tuple(order)
    first: dict[BufferId, int] = {}
    last: dict[BufferId, int] = {}
    for step, idx in enumerate(order):
        for b in op_buffers(graph, graph.operators[idx], weights_in_compute_level):
            first.setdefault(b, step)
            last[b] = step
    delta = [0] * (len(order) + 1)
    for b, f in first.items():
        delta[f] += graph.buffers[b].bytes
        delta[last[b] + 1] -= graph.buffers[b].bytes
    live: list[int] = []
    running = 0
    for step, idx in enumerate(order):
        running += delta[step]
        live.append(running + graph.operators[idx].extra_bytes)
    return Lifetimes(
        order=order,
        weights_in_compute_level=weights_in_compute_level,
        first=MappingProxyType(first),
        last=MappingProxyType(last),
        live_bytes=tuple(live),
    )


def peak_live(graph: Graph, order: Sequence[OpIndex] | None = None, weights_in_compute_level: bool = True) -> int:
    return lifetimes(graph, order, weights_in_compute_level).peak


@dataclass(frozen=True)
class GraphSummary:
    """What ``stowage inspect`` reports; every number is derived from the IR."""

    name: str
    operators: int
    computing_operators: int
    tensors: int
    buffers: int
    weight_bytes: int
    activation_bytes: int
    input_bytes: int
    output_bytes: int
    largest_activation: int
    largest_activation_name: str | None
    m_r_with_weights: int
    m_r_without_weights: int
    peak_live_file_order_with_weights: int
    peak_live_file_order_without_weights: int
    opaque: tuple[tuple[str, str, str], ...]


def summarize(graph: Graph) -> GraphSummary:
    used = {b for op in graph.computing_ops for b in (*graph.op_reads(op), *graph.op_writes(op))}
    by_kind: dict[TensorKind, int] = {k: 0 for k in TensorKind}
    for b in graph.buffers:
        if b.id in used:
            by_kind[b.kind] += b.bytes
    acts = [
        t for t in graph.tensors.values()
        if t.kind in (TensorKind.ACTIVATION, TensorKind.OUTPUT)
        and graph.tensor_buffer.get(t.name) in used
    ]
    largest = max(acts, key=lambda t: (t.bytes, t.name), default=None)
    return GraphSummary(
        name=graph.name,
        operators=len(graph.operators),
        computing_operators=len(graph.computing_ops),
        tensors=len(graph.tensors),
        buffers=len(used),
        weight_bytes=by_kind[TensorKind.WEIGHT],
        activation_bytes=by_kind[TensorKind.ACTIVATION] + by_kind[TensorKind.OUTPUT],
        input_bytes=by_kind[TensorKind.INPUT],
        output_bytes=sum(graph.buffers[graph.tensor_buffer[o]].bytes for o in graph.outputs),
        largest_activation=largest.bytes if largest else 0,
        largest_activation_name=largest.name if largest else None,
        m_r_with_weights=m_r(graph, True),
        m_r_without_weights=m_r(graph, False),
        peak_live_file_order_with_weights=peak_live(graph, None, True),
        peak_live_file_order_without_weights=peak_live(graph, None, False),
        opaque=tuple(
            (op.name, op.op_type, op.opaque_reason or "") for op in graph.operators if op.opaque
        ),
    )
