"""Output-channel weight tiling: an operator whose weights do not fit becomes channel groups.

With weights in the compute level (``--weights-in-sram``, COSMA's "activations + weights"), an
operator's step holds its whole weight: MobileNetV2's classifier (1,280 x 1,000 at 8 bits,
1.28 MB) alone exceeds a 256 KiB scratchpad, so no plan exists there however cleverly the
activations are tiled.  Every NPU compiler splits such a layer along its output channels: each
group reads the whole input and its own weight rows and writes its own output channels.
``split_channels`` makes that an IR rewrite:

* an operator O (``Conv`` and ``QLinearConv`` with ``group`` 1, ``Gemm``, ``MatMul`` and
  ``QLinearMatMul`` with a 2-D weight, com.microsoft ``QGemm``) becomes ``k`` operators
  ``O[oc lo:hi]``, one per group of output channels, each reading the input, its slice of the
  weight (and of the bias and per-channel scales and zero points: ``W[oc lo:hi]``, recorded in
  ``Graph.derived_weights`` so the simulator and the weight blob cut them from the model's own
  initializers), and writing ``Y[oc lo:hi]``; then a Concat ``O[concat]`` joins the groups
  into O's result (``Graph.derived_nodes`` says which node each new operator comes from).
* That Concat is run in place (``stowage.ir.concat_inplace``) when its slices are contiguous
  (NCHW with N = 1, or a ``[1, N]`` matrix product): the groups write straight into their
  channels of the one result buffer, so the split costs no copy and no memory.  In-place
  operators that were fused after O (a ReLU) run in the Concat's step, over the whole result.
* ``choose_splits`` picks, per operator whose step alone does not fit the capacity with its
  weights, the smallest ``k`` at which every group's step fits (its input, the whole result
  and its weight slice, each aligned); an operator whose step does not fit even with one
  output channel's weights (its activations are too large) is left to tiling.

The rewrite depends on the capacity, so the plan records it (``options.channel_split``: name ->
``k``) and ``validate``/``simulate`` rebuild the same graph from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from math import prod

from stowage.ir.concat_inplace import fuse_concat
from stowage.ir.graph import Buffer, Graph, Operator, OpIndex, Tensor, TensorKind
from stowage.ir.lifetimes import op_buffers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitSpec:
    """How one operator splits: the result's channel axis, its channel count, and the operand
    positions cut along an axis (the rest are read whole by every group)."""

    out_axis: int
    channels: int
    cut: tuple[tuple[int, int], ...]   # (operand position, axis)


def _weight(graph: Graph, name: str) -> Tensor | None:
    t = graph.tensors.get(name) if name else None
    return t if t is not None and t.kind is TensorKind.WEIGHT else None


def _per_channel(graph: Graph, op: Operator, pos: int, n: int) -> tuple[int, int] | None:
    """``(pos, axis)`` when operand ``pos`` is a 1-D weight of ``n`` entries (a bias, a
    per-channel scale or zero point), else None (absent, or shared by every channel)."""
    if pos >= len(op.inputs):
        return None
    t = _weight(graph, op.inputs[pos])
    return (pos, 0) if t is not None and t.shape == (n,) else None


def split_spec(graph: Graph, op: Operator) -> SplitSpec | None:
    """The operator's split along output channels, or None when it has none."""
    outs = [o for o in op.outputs if o]
    t = op.op_type
    # onnxruntime's quantized ops are opaque to the importer, but their operands are known.
    known = op.domain == "com.microsoft" and t in ("QGemm", "QLinearConv")
    if not op.computing or (op.opaque and not known) or len(outs) != 1 or outs[0] not in graph.tensors:
        return None
    y = graph.tensors[outs[0]]
    std = op.domain in ("", "ai.onnx") or (known and t == "QLinearConv")
    a = op.attributes
    extra: list[tuple[int, int] | None] = []
    if std and t in ("Conv", "QLinearConv"):
        wpos = 1 if t == "Conv" else 3
        w = _weight(graph, op.inputs[wpos]) if len(op.inputs) > wpos else None
        if w is None or int(a.get("group", 1) or 1) != 1 or len(y.shape) < 3 or w.shape[0] != y.shape[1]:
            return None
        n = y.shape[1]
        cut = [(wpos, 0)]
        extra = ([_per_channel(graph, op, 2, n)] if t == "Conv"
                 else [_per_channel(graph, op, 4, n), _per_channel(graph, op, 5, n), _per_channel(graph, op, 8, n)])
        return SplitSpec(1, n, tuple(cut + [e for e in extra if e is not None]))
    if (std and t in ("Gemm", "MatMul", "QLinearMatMul")) or (op.domain == "com.microsoft" and t == "QGemm"):
        wpos = {"Gemm": 1, "MatMul": 1, "QLinearMatMul": 3, "QGemm": 3}[t]
        w = _weight(graph, op.inputs[wpos]) if len(op.inputs) > wpos else None
        if w is None or len(w.shape) != 2 or not y.shape:
            return None
        trans = t in ("Gemm", "QGemm") and int(a.get("transB", 0) or 0) == 1
        axis = 0 if trans else 1
        n = y.shape[-1]
        if w.shape[axis] != n:
            return None
        if t == "Gemm":
            c = _weight(graph, op.inputs[2]) if len(op.inputs) > 2 else None
            if c is not None and prod(c.shape) == n and c.shape[-1:] == (n,):
                extra = [(2, len(c.shape) - 1)]
            elif c is not None and prod(c.shape) != 1:
                return None  # a bias broadcast some other way: keep the operator whole
        elif t == "QLinearMatMul":
            extra = [_per_channel(graph, op, 4, n), _per_channel(graph, op, 5, n)]
        else:
            extra = [_per_channel(graph, op, 4, n), _per_channel(graph, op, 5, n), _per_channel(graph, op, 6, n)]
        return SplitSpec(len(y.shape) - 1, n, tuple([(wpos, axis)] + [e for e in extra if e is not None]))
    return None


