"""ONNX importer: ``.onnx`` file -> immutable ``Graph``.

Only graph structure and tensor sizes matter for planning, so weight *data* is never loaded:
a graph-only file whose external-data file is absent imports the same as the full model, and
large embedded initializers are stripped (dims and type kept) before shape inference so that
a 500 MB model is not serialised back and forth.

Stages, each shown as progress on a terminal when the caller passes ``progress``:

1. read and parse the file (every failure is a one-line ``ModelError``); refuse external-data
   locations that escape the model's folder;
2. check the structure (outputs produced, inputs provided, no cycle) before any inference, so
   that a broken graph is reported as such and not as "unknown shape";
3. fix input values (``--input-value sr=16000``, ``stowage.ir.onnx_values``: the input
   becomes a constant, what depends on it is folded, an ``If`` it decides is inlined);
4. bind symbolic dims (``--dim batch=1``; a ``-1``/``0``/``?`` input axis is an unnamed one,
   ``--dim 'x[0]=1'``); every unbound input dim is reported in one error;
5. declared shapes (top-level ``value_info``, graph outputs) are set aside to be checked, not
   trusted (``stowage.ir.onnx_shapes``); onnx shape inference with data propagation; where
   shapes stay unknown, onnxruntime's symbolic shape inference (needs no weights either);
   com.microsoft QLinear shape rules; as a last resort one ONNX Runtime run on seeded inputs;
   declared shapes that disagree are overridden with a warning (``Graph.import_notes``);
6. control flow (If, Loop, Scan) and non-standard-domain ops become *opaque* operators; a
   control-flow op's extra working memory is the peak of its subgraph where computable.
   Values a subgraph reads from the enclosing scope become explicit inputs of the node, so
   that lifetimes and dependencies see them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, ModelProto, TensorProto

from stowage.errors import ModelError
from stowage.ir.build import RawNode, RawTensor, build_graph, check_structure
from stowage.ir.cost import estimate_cost
from stowage.ir.files import read_model_bytes
from stowage.ir.graph import Graph
from stowage.ir.onnx_shapes import add_hints, compare_declared, propagate, shapes_by_execution, take_declared
from stowage.ir.onnx_values import InputValue, Specialized, specialize
from stowage.ir.operand_values import constant_ints, operand_attributes

log = logging.getLogger(__name__)

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})

#: Embedded initializers larger than this lose their data before shape inference.  Shape
#: tensors that data propagation needs (a Reshape target, Slice bounds) are far smaller.
STRIP_DATA_BYTES = 4096
_STRIPPED_LOCATION = "<weight data not loaded by stowage>"

#: ``progress(label)`` returns a context manager shown while a stage runs.
Progress = Callable[[str], AbstractContextManager[Any]]


def _no_progress(label: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------
# Reading


def _read_bytes(p: Path) -> bytes:
    return read_model_bytes(p, "an .onnx")


def _parse(data: bytes, p: Path) -> ModelProto:
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(
            f"{p} is not a valid ONNX file (truncated or not ONNX protobuf): {exc}"
        ) from None
    # Protobuf happily parses many non-protobuf byte strings into unknown fields: demand a
    # graph with at least one node or output, and an opset.
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(f"{p} is not an ONNX model (no graph found; truncated or another format)")
    check_external_data_paths(model, p.parent)
    return model


def read_model(path: str | os.PathLike[str]) -> ModelProto:
    """Parse a model file without its external data; every failure is a one-line ModelError."""
    p = Path(path)
    return _parse(_read_bytes(p), p)


def check_external_data_paths(model: ModelProto, base_dir: Path) -> None:
    """Refuse external-data locations that escape the model's folder (``../``, absolute)."""
    base = base_dir.resolve()
    for tensor in _all_initializers(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location is None:
            raise ModelError(f"initializer '{tensor.name}' has external data but no location")
        if (
            os.path.isabs(location)
            or Path(location).is_absolute()
            or location.startswith(("/", "\\"))
            or (len(location) > 1 and location[1] == ":")  # a Windows drive letter
        ):
            raise ModelError(
                f"initializer '{tensor.name}': external data location '{location}' is absolute; "
                "only paths inside the model's folder are allowed"
            )
        resolved = (base / location).resolve()
        if resolved != base and base not in resolved.parents:
            raise ModelError(
                f"initializer '{tensor.name}': external data location '{location}' escapes the "
                "model's folder; only paths inside it are allowed"
            )


def _subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == AttributeProto.GRAPHS:
            for g in attr.graphs:
                yield attr.name, g


def _all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for _, g in _subgraphs(node):
            yield from _all_graphs(g)


def _all_initializers(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    for g in _all_graphs(graph):
        yield from g.initializer


def _without_weight_data(model: ModelProto) -> ModelProto:
    """A copy whose large embedded initializers keep dims and type but not data."""
    out = ModelProto()
    out.CopyFrom(model)
    _strip_weight_data(out)
    return out


def _strip_weight_data(out: ModelProto) -> None:
    """Drop the data (not dims and type) of large embedded initializers, in place."""
    for t in _all_initializers(out.graph):
        if t.data_location == TensorProto.EXTERNAL or t.ByteSize() <= STRIP_DATA_BYTES:
            continue
        for f in ("raw_data", "float_data", "int32_data", "string_data", "int64_data",
                  "double_data", "uint64_data"):
            t.ClearField(f)
        t.data_location = TensorProto.EXTERNAL
        entry = t.external_data.add()
        entry.key, entry.value = "location", _STRIPPED_LOCATION


# --------------------------------------------------------------------------------------------
# Structure: outer-scope references of subgraphs


def outer_refs(graph: onnx.GraphProto) -> tuple[str, ...]:
    """Names a (sub)graph reads but does not define, nested subgraphs included, in order of
    first use.  In ONNX these are implicit inputs of the node that owns the subgraph."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    refs: dict[str, None] = {}
    for node in graph.node:
        reads = list(node.input)
        for _, g in _subgraphs(node):
            reads.extend(outer_refs(g))
        for name in reads:
            if name and name not in defined:
                refs.setdefault(name, None)
        defined.update(o for o in node.output if o)
    for o in graph.output:
        if o.name not in defined:
            refs.setdefault(o.name, None)
    return tuple(refs)


def _node_inputs(node: onnx.NodeProto) -> tuple[str, ...]:
    """Explicit inputs followed by the subgraphs' outer-scope references (implicit inputs)."""
    explicit = tuple(node.input)
    implicit: dict[str, None] = {}
    seen = set(explicit)
    for _, g in _subgraphs(node):
        for r in outer_refs(g):
            if r not in seen:
                implicit.setdefault(r, None)
    return explicit + tuple(implicit)


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


# --------------------------------------------------------------------------------------------
# Symbolic dims


#: A dim_param that means "unknown" rather than naming a dimension.
_PLACEHOLDER_DIM = "?"


def _bind_dims(model: ModelProto, dims: Mapping[str, int]) -> None:
    """Replace symbolic dims everywhere (inputs, outputs, value_info, subgraphs) by the user's
    values.  ``--dim NAME=V`` binds a named dim; ``--dim 'INPUT[AXIS]=V'`` binds one axis of a
    graph input (the only way to bind an unnamed dim).  Every input dim left unbound is
    reported in one error that says how to bind it."""
    init_names = {t.name for t in model.graph.initializer}
    # Dynamic axes: exporters mark them with -1 (PaddlePaddle), 0 or nothing; each is an
    # unnamed symbolic dimension, bound with --dim 'INPUT[AXIS]=V' like any other.
    dynamic: set[str] = set()
    for vi in model.graph.input:
        if vi.name in init_names or not vi.type.tensor_type.HasField("shape"):
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            # "?" is a placeholder (PaddlePaddle writes it on every unknown axis), not one
            # dimension shared by the axes that carry it.
            if (d.HasField("dim_value") and d.dim_value <= 0) or d.dim_param == _PLACEHOLDER_DIM:
                dynamic.add(f"{vi.name}[{axis}]")
                d.Clear()
    for gi, g in enumerate(_all_graphs(model.graph)):
        for vi in (*g.output, *g.value_info, *(g.input if gi else ())):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                for d in vi.type.tensor_type.shape.dim:
                    if (d.HasField("dim_value") and d.dim_value < 0) or d.dim_param == _PLACEHOLDER_DIM:
                        d.Clear()
    used_keys: set[str] = set()
    for axis_vi in model.graph.input:
        if axis_vi.name in init_names or not axis_vi.type.tensor_type.HasField("shape"):
            continue
        for axis, d in enumerate(axis_vi.type.tensor_type.shape.dim):
            key = f"{axis_vi.name}[{axis}]"
            if key in dims and not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = dims[key]
                used_keys.add(key)
    for g in _all_graphs(model.graph):
        for vi in (*g.input, *g.output, *g.value_info):
            if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
                continue
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in dims:
                    used_keys.add(d.dim_param)
                    value = dims[d.dim_param]
                    d.Clear()
                    d.dim_value = value
    for key in dims:
        if key not in used_keys:
            log.warning("--dim %s: the model has no unbound symbolic dimension of that name", key)

    unbound: dict[str, list[str]] = {}
    for vi in model.graph.input:
        if vi.name in init_names or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            unbound.setdefault(f"the whole shape of input '{vi.name}'", [])
            continue
        for axis, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                continue
            if d.dim_param:
                unbound.setdefault(d.dim_param, []).append(f"'{vi.name}' axis {axis}")
            else:
                key = f"{vi.name}[{axis}]"
                what = "dynamic" if key in dynamic else "unnamed"
                unbound.setdefault(key, []).append(f"{what} axis {axis} of '{vi.name}'")
    if unbound:
        parts = [f"'{n}' ({', '.join(w)})" if w else n for n, w in unbound.items()]
        examples = " ".join(
            f"--dim {n}=1" if re.fullmatch(r"[A-Za-z0-9_.:-]+", n) else f"--dim '{n}=1'"
            for n, w in unbound.items() if w
        )
        raise ModelError(
            f"unbound symbolic dimension(s) in graph inputs: {'; '.join(parts)}; bind each with "
            f"--dim NAME=VALUE (repeatable){', e.g. ' + examples if examples else ''}"
        )


def _check_static_dims(model: ModelProto) -> None:
    for t in _all_initializers(model.graph):
        if any(d < 0 for d in t.dims):
            raise ModelError(
                f"initializer '{t.name}' has a negative dimension in shape {list(t.dims)}"
            )


# --------------------------------------------------------------------------------------------
# Shape inference


def _infer_shapes(model: ModelProto) -> ModelProto:
    """onnx shape inference with data propagation; retried without it, then given up."""
    for data_prop in (True, False):
        try:
            return onnx.shape_inference.infer_shapes(
                model, check_type=False, strict_mode=False, data_prop=data_prop
            )
        except Exception as exc:  # noqa: BLE001 - onnx raises several unrelated types here
            log.info("onnx shape inference (data_prop=%s) failed: %s", data_prop, exc)
    return model


def _symbolic_infer(model: ModelProto) -> ModelProto | None:
    """onnxruntime's symbolic shape inference, keeping partial results.

    ``SymbolicShapeInference.infer_shapes`` raises when anything stays unknown and, before
    that, writes ``sym_shape_infer_temp.onnx`` into the working directory; we drive its steps
    ourselves to keep what it did infer and to write nothing."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, get_opset
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        log.info("onnxruntime not available: no symbolic shape inference")
        return None
    opset = get_opset(model)
    if not opset or opset < 7:
        return None
    ssi = SymbolicShapeInference(2**31 - 1, True, True, 0)
    try:
        ssi._preprocess(model)
        while ssi.run_:
            ssi._infer_impl()
        ssi._update_output_from_vi()
    except Exception as exc:  # noqa: BLE001 - third-party code raises anything
        log.info("symbolic shape inference stopped early: %s", exc)
    return getattr(ssi, "out_mp_", None)


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[tuple[int, ...], int] | None:
    if not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    if not tt.HasField("shape") or tt.elem_type == 0:
        return None
    dims: list[int] = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims), int(tt.elem_type)


def _describe_shape(vi: onnx.ValueInfoProto | None) -> str:
    if vi is None:
        return "no shape information"
    which = vi.type.WhichOneof("value")
    if which != "tensor_type":
        return f"a {which or 'untyped'} value, not a tensor"
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return "unknown rank"
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    return f"shape [{', '.join(dims)}]"


def _collect_shapes(graph: onnx.GraphProto) -> dict[str, RawTensor]:
    """Known static shapes of one graph's own tensors (not its subgraphs')."""
    out: dict[str, RawTensor] = {}
    for t in graph.initializer:
        out[t.name] = RawTensor(t.name, tuple(int(d) for d in t.dims), int(t.data_type))
    for t in graph.sparse_initializer:
        out[t.values.name] = RawTensor(
            t.values.name, tuple(int(d) for d in t.dims), int(t.values.data_type)
        )
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.name in out:
            continue
        s = _shape_of(vi)
        if s is not None:
            out[vi.name] = RawTensor(vi.name, s[0], s[1])
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == AttributeProto.TENSOR:
                    out.setdefault(
                        node.output[0],
                        RawTensor(node.output[0], tuple(attr.t.dims), attr.t.data_type),
                    )
    return out


def _value_infos(graph: onnx.GraphProto) -> dict[str, onnx.ValueInfoProto]:
    return {vi.name: vi for vi in (*graph.value_info, *graph.output, *graph.input)}


def _constant_int(graph: onnx.GraphProto, name: str) -> int | None:
    """Value of a scalar integer initializer or Constant, else None."""
    from onnx import numpy_helper

    tensor = next((t for t in graph.initializer if t.name == name), None)
    if tensor is None:
        for node in graph.node:
            if node.op_type == "Constant" and name in node.output:
                tensor = next((a.t for a in node.attribute if a.name == "value"), None)
                break
    if tensor is None or tensor.data_location == TensorProto.EXTERNAL:
        return None
    try:
        arr = numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - malformed constant: treat as unknown
        return None
    if arr.size != 1 or arr.dtype.kind not in "iu":
        return None
    return int(arr.reshape(-1)[0])


def _loop_scan_outputs(graph: onnx.GraphProto, shapes: dict[str, RawTensor]) -> None:
    """Shape inference leaves a Loop's scan outputs' leading dim unknown even for a constant
    trip count M.  Fill it with M, an upper bound (the loop may stop early), which is what a
    planner must reserve."""
    for node in graph.node:
        if node.op_type != "Loop" or node.domain not in STANDARD_DOMAINS or not node.input:
            continue
        trip = _constant_int(graph, node.input[0]) if node.input[0] else None
        if trip is None or trip <= 0:
            continue
        body = next((g for name, g in _subgraphs(node) if name == "body"), None)
        if body is None:
            continue
        body_shapes = _collect_shapes(body)
        n_carried = max(len(node.input) - 2, 0)
        for k, out in enumerate(node.output[n_carried:]):
            if not out or out in shapes or 1 + n_carried + k >= len(body.output):
                continue
            per_iter = body_shapes.get(body.output[1 + n_carried + k].name)
            if per_iter is not None:
                shapes[out] = RawTensor(out, (trip, *per_iter.shape), per_iter.elem_type)


# --------------------------------------------------------------------------------------------
# Operators


def _attr_value(attr: AttributeProto) -> Any:
    if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        return f"<subgraph {attr.name}>"
    if attr.type == AttributeProto.TENSOR:
        return f"<tensor {list(attr.t.dims)}>"
    if attr.type == AttributeProto.SPARSE_TENSOR:
        return f"<sparse tensor {list(attr.sparse_tensor.dims)}>"
    if attr.type in (AttributeProto.TENSORS, AttributeProto.SPARSE_TENSORS,
                     AttributeProto.TYPE_PROTO, AttributeProto.TYPE_PROTOS):
        return f"<{AttributeProto.AttributeType.Name(attr.type).lower()} {attr.name}>"
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value)
    return value


def _body_input_shapes(
    node: onnx.NodeProto, body: onnx.GraphProto, enclosing: Mapping[str, RawTensor]
) -> dict[str, RawTensor]:
    """Shapes of a Loop/Scan body's inputs taken from the node's operands when the body does
    not declare them (shape inference does not always write them back)."""
    out: dict[str, RawTensor] = {}
    names = [i.name for i in body.input]
    if node.op_type == "Loop":
        if len(names) >= 1:
            out[names[0]] = RawTensor(names[0], (), TensorProto.INT64)
        if len(names) >= 2:
            out[names[1]] = RawTensor(names[1], (), TensorProto.BOOL)
        for k, name in enumerate(names[2:]):
            src = enclosing.get(node.input[2 + k]) if 2 + k < len(node.input) else None
            if src is not None:
                out[name] = RawTensor(name, src.shape, src.elem_type)
    elif node.op_type == "Scan":
        attrs = {a.name: a for a in node.attribute}
        m = attrs["num_scan_inputs"].i if "num_scan_inputs" in attrs else 0
        n_state = len(node.input) - m
        axes = list(attrs["scan_input_axes"].ints) if "scan_input_axes" in attrs else [0] * m
        for k, name in enumerate(names):
            if k >= len(node.input):
                break
            src = enclosing.get(node.input[k])
            if src is None:
                continue
            if k < n_state:
                out[name] = RawTensor(name, src.shape, src.elem_type)
            else:
                axis = axes[k - n_state] if k - n_state < len(axes) else 0
                axis = axis + len(src.shape) if axis < 0 else axis
                if 0 <= axis < len(src.shape):
                    shape = src.shape[:axis] + src.shape[axis + 1:]
                    out[name] = RawTensor(name, shape, src.elem_type)
    return out


def _subgraph_peak(
    node: onnx.NodeProto,
    enclosing: Mapping[str, RawTensor],
    alternates: Sequence[onnx.NodeProto] = (),
) -> int | None:
    """Extra working memory of a control-flow node: the peak, over its subgraphs (If's two
    branches, a Loop or Scan body), of the live bytes of the subgraph's *own* buffers in file
    order.  Outer-scope values are excluded (they are operands of the node, counted in its
    footprint); so are an If branch's outputs, which are the If's outputs.  A Loop/Scan body's
    inputs and outputs are per-iteration state distinct from the node's operands, so they
    count.  ``alternates`` are the same node from other shape-inference results, used when a
    body's shapes are unknown in the first.  None when some shape inside stays unknown."""
    best = 0
    for attr_name, g in _subgraphs(node):
        candidates = [g] + [
            ag for alt in alternates for an, ag in _subgraphs(alt) if an == attr_name and ag.name == g.name
        ]
        peak: int | None = None
        for cand in candidates:
            peak = _one_subgraph_peak(node, cand, enclosing, alternates_of=candidates[1:])
            if peak is not None:
                break
        if peak is None:
            return None
        best = max(best, peak)
    return best


def _one_subgraph_peak(
    node: onnx.NodeProto,
    g: onnx.GraphProto,
    enclosing: Mapping[str, RawTensor],
    alternates_of: Sequence[onnx.GraphProto] = (),
) -> int | None:
    from stowage.ir.lifetimes import lifetimes

    own = _collect_shapes(g)
    for name, t in _body_input_shapes(node, g, enclosing).items():
        own.setdefault(name, t)
    shapes: Mapping[str, RawTensor] = ChainMap(own, enclosing)  # type: ignore[arg-type]
    refs = outer_refs(g)
    try:
        nested_alts = {i: [alt.node[i] for alt in alternates_of if i < len(alt.node)]
                       for i in range(len(g.node))}
        raw_nodes = [_raw_node(n, shapes, i, alternates=nested_alts[i]) for i, n in enumerate(g.node)]
        referenced = {*refs, *(i.name for i in g.input), *(t.name for t in g.initializer)}
        referenced |= {o for n in g.node for o in n.output if o}
        if any(r not in shapes for r in referenced):
            return None
        sub = build_graph(
            name=g.name or "subgraph",
            tensors=[shapes[r] for r in referenced],
            nodes=raw_nodes,
            inputs=[i.name for i in g.input] + [r for r in refs if r not in {i.name for i in g.input}],
            outputs=[o.name for o in g.output],
            initializers=[t.name for t in g.initializer],
        )
    except ModelError as exc:
        log.info("subgraph %s of %s: %s", g.name, node.name, exc)
        return None
    excluded = {sub.tensor_buffer[r] for r in refs if r in sub.tensor_buffer}
    if node.op_type == "If":
        excluded |= {sub.tensor_buffer[o.name] for o in g.output if o.name in sub.tensor_buffer}
    lt = lifetimes(sub, weights_in_compute_level=True)
    delta = [0] * (len(lt.order) + 1)
    for b, f in lt.first.items():
        if b not in excluded:
            delta[f] += sub.buffers[b].bytes
            delta[lt.last[b] + 1] -= sub.buffers[b].bytes
    peak = running = 0
    for step, idx in enumerate(lt.order):
        running += delta[step]
        peak = max(peak, running + sub.operators[idx].extra_bytes)
    return peak


def _raw_node(
    node: onnx.NodeProto,
    shapes: Mapping[str, RawTensor],
    index: int = 0,
    dropped: frozenset[str] | set[str] = frozenset(),
    alternates: Sequence[onnx.NodeProto] = (),
    consts: Mapping[str, tuple[int, ...]] | None = None,
) -> RawNode:
    """``consts``: the graph's small integer constants, whose values become the attribute
    form of a Slice's or Pad's operands (``stowage.ir.operand_values``)."""
    opaque = False
    reason = None
    extra = 0
    if node.op_type in CONTROL_FLOW_OPS and node.domain in STANDARD_DOMAINS:
        opaque = True
        peak = _subgraph_peak(node, shapes, alternates)
        what = "branches" if node.op_type == "If" else "body"
        if peak is None:
            reason = (f"control flow ({node.op_type}): a shape inside its {what} is unknown, "
                      "so its working memory is unknown and counted as 0")
        else:
            extra = peak
            reason = (f"control flow ({node.op_type}): runs as one step; working memory = "
                      f"peak of its {what}, {peak:,} bytes")
    elif node.domain not in STANDARD_DOMAINS:
        opaque = True
        reason = (f"non-standard domain '{node.domain}' ({node.op_type}): runs as one step; "
                  "working memory beyond its operands unknown, counted as 0")
    return RawNode(
        name=_node_name(node, index),
        op_type=node.op_type,
        domain=node.domain,
        inputs=_node_inputs(node),
        outputs=tuple("" if o in dropped else o for o in node.output),
        attributes={**{a.name: _attr_value(a) for a in node.attribute},
                    **(operand_attributes(node, consts) if consts else {})},
        opaque=opaque,
        opaque_reason=reason,
        extra_bytes=extra,
    )


# --------------------------------------------------------------------------------------------
# Entry points


def _check_structure(graph: onnx.GraphProto) -> None:
    """Structural defects first, so they are not misreported as unknown shapes.  Nodes are
    put in topological order (in place, on our copy): onnx shape inference is one pass in
    node order and would leave everything after an out-of-order node unknown."""
    nodes = [
        RawNode(name=_node_name(n, i), op_type=n.op_type, inputs=_node_inputs(n),
                outputs=tuple(n.output), domain=n.domain)
        for i, n in enumerate(graph.node)
    ]
    init = [t.name for t in graph.initializer] + [t.values.name for t in graph.sparse_initializer]
    _, order = check_structure(nodes, [i.name for i in graph.input], [o.name for o in graph.output], init)
    if order != list(range(len(order))):
        sorted_nodes = [graph.node[i] for i in order]
        copies = [onnx.NodeProto() for _ in sorted_nodes]
        for c, n in zip(copies, sorted_nodes):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)


