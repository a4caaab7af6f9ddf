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
    """

    id: BufferId
    tensors: tuple[str, ...]
    bytes: int
    kind: TensorKind
    producer: OpIndex | None
    consumers: tuple[OpIndex, ...]
    is_output: bool = False


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

    def __post_init__(self) -> None:
        # Freeze the mappings so that the IR really is read-only once built.
        for name in ("tensors", "tensor_buffer", "dims", "input_values"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    # -- convenience views (derived, never stored) -------------------------------------
    @property
    def computing_ops(self) -> tuple[Operator, ...]:
        return tuple(op for op in self.operators if op.computing)

    def step_members(self, op: Operator) -> tuple[Operator, ...]:
        """The operators one step executes, in file order (topological): ``op``, the in-place ops
        fused into it (after it), and the DequantizeLinear/QuantizeLinear members of a folded QDQ
        group (``stowage.ir.qdq``: before and after it)."""
        return tuple(sorted((op, *(self.operators[f] for f in op.fused)), key=lambda m: m.index))

    def op_reads(self, op: Operator) -> tuple[BufferId, ...]:
        """Distinct buffers a step reads, in operand order.  For a step with fused in-place
        operators, their operands count too, except the buffer the step itself produced (the
        fused operator rewrites it in place: it is written by the step, not read from before)."""
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
        seen: dict[BufferId, None] = {}
        for member in self.step_members(op):
            for name in member.outputs:
                if name and name in self.tensor_buffer:
                    seen.setdefault(self.tensor_buffer[name], None)
        return tuple(seen)

    def file_order(self) -> tuple[OpIndex, ...]:
        """Computing operators in file order (a valid topological order after import)."""
        return tuple(op.index for op in self.operators if op.computing)

    def op_dependencies(self) -> dict[OpIndex, frozenset[OpIndex]]:
        """For each computing op, the computing ops that must run before it."""
        deps: dict[OpIndex, frozenset[OpIndex]] = {}
        for op in self.computing_ops:
            preds = {
                self.buffers[b].producer
                for b in self.op_reads(op)
                if self.buffers[b].producer is not None
            }
            preds.update(op.after)
            preds.discard(op.index)
            deps[op.index] = frozenset(p for p in preds if p is not None)
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