def _groups(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous channel ranges, sizes differing by at most one."""
    out, lo = [], 0
    for i in range(k):
        hi = lo + n // k + (1 if i < n % k else 0)
        out.append((lo, hi))
        lo = hi
    return out


def _slice_tensor(t: Tensor, name: str, axis: int, lo: int, hi: int, kind: TensorKind) -> Tensor | None:
    n = prod(t.shape)
    if n == 0 or t.bytes % n:
        return None  # sub-byte elements: a slice need not be whole bytes
    shape = tuple(hi - lo if i == axis else d for i, d in enumerate(t.shape))
    return Tensor(name, shape, t.dtype, prod(shape) * (t.bytes // n), kind)


def _split_one(graph: Graph, op: Operator, k: int) -> Graph | None:
    """``graph`` with ``op`` split into ``k`` output-channel groups (module docstring)."""
    spec = split_spec(graph, op)
    if spec is None or not 2 <= k <= spec.channels or any(f < op.index for f in op.fused):
        return None
    i = op.index
    y_name = next(o for o in op.outputs if o)
    y = graph.tensors[y_name]
    groups = _groups(spec.channels, k)
    remap = {j: (j if j < i else j + k) for j in range(len(graph.operators)) if j != i}
    parts = list(range(i, i + k))
    cat = i + k

    def m(j: OpIndex | None) -> OpIndex | None:
        return None if j is None else remap.get(j, cat)

    tensors = {n: replace(t, producer=m(t.producer),
                          consumers=tuple(sorted({c2 for c in t.consumers
                                                  for c2 in (parts if c == i else [remap[c]])})))
               for n, t in graph.tensors.items()}
    derived_w = dict(graph.derived_weights)
    derived_n = dict(graph.derived_nodes)
    cut = dict(spec.cut)
    new_ops: list[Operator] = []
    y_parts: list[str] = []
    new_tensors: list[Tensor] = []
    for g, (lo, hi) in enumerate(groups):
        ins = list(op.inputs)
        for pos, axis in spec.cut:
            src = graph.tensors[op.inputs[pos]]
            name = f"{src.name}[oc {lo}:{hi}]"
            sl = _slice_tensor(src, name, axis, lo, hi, TensorKind.WEIGHT)
            if sl is None:
                return None
            new_tensors.append(replace(sl, consumers=(parts[g],)))
            derived_w[name] = (src.name, axis, lo, hi)
            ins[pos] = name
        yg = _slice_tensor(y, f"{y_name}[oc {lo}:{hi}]", spec.out_axis, lo, hi, TensorKind.ACTIVATION)
        if yg is None:
            return None
        new_tensors.append(replace(yg, producer=parts[g], consumers=(cat,)))
        y_parts.append(yg.name)
        name = f"{op.name}[oc {lo}:{hi}]"
        derived_n[name] = y_name
        new_ops.append(replace(op, index=parts[g], name=name, inputs=tuple(ins), outputs=(yg.name,),
                               cost=op.cost * (hi - lo) // spec.channels, fused=(), fused_into=None))
    concat = Operator(cat, f"{op.name}[concat]", "Concat", "", tuple(y_parts), (y_name,), {"axis": spec.out_axis},
                      cost=y.bytes, cost_unit="bytes", fused=tuple(remap[f] for f in op.fused))
    derived_n[concat.name] = ""
    tensors[y_name] = replace(tensors[y_name], producer=cat)
    for t in new_tensors:
        tensors[t.name] = t
    ops: list[Operator] = []
    for o in graph.operators:
        if o.index == i:
            ops.extend(new_ops)
            ops.append(concat)
            continue
        ops.append(replace(o, index=remap[o.index], fused=tuple(remap[f] for f in o.fused),
                           fused_into=m(o.fused_into), after=tuple(m(a) or 0 for a in o.after)))
    # Buffers: the cut weights' own buffers go when nothing else reads them, one buffer per
    # new weight slice and group result is added (ids stay dense, in order).
    tb = dict(graph.tensor_buffer)
    cut_names = {op.inputs[p] for p in cut}
    buffers: list[Buffer] = []
    for b in graph.buffers:
        consumers = tuple(sorted({c2 for c in b.consumers for c2 in (parts if c == i else [remap[c]])}))
        if b.kind is TensorKind.WEIGHT and set(b.tensors) <= cut_names and consumers == tuple(parts):
            for name in b.tensors:
                del tb[name]
                tensors.pop(name, None)
            continue
        producer = cat if b.producer == i else m(b.producer)
        writers = tuple(cat if w == i else remap[w] for w in b.writers)
        buffers.append(replace(b, producer=producer, consumers=consumers, writers=writers))
    for t in new_tensors:
        if t.kind is TensorKind.ACTIVATION:   # a group's result: written by it, read by the Concat
            buffers.append(Buffer(-1, (t.name,), t.bytes, t.kind, producer=t.producer, consumers=(cat,)))
        else:                                 # a weight slice: read by its group
            buffers.append(Buffer(-1, (t.name,), t.bytes, t.kind, producer=None, consumers=t.consumers))
    final: list[Buffer] = []
    for new_id, b in enumerate(buffers):
        for name in b.tensors:
            tb[name] = new_id
        final.append(replace(b, id=new_id))
    out = replace(graph, operators=tuple(ops), tensors=tensors, buffers=tuple(final), tensor_buffer=tb,
                  derived_weights=derived_w, derived_nodes=derived_n,
                  channel_splits={**graph.channel_splits, op.name: k})
    fused = fuse_concat(out, out.operators[cat])
    return out if fused is None else fused


def split_channels(graph: Graph, splits: Mapping[str, int]) -> Graph:
    """``graph`` with each named operator split into its number of output-channel groups (in
    file order); an unknown name or an operator that cannot split is a ``ValueError`` (the
    plan's ``channel_split`` must rebuild exactly the graph it was made for)."""
    todo = {n: k for n, k in splits.items() if graph.channel_splits.get(n) != k}
    if not todo:
        return graph
    inner = graph.without_concats
    for name in [op.name for op in graph.operators if op.name in todo]:
        op = next(o for o in graph.operators if o.name == name and o.computing)
        new = _split_one(graph, op, todo.pop(name))
        if new is None:
            raise ValueError(f"operator '{name}' ({op.op_type}) cannot be split along its output channels")
        graph = new
    if todo:
        raise ValueError(f"no operator named {sorted(todo)[0]!r} to split along its output channels")
    if inner is not None:
        graph = replace(graph, without_concats=split_channels(inner, splits))
    log.info("channel split: %s", ", ".join(f"{n} into {k}" for n, k in splits.items()))
    return graph


def _aligned(nbytes: int, alignment: int) -> int:
    return -(-nbytes // alignment) * alignment


def aligned_footprint(graph: Graph, op: Operator, alignment: int) -> int:
    """Bytes a step needs with weights resident, each buffer rounded up to ``alignment``."""
    return sum(_aligned(graph.buffers[b].bytes, alignment) for b in op_buffers(graph, op, True)) + op.extra_bytes


def choose_splits(graph: Graph, capacity: int, alignment: int = 1) -> dict[str, int]:
    """Per operator whose step does not fit ``capacity`` with its weights resident, the
    smallest number of output-channel groups whose every step fits (module docstring)."""
    found: dict[str, int] = {}
    for op in graph.computing_ops:
        if aligned_footprint(graph, op, alignment) <= capacity:
            continue
        spec = split_spec(graph, op)
        if spec is None:
            continue
        # Lower bound: the weight slices must shrink to what the rest of the step leaves.
        cut_bytes = sum(graph.tensors[op.inputs[p]].bytes for p, _ in spec.cut)
        rest = aligned_footprint(graph, op, alignment) - cut_bytes
        room = capacity - rest
        if room <= 0:
            continue
        k = max(2, -(-cut_bytes // room))
        while k <= spec.channels:
            new = _split_one(graph, op, k)
            if new is None:
                break
            steps = [o for o in new.computing_ops if o.name.startswith(op.name + "[") and o.name in new.derived_nodes]
            if all(aligned_footprint(new, o, alignment) <= capacity for o in steps):
                found[op.name] = k
                break
            k += 1
    return found


__all__ = ["SplitSpec", "aligned_footprint", "choose_splits", "split_channels", "split_spec"]
