"""QDQ folding: a quantized ONNX graph planned as the int8 graph an accelerator runs.

onnxruntime's quantization tool (QDQ format) and tf2onnx write an int8 model as float
operators wrapped in ``DequantizeLinear -> op -> QuantizeLinear``.  Imported as written, every
tensor between the pairs is a float activation (4 B per element), so M_R is about 4x what the
same model needs in its QOperator form (``QLinearConv`` ...) or on an NPU, whose integer kernel
reads the int8 operands with their scales and writes the int8 result: the float tensors never
exist in memory.  ``fold_qdq`` makes that explicit in the IR, as a ``Graph -> Graph``
transform like ``stowage.ir.inplace`` (``--qdq fold``, the default; ``--qdq off`` plans the
graph as written):

* A **group** is a core operator P (computing, standard domain, not a Q/DQ itself) whose every
  activation operand is the output of a ``DequantizeLinear`` of an integer activation (an
  *activation DQ*) and whose every result is read by ``QuantizeLinear`` nodes only.  It becomes
  ONE step, hosted by P: its members are the activation DQs, the *weight DQs* (a folded
  ``DequantizeLinear`` of an integer initializer), P and the Qs, run in file order
  (``Graph.step_members``; the DQs and Qs are ``fused`` into P).  The step reads the int8
  inputs (the DQs' inputs), the int8 (or int32 bias) initializers and the scales and zero
  points, and writes the int8 results (the Qs' outputs).  The float tensors between the pairs
  stay in ``graph.tensors`` (the simulator computes them in its shadow) but have no buffer:
  they are never planned.  Weights are thus stored and loaded as int8 with their scales.
* A DQ whose output only ``QuantizeLinear`` nodes read (a requantization ``DQ -> Q``) is a
  group with no core, hosted by its first Q.
* A DQ whose output several groups read (a branch: a residual, two convolutions of one tensor)
  is a member of each of those steps (each integer kernel dequantizes its own operand); its
  ``fused_into`` names the first.  A weight DQ read by several groups is likewise shared.
* Conservative: a group is folded only when all of it can be.  A DQ output that any other
  operator reads (a float op that is not requantized, a graph output, a view), a core result
  read by anything but a Q, or aliased by a view, keeps the whole chain as written; so does a
  weight DQ whose float weight a non-folded operator reads.  Folding is order-independent (it
  changes which buffers exist, not which orders are legal) and it runs before
  ``stowage.ir.inplace`` (whose Q/DQ rules would otherwise fuse the pairs away first).

The graph input's ``QuantizeLinear`` (float in, int8 out) and the output ``DequantizeLinear``
stay steps of their own: the QOperator form has the same two steps.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace

from stowage.ir.graph import Graph, Operator, OpIndex, TensorKind

log = logging.getLogger(__name__)

_DOMAINS = ("", "ai.onnx", "com.microsoft")
_CORE_DOMAINS = ("", "ai.onnx")


def _is(op: Operator, op_type: str) -> bool:
    return op.op_type == op_type and op.domain in _DOMAINS


def _integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _float(dtype: str) -> bool:
    return dtype in ("float", "float16", "bfloat16", "double")


class _Folder:
    """The analysis of one graph: which DQs, cores and Qs fold (``groups``)."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.producer: dict[str, OpIndex] = {o: op.index for op in g.operators for o in op.outputs if o}

    def sole_buffer(self, name: str, kind: TensorKind) -> bool:
        """``name`` is alone in its buffer (no view aliases it), of ``kind``, not a graph output."""
        b = self.g.buffers[self.g.tensor_buffer[name]]
        return b.tensors == (name,) and b.kind is kind and not b.is_output

    def activation_dq(self, op: Operator) -> bool:
        """A computing DQ of an integer activation or input whose float result is its own buffer."""
        g = self.g
        if not (op.computing and _is(op, "DequantizeLinear")) or not op.inputs or len(op.outputs) != 1:
            return False
        x, y = g.tensors.get(op.inputs[0]), g.tensors.get(op.outputs[0])
        if x is None or y is None or x.name not in g.tensor_buffer or y.name not in g.tensor_buffer:
            return False
        xb = g.buffers[g.tensor_buffer[x.name]]
        return (xb.kind in (TensorKind.ACTIVATION, TensorKind.INPUT) and _integer(x.dtype) and _float(y.dtype)
                and self.sole_buffer(y.name, TensorKind.ACTIVATION))

    def weight_dq(self, name: str) -> OpIndex | None:
        """The folded DQ producing weight ``name`` from an integer initializer, else None."""
        g = self.g
        i = self.producer.get(name)
        if i is None:
            return None
        op = g.operators[i]
        if op.computing or op.fused_into is not None or not _is(op, "DequantizeLinear") or not op.inputs:
            return None
        w = g.tensors.get(op.inputs[0])
        if w is None or w.kind is not TensorKind.WEIGHT or not _integer(w.dtype) or w.producer is not None:
            return None
        if op.inputs[0] not in g.tensor_buffer or not self.sole_buffer(name, TensorKind.WEIGHT):
            return None
        return i

    def reads_as_data(self, q: Operator, name: str) -> bool:
        """``q`` is a computing QuantizeLinear whose data operand (only) is ``name``."""
        return q.computing and _is(q, "QuantizeLinear") and bool(q.inputs) and q.inputs[0] == name \
            and name not in q.inputs[1:]

    def core_candidate(self, op: Operator) -> tuple[list[OpIndex], list[OpIndex], list[OpIndex]] | None:
        """``(activation DQs, weight DQs, Qs)`` of a core candidate, else None."""
        g = self.g
        if (not op.computing or op.opaque or op.domain not in _CORE_DOMAINS or op.fused or op.fused_into is not None
                or op.op_type in ("QuantizeLinear", "DequantizeLinear")):
            return None
        outs = [o for o in op.outputs if o]
        if not outs:
            return None
        dqs: list[OpIndex] = []
        wdqs: list[OpIndex] = []
        for name in op.inputs:
            if not name:
                continue
            if name not in g.tensor_buffer:
                return None
            b = g.buffers[g.tensor_buffer[name]]
            if b.kind is TensorKind.WEIGHT:
                w = self.weight_dq(name)
                if w is not None and w not in wdqs:
                    wdqs.append(w)
                continue
            i = self.producer.get(name)
            if i is None or not self.activation_dq(g.operators[i]):
                return None
            if i not in dqs:
                dqs.append(i)
        if not dqs:
            return None
        qs: list[OpIndex] = []
        for o in outs:
            if o not in g.tensor_buffer or not self.sole_buffer(o, TensorKind.ACTIVATION):
                return None
            readers = g.buffers[g.tensor_buffer[o]].consumers
            if not readers or not all(self.reads_as_data(g.operators[c], o) for c in readers):
                return None
            qs.extend(c for c in readers if c not in qs)
        return dqs, wdqs, qs

    def groups(self) -> list[tuple[OpIndex, list[OpIndex]]]:
        """``(host, members other than the host)`` for every group that folds."""
        g = self.g
        cand = {op.index: c for op in g.operators if (c := self.core_candidate(op)) is not None}
        act_dqs = [op.index for op in g.operators if self.activation_dq(op)]

        def dq_ok(d: OpIndex) -> bool:
            y = g.operators[d].outputs[0]
            readers = g.buffers[g.tensor_buffer[y]].consumers
            return bool(readers) and all(c in cand or self.reads_as_data(g.operators[c], y) for c in readers)

        while True:
            ok = {d: dq_ok(d) for d in act_dqs}
            drop = [p for p, (dqs, _, _) in cand.items() if not all(ok[d] for d in dqs)]
            if not drop:
                break
            for p in drop:
                del cand[p]
        out: list[tuple[OpIndex, list[OpIndex]]] = []
        for p, (dqs, wdqs, qs) in sorted(cand.items()):
            # A weight DQ folds only when every reader of its float weight is a folded core.
            keep_w = [w for w in wdqs
                      if all(c in cand for c in g.buffers[g.tensor_buffer[g.operators[w].outputs[0]]].consumers)]
            out.append((p, sorted({*dqs, *keep_w, *qs})))
        for d in act_dqs:
            if not ok[d]:
                continue
            y = g.operators[d].outputs[0]
            qs = [c for c in g.buffers[g.tensor_buffer[y]].consumers if c not in cand]
            if qs:
                out.append((qs[0], sorted({d, *qs[1:]})))
        return sorted(out)


