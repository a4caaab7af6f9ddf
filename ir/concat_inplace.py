"""Concat in place: a Concat's producers write straight into their slices of its result.

COSMA's model runs a Concat as a step that reads every operand and writes the result, so the
step needs twice the result's bytes (an Inception block's Concat of four branches, a NAS
cell's Concat of five node outputs).  Every NPU compiler instead allocates the result first
and lets each producer write its part of it.  ``fuse_concats`` makes that explicit in the IR:

* a **Concat in place** is an ONNX ``Concat`` whose operands are each read by the Concat
  alone, each written by a step (not a graph input, weight, view or another Concat in place),
  and whose slices are contiguous: every axis before the Concat axis has size 1 (NCHW with
  N = 1 along channels, a ``[1, K]`` concatenation).  Its result's buffer then holds every
  operand as a byte range (``Graph.tensor_offsets``: offset = bytes of the operands before
  it) and the operands' own buffers disappear.  The Concat stays a step that moves no byte
  (an in-place operator fused after it, a ReLU over the whole result, runs in it); it is the
  buffer's last writer.  The buffer's writers (``Buffer.writers``) are the operands' producer
  steps, then the Concat; its lifetime starts at the first of them.
* TFLite ``CONCATENATION`` (NHWC, along the last axis) is not handled: a channel slice of an
  NHWC tensor is strided (C_i bytes in every pixel), not one byte range, so only a ``[1, K]``
  concatenation would qualify; ``stowage.ir.inplace`` does not run on TFLite graphs at all.
* A graph output is never a Concat in place (its store to the home level would be emitted
  after each writer).
* Only a Concat whose step needs M_R (with or without weights) is run in place, again and
  again while that lowers M_R.  Elsewhere it would save nothing a plan can use (a capacity
  below M_R is planned tiled, on the graph without Concats in place: a slice's producer
  cannot run in stripes) and it costs: the result is live from its first producer on, so at
  capacities above M_R the NAS cells moved more bytes off-chip with every Concat in place
  (DARTS at its M_R: 37,632 B instead of 0; ``docs/benchmarks.md``).
* The fusion is skipped when it would make a writer's step need more memory than both the
  largest of the writers' and the Concat's steps did apart and M_R, with or without weights
  resident: each writer now holds the whole result, not its slice, so a producer reading a
  large operand can grow, and M_R must never rise.

Only the solver-facing model changes in one way: a buffer with several writers.  A later
writer must find the earlier slices still there (the validator's Concat-in-place rule; the
spill engine reloads a spilled partial buffer before the next writer and stores it again after
that writer when it keeps an off-chip copy, and the assembler keeps that copy in one off-chip
placement), and every reader of the buffer runs after all writers (``Graph.op_dependencies``).
The exact solvers still model one writer per buffer (``producer``); their plans pass the
validator like every other, so a mistake there is an error, never a wrong plan.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from math import prod

from stowage.ir.graph import Buffer, Graph, Operator, OpIndex, TensorKind
from stowage.ir.lifetimes import m_r, op_footprint

log = logging.getLogger(__name__)


def concat_axis(graph: Graph, op: Operator) -> int | None:
    """The Concat's axis (normalised) when its operands are contiguous byte ranges of its
    result (every axis before it has size 1), else None."""
    if op.domain not in ("", "ai.onnx") or op.op_type != "Concat" or graph.layout != "NCHW":
        return None
    outs = [o for o in op.outputs if o]
    if len(outs) != 1 or outs[0] not in graph.tensors:
        return None
    y = graph.tensors[outs[0]]
    rank = len(y.shape)
    try:
        axis = int(op.attributes.get("axis", 0))
    except (TypeError, ValueError):
        return None
    if rank == 0 or not -rank <= axis < rank:
        return None
    axis %= rank
    if prod(y.shape[:axis]) != 1:
        return None
    return axis


def slice_layout(graph: Graph, op: Operator) -> list[tuple[str, int, int]] | None:
    """``(operand, offset, bytes)`` of each operand inside the result, recomputed from the
    shapes alone (the validator checks the IR against it), or None when the operands are not
    contiguous slices whose bytes add up to the result's."""
    axis = concat_axis(graph, op)
    if axis is None or not op.inputs or any(not i or i not in graph.tensors for i in op.inputs):
        return None
    y = graph.tensors[next(o for o in op.outputs if o)]
    n_y = prod(y.shape)
    if n_y == 0 or y.bytes % n_y:
        return None  # sub-byte elements: a slice need not start on a byte
    per = y.bytes // n_y
    out: list[tuple[str, int, int]] = []
    off = 0
    for name in op.inputs:
        x = graph.tensors[name]
        if (len(x.shape) != len(y.shape) or x.shape[:axis] != y.shape[:axis]
                or x.shape[axis + 1:] != y.shape[axis + 1:] or x.bytes != prod(x.shape) * per):
            return None
        out.append((name, off, x.bytes))
        off += x.bytes
    return out if off == y.bytes else None


def _writer_of(graph: Graph) -> dict[str, Operator]:
    """The operator writing each tensor (computing, or fused into a step)."""
    return {o: op for op in graph.operators for o in op.outputs if o}


def is_concat_in_place(graph: Graph, op: Operator) -> bool:
    """Whether ``op`` is a Concat whose operands are slices of its result's buffer (its step
    copies nothing)."""
    return op.op_type == "Concat" and bool(op.inputs) and all(i in graph.tensor_offsets for i in op.inputs if i)


