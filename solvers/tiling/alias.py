"""In-place rings: an elementwise result written over its operand's ring rows.

The whole-tensor in-place rule (``stowage.ir.inplace``) fuses a binary elementwise operator
(an Add, QLinearAdd ...) into its operand's step only when that does not make the host step
larger, which a residual Add never passes: the fused step would hold the large skip tensor
beside the convolution's operands.  Inside a cascade that cost does not exist.  A residual
block's projection ``X`` is read by its Add alone, one band after it is made, so the Add can
write its result ``Y`` over the ring slots of ``X`` it reads: row ``r`` of ``Y`` goes into the
slot of row ``r`` of ``X``, which nothing reads again.  The two rings become one (``X``'s), as
a fused Clip shares its Conv's ring, and the cascade saves ``Y``'s ring (MobileNetV2's blocks 3
and 4 as one cascade: 1,344 B, which brings them under 64 KiB).

The rule is the whole-tensor rule's, row by row:

* the operator is elementwise with two data operands (``ir.inplace.data_operands``) and reads
  ``X`` through an identity row map (output rows ``[a, b)`` need rows ``[a, b)``);
* ``X`` has the result's shape and element size (its rows are the result's rows, byte for
  byte), is an activation whose only reader is the operator (its step, and no other member
  of that step: an operator fused into it in place may read ``X`` later), and is made in the
  cascade; the other operand is another buffer;
* both would be rings of the cascade: neither is a graph output, read outside the cascade,
  nor crosses its boundary off-chip.

A plan declares the alias: the result's ``CascadeTensor`` is a ring in ``X``'s buffer, with
``X``'s ``ring_rows`` and ``row_bytes`` (``docs/tiling.md``).  The result's own buffer is then
untouched by any step of the macro graph (``ir.tiling.CascadeSpec.aliases``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from stowage.ir.graph import BufferId, Graph, Operator, OpIndex, TensorKind
from stowage.ir.inplace import BINARY_IN_PLACE, QLINEAR_BINARY
from stowage.ir.tiling import WINDOW, RowUnit


def elementwise_binary(unit: RowUnit) -> bool:
    """Whether the unit's operator (a folded QDQ group's core) computes element ``i`` of its
    result from element ``i`` of each operand (broadcasts aside), so it may write over one."""
    op = unit.op
    if op.domain in ("", "ai.onnx"):
        return op.op_type in BINARY_IN_PLACE
    return op.domain == "com.microsoft" and op.op_type in QLINEAR_BINARY


def alias_operands(graph: Graph, step: OpIndex, unit: RowUnit,
                   tensor_buffer: Mapping[str, BufferId] | None = None) -> list[BufferId]:
    """The operand buffers unit ``unit`` of step ``step`` may write its result over, largest
    first, by the structural part of the rule (the module docstring; the modes aside): an
    elementwise binary operator, an identity row map, the result's shape and element size, an
    activation read by this step alone and distinct from the other operand."""
    tb = graph.tensor_buffer if tensor_buffer is None else tensor_buffer
    yb = tb.get(unit.output)
    if yb is None or not elementwise_binary(unit):
        return []
    yt, ybuf = graph.tensors[unit.output], graph.buffers[yb]
    if ybuf.kind is not TensorKind.ACTIVATION or ybuf.is_output:
        return []
    operands = [tb.get(n) for n in unit.maps]
    found: list[tuple[int, BufferId]] = []
    for name, rm in unit.maps.items():
        xb = tb.get(name)
        if xb is None or xb == yb or operands.count(xb) > 1:
            continue
        if rm.kind != WINDOW or (rm.stride, rm.kernel, rm.pad_top) != (1, 1, 0):
            continue
        xt, xbuf = graph.tensors[name], graph.buffers[xb]
        if (xbuf.kind is not TensorKind.ACTIVATION or xbuf.is_output or xbuf.producer is None
                or tuple(xbuf.consumers) != (step,) or tuple(xt.shape) != tuple(yt.shape)
                or xt.bytes != yt.bytes or xt.dtype != yt.dtype
                or any(graph.tensors[t].bytes > xt.bytes for t in ybuf.tensors)):
            continue
        # Read by this step alone is not enough: the step's other members (operators fused
        # into it in place) may read X after this unit wrote over it (a hard swish
        # x * clip(x + 3) / 6 fused into its Conv's step: the Add must not overwrite x).
        xs = set(xbuf.tensors)
        members = graph.step_members(graph.operators[step])
        if any(m.index != unit.op.index and xs.intersection(m.inputs) and not _feeds_only(m, unit, members)
               for m in members):
            continue
        found.append((xbuf.bytes, xb))
    return [xb for _, xb in sorted(found, key=lambda f: -f[0])]


def ring_aliases(graph: Graph, units: Sequence[tuple[OpIndex, RowUnit]], rings: Collection[BufferId],
                 tensor_buffer: Mapping[str, BufferId] | None = None) -> dict[BufferId, BufferId]:
    """Per result buffer ``Y`` written in place over an operand's ring, that operand's buffer
    (the root of a chain of such writes), for the cascade running ``units`` (each with the
    step it belongs to, in order) whose rings would be ``rings`` (see the module docstring):
    both buffers rings, the operand made earlier in the cascade, the result first made here."""
    tb = graph.tensor_buffer if tensor_buffer is None else tensor_buffer
    alias: dict[BufferId, BufferId] = {}
    made: set[BufferId] = set()
    for step, u in units:
        yb = tb.get(u.output)
        if yb is None or yb in made:
            continue
        made.add(yb)
        if yb not in rings:
            continue
        xb = next((x for x in alias_operands(graph, step, u, tb) if x in rings and x in made), None)
        if xb is not None:
            alias[yb] = alias.get(xb, xb)
    return alias


def _feeds_only(m: Operator, unit: RowUnit, members: Sequence[Operator]) -> bool:
    """Whether member ``m`` is a folded QDQ group's DequantizeLinear whose results only the
    unit's core reads (then it reads ``X`` for the core, row by row, before the core writes)."""
    if m.op_type != "DequantizeLinear":
        return False
    outs = {o for o in m.outputs if o}
    return all(o.index == unit.op.index for o in members if outs.intersection(o.inputs))


__all__ = ["alias_operands", "elementwise_binary", "ring_aliases"]