def _prepare(
    model: ModelProto,
    dims: Mapping[str, int],
    input_values: Mapping[str, InputValue] | None,
    strip: bool,
) -> tuple[ModelProto, Specialized | None]:
    """Our own copy of ``model``, nodes in topological order, specialised to the fixed input
    values, dims bound; ``strip``: without the data of large weights.  Values are fixed
    before the data goes, since folding may read a small weight; a graph input's value is
    checked before its dims, so a fixed input needs no ``--dim``."""
    m = ModelProto()
    m.CopyFrom(model)
    if strip and not input_values:
        _strip_weight_data(m)
    _check_structure(m.graph)
    spec = None
    if input_values:
        spec = specialize(m, input_values, dims)
        _check_structure(m.graph)
        if strip:
            _strip_weight_data(m)
    _check_static_dims(m)
    _bind_dims(m, dims)
    return m, spec


def specialized_model(model: ModelProto, graph: Graph) -> ModelProto:
    """``model`` as the importer planned it for ``graph``: specialised to the graph's fixed
    input values (``stowage.ir.onnx_values``), nodes in topological order, weight data kept.
    The simulator runs this model, so that its operators are the graph's."""
    if not graph.input_values:
        return model
    m, _ = _prepare(model, graph.dims, graph.input_values, strip=False)
    return m


