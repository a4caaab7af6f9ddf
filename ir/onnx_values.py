"""Fixed input values (``--input-value NAME=V[,V...]``): a model specialised to them.

Some models compute shapes or choose a control-flow branch from the *value* of a graph input
(silero-vad's ``If`` on its sample rate ``sr``; a ``Range`` or ``Reshape`` fed by a length
input).  Static shape inference cannot see through that, and a planner must know which branch
runs.  Fixing such an input's value turns the model into the one the accelerator will run:

1. the input becomes an initializer holding the value (it is no longer fed at run time, so it
   is not a graph input of the planned graph: a constant, stored like a weight);
2. every standard, deterministic operator whose inputs are all constants and at least one of
   them derives from a fixed value is evaluated (``onnx.reference``) and replaced by an
   initializer holding its result; results over ``FOLD_MAX_BYTES`` are not materialised (the
   operator stays, and shape inference sees its now-constant inputs);
3. an ``If`` whose condition became constant is replaced by the nodes of the branch taken
   (local names that clash with the enclosing graph's are renamed; the branch's results reach
   the ``If``'s output names through ``Identity`` views, which cost no memory); folding goes
   on inside the inlined nodes, so nested ``If`` s resolve too.

Nothing else in the model is touched: operators that do not depend on a fixed value (weight
preprocessing, say) keep their usual treatment (``stowage.ir.build`` folds them).  The result
depends only on the model's nodes, its embedded constants and the values, so ``validate`` and
``simulate`` rebuild exactly the graph a plan was made for from ``options.input_values``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, ModelProto, TensorProto, helper, numpy_helper

from stowage.errors import ModelError

log = logging.getLogger(__name__)

#: A folded result larger than this stays an operator (shapes are what folding is for).
FOLD_MAX_BYTES = 64 * 1024

#: One fixed value as the plan records it: the elements, flattened in C order.
Scalar = int | float | bool
#: What callers may pass per input: a CLI string ("1,2,3"), a number, a (nested) sequence or
#: an array.
InputValue = str | int | float | bool | Sequence[Any] | np.ndarray

_NEVER_FOLD = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
     "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "SequenceEmpty", "SequenceInsert",
     "SequenceAt", "SequenceErase", "SplitToSequence", "ConcatFromSequence", "Optional",
     "OptionalGetElement", "OptionalHasElement"}
)
_STANDARD = frozenset({"", "ai.onnx"})


@dataclass(frozen=True)
class Specialized:
    """The specialised model, the values as recorded (flat tuples) and what was done."""

    model: ModelProto
    values: Mapping[str, tuple[Scalar, ...]]
    notes: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Values


def _np_dtype(elem_type: int) -> np.dtype:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        raise ModelError(f"element type {elem_type} has no numpy equivalent") from None


def _declared_shape(vi: onnx.ValueInfoProto, dims: Mapping[str, int]) -> list[int | None] | None:
    """The input's shape with ``--dim`` bindings applied; None entries are unknown, None as
    a whole means unknown rank."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    out: list[int | None] = []
    for axis, d in enumerate(tt.shape.dim):
        key = f"{vi.name}[{axis}]"
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif key in dims:
            out.append(int(dims[key]))
        elif d.dim_param and d.dim_param in dims:
            out.append(int(dims[d.dim_param]))
        else:
            out.append(None)
    return out


def _parse_element(name: str, text: str, dt: np.dtype) -> Scalar:
    t = text.strip()
    what = f"--input-value {name}: '{t}'"
    if dt.kind == "b":
        if t.lower() in ("true", "1"):
            return True
        if t.lower() in ("false", "0"):
            return False
        raise ModelError(f"{what} is not a boolean (input '{name}' is bool: use true/false or 1/0)")
    if dt.kind in "iu":
        try:
            return int(t)
        except ValueError:
            raise ModelError(f"{what} is not an integer (input '{name}' is {dt.name})") from None
    try:
        return float(t)
    except ValueError:
        raise ModelError(f"{what} is not a number (input '{name}' is {dt.name})") from None