def _fuse_one(graph: Graph, op: Operator, writer: dict[str, Operator]) -> tuple[Graph, tuple[OpIndex, ...]] | None:
    """The graph with Concat ``op`` in place and the steps writing its slices, or None."""
    if not op.computing or op.opaque or op.extra_bytes:
        return None
    layout = slice_layout(graph, op)
    if layout is None or len(layout) < 2:
        return None
    out = next(o for o in op.outputs if o)
    tb = graph.tensor_buffer
    if out not in tb or len({n for n, _, _ in layout}) != len(layout):
        return None
    yb = graph.buffers[tb[out]]
    if yb.kind is not TensorKind.ACTIVATION or yb.is_output or yb.producer != op.index or yb.writers:
        return None
    xbs: list[Buffer] = []
    for name, _, nbytes in layout:
        if name not in tb:
            return None
        xb = graph.buffers[tb[name]]
        w = writer.get(name)
        if (w is None or not (w.computing or w.fused_into is not None) or xb.kind is not TensorKind.ACTIVATION
                or xb.is_output or xb.producer is None or xb.writers or tuple(xb.consumers) != (op.index,)
                or xb.bytes != nbytes or xb.id == yb.id or any(x.id == xb.id for x in xbs)):
            return None
        if any(graph.tensors[t].bytes != nbytes for t in xb.tensors):
            return None
        xbs.append(xb)
    pos = {idx: i for i, idx in enumerate(graph.file_order())}
    hosts = tuple(sorted({xb.producer for xb in xbs if xb.producer is not None}, key=lambda h: pos[h]))
    gone = {xb.id for xb in xbs}
    offsets = dict(graph.tensor_offsets)
    for xb, (_, off, _) in zip(xbs, layout):
        for t in xb.tensors:
            offsets[t] = off
    # The Concat stays a step (it copies nothing; in-place operators fused after it, a ReLU
    # over the whole result, run in it): the last writer, reading the completed buffer.
    merged = replace(yb, tensors=(*yb.tensors, *(t for xb in xbs for t in xb.tensors)),
                     producer=hosts[0], writers=(*hosts, op.index),
                     consumers=(op.index, *(c for c in yb.consumers if c != op.index)))
    kept = [merged if b.id == yb.id else b for b in graph.buffers if b.id not in gone]
    new_id = {b.id: i for i, b in enumerate(kept)}
    buffers = tuple(replace(b, id=i) for i, b in enumerate(kept))
    tensor_buffer = {t: new_id[yb.id if b in gone else b] for t, b in tb.items()}
    return replace(graph, buffers=buffers, tensor_buffer=tensor_buffer, tensor_offsets=offsets), hosts


def fuse_concat(graph: Graph, op: Operator) -> Graph | None:
    """``graph`` with the one Concat ``op`` run in place, or None when it cannot be (no footprint
    guard: ``stowage.ir.channel_split`` joins its channel groups this way, to save memory)."""
    found = _fuse_one(graph, op, _writer_of(graph))
    return None if found is None else found[0]


def _no_larger_steps(old: Graph, new: Graph, concat: Operator, hosts: tuple[OpIndex, ...],
                     ceiling: dict[bool, int]) -> bool:
    """No writer's step needs more than the largest of the steps involved did apart, or than
    M_R (``ceiling``, per weight setting): each writer now holds the whole result."""
    for ww in (True, False):
        before = max(ceiling[ww], *(op_footprint(old, old.operators[i], ww) for i in (*hosts, concat.index)))
        if any(op_footprint(new, new.operators[h], ww) > before for h in (*hosts, concat.index)):
            return False
    return True


def fuse_concats(graph: Graph, at_m_r_only: bool = True) -> Graph:
    """The same graph with the admissible Concats run in place (module docstring): those whose
    step needs M_R (with or without weights), again while that lowers it, or with
    ``at_m_r_only=False`` every admissible one (the tests run the machinery on real models
    that way).  Runs after the elementwise in-place fusion of
    ``stowage.ir.inplace.fuse_in_place``, which calls it."""
    if graph.layout != "NCHW":
        return graph
    count = 0
    tried: set[OpIndex] = set()
    while True:
        ceiling = {ww: m_r(graph, ww) for ww in (True, False)}
        # Only the Concats whose step needs M_R: elsewhere running in place saves nothing a
        # plan can use (below M_R tiling plans the graph without them) and costs lifetime.
        at_m_r = [op for op in graph.computing_ops if op.op_type == "Concat" and op.index not in tried
                  and (not at_m_r_only or any(op_footprint(graph, op, ww) >= ceiling[ww] for ww in (True, False)))]
        if not at_m_r:
            break
        for stale in at_m_r:
            tried.add(stale.index)
            op = graph.operators[stale.index]
            found = _fuse_one(graph, op, _writer_of(graph))
            if found is None:
                continue
            new, hosts = found
            if not _no_larger_steps(graph, new, op, hosts, ceiling):
                log.debug("concat in place: %s skipped (a writer's step would exceed M_R)", op.name)
                continue
            graph = new
            count += 1
    if count:
        log.info("in place: %d Concat operators written in place by their producers", count)
    return graph


def concat_report(graph: Graph) -> list[tuple[str, tuple[str, ...]]]:
    """``(concat, writer step names)`` for every Concat in place, for ``inspect``."""
    rows = []
    for op in graph.operators:
        if not op.computing or not is_concat_in_place(graph, op):
            continue
        b = graph.buffers[graph.tensor_buffer[next(o for o in op.outputs if o)]]
        rows.append((op.name, tuple(graph.operators[w].name for w in b.all_writers if w != op.index)))
    return rows


__all__ = ["concat_axis", "concat_report", "fuse_concat", "fuse_concats", "is_concat_in_place", "slice_layout"]