def _missing(g: onnx.GraphProto, shapes: Mapping[str, RawTensor]) -> tuple[list[str], set[str]]:
    """Produced names without a shape (graph inputs included), and the names something uses."""
    produced = [o for n in g.node for o in n.output if o] + [i.name for i in g.input]
    used = {i for n in g.node for i in _node_inputs(n) if i} | {o.name for o in g.output}
    return [n for n in produced if n not in shapes], used


#: Rounds of inference + com.microsoft rules (each round resolves one more rule op on a path).
MAX_SHAPE_ROUNDS = 8


def _static_shapes(
    work: ModelProto, stage: Progress, hints: Mapping[str, RawTensor]
) -> tuple[dict[str, RawTensor], onnx.GraphProto, list[onnx.GraphProto], dict[str, RawTensor]]:
    """onnx inference, onnxruntime's symbolic inference where needed, and the com.microsoft
    shape rules, repeated while the rules find something (their results are stated as
    ``value_info`` for the next round, so that inference carries them downstream).  Returns
    shapes, the onnx-inferred graph, the symbolic engine's graphs (alternates for subgraph
    peaks) and the shapes the rules found."""
    learned: dict[str, RawTensor] = dict(hints)
    base = add_hints(work, learned) if learned else work
    for _ in range(MAX_SHAPE_ROUNDS):
        with stage(f"shape inference ({len(base.graph.node)} nodes)"):
            inferred = _infer_shapes(base)
        g = inferred.graph
        shapes = _collect_shapes(g)
        _loop_scan_outputs(g, shapes)
        alternates: list[onnx.GraphProto] = []
        unknown, used = _missing(g, shapes)
        if any(n in used for n in unknown) or any(n.op_type in CONTROL_FLOW_OPS for n in g.node):
            # Missing shapes at top level, or control flow whose bodies onnx may have left
            # untyped: ask the symbolic engine too.
            with stage("symbolic shape inference (onnxruntime)"):
                sym = _symbolic_infer(inferred)
            if sym is not None:
                for n, t in _collect_shapes(sym.graph).items():
                    shapes.setdefault(n, t)
                _loop_scan_outputs(sym.graph, shapes)
                if len(sym.graph.node) == len(g.node):
                    alternates.append(sym.graph)
        ruled = propagate(work, g, shapes)
        shapes.update(ruled)
        new = {k: v for k, v in ruled.items() if learned.get(k) != v}
        if not new:
            break
        learned.update(new)
        base = add_hints(work, learned)
    for n, t in learned.items():
        shapes.setdefault(n, t)
    return shapes, g, alternates, {k: v for k, v in learned.items() if k not in hints}


