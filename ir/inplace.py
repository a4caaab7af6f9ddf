"""In-place operators: an elementwise result written over the operand it replaces.

COSMA's model keeps an operator's operands and results in distinct bytes, so a ReLU6 after a
1.2 MB convolution needs 2.4 MB.  Every NPU compiler (Vela, TVM's USMP, TFLite Micro) runs such
an activation over its input instead.  ``fuse_in_place`` makes that explicit in the IR:

* an **in-place operator** O (a unary elementwise op, Q/DQ, or a binary elementwise op whose
  result has the shape of one operand; in a TFLite graph the activations Vela fuses,
  ``TFLITE_UNARY_IN_PLACE``) whose operand X is read by O alone, was produced by a
  computing operator P and is an ordinary activation, writes its result Y over X: X and Y
  become one buffer (a declared in-place alias, like a view) and O runs in P's step, right
  after P (``Operator.fused``), so the step's operands are P's plus O's other operands and its
  result is the shared buffer.  The simulator executes O as a kernel that writes while it
  reads (elementwise, front to back, which is safe because element ``i`` of Y only needs
  element ``i`` of X and Y is never wider than X).
* Fusing into the producer's step, rather than keeping O as a step that reads and writes one
  buffer, keeps the rest of the tool's model intact: every buffer is still written by one step,
  so a spilled copy can never go stale, and every solver, bound and the validator work
  unchanged on the fused graph.  The price is that O cannot be scheduled apart from P, which a
  whole-tensor plan never wants anyway (Y replaces X at no cost the moment P is done).
* A binary operator's other operand must be available before P runs (its producer comes
  before P in file order and does not depend on P), so the fused step still follows file order.

The transform is order-independent (X has no reader but O, so O is its last reader in every
order) and conservative: inputs, weights, graph outputs and buffers with other readers are
never overwritten.  After the elementwise fusion, Concats whose step needs M_R and whose
producers can write straight into their slices of the result run in place too
(``stowage.ir.concat_inplace``).
``--in-place off`` skips both and keeps COSMA's definitions (M_R sums an
activation's input and output).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from math import prod

from stowage.ir.concat_inplace import concat_report, fuse_concats
from stowage.ir.graph import Buffer, Graph, Operator, OpIndex, Tensor, TensorKind

log = logging.getLogger(__name__)

#: Elementwise operators with one data operand whose kernel may write over it.
UNARY_IN_PLACE: frozenset[str] = frozenset({
    "Relu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu",
    "Celu", "ThresholdedRelu", "Softplus", "Softsign", "Gelu", "Mish", "Neg", "Abs", "Exp", "Log",
    "Sqrt", "Reciprocal", "Erf", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign", "Not",
    "QuantizeLinear", "DequantizeLinear", "Cast",
})
#: Elementwise operators with two data operands (numpy broadcasting).
BINARY_IN_PLACE: frozenset[str] = frozenset({
    "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow", "PRelu", "And", "Or", "Xor",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
})
#: onnxruntime's com.microsoft quantized elementwise ops: ``(A, A_scale, A_zp, B, ...)``.
QLINEAR_BINARY: frozenset[str] = frozenset({"QLinearAdd", "QLinearMul"})
_QLINEAR_UNARY: frozenset[str] = frozenset({"QLinearSigmoid", "QLinearLeakyRelu"})
#: TFLite builtins (domain ``tflite``) that run in place: the activations Arm Vela fuses into
#: the operation producing their operand (the lookup-table ones through ``is_nop`` and
#: ``fuse_activation_function_with_prev``, the ReLU family as pass packing's post-operations;
#: ``stowage.solvers.timing`` times them so).  Binary TFLite operators stay steps of their own.
TFLITE_UNARY_IN_PLACE: frozenset[str] = frozenset({
    "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH", "LEAKY_RELU",
})


def data_operands(op: Operator) -> tuple[str, ...]:
    """The operands an in-place kernel may overwrite (scales, bounds and zero points never)."""
    ins = op.inputs
    if op.domain in ("", "ai.onnx"):
        if op.op_type in UNARY_IN_PLACE:
            return ins[:1]
        if op.op_type in BINARY_IN_PLACE:
            return tuple(ins)
        return ()
    if op.domain == "com.microsoft":
        if op.op_type in QLINEAR_BINARY and len(ins) >= 4:
            return (ins[0], ins[3])
        if op.op_type in _QLINEAR_UNARY:
            return ins[:1]
    if op.domain == "tflite" and op.op_type in TFLITE_UNARY_IN_PLACE:
        return ins[:1]
    return ()


def _candidate(graph: Graph, op: Operator, host_of: dict[int, OpIndex],
               bufs: dict[int, Buffer], tbuf: dict[str, int], pos: dict[OpIndex, int]) -> tuple[str, OpIndex] | None:
    """The operand ``op`` may overwrite and the step that produced it, or None."""
    if not op.computing or op.opaque or len([o for o in op.outputs if o]) != 1:
        return None
    out = next(o for o in op.outputs if o)
    yt = graph.tensors.get(out)
    if yt is None or yt.kind is not TensorKind.ACTIVATION or out not in tbuf:
        return None  # (a float result inside a folded QDQ group, stowage.ir.qdq, has no buffer)
    ybuf = bufs[tbuf[out]]
    if ybuf.kind is not TensorKind.ACTIVATION or ybuf.is_output or ybuf.producer != op.index:
        return None
    best: tuple[int, str, OpIndex] | None = None
    operands = data_operands(op)
    for name in operands:
        xt = graph.tensors.get(name)
        if xt is None or name not in tbuf:
            continue
        xb = bufs[tbuf[name]]
        if (xb.kind is not TensorKind.ACTIVATION or xb.is_output or xb.producer is None
                or tuple(xb.consumers) != (op.index,)):
            continue
        # Element i of the result needs element i of this operand only: same element count
        # (no broadcast of this operand), and the result is never wider than the bytes it
        # overwrites.
        if prod(xt.shape) != prod(yt.shape) or tuple(xt.shape) != tuple(yt.shape) or yt.bytes > xb.bytes:
            continue
        if operands.count(name) > 1:
            continue  # x + x: both operands are the one buffer
        host = host_of.get(xb.producer, xb.producer)
        # Every other operand must exist before the host step runs.
        ok = True
        for other in op.inputs:
            if not other or other == name or other not in tbuf:
                continue
            ob = bufs[tbuf[other]]
            if ob.id == xb.id:
                ok = False
                break
            if ob.producer is not None and pos.get(host_of.get(ob.producer, ob.producer), -1) >= pos[host]:
                ok = False
                break
        if not ok:
            continue
        if not _no_larger_step(graph, op, host, bufs, tbuf):
            continue
        if best is None or xb.bytes > best[0]:
            best = (xb.bytes, name, host)
    return None if best is None else (best[1], best[2])


def _step_buffers(graph: Graph, members: list[Operator], tbuf: dict[str, int]) -> set[int]:
    return {tbuf[n] for m in members for n in (*m.inputs, *m.outputs) if n and n in tbuf}


def _no_larger_step(graph: Graph, op: Operator, host: OpIndex, bufs: dict[int, Buffer],
                    tbuf: dict[str, int]) -> bool:
    """Fusing must not make the host's step need more memory than the two steps did apart,
    with or without weights resident: a binary operator brings its other operand into the
    host's step, which can exceed both (a MatMul whose result is added to a residual), and a
    chain that narrows then widens (Resize -> QuantizeLinear -> DequantizeLinear) would keep
    the wide buffer across steps that needed the narrow one."""
    h = graph.operators[host]
    hosted = [h, *(graph.operators[f] for f in h.fused)]
    apart = (_step_buffers(graph, hosted, tbuf), _step_buffers(graph, [op], tbuf))
    # The operator's own constants (Clip's bounds, Q/DQ scales) are a few bytes either way.
    own = {b for b in apart[1] if bufs[b].kind is TensorKind.WEIGHT and b not in apart[0]}
    together = (apart[0] | apart[1]) - own
    for with_weights in (True, False):
        def size(ids: set[int], ww: bool = with_weights) -> int:
            return sum(bufs[b].bytes for b in ids if ww or bufs[b].kind is not TensorKind.WEIGHT)
        # The fused result shares the operand's bytes: count the pair once.
        out = next(o for o in op.outputs if o)
        merged = size(together) - (bufs[tbuf[out]].bytes if tbuf[out] in together else 0)
        if merged > max(size(apart[0]) + h.extra_bytes, size(apart[1]) + op.extra_bytes):
            return False
    return True


def fuse_in_place(graph: Graph, concat: bool = True) -> Graph:
    """The same graph with every admissible in-place operator fused into its operand's step
    (see the module docstring), then, with ``concat``, the Concats whose step needs M_R run in
    place (``stowage.ir.concat_inplace``; False rebuilds the graph of plans written before that
    existed, ``PlanOptions.concat_in_place``); a graph already transformed is returned as is."""
    if graph.in_place:
        return graph

    def finish(g: Graph) -> Graph:
        done = fuse_concats(g) if concat else g
        return done if done is g else replace(done, without_concats=g)

    ops = list(graph.operators)
    bufs = {b.id: b for b in graph.buffers}
    tbuf = dict(graph.tensor_buffer)
    tensors = dict(graph.tensors)
    pos = {idx: i for i, idx in enumerate(graph.file_order())}
    host_of: dict[int, OpIndex] = {}
    fused_count = 0
    for idx in graph.file_order():
        op = ops[idx]
        found = _candidate(graph, op, host_of, bufs, tbuf, pos)
        if found is None:
            continue
        name, host = found
        xb, yb = bufs[tbuf[name]], bufs[tbuf[next(o for o in op.outputs if o)]]
        merged = replace(
            xb,
            tensors=(*xb.tensors, *yb.tensors),
            bytes=max(xb.bytes, yb.bytes),
            consumers=yb.consumers,
            is_output=yb.is_output,
        )
        bufs[xb.id] = merged
        del bufs[yb.id]
        for t in yb.tensors:
            tbuf[t] = xb.id
            tensors[t] = replace(tensors[t], producer=host)
        tensors[name] = replace(tensors[name], consumers=tuple(c for c in tensors[name].consumers if c != idx))
        h = ops[host]
        unit_cost = op.cost if op.cost_unit == h.cost_unit else 0
        ops[host] = replace(h, fused=(*h.fused, idx), cost=h.cost + unit_cost)
        ops[idx] = replace(op, computing=False, fused_into=host)
        host_of[idx] = host
        fused_count += 1
    if not fused_count:
        return finish(replace(graph, in_place=True))
    # Renumber buffers densely, keeping their order: plans and tables index buffers by id.
    old_ids = sorted(bufs)
    new_id = {old: new for new, old in enumerate(old_ids)}
    buffers = tuple(replace(bufs[old], id=new_id[old]) for old in old_ids)
    tensor_buffer = {t: new_id[b] for t, b in tbuf.items()}
    log.info("in place: %d operators fused into their operand's step", fused_count)
    fused = replace(graph, operators=tuple(ops), buffers=buffers, tensor_buffer=tensor_buffer,
                    tensors=_consumers_fixed(tensors, ops), in_place=True)
    # A buffer's readers are steps: an operand of a fused operator is read by its host.
    readers: dict[int, list[OpIndex]] = {}
    for op in fused.computing_ops:
        for b in fused.op_reads(op):
            readers.setdefault(b, []).append(op.index)
    fused = replace(fused, buffers=tuple(replace(b, consumers=tuple(readers.get(b.id, ()))) for b in buffers))
    # Then Concats whose producers can write into their slices (``stowage.ir.concat_inplace``).
    return finish(fused)


def _consumers_fixed(tensors: dict[str, Tensor], ops: list[Operator]) -> dict[str, Tensor]:
    """Tensor consumers are computing operators: a fused operator's operands are read by its
    host step now."""
    readers: dict[str, list[int]] = {}
    for op in ops:
        if not op.computing:
            continue
        members = (op, *(ops[f] for f in op.fused))
        for m in members:
            for name in m.inputs:
                if name and (not readers.get(name) or readers[name][-1] != op.index):
                    readers.setdefault(name, []).append(op.index)
    return {n: replace(t, consumers=tuple(sorted(set(readers.get(n, ()))))) for n, t in tensors.items()}


def in_place_report(graph: Graph) -> list[tuple[str, str, str]]:
    """``(fused op, its type, host op)`` for every fused operator, for ``inspect``; a Concat in
    place (``stowage.ir.concat_inplace``) is listed with the steps writing its slices."""
    from stowage.ir.qdq import qdq_members

    qdq = qdq_members(graph)  # members of folded QDQ groups are not in-place operators
    rows = [(op.name, op.op_type, graph.operators[op.fused_into].name)
            for op in graph.operators if op.fused_into is not None and op.index not in qdq]
    rows += [(name, "Concat", "slices written by " + ", ".join(writers)) for name, writers in concat_report(graph)]
    return rows


__all__ = ["BINARY_IN_PLACE", "TFLITE_UNARY_IN_PLACE", "UNARY_IN_PLACE", "data_operands", "fuse_in_place",
           "in_place_report"]
