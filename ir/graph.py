"""The tensor-lifetime graph IR.

A ``Graph`` is an immutable value built once by an importer (``ir.onnx_import``) or by hand
(tests).  It holds tensors, operators in file order and *buffers*: the unit of memory
planning.  View operators (Reshape, Flatten, ...) produce a tensor that is the same bytes as
their input, so both tensors map to one buffer and the view operator is not a step of the
schedule.  Operators that only compute weights from constants (``ConstantOfShape`` fed by an
initializer, ``Constant`` nodes) are folded away too: their outputs are weights.

Analyses (lifetimes, M_R, ...) are pure functions of a ``Graph`` (see ``ir.lifetimes``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

BufferId = int
OpIndex = int

#: The instance attribute holding a graph's memoised views (``Graph._memo``).
_MEMO = "_stowage_memo"


class TensorKind(str, enum.Enum):
    """Role of a tensor (and of the buffer holding it) in the graph."""

    INPUT = "input"
    OUTPUT = "output"
    WEIGHT = "weight"
    ACTIVATION = "activation"


#: Operators whose output is the same bytes as their (first) input.
VIEW_OP_TYPES: frozenset[str] = frozenset(
    {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int
    kind: TensorKind
    producer: OpIndex | None = None
    consumers: tuple[OpIndex, ...] = ()


@dataclass(frozen=True)
class Operator:
    """One ONNX node.  ``computing`` is False for view ops, constant-folded weight ops and
    in-place operators fused into another operator's step, which are not steps of a schedule.
    ``extra_bytes`` is working memory the operator needs beyond its operands (the subgraph peak
    of an opaque control-flow op).

    ``fused`` lists, in execution order, the in-place operators (``stowage.ir.inplace``) that
    run in this operator's step right after it, each writing its result over the operand this
    step produced; ``fused_into`` is the host step of such an operator.  A fused operator
    keeps its own node (the simulator and the C tables execute it), it is just not a step."""

    index: OpIndex
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    cost: int = 0
    cost_unit: str = "bytes"
    computing: bool = True
    opaque: bool = False
    opaque_reason: str | None = None
    extra_bytes: int = 0
    fused: tuple[OpIndex, ...] = ()
    fused_into: OpIndex | None = None
    #: Steps that must run before this one besides the producers of what it reads: a cascade
    #: of a macro graph that loads rows another cascade stored off-chip (``stowage.ir.tiling``).
    after: tuple[OpIndex, ...] = ()


@dataclass(frozen=True)
class Buffer:
    """A region of memory holding one or more aliased tensors.

    ``producer`` is the computing operator that writes it (None for inputs and weights);
    ``consumers`` the computing operators that read it, in file order without repeats.
    ``is_output`` marks buffers that hold a graph output (an input buffer may also be one).

    ``writers`` is empty for a buffer written by one step (its ``producer``).  A Concat run in
    place (``stowage.ir.concat_inplace``) makes its output buffer the union of its operands: each
    operand's producer writes its own byte range (``Graph.tensor_offsets``), so the buffer has
    several writer steps, listed here in file order with ``producer`` (the first) at the head.
    A step reading the buffer runs after all of them; a later writer runs after the first and
    must find the slices written before it still there.
    """

    id: BufferId
    tensors: tuple[str, ...]
    bytes: int
    kind: TensorKind
    producer: OpIndex | None
    consumers: tuple[OpIndex, ...]
    is_output: bool = False
    writers: tuple[OpIndex, ...] = ()

    @property
    def all_writers(self) -> tuple[OpIndex, ...]:
        """Every step writing the buffer (``writers``, else the producer alone)."""
        if self.writers:
            return self.writers
        return () if self.producer is None else (self.producer,)


@dataclass(frozen=True)
class Graph:
    name: str
    tensors: Mapping[str, Tensor]
    operators: tuple[Operator, ...]
    buffers: tuple[Buffer, ...]
    tensor_buffer: Mapping[str, BufferId]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    element_bytes: int | None = None
    dims: Mapping[str, int] = field(default_factory=dict)
    source_path: str | None = None
    source_sha256: str | None = None
    #: True once ``stowage.ir.inplace.fuse_in_place`` has run (``--in-place on``).
    in_place: bool = False
    #: Activation layout: ``NCHW`` (ONNX) or ``NHWC`` (TFLite, as stored); tiling's rows are
    #: axis 2 or axis 1 of a 4-D tensor accordingly.
    layout: str = "NCHW"
    #: True once ``stowage.ir.qdq.fold_qdq`` has run (``--qdq fold``).
    qdq: bool = False
    #: Graph inputs whose values were fixed at import (``--input-value``; flat, C order):
    #: the graph is the model specialised to them, and plans record them.
    input_values: Mapping[str, tuple[int | float | bool, ...]] = field(default_factory=dict)
    #: What the importer decided beyond the file's own shapes, one line each (``inspect``).
    import_notes: tuple[str, ...] = ()
    #: Tensors that are a byte range of their buffer instead of all of it: name -> byte offset.
    #: The operands of a Concat run in place (``stowage.ir.concat_inplace``) are slices of its
    #: output's buffer; every other tensor (views included) starts at byte 0 and is not listed.
    tensor_offsets: Mapping[str, int] = field(default_factory=dict)
    #: With Concats in place: the same graph without them (``fuse_in_place(..., concat=False)``),
    #: which ``--tiling auto`` plans below M_R (a slice's producer cannot run in stripes).
    without_concats: Graph | None = field(default=None, compare=False, repr=False)
    #: Operators split along their output channels (``stowage.ir.channel_split``): original
    #: operator name -> number of channel groups.  The plan records it.
    channel_splits: Mapping[str, int] = field(default_factory=dict)
    #: Weights made by that split: name -> (model weight, axis, lo, hi), the slice
    #: ``[lo, hi)`` of the model's initializer along ``axis`` (the simulator and the weight
    #: blob cut them from the model's data).
    derived_weights: Mapping[str, tuple[str, int, int, int]] = field(default_factory=dict)
    #: Operators that are not nodes of the model file: name -> the first output of the node
    #: whose attributes they take (a channel group), or "" for the Concat joining the groups.
    derived_nodes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze the mappings so that the IR really is read-only once built.
        for name in ("tensors", "tensor_buffer", "dims", "input_values", "tensor_offsets", "channel_splits",
                     "derived_weights", "derived_nodes"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    # -- convenience views (derived, memoised per graph object) -------------------------
    # A graph is immutable once built, and solvers ask for the same per-step views tens of
    # thousands of times (every simulation, the schedulers' models, the assembly, the
    # validator): on 10,000 operators recomputing them was about a third of a second of CPU
    # per planning run.  They are computed once per graph object and kept in ``_MEMO`` (an
    # instance attribute, not a field: ``dataclasses.replace`` and equality ignore it).
    def _memo(self) -> dict[str, Any]:
        memo: dict[str, Any] | None = self.__dict__.get(_MEMO)
        if memo is None:
            memo = {}
            object.__setattr__(self, _MEMO, memo)
        return memo

    def _table(self, what: str) -> tuple[tuple[BufferId, ...], ...]:
        """``op_reads`` or ``op_writes`` of every operator, by index, computed once."""
        key = _MEMO + "_" + what
        table: tuple[tuple[BufferId, ...], ...] | None = self.__dict__.get(key)
        if table is None:
            fn = self._op_reads if what == "reads" else self._op_writes
            table = tuple(fn(op) for op in self.operators)
            object.__setattr__(self, key, table)
        return table

    @property
    def computing_ops(self) -> tuple[Operator, ...]:
        memo = self._memo()
        ops: tuple[Operator, ...] | None = memo.get("computing_ops")
        if ops is None:
            ops = memo["computing_ops"] = tuple(op for op in self.operators if op.computing)
        return ops

    def step_members(self, op: Operator) -> tuple[Operator, ...]:
        """The operators one step executes, in file order (topological): ``op``, the in-place ops
        fused into it (after it), and the DequantizeLinear/QuantizeLinear members of a folded QDQ
        group (``stowage.ir.qdq``: before and after it)."""
        if not op.fused:
            return (op,)
        return tuple(sorted((op, *(self.operators[f] for f in op.fused)), key=lambda m: m.index))

    def op_reads(self, op: Operator) -> tuple[BufferId, ...]:
        """Distinct buffers a step reads, in operand order.  For a step with fused in-place
        operators, their operands count too, except the buffer the step itself produced (the
        fused operator rewrites it in place: it is written by the step, not read from before).
        Answered from a table for the graph's own operators (an operator object of another
        graph with the same index is computed afresh)."""
        table = self.__dict__.get(_MEMO + "_reads") or self._table("reads")
        i = op.index
        if 0 <= i < len(table) and self.operators[i] is op:
            return table[i]
        return self._op_reads(op)

    def _op_reads(self, op: Operator) -> tuple[BufferId, ...]:
        seen: dict[BufferId, None] = {}
        written: set[BufferId] = set()
        for member in self.step_members(op):
            for name in member.inputs:
                if name and name in self.tensor_buffer:
                    b = self.tensor_buffer[name]
                    if b not in written:
                        seen.setdefault(b, None)
            written.update(self.tensor_buffer[n] for n in member.outputs if n and n in self.tensor_buffer)
        return tuple(seen)

    def op_writes(self, op: Operator) -> tuple[BufferId, ...]:
        """Distinct buffers a step writes (its members' results), in output order."""
        table = self.__dict__.get(_MEMO + "_writes") or self._table("writes")
        i = op.index
        if 0 <= i < len(table) and self.operators[i] is op:
            return table[i]
        return self._op_writes(op)

    def _op_writes(self, op: Operator) -> tuple[BufferId, ...]:
        seen: dict[BufferId, None] = {}
        for member in self.step_members(op):
            for name in member.outputs:
                if name and name in self.tensor_buffer:
                    seen.setdefault(self.tensor_buffer[name], None)
        return tuple(seen)

    def tensor_offset(self, name: str) -> int:
        """Byte offset of a tensor inside its buffer (0 unless it is a Concat slice)."""
        return self.tensor_offsets.get(name, 0)

    def buffer_slices(self, bid: BufferId) -> tuple[tuple[str, int, int], ...]:
        """``(tensor, offset, bytes)`` of every slice tensor of a buffer, by offset (empty for a
        buffer without slices).  Tensors of one slice (a producer's result and the in-place
        result written over it) share an offset; the first of them names the slice."""
        seen: dict[int, tuple[str, int, int]] = {}
        for name in self.buffers[bid].tensors:
            if name in self.tensor_offsets:
                off = self.tensor_offsets[name]
                seen.setdefault(off, (name, off, self.tensors[name].bytes))
        return tuple(seen[o] for o in sorted(seen))

    def file_order(self) -> tuple[OpIndex, ...]:
        """Computing operators in file order (a valid topological order after import)."""
        memo = self._memo()
        order: tuple[OpIndex, ...] | None = memo.get("file_order")
        if order is None:
            order = memo["file_order"] = tuple(op.index for op in self.operators if op.computing)
        return order

    def op_dependencies(self) -> dict[OpIndex, frozenset[OpIndex]]:
        """For each computing op, the computing ops that must run before it (a fresh dict of a
        memoised table: callers may change the dict, the frozensets are shared)."""
        memo = self._memo()
        deps: dict[OpIndex, frozenset[OpIndex]] | None = memo.get("op_dependencies")
        if deps is None:
            deps = memo["op_dependencies"] = self._op_dependencies()
        return dict(deps)

    def _op_dependencies(self) -> dict[OpIndex, frozenset[OpIndex]]:
        deps: dict[OpIndex, frozenset[OpIndex]] = {}
        for op in self.computing_ops:
            preds: set[OpIndex] = set()
            for b in self.op_reads(op):
                buf = self.buffers[b]
                # All writers of a Concat-in-place buffer (``writers``), else its producer.
                preds.update(buf.writers or ((buf.producer,) if buf.producer is not None else ()))
            for b in self.op_writes(op):
                buf = self.buffers[b]
                if buf.writers and buf.producer is not None:
                    preds.add(buf.producer)  # the first writer starts the buffer's lifetime
            preds.update(op.after)
            preds.discard(op.index)
            deps[op.index] = frozenset(preds)
        return deps

    def is_topological(self, order: Sequence[OpIndex]) -> bool:
        deps = self.op_dependencies()
        if sorted(order) != sorted(deps):
            return False
        done: set[OpIndex] = set()
        for idx in order:
            if not deps[idx] <= done:
                return False
            done.add(idx)
        return True
