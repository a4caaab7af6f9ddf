"""Assemble a ``Graph`` from raw tensors and nodes.

Shared by the ONNX importer and by tests that build graphs by hand, so that weight folding,
view aliasing, buffer formation and ordering follow one set of rules:

* weights: initializers, ``Constant`` outputs, and outputs of deterministic operators whose
  every input is a weight (a weight-only constant subgraph such as ``ConstantOfShape`` fed by
  an initializer) -- those operators are folded (not schedule steps);
* views: ``VIEW_OP_TYPES`` operators alias their output to their first input (one buffer);
* file order is kept when it is topological, otherwise a stable topological sort is used;
  a cycle or an output that nothing produces is a ``ModelError``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stowage.errors import ModelError
from stowage.ir.dtypes import dtype_name, tensor_bytes
from stowage.ir.graph import VIEW_OP_TYPES, Buffer, Graph, Operator, Tensor, TensorKind

#: Operators never folded into weights even when all inputs are constant: they are random,
#: stateful, or carry subgraphs.
_NEVER_FOLD = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
     "Bernoulli", "If", "Loop", "Scan"}
)

#: Largest tensor we accept: beyond this the model is corrupt or mis-bound.
MAX_TENSOR_BYTES = 1 << 40


@dataclass(frozen=True)
class RawTensor:
    name: str
    shape: tuple[int, ...]
    elem_type: int


@dataclass(frozen=True)
class RawNode:
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    domain: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    opaque: bool = False
    opaque_reason: str | None = None
    extra_bytes: int = 0
    cost: int | None = None
    cost_unit: str | None = None


def _is_view(node: RawNode, used: set[str]) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type not in VIEW_OP_TYPES:
        return False
    if not node.inputs or not node.inputs[0] or not node.outputs or not node.outputs[0]:
        return False
    if node.op_type == "Dropout":
        # Inference-mode Dropout is a view only when its mask is not consumed and training
        # mode is not switched on by an input.
        if len(node.outputs) > 1 and node.outputs[1] and node.outputs[1] in used:
            return False
        if len(node.inputs) > 2 and node.inputs[2]:
            return False
    return True


def _static_shape(node: RawNode, raw: Mapping[str, RawTensor]) -> bool:
    """Whether ``node`` is a ``Shape`` or ``Size`` of a tensor whose shape is known: its result
    is a constant (read from the shape, not the data), so it folds into a weight.  Kept as a
    step it would read its operand whole and keep it resident (YOLOv8's head asks the shape
    of its ``(1, 64, N)`` box logits, which then could not be held in rows)."""
    if node.op_type not in ("Shape", "Size") or not node.inputs or not node.inputs[0]:
        return False
    t = raw.get(node.inputs[0])
    return t is not None and all(isinstance(d, int) and d >= 0 for d in t.shape)


def build_graph(
    name: str,
    tensors: Iterable[RawTensor],
    nodes: Sequence[RawNode],
    inputs: Sequence[str],
    outputs: Sequence[str],
    initializers: Iterable[str] = (),
    element_bytes: int | None = None,
    dims: Mapping[str, int] | None = None,
    source_path: str | None = None,
    source_sha256: str | None = None,
    cost_fn: Any = None,
    input_values: Mapping[str, tuple[int | float | bool, ...]] | None = None,
    import_notes: tuple[str, ...] = (),
) -> Graph:
    """The ``Graph`` of raw tensors and nodes (module docstring).  ``input_values`` and
    ``import_notes`` are recorded as given: what the importer fixed and what it decided
    (``Graph.input_values``, ``Graph.import_notes``)."""
    raw = {t.name: t for t in tensors}
    init = set(initializers)
    # Old-style models list initializers as inputs too: those are weights, not inputs.
    real_inputs = tuple(n for n in inputs if n not in init)
    input_set = set(real_inputs)
    output_set = set(outputs)

    producers, order = check_structure(nodes, real_inputs, outputs, init)

    used: set[str] = set(outputs)
    for node in nodes:
        used.update(i for i in node.inputs if i)

    # Weight folding, in topological order so that chains fold.
    weights: set[str] = set(init)
    folded: set[int] = set()
    for i in order:
        node = nodes[i]
        if node.op_type in _NEVER_FOLD or node.opaque or node.domain not in ("", "ai.onnx"):
            continue
        ins = [x for x in node.inputs if x]
        if node.op_type == "Constant" or (ins and all(x in weights for x in ins)) or _static_shape(node, raw):
            folded.add(i)
            weights.update(o for o in node.outputs if o)

    # View aliasing via union-find over tensor names.
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    views: set[int] = set()
    for i in order:
        if i in folded:
            continue
        node = nodes[i]
        if _is_view(node, used):
            views.add(i)
            parent[find(node.outputs[0])] = find(node.inputs[0])

    # Tensors.
    kind_of: dict[str, TensorKind] = {}
    for tname in raw:
        if tname in input_set:
            kind_of[tname] = TensorKind.INPUT
        elif tname in weights:
            kind_of[tname] = TensorKind.WEIGHT
        elif tname in output_set:
            kind_of[tname] = TensorKind.OUTPUT
        else:
            kind_of[tname] = TensorKind.ACTIVATION
    referenced = set(producers) | init | set(real_inputs)
    missing = sorted(t for t in referenced if t not in raw)
    if missing:
        raise ModelError(
            f"shape of tensor '{missing[0]}' could not be determined"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )

    computing = [i for i in order if i not in folded and i not in views]
    computing_set = set(computing)
    consumers_of: dict[str, list[int]] = {}
    for i in computing:
        for inp in nodes[i].inputs:
            if inp:
                lst = consumers_of.setdefault(inp, [])
                # ``computing`` is visited once per op, so a repeat can only be the last entry.
                if not lst or lst[-1] != i:
                    lst.append(i)

    # Renumber operators in the chosen (topological) order so that index order is file order.
    new_index = {old: new for new, old in enumerate(order)}
    tensor_objs: dict[str, Tensor] = {}
    for tname in sorted(referenced, key=lambda n: (producers.get(n, -1), n)):
        rt = raw[tname]
        for d in rt.shape:
            # An empty weight (a Resize's unused ``roi`` of shape [0]) is legal ONNX and takes
            # no memory; an empty or negative activation/input is a broken or mis-bound model.
            if d < 0 or (d == 0 and kind_of[tname] is not TensorKind.WEIGHT):
                raise ModelError(
                    f"tensor '{tname}' has a {'negative' if d < 0 else 'zero'} dimension in shape "
                    f"{list(rt.shape)}: dimensions must be positive"
                )
        nbytes = tensor_bytes(rt.shape, rt.elem_type, element_bytes)
        if nbytes > MAX_TENSOR_BYTES:
            raise ModelError(
                f"tensor '{tname}' would take {nbytes} bytes (over 2^40): check the bound dims"
            )
        prod = producers.get(tname)
        tensor_objs[tname] = Tensor(
            name=tname,
            shape=tuple(rt.shape),
            dtype=dtype_name(rt.elem_type),
            bytes=nbytes,
            kind=kind_of[tname],
            producer=new_index[prod] if prod is not None and prod in computing_set else None,
            consumers=tuple(new_index[c] for c in consumers_of.get(tname, [])),
        )

    operators: list[Operator] = []
    for i in order:
        node = nodes[i]
        cost, unit = node.cost, node.cost_unit
        if cost is None and cost_fn is not None:
            cost, unit = cost_fn(node, raw, element_bytes)
        if cost is None:
            touched = [raw[x] for x in (*node.inputs, *node.outputs) if x and x in raw]
            cost = sum(tensor_bytes(t.shape, t.elem_type, element_bytes) for t in touched)
            unit = "bytes"
        operators.append(
            Operator(
                index=new_index[i],
                name=node.name or f"{node.op_type}_{new_index[i]}",
                op_type=node.op_type,
                domain=node.domain,
                inputs=node.inputs,
                outputs=node.outputs,
                attributes=dict(node.attributes),
                cost=int(cost),
                cost_unit=unit or "bytes",
                computing=i not in folded and i not in views,
                opaque=node.opaque,
                opaque_reason=node.opaque_reason,
                extra_bytes=node.extra_bytes,
            )
        )

    # Buffers: one per alias class of referenced tensors, in order of first appearance.
    members: dict[str, list[str]] = {}
    for tname in tensor_objs:
        members.setdefault(find(tname), []).append(tname)
    buffers: list[Buffer] = []
    tensor_buffer: dict[str, int] = {}
    for root, names in sorted(members.items(), key=lambda kv: _first_seen(kv[1], tensor_objs)):
        kinds = {tensor_objs[n].kind for n in names}
        if TensorKind.INPUT in kinds:
            kind = TensorKind.INPUT
        elif TensorKind.WEIGHT in kinds:
            kind = TensorKind.WEIGHT
        elif TensorKind.OUTPUT in kinds:
            kind = TensorKind.OUTPUT
        else:
            kind = TensorKind.ACTIVATION
        producer = next(
            (tensor_objs[n].producer for n in names if tensor_objs[n].producer is not None), None
        )
        consumer_set = sorted({c for n in names for c in tensor_objs[n].consumers})
        bid = len(buffers)
        names_sorted = tuple(sorted(names, key=lambda n: (n != root, n)))
        buffers.append(
            Buffer(
                id=bid,
                tensors=names_sorted,
                bytes=max(tensor_objs[n].bytes for n in names),
                kind=kind,
                producer=producer,
                consumers=tuple(consumer_set),
                is_output=any(n in output_set for n in names),
            )
        )
        for n in names:
            tensor_buffer[n] = bid

    return Graph(
        name=name,
        tensors=tensor_objs,
        operators=tuple(sorted(operators, key=lambda o: o.index)),
        buffers=tuple(buffers),
        tensor_buffer=tensor_buffer,
        inputs=real_inputs,
        outputs=tuple(outputs),
        element_bytes=element_bytes,
        dims=dict(dims or {}),
        source_path=source_path,
        source_sha256=source_sha256,
        input_values=dict(input_values or {}),
        import_notes=tuple(import_notes),
    )


def _first_seen(names: list[str], tensors: Mapping[str, Tensor]) -> tuple[int, str]:
    def key(n: str) -> int:
        t = tensors[n]
        if t.producer is not None:
            return t.producer + 1
        return 0

    return (min(key(n) for n in names), min(names))


def check_structure(
    nodes: Sequence[RawNode],
    inputs: Sequence[str],
    outputs: Sequence[str],
    initializers: Iterable[str] = (),
) -> tuple[dict[str, int], list[int]]:
    """Check that the node list describes a DAG and return ``(producers, order)``.

    ``producers`` maps each node output to its node index; ``order`` is the file order when
    that is topological, else the topological order that stays closest to it (smallest file
    index first).  Every structural defect is a one-line ``ModelError``: a tensor produced
    twice, an output nothing produces, a read of a tensor nothing provides, a cycle.
    ``inputs`` are the real graph inputs (initializers excluded or not: both work).
    """
    init = set(initializers)
    provided = init | set(inputs)
    producers: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.outputs:
            if not out:
                continue
            if out in producers or out in provided:
                raise ModelError(f"tensor '{out}' is produced more than once (node '{node.name}')")
            producers[out] = i
    for out in outputs:
        if out not in producers and out not in provided:
            raise ModelError(f"graph output '{out}' is never produced by any node, initializer or input")
    for node in nodes:
        for inp in node.inputs:
            if inp and inp not in producers and inp not in provided:
                raise ModelError(
                    f"node '{node.name}' ({node.op_type}) reads '{inp}', which no node, "
                    "initializer or graph input provides"
                )
    return producers, _topological_order(nodes, producers)


def _topological_order(nodes: Sequence[RawNode], producers: Mapping[str, int]) -> list[int]:
    """File order if it is topological (the common case, O(edges)); otherwise Kahn's algorithm
    taking the smallest ready file index first (O(edges log nodes)); a cycle is a ModelError."""
    preds: list[set[int]] = []
    in_order = True
    for i, node in enumerate(nodes):
        ps: set[int] = set()
        for inp in node.inputs:
            p = producers.get(inp) if inp else None
            if p is not None:
                if p == i:
                    raise ModelError(
                        f"graph has a cycle: node '{node.name}' reads its own output '{inp}'"
                    )
                ps.add(p)
                if p > i:
                    in_order = False
        preds.append(ps)
    if in_order:
        return list(range(len(nodes)))
    succs: list[list[int]] = [[] for _ in nodes]
    indegree = [len(ps) for ps in preds]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].append(i)
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for s in succs[i]:
            indegree[s] -= 1
            if indegree[s] == 0:
                heapq.heappush(ready, s)
    if len(order) != len(nodes):
        stuck = {i for i, d in enumerate(indegree) if d > 0}
        cycle = _find_cycle(stuck, preds)
        names = " -> ".join(nodes[a].name or nodes[a].op_type for a in cycle)
        raise ModelError(f"graph has a cycle: {names}")
    return order


def _find_cycle(stuck: set[int], preds: Sequence[set[int]]) -> list[int]:
    """One cycle among nodes left over by Kahn's algorithm (each has a stuck predecessor)."""
    start = min(stuck)
    path: list[int] = []
    pos: dict[int, int] = {}
    node = start
    while node not in pos:
        pos[node] = len(path)
        path.append(node)
        node = min(p for p in preds[node] if p in stuck)
    cycle = path[pos[node]:]
    cycle.reverse()  # walked predecessors: reverse to read in data-flow direction
    k = cycle.index(min(cycle))  # start at the earliest node in the file
    cycle = cycle[k:] + cycle[:k]
    return [*cycle, cycle[0]]