def _check_element(name: str, v: Any, dt: np.dtype) -> Scalar:
    """One element, checked for type, finiteness and range against the input's dtype."""
    what = f"--input-value {name}: {v!r}"
    if isinstance(v, np.generic):
        v = v.item()
    if dt.kind == "b":
        if isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)):
            return bool(v)
        raise ModelError(f"{what} is not a boolean (input '{name}' is bool)")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ModelError(f"{what} is not a number (input '{name}' is {dt.name})")
    if dt.kind in "iu":
        if isinstance(v, float):
            if not math.isfinite(v) or v != int(v):
                raise ModelError(f"{what} is not an integer (input '{name}' is {dt.name})")
            v = int(v)
        info = np.iinfo(dt)
        if not info.min <= v <= info.max:
            raise ModelError(f"{what} is out of range for {dt.name} [{info.min}, {info.max}]")
        return int(v)
    if dt.kind != "f":
        raise ModelError(f"--input-value {name}: inputs of type {dt.name} cannot be fixed")
    f = float(v)
    if not math.isfinite(f) or not math.isfinite(float(np.asarray(f, dtype=dt))):
        raise ModelError(f"{what} is not a finite {dt.name} number")
    return f


def _elements(name: str, value: InputValue, dt: np.dtype) -> tuple[list[Scalar], tuple[int, ...] | None]:
    """Flat checked elements and, for an array or nested sequence, its shape."""
    if isinstance(value, str):
        parts = value.split(",")
        if not value.strip() or any(not p.strip() for p in parts):
            raise ModelError(f"--input-value {name}={value}: expected VALUE[,VALUE...]")
        return [_check_element(name, _parse_element(name, p, dt), dt) for p in parts], None
    if isinstance(value, (bool, int, float, np.generic)):
        return [_check_element(name, value, dt)], None
    try:
        arr = np.asarray(value, dtype=object)
    except (ValueError, TypeError):
        raise ModelError(f"--input-value {name}: not a number, a list of numbers or an array") from None
    if arr.size == 0:
        raise ModelError(f"--input-value {name}: no values given")
    shape = tuple(int(s) for s in arr.shape)
    flat = [_check_element(name, v, dt) for v in arr.reshape(-1).tolist()]
    nested = isinstance(value, np.ndarray) or arr.ndim > 1
    return flat, shape if nested else None