def _alias_requantize(graph: Graph) -> tuple[Graph, int]:
    """``DequantizeLinear -> views -> QuantizeLinear`` with the same scale and zero point (the
    same tensors, the same attributes, the same integer type) is the identity on the integer
    bytes: ``round((x - zp) * s / s) + zp == x`` exactly for 8- and 16-bit ``x`` (the float
    error is a few ulps of an integer far below 2^24).  The QOperator form writes such a
    ``Flatten`` or ``Reshape`` as a view of the int8 tensor, and so does this: the Q's result
    joins the DQ operand's buffer (an alias, like a view) and neither node is a step."""
    g = graph
    bufs = {b.id: b for b in g.buffers}
    tbuf = dict(g.tensor_buffer)
    ops = list(g.operators)
    count = 0
    for d in g.operators:
        if not (d.computing and _is(d, "DequantizeLinear")) or len(d.inputs) < 2 or len(d.outputs) != 1:
            continue
        x = g.tensors.get(d.inputs[0])
        if x is None or not _integer(x.dtype) or x.name not in tbuf or d.outputs[0] not in tbuf:
            continue
        xb, yb = bufs[tbuf[x.name]], bufs[tbuf[d.outputs[0]]]
        if xb.kind is not TensorKind.ACTIVATION or yb.kind is not TensorKind.ACTIVATION or yb.is_output \
                or yb.producer != d.index or not yb.consumers or xb.id == yb.id:
            continue
        qs = [ops[c] for c in yb.consumers]
        same = all(
            _is(q, "QuantizeLinear") and q.computing and q.inputs and q.inputs[0] in yb.tensors
            and tuple(q.inputs[1:]) == tuple(d.inputs[1:]) and dict(q.attributes) == dict(d.attributes)
            and len([o for o in q.outputs if o]) == 1 and q.outputs[0] in tbuf
            and g.tensors[q.outputs[0]].dtype == x.dtype
            for q in qs)
        if not same:
            continue
        qbs = [bufs[tbuf[q.outputs[0]]] for q in qs]
        if any(qb.kind is not TensorKind.ACTIVATION or qb.is_output or qb.producer != q.index
               or qb.bytes != xb.bytes or qb.id in (xb.id, yb.id) for qb, q in zip(qbs, qs)):
            continue
        merged_tensors = [*xb.tensors, *(t for qb in qbs for t in qb.tensors)]
        readers = sorted({*(c for c in xb.consumers if c != d.index), *(c for qb in qbs for c in qb.consumers)})
        bufs[xb.id] = replace(xb, tensors=tuple(merged_tensors), consumers=tuple(readers))
        for qb in qbs:
            for t in qb.tensors:
                tbuf[t] = xb.id
            del bufs[qb.id]
        for t in yb.tensors:
            del tbuf[t]  # the float tensors never exist
        del bufs[yb.id]
        ops[d.index] = replace(d, computing=False)
        for q in qs:
            ops[q.index] = replace(q, computing=False)
        count += 1
    if not count:
        return graph, 0
    old = sorted(bufs)
    new_id = {b: i for i, b in enumerate(old)}
    return replace(g, operators=tuple(ops), buffers=tuple(replace(bufs[b], id=new_id[b]) for b in old),
                   tensor_buffer={t: new_id[b] for t, b in tbuf.items()}), count