def _preview(names: Sequence[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(f"'{n}'" for n in names[:limit]) + more


def import_model(
    model: ModelProto,
    name: str = "model",
    dims: Mapping[str, int] | None = None,
    element_bytes: int | None = None,
    source_path: str | None = None,
    source_sha256: str | None = None,
    *,
    progress: Progress | None = None,
    input_values: Mapping[str, InputValue] | None = None,
) -> Graph:
    """Import an in-memory ``ModelProto`` (external data need not be loaded).

    ``input_values`` fixes graph inputs' values (``stowage.ir.onnx_values``): the graph is
    the model specialised to them and records them (``Graph.input_values``).  What the
    importer decided beyond the file's own shapes (values fixed, declared shapes overridden,
    shapes taken from an ONNX Runtime run) is in ``Graph.import_notes``."""
    stage = progress or _no_progress
    dims = dict(dims or {})
    for key, value in dims.items():
        if value <= 0:
            raise ModelError(f"--dim {key}={value}: dimension values must be positive integers")
    if element_bytes is not None and element_bytes <= 0:
        raise ModelError(f"element bytes must be a positive integer, got {element_bytes}")
    values = dict(input_values or {})
    work, spec = _prepare(model, dims, values, strip=True)  # a copy: never mutate the caller's
    notes: list[str] = list(spec.notes) if spec else []

    # Declared shapes are claims to check, not facts (onnx_shapes): inference starts without.
    declared = take_declared(work.graph)
    shapes, g, alternates, ruled = _static_shapes(work, stage, {})
    source: dict[str, str] = {n: "the com.microsoft shape rules" for n in ruled}
    unknown, used = _missing(g, shapes)
    run_failed = ""
    if any(n in used or n in declared for n in unknown):
        # Last resort: run the model once (the inputs are bound by now).
        with stage("shapes by execution (onnxruntime)"):
            full, _ = _prepare(model, dims, values, strip=False)
            ran, run_failed = shapes_by_execution(full, Path(source_path).parent if source_path else None)
            del full
        if ran is not None:
            taken = [n for n in unknown if n in ran]
            for n in taken:
                shapes[n] = ran[n]
                source[n] = "the ONNX Runtime run"
            if taken:
                notes.append(f"shapes of {len(taken)} tensor(s) that static inference left unknown were taken "
                             f"from one ONNX Runtime run on seeded inputs: {_preview(taken)} (they hold for "
                             "those inputs; fix inputs whose values decide shapes with --input-value)")
                log.warning("%s", notes[-1])
        else:
            log.info("shapes by execution: %s", run_failed)
        unknown, used = _missing(g, shapes)
        fallback = {n: declared[n] for n in unknown if n in declared}
        if fallback:
            # Nothing else knows them (ORT cannot run the model): the declared shapes, unchecked,
            # and what inference derives from them.
            shapes2, g2, alternates2, _ = _static_shapes(work, stage, fallback)
            if len(g2.node) == len(g.node):
                shapes, g, alternates = {**shapes2, **shapes}, g2, alternates2
            for n in fallback:
                shapes.setdefault(n, fallback[n])
                source[n] = "the model's value_info"
            notes.append(f"shapes of {len(fallback)} tensor(s) come from the model's value_info, unchecked "
                         f"(neither inference nor ONNX Runtime could find them): {_preview(list(fallback))}")
            log.warning("%s", notes[-1])
    found = {n: t for n, t in shapes.items() if source.get(n) != "the model's value_info"}
    notes.extend(compare_declared(declared, found, source))

    # An unused result whose shape inference gave up (an old Dropout's mask) is never
    # materialised by an inference runtime: drop it instead of failing.
    unknown, used = _missing(g, shapes)
    dropped = {n for n in unknown if n not in used}
    missing = [n for n in unknown if n not in dropped]
    if missing:
        infos = {**_value_infos(g), **(_value_infos(alternates[0]) if alternates else {})}
        producer = {o: n for n in g.node for o in n.output}
        first = missing[0]
        by = f" (output of {producer[first].op_type} '{producer[first].name}')" if first in producer else ""
        raise ModelError(
            f"shape of tensor '{first}'{by} cannot be resolved: {_describe_shape(infos.get(first))}"
            + (f"; {len(missing) - 1} more unresolved ({', '.join(missing[1:4])}"
               f"{', ...' if len(missing) > 4 else ''})" if len(missing) > 1 else "")
            + (f"; running the model to find it failed: {run_failed}" if run_failed else "")
            + "; bind symbolic dims with --dim NAME=VALUE, or input values with --input-value NAME=VALUE"
        )
    with stage("building graph"):
        consts = constant_ints(g)
        nodes = [
            _raw_node(n, shapes, i, dropped, [a.node[i] for a in alternates], consts)
            for i, n in enumerate(g.node)
        ]
        init_names = [t.name for t in g.initializer] + [t.values.name for t in g.sparse_initializer]
        return build_graph(
            name=name,
            tensors=shapes.values(),
            nodes=nodes,
            inputs=[i.name for i in g.input],
            outputs=[o.name for o in g.output],
            initializers=init_names,
            element_bytes=element_bytes,
            dims=dims,
            source_path=source_path,
            source_sha256=source_sha256,
            cost_fn=estimate_cost,
            input_values=spec.values if spec else None,
            import_notes=tuple(notes),
        )


def load_graph(
    path: str | os.PathLike[str],
    dims: Mapping[str, int] | None = None,
    element_bytes: int | None = None,
    *,
    progress: Progress | None = None,
    input_values: Mapping[str, InputValue] | None = None,
) -> Graph:
    """Load and import an ``.onnx`` file.  Raises ``ModelError`` with a one-line message.
    ``progress(label)`` (e.g. ``planner.progress.stage``) is entered around each long stage.
    ``input_values``: fixed graph-input values (``import_model``).
    A ``.tflite`` file (suffix or ``TFL3`` identifier) goes to ``stowage.ir.tflite_import``."""
    from stowage.ir import tflite_import

    if tflite_import.is_tflite(path):
        if input_values:
            raise ModelError("--input-value is supported for ONNX models only")
        return tflite_import.load_graph(path, dims=dims, element_bytes=element_bytes, progress=progress)
    stage = progress or _no_progress
    p = Path(path)
    size = p.stat().st_size if p.is_file() else 0
    with stage(f"reading {p.name} ({size / 1e6:.1f} MB)"):
        data = _read_bytes(p)
        sha = hashlib.sha256(data).hexdigest()
        model = _parse(data, p)
        del data
    log.info("loaded %s: %d nodes, %d initializers", p, len(model.graph.node), len(model.graph.initializer))
    return import_model(
        model,
        name=p.stem,
        dims=dims,
        element_bytes=element_bytes,
        source_path=str(p),
        source_sha256=sha,
        progress=progress,
        input_values=input_values,
    )