def resolve_values(
    model: ModelProto, values: Mapping[str, InputValue], dims: Mapping[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Each fixed input's value as an array of the input's dtype and shape.  Every mistake is
    a one-line ``ModelError``: a name that is not a graph input, a value of the wrong type, a
    count or shape that does not fit the input's declared shape."""
    dims = dict(dims or {})
    g = model.graph
    init = {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
    inputs = {vi.name: vi for vi in g.input if vi.name not in init}
    out: dict[str, np.ndarray] = {}
    for name, value in values.items():
        if name not in inputs:
            if name in init:
                raise ModelError(f"--input-value {name}: '{name}' is an initializer (a weight), not a graph input")
            listed = ", ".join(list(inputs)[:8]) + (", ..." if len(inputs) > 8 else "")
            raise ModelError(
                f"--input-value {name}: the model has no graph input '{name}' (inputs: {listed or 'none'})")
        vi = inputs[name]
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"--input-value {name}: input '{name}' is not a tensor")
        dt = _np_dtype(vi.type.tensor_type.elem_type)
        if dt.kind not in "biuf":
            raise ModelError(f"--input-value {name}: inputs of type {dt.name} cannot be fixed")
        flat, given_shape = _elements(name, value, dt)
        declared = _declared_shape(vi, dims)
        shape = _fit_shape(name, declared, len(flat), given_shape)
        out[name] = np.asarray(flat, dtype=dt).reshape(shape)
    return out


def _fit_shape(name: str, declared: list[int | None] | None, count: int,
               given: tuple[int, ...] | None) -> tuple[int, ...]:
    def show(s: Sequence[int | None]) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in s) + "]"

    if declared is None:  # unknown rank: the value says
        return given if given is not None else (() if count == 1 else (count,))
    if given is not None:
        if len(given) != len(declared) or any(d is not None and d != g for d, g in zip(declared, given)):
            raise ModelError(f"--input-value {name}: a value of shape {list(given)} does not fit input "
                             f"'{name}' of shape {show(declared)}")
        return given
    known = math.prod(d for d in declared if d is not None)
    unknown = [i for i, d in enumerate(declared) if d is None]
    if not unknown:
        if count != known:
            raise ModelError(f"--input-value {name}: {count} value(s) given, but input '{name}' has shape "
                             f"{show(declared)} ({known} value(s))")
        return tuple(d for d in declared if d is not None)
    if len(unknown) > 1 or known == 0 or count % known:
        raise ModelError(f"--input-value {name}: {count} value(s) do not determine input '{name}' of shape "
                         f"{show(declared)}; bind its dimensions with --dim first")
    return tuple(count // known if d is None else d for d in declared)


def recorded(values: Mapping[str, np.ndarray]) -> dict[str, tuple[Scalar, ...]]:
    """The values as the plan records them (``options.input_values``): flat Python numbers,
    which read back into the same arrays."""
    return {k: tuple(v.reshape(-1).tolist()) for k, v in values.items()}


# --------------------------------------------------------------------------------------------
# Folding and inlining


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def _graph_names(g: onnx.GraphProto) -> set[str]:
    """Every value name defined or used in ``g`` and its subgraphs."""
    names = {i.name for i in g.input} | {o.name for o in g.output} | {t.name for t in g.initializer}
    for n in g.node:
        names.update(x for x in (*n.input, *n.output) if x)
        for sub in _subgraphs(n):
            names |= _graph_names(sub)
    return names


def _rename(g: onnx.GraphProto, mapping: Mapping[str, str]) -> None:
    """Rename values throughout ``g`` and its subgraphs (ONNX names do not shadow, so one map
    serves every scope)."""
    for vi in (*g.input, *g.output, *g.value_info):
        vi.name = mapping.get(vi.name, vi.name)
    for t in g.initializer:
        t.name = mapping.get(t.name, t.name)
    for n in g.node:
        for i, x in enumerate(n.input):
            n.input[i] = mapping.get(x, x)
        for i, x in enumerate(n.output):
            n.output[i] = mapping.get(x, x)
        for sub in _subgraphs(n):
            _rename(sub, mapping)


def _eval(node: onnx.NodeProto, ins: list[np.ndarray | None],
          opsets: Sequence[onnx.OperatorSetIdProto]) -> list[np.ndarray] | None:
    """``node`` run by onnx's reference evaluator on constant inputs; None if it cannot run."""
    from onnx.reference import ReferenceEvaluator

    n = onnx.NodeProto()
    n.CopyFrom(node)
    del n.input[:]
    n.input.extend(f"i{k}" if a is not None else "" for k, a in enumerate(ins))
    outs = [o for o in node.output if o]
    del n.output[:]
    n.output.extend(f"o{k}" if o else "" for k, o in enumerate(node.output))
    inputs = [helper.make_tensor_value_info(f"i{k}", helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
              for k, a in enumerate(ins) if a is not None]
    outputs = [onnx.ValueInfoProto(name=f"o{k}") for k, o in enumerate(node.output) if o]
    m = helper.make_model(helper.make_graph([n], "fold", inputs, outputs), opset_imports=list(opsets))
    try:
        res = ReferenceEvaluator(m).run(None, {f"i{k}": a for k, a in enumerate(ins) if a is not None})
    except Exception as exc:  # noqa: BLE001 - the evaluator raises anything for unsupported cases
        log.info("cannot fold %s '%s': %s", node.op_type, node.name, " ".join(str(exc).split())[:120])
        return None
    if len(res) != len(outs):
        return None
    return [np.asarray(r) for r in res]


def _constant_of(node: onnx.NodeProto) -> np.ndarray | None:
    if node.op_type != "Constant" or node.domain not in _STANDARD:
        return None
    for a in node.attribute:
        if a.name == "value" and a.type == AttributeProto.TENSOR:
            if a.t.data_location == TensorProto.EXTERNAL:
                return None
            return numpy_helper.to_array(a.t)
    return None


def specialize(model: ModelProto, values: Mapping[str, InputValue],
               dims: Mapping[str, int] | None = None) -> Specialized:
    """``model`` specialised to fixed input ``values`` (module docstring), *in place*: the
    importer passes its own copy, so a large model is not copied twice."""
    arrays = resolve_values(model, values, dims)
    out = model
    if not arrays:
        return Specialized(out, {}, ())
    g = out.graph
    notes = [f"input '{k}' fixed to {_show(v)} ({v.dtype.name} {list(v.shape)}): a constant of the "
             "planned graph, not an input" for k, v in arrays.items()]
    kept = [vi for vi in g.input if vi.name not in arrays]
    del g.input[:]
    g.input.extend(kept)

    # Constants available to folding: embedded initializers and Constant nodes, plus the fixed
    # values and what folds from them ("derived": only those make a node worth folding).
    consts = _Constants({t.name: t for t in g.initializer if t.data_location != TensorProto.EXTERNAL})
    derived: dict[str, np.ndarray] = dict(arrays)
    consts.update(arrays)
    opsets = list(out.opset_import)
    taken: list[tuple[str, str, int]] = []
    folded = 0
    nodes = [_copy_node(n) for n in g.node]
    result: list[onnx.NodeProto] = []
    k = 0
    inline_count = 0
    while k < len(nodes):
        node = nodes[k]
        k += 1
        c = _constant_of(node)
        if c is not None and node.output:
            consts[node.output[0]] = c
            result.append(node)
            continue
        if node.domain not in _STANDARD:
            result.append(node)
            continue
        ins = [x for x in node.input if x]
        touches = any(x in derived for x in ins)
        if node.op_type == "If" and node.input and node.input[0] in derived:
            cond = derived[node.input[0]]
            if cond.size == 1:
                branch_name = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
                branch = next((a.g for a in node.attribute if a.name == branch_name), None)
                if branch is not None:
                    inline_count += 1
                    new_nodes = _inline(g, node, branch, nodes, result, inline_count)
                    taken.append((node.name or f"If_{k - 1}", branch_name, len(new_nodes)))
                    nodes[k:k] = new_nodes
                    continue
        if touches and node.op_type not in _NEVER_FOLD and all(x in consts for x in ins) \
                and not any(True for _ in _subgraphs(node)):
            res = _eval(node, [consts[x] if x else None for x in node.input], opsets)
            outs = [o for o in node.output if o]
            if res is not None and all(r.nbytes <= FOLD_MAX_BYTES and r.dtype.kind in "biuf" for r in res):
                for o, r in zip(outs, res):
                    consts[o] = derived[o] = r
                folded += 1
                continue
        result.append(node)
    del g.node[:]
    g.node.extend(result)

    # Initializers for the folded values something still reads (nodes, subgraphs, outputs).
    from stowage.ir.onnx_import import outer_refs

    needed = {x for n in result for x in n.input if x} | {o.name for o in g.output}
    for n in result:
        for sub in _subgraphs(n):
            needed.update(outer_refs(sub))
    have = {t.name for t in g.initializer}
    for name, arr in derived.items():
        if name in needed and name not in have:
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
    if folded:
        notes.append(f"{folded} operator(s) computed from the fixed values were folded into constants")
    for name, branch_name, count in taken:
        notes.append(f"If '{name}': condition fixed by the input values, planned as its {branch_name} "
                     f"({count} node(s))")
    for msg in notes:
        log.info("%s", msg)
    return Specialized(out, recorded(arrays), tuple(notes))


class _Constants(dict[str, np.ndarray]):
    """Constant values by name; initializers are converted to arrays only when a fold reads
    them (a large model's weights are never all decoded)."""

    def __init__(self, protos: dict[str, TensorProto]) -> None:
        super().__init__()
        self.protos = protos

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or name in self.protos

    def __missing__(self, name: str) -> np.ndarray:
        arr = numpy_helper.to_array(self.protos[name])
        self[name] = arr
        return arr


def _copy_node(n: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c


def _show(v: np.ndarray) -> str:
    flat = v.reshape(-1).tolist()
    text = ",".join(str(x) for x in flat[:8]) + (",..." if len(flat) > 8 else "")
    return text


def _inline(g: onnx.GraphProto, node: onnx.NodeProto, branch: onnx.GraphProto,
            pending: Sequence[onnx.NodeProto], done: Sequence[onnx.NodeProto], serial: int) -> list[onnx.NodeProto]:
    """The nodes that replace ``node`` (an If) by ``branch``: the branch's own values renamed
    where they clash with the enclosing graph, its initializers moved up, and one Identity per
    result (a view: the result's bytes are the branch's)."""
    b = onnx.GraphProto()
    b.CopyFrom(branch)
    outer = {i.name for i in g.input} | {t.name for t in g.initializer} | {o.name for o in g.output}
    outer.update(o for o in node.output if o)
    for n in (*done, *pending):
        if n is node:
            continue
        outer.update(x for x in (*n.input, *n.output) if x)
        for sub in _subgraphs(n):
            outer |= _graph_names(sub)
    local = {t.name for t in b.initializer} | {o for n in b.node for o in n.output if o}
    for n in b.node:
        for sub in _subgraphs(n):
            local |= _graph_names(sub) - outer
    clash = sorted(x for x in local if x in outer)
    if clash:
        _rename(b, {x: f"{x}__if{serial}" for x in clash})
    g.initializer.extend(b.initializer)
    g.value_info.extend(b.value_info)
    new = [_copy_node(n) for n in b.node]
    for bo, o in zip(b.output, node.output):
        if o:
            new.append(helper.make_node("Identity", [bo.name], [o], name=f"{node.name or 'If'}/{o}"))
    return new


__all__ = ["FOLD_MAX_BYTES", "InputValue", "Scalar", "Specialized", "recorded", "resolve_values", "specialize"]