def fold_qdq(graph: Graph) -> Graph:
    """The same graph with every foldable ``DequantizeLinear -> op -> QuantizeLinear`` group one
    step with int8 operands and results (see the module docstring); a graph already folded is
    returned as is.  Runs on an imported graph before ``fuse_in_place``."""
    if graph.qdq:
        return graph
    if graph.in_place:
        raise ValueError("fold_qdq runs before fuse_in_place (the in-place rules fuse Q/DQ pairs away)")
    graph, aliased = _alias_requantize(graph)
    groups = _Folder(graph).groups()
    if not groups:
        if aliased:
            log.info("qdq: %d requantizations of the same scale are views", aliased)
        return replace(graph, qdq=True)
    ops = list(graph.operators)
    first_host: dict[OpIndex, OpIndex] = {}
    for host, members in groups:
        ops[host] = replace(ops[host], fused=tuple(members))
        for m in members:
            first_host.setdefault(m, host)
    for m, host in first_host.items():
        ops[m] = replace(ops[m], computing=False, fused_into=host)
    hosts = {h for h, _ in groups}
    # The float tensors inside the groups lose their buffers: DQ results, core results and
    # folded weights (every reader of each is a member of a folded step, by construction).
    dropped: set[str] = set()
    for m in first_host:
        op = graph.operators[m]
        if op.op_type == "DequantizeLinear":
            dropped.update(o for o in op.outputs if o)
    for h in hosts:
        if graph.operators[h].op_type != "QuantizeLinear":
            dropped.update(o for o in graph.operators[h].outputs if o)
    drop_bufs = {graph.tensor_buffer[n] for n in dropped}
    kept = [b for b in graph.buffers if b.id not in drop_bufs]
    new_id = {b.id: i for i, b in enumerate(kept)}
    tensor_buffer = {t: new_id[b] for t, b in graph.tensor_buffer.items() if b in new_id}
    folded = replace(graph, operators=tuple(ops), tensor_buffer=tensor_buffer,
                     buffers=tuple(replace(b, id=new_id[b.id]) for b in kept), qdq=True)
    # Producers and readers are steps now: a Q's result is written by its group's host, an
    # int8 operand is read by every group that dequantizes it.
    writer: dict[int, OpIndex] = {}
    readers: dict[int, list[OpIndex]] = {}
    t_writer: dict[str, OpIndex] = {}
    t_readers: dict[str, set[OpIndex]] = {}
    for op in folded.computing_ops:
        for b in folded.op_writes(op):
            writer.setdefault(b, op.index)
        for b in folded.op_reads(op):
            readers.setdefault(b, []).append(op.index)
        for member in folded.step_members(op):
            for n in member.outputs:
                if n:
                    t_writer.setdefault(n, op.index)
            for n in member.inputs:
                if n:
                    t_readers.setdefault(n, set()).add(op.index)
    buffers = tuple(replace(b, producer=writer.get(b.id) if b.producer is not None else None,
                            consumers=tuple(readers.get(b.id, ()))) for b in folded.buffers)
    # Tensor producers and consumers are steps too (as ``fuse_in_place`` keeps them).
    tensors = {n: replace(t, producer=t_writer.get(n, t.producer), consumers=tuple(sorted(t_readers.get(n, ()))))
               for n, t in folded.tensors.items()}
    kinds = Counter(graph.operators[h].op_type for h in hosts)
    log.info("qdq: %d groups folded into int8 steps (%s); %d float buffers dropped; %d same-scale "
             "requantizations are views", len(groups), ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())),
             len(drop_bufs), aliased)
    return replace(folded, buffers=buffers, tensors=tensors)


