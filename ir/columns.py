"""Which tensors tile along their *last* axis ("columns") instead of H.

A detection head (YOLOv8's) flattens each feature map ``(1, C, H, W)`` into ``(1, C, H*W)``
and concatenates the maps along that last axis ``N``; everything after it (Split and Slice
along C, Sigmoid, the DFL's Reshape -> Transpose -> Softmax over its 16 bins -> 1x1 Conv, the
box arithmetic, the final Concat along C) treats every position ``n`` on its own.  Those
tensors have no H rows (or, for the DFL's ``(1, 16, 4, N)``, an H of 4 that the Transpose
mixes with C), but they do have rows along ``N``: row ``n`` is ``t[..., n]``, its leading
axes in C order (``rows * row_bytes`` is the tensor, as for an NCHW row ``t[:, :, h, :]``).

The set is grown from its seeds, the rank-3 Concats along the last axis (so transformers'
``(1, seq, hidden)`` activations, which meet no such Concat, keep their whole-tensor plans),
through the operators that treat every last-axis position on its own (``_PER_COLUMN``):
a tensor joins when an operator it shares with a column tensor is one of those and it has
the same last dimension (batch 1, rank 2 to 4).  A view (Reshape, Squeeze, Unsqueeze,
Flatten) joins its operand only when it keeps the last axis: the Reshape that flattens
``(1, C, H, W)`` changes the row structure (one H row is ``W`` columns, laid out
channel-major rather than column-major), so a buffer holding both is *mixed*
(``mixed_buffer``) and can only be whole.

The one exception is a *flattened piece* (``flattened_pieces``): a flattening view
``(1, C, H, W) -> (1, C, H*W)`` read only by Concats along the last axis (YOLOv8's three
head maps).  It is not a column tensor: its buffer keeps the NCHW map's H rows, and the
Concat reads its positions ``[h*W, (h+1)*W)`` as row ``h`` of that map
(``ir.tiling.FLATTEN``), so the map can be a ring, or cross off-chip in rows, instead of
being whole.  A Transpose ``(0, 2, 1)`` of a column tensor or of a flattened piece (a head's
``(1, C, N)`` -> ``(1, N, C)`` output) makes a *position-major* tensor
(``transposed_columns``): its rows run along axis 1, one position's C values each.

This is a layout fact of the graph, like ``Graph.layout``: the planner, the validator, the
simulator and the C header all read a tensor's row axis from ``row_axis_of``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

from stowage.ir.graph import BufferId, Graph, Operator, Tensor, TensorKind

#: Elementwise operators (same positions of every operand, broadcasts over leading axes).
_ELEMENTWISE = frozenset({
    "Relu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu", "Celu",
    "Softplus", "Gelu", "Mish", "Neg", "Abs", "Exp", "Sqrt", "Reciprocal", "Erf", "QuantizeLinear",
    "DequantizeLinear", "Cast", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "PRelu", "Identity",
})
_VIEWS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten"})

_Facts = tuple[frozenset[str], dict[str, tuple[str, int]], frozenset[str]]
_CACHE: dict[int, tuple[weakref.ref[Graph], _Facts]] = {}


def _batch1(t: Tensor) -> bool:
    return 2 <= len(t.shape) <= 4 and t.shape[0] == 1 and t.kind is not TensorKind.WEIGHT and t.shape[-1] > 1


def _axis(op: Operator, rank: int) -> int:
    return int(op.attributes.get("axis", 0)) % rank if rank else 0


def _last_kept(op: Operator, graph: Graph) -> bool:
    """Whether ``op`` treats every position of its (first) operand's last axis on its own and
    keeps that axis last in its results (``_PER_COLUMN``)."""
    t = op.op_type
    if op.domain not in ("", "ai.onnx"):
        return False
    x = graph.tensors.get(op.inputs[0]) if op.inputs and op.inputs[0] else None
    if x is None or not x.shape:
        return False
    rank = len(x.shape)
    if t in _ELEMENTWISE or t in _VIEWS:
        return True
    if t in ("Concat", "Split", "Softmax", "LogSoftmax"):
        # A Concat along the last axis joins its pieces' columns end to end (``row_maps``).
        return t == "Concat" or _axis(op, rank) != rank - 1
    if t == "Transpose":
        perm = op.attributes.get("perm")
        return isinstance(perm, (list, tuple)) and len(perm) == rank and int(perm[-1]) == rank - 1
    if t == "Slice":
        axes = op.attributes.get("axes")
        starts = op.attributes.get("starts")
        if not isinstance(starts, (list, tuple)):
            return False
        axes = tuple(range(len(starts))) if axes is None else axes
        return all(int(a) % rank != rank - 1 for a in axes)
    if t == "Conv" and rank == 4:
        a = op.attributes
        w = graph.tensors.get(op.inputs[1]) if len(op.inputs) > 1 else None
        k = tuple(a.get("kernel_shape", w.shape[2:] if w is not None else ()))
        return (k == (1, 1) and tuple(a.get("strides", (1, 1))) == (1, 1)
                and tuple(a.get("pads", (0, 0, 0, 0))) == (0, 0, 0, 0) and tuple(a.get("dilations", (1, 1))) == (1, 1))
    return False


def _concat_n(graph: Graph, op: Operator) -> bool:
    """Whether ``op`` is a seed: a rank-3 Concat along its last axis, batch 1."""
    if op.op_type != "Concat" or op.domain not in ("", "ai.onnx") or len(op.outputs) != 1:
        return False
    y = graph.tensors.get(op.outputs[0])
    return y is not None and len(y.shape) == 3 and _batch1(y) and _axis(op, 3) == 2


def _swap_last(graph: Graph, op: Operator) -> bool:
    """Whether ``op`` is a Transpose ``(0, 2, 1)`` of a ``(1, C, N)`` tensor (a detection head's
    last step, ``(1, C, N)`` -> ``(1, N, C)``: position-major, one position's C values a row)."""
    if op.op_type != "Transpose" or op.domain not in ("", "ai.onnx") or len(op.outputs) != 1 or not op.inputs:
        return False
    perm = op.attributes.get("perm")
    x, y = graph.tensors.get(op.inputs[0]), graph.tensors.get(op.outputs[0])
    return (isinstance(perm, (list, tuple)) and tuple(int(v) for v in perm) == (0, 2, 1) and x is not None
            and y is not None and len(x.shape) == 3 and x.shape[0] == 1 and y.shape == (1, x.shape[2], x.shape[1])
            and x.shape[2] > 1 and y.kind is not TensorKind.WEIGHT)


def _flattened(graph: Graph) -> dict[str, tuple[str, int]]:
    """The flattened pieces (module docstring): view ``x`` -> ``(its NCHW source, W)``.  ``x``
    is the result of a Reshape or Flatten that runs no kernel (``Operator.computing`` false),
    shares its operand's buffer, has the shape ``(1, C, H*W)`` of its operand ``(1, C, H, W)``,
    and is read by Concats along its last axis or Transposes ``(0, 2, 1)`` and nothing else."""
    out: dict[str, tuple[str, int]] = {}
    # A tensor another view reads (no step, so not among its consumers) has readers unknown here.
    viewed = {n for op in graph.operators if not op.computing for n in op.inputs if n}
    for op in graph.operators:
        if op.computing or op.op_type not in ("Reshape", "Flatten") or op.domain not in ("", "ai.onnx"):
            continue
        if not op.inputs or not op.outputs or op.inputs[0] not in graph.tensors or op.outputs[0] not in graph.tensors:
            continue
        f, x = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if (len(f.shape) != 4 or f.shape[0] != 1 or f.kind is TensorKind.WEIGHT or f.shape[2] < 1
                or x.shape != (1, f.shape[1], f.shape[2] * f.shape[3])
                or graph.tensor_buffer.get(f.name) != graph.tensor_buffer.get(x.name)
                or x.kind is not TensorKind.ACTIVATION):
            continue
        readers = [graph.operators[i] for i in x.consumers]
        if (x.name not in viewed and x.name not in graph.outputs and readers
                and all(_concat_n(graph, r) or _swap_last(graph, r) for r in readers)):
            out[x.name] = (f.name, f.shape[3])
    return out


def _seeds(graph: Graph, flat: dict[str, tuple[str, int]]) -> set[str]:
    out: set[str] = set()
    for op in graph.operators:
        if op.op_type != "Concat" or op.domain not in ("", "ai.onnx") or len(op.outputs) != 1:
            continue
        y = graph.tensors.get(op.outputs[0])
        if y is None or len(y.shape) != 3 or not _batch1(y) or _axis(op, 3) != 2:
            continue
        xs = [graph.tensors.get(n) for n in op.inputs if n]
        if all(x is not None and len(x.shape) == 3 and x.shape[:2] == y.shape[:2] for x in xs):
            out.add(y.name)
            out.update(x.name for x in xs if x is not None and x.name not in flat)
    return out


def _compute(graph: Graph) -> _Facts:
    if graph.layout == "NHWC":
        return frozenset(), {}, frozenset()
    flat = _flattened(graph)
    cols = _seeds(graph, flat)
    if not cols and not flat:
        return frozenset(), {}, frozenset()
    ops = [op for op in graph.operators if _last_kept(op, graph)]
    changed = True
    while changed:
        changed = False
        for op in ops:
            names = [n for n in (*op.inputs, *op.outputs) if n and n in graph.tensors]
            hit = [n for n in names if n in cols]
            if not hit:
                continue
            last = graph.tensors[hit[0]].shape[-1]
            for n in names:
                t = graph.tensors[n]
                if n in cols or n in flat or not _batch1(t) or t.shape[-1] != last:
                    continue
                if op.op_type in _VIEWS and math.prod(t.shape) != math.prod(graph.tensors[hit[0]].shape):
                    continue
                if op.op_type == "Concat" and len(t.shape) != len(graph.tensors[hit[0]].shape):
                    continue
                cols.add(n)
                changed = True
    # A flattened piece whose NCHW source became a column tensor would have two row layouts
    # in one buffer: it stays a column tensor (a mixed buffer, whole).
    for x, (f, _w) in list(flat.items()):
        if f in cols:
            del flat[x]
            cols.add(x)
    # Position-major results: a Transpose (0, 2, 1) of a column tensor or a flattened piece.
    swapped = frozenset(op.outputs[0] for op in graph.operators
                        if op.computing and _swap_last(graph, op) and (op.inputs[0] in cols or op.inputs[0] in flat)
                        and op.outputs[0] not in cols)
    return frozenset(cols), flat, swapped


def _cached(graph: Graph) -> _Facts:
    hit = _CACHE.get(id(graph))
    if hit is not None and hit[0]() is graph:
        return hit[1]
    value = _compute(graph)
    key = id(graph)

    def forget(_ref: weakref.ref[Graph], key: int = key) -> None:
        _CACHE.pop(key, None)

    try:
        _CACHE[key] = (weakref.ref(graph, forget), value)
    except TypeError:
        pass
    return value


def column_tensors(graph: Graph) -> frozenset[str]:
    """The tensors of ``graph`` tiled along their last axis (memoised per graph object)."""
    return _cached(graph)[0]


def transposed_columns(graph: Graph) -> frozenset[str]:
    """The position-major tensors of ``graph`` (memoised per graph object): the ``(1, N, C)``
    result of a Transpose ``(0, 2, 1)`` of a column tensor or a flattened piece (a detection
    head's output, PicoDet's and YOLOv5's).  Their rows run along axis 1: row ``n`` is the C
    contiguous values of position ``n``."""
    return _cached(graph)[2]


def flattened_pieces(graph: Graph) -> dict[str, tuple[str, int]]:
    """Per flattened piece (module docstring; memoised per graph object), its NCHW source
    tensor and that tensor's width ``W``: position ``n`` of the piece is row ``n // W`` of the
    source.  Do not modify the result."""
    return _cached(graph)[1]


def row_axis_of(graph: Graph, t: Tensor) -> int:
    """The axis ``t``'s rows run along: its last for a column tensor, 1 for a position-major
    one (``transposed_columns``), else H (2 in NCHW, 1 in NHWC)."""
    if t.name in column_tensors(graph):
        return len(t.shape) - 1
    if t.name in transposed_columns(graph):
        return 1
    return 1 if graph.layout == "NHWC" else 2


def has_rows(graph: Graph, t: Tensor) -> bool:
    """Whether ``t`` can be held in rows: a column tensor, or a 4-D activation of batch 1."""
    return (t.name in column_tensors(graph) or t.name in transposed_columns(graph)
            or (len(t.shape) == 4 and t.shape[0] == 1))


def mixed_buffer(graph: Graph, bid: BufferId, rows_of: Callable[[Tensor], int] | None = None) -> bool:
    """Whether buffer ``bid`` holds a column tensor and a tensor with other rows (a flattening
    Reshape's view of an NCHW map): its rows have no common layout, so it is whole wherever
    it is read or written in rows."""
    cols = column_tensors(graph)
    names = graph.buffers[bid].tensors
    if not cols or not any(n in cols for n in names):
        return False
    kinds = {(n in cols, graph.tensors[n].shape[row_axis_of(graph, graph.tensors[n])])
             for n in names if has_rows(graph, graph.tensors[n])}
    return len(kinds) > 1


__all__ = ["column_tensors", "flattened_pieces", "has_rows", "mixed_buffer", "row_axis_of", "transposed_columns"]