def _unbuffered(graph: Graph, op: Operator) -> bool:
    """``op`` reads or writes a tensor that has no buffer: a float tensor inside a folded group."""
    return any(n and n in graph.tensors and n not in graph.tensor_buffer for n in (*op.inputs, *op.outputs))


def qdq_members(graph: Graph) -> frozenset[OpIndex]:
    """Operators fused into a step by ``fold_qdq`` (not by ``fuse_in_place``)."""
    return frozenset(op.index for op in graph.operators if op.fused_into is not None and _unbuffered(graph, op))


def qdq_report(graph: Graph) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(host op, its type, the DQ/Q members' names)`` for every folded group, for ``inspect``."""
    out = []
    for op in graph.computing_ops:
        members = tuple(m.name for m in graph.step_members(op) if m.index != op.index and _unbuffered(graph, m))
        if members:
            out.append((op.name, op.op_type, members))
    return out


def qdq_summary(graph: Graph) -> str:
    """One line: how many groups folded, by core type (``inspect``)."""
    rep = qdq_report(graph)
    if not rep:
        return "none"
    kinds = Counter(t for _, t, _ in rep)
    by_count = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{len(rep)} (" + ", ".join(f"{t} {n}" for t, n in by_count) + ")"


__all__ = ["fold_qdq", "qdq_members", "qdq_report", "qdq_summary"]
