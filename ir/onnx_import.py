"""ONNX importer: ``.onnx`` file -> immutable ``Graph``.

Only graph structure and tensor sizes matter for planning, so weight *data* is never loaded:
a graph-only file whose external-data file is absent imports the same as the full model.
Shapes come from onnx shape inference (with data propagation) and, where that leaves gaps,
from onnxruntime's symbolic shape inference, which needs no weights either.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, ModelProto, TensorProto

from ir.build import RawNode, RawTensor, build_graph
from ir.cost import estimate_cost
from ir.errors import ModelError
from ir.graph import Graph

log = logging.getLogger(__name__)

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_model(path: str | os.PathLike[str]) -> ModelProto:
    """Parse a model file without its external data; every failure is a one-line ModelError."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelError(f"model path is a directory, not an .onnx file: {p}")
    data = p.read_bytes()
    if not data:
        raise ModelError(f"model file is empty: {p}")
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{p} is not a valid ONNX file (truncated or not protobuf): {exc}") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(f"{p} is not an ONNX model (no graph found)")
    check_external_data_paths(model, p.parent)
    return model


def check_external_data_paths(model: ModelProto, base_dir: Path) -> None:
    """Refuse external-data locations that escape the model's folder (``../``, absolute)."""
    base = base_dir.resolve()
    for tensor in _all_initializers(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location is None:
            raise ModelError(f"initializer '{tensor.name}' has external data but no location")
        if os.path.isabs(location) or Path(location).is_absolute():
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


def _all_initializers(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _all_initializers(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_initializers(g)


def _bind_dims(model: ModelProto, dims: Mapping[str, int]) -> None:
    """Replace symbolic dims of graph inputs/outputs by the user's values; every unbound one
    is reported in one error."""
    unbound: list[str] = []
    for vi in (*model.graph.input, *model.graph.output):
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                continue
            if d.HasField("dim_param") and d.dim_param in dims:
                value = dims[d.dim_param]
                d.Clear()
                d.dim_value = value
            elif vi in model.graph.input or d.HasField("dim_param"):
                if vi in model.graph.input:
                    unbound.append(d.dim_param or f"<unnamed dim of '{vi.name}'>")
    init_names = {t.name for t in model.graph.initializer}
    unbound = [u for u in dict.fromkeys(unbound)]
    real_unbound = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                real_unbound.append(d.dim_param or f"<unnamed dim of '{vi.name}'>")
    real_unbound = list(dict.fromkeys(real_unbound))
    if real_unbound:
        names = ", ".join(f"'{u}'" for u in real_unbound)
        example = real_unbound[0] if not real_unbound[0].startswith("<") else "NAME"
        raise ModelError(
            f"unbound symbolic dimension(s) {names} in graph inputs: bind each with "
            f"--dim {example}=VALUE (repeatable)"
        )
    del unbound


def _infer_shapes(model: ModelProto) -> ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several unrelated types here
        log.info("onnx shape inference failed (%s); trying symbolic shape inference", exc)
        return model


def _symbolic_infer(model: ModelProto) -> ModelProto | None:
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return None
    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    except Exception as exc:  # noqa: BLE001 - third-party code raises anything
        log.info("symbolic shape inference failed: %s", exc)
        return None


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


def _collect_shapes(graph: onnx.GraphProto) -> dict[str, RawTensor]:
    out: dict[str, RawTensor] = {}
    for t in graph.initializer:
        out[t.name] = RawTensor(t.name, tuple(int(d) for d in t.dims), int(t.data_type))
    for t in graph.sparse_initializer:
        out[t.values.name] = RawTensor(t.values.name, tuple(int(d) for d in t.dims), int(t.values.data_type))
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
                    out.setdefault(node.output[0], RawTensor(node.output[0], tuple(attr.t.dims), attr.t.data_type))
    return out


def _produced_names(graph: onnx.GraphProto) -> list[str]:
    names = [o for n in graph.node for o in n.output if o]
    return names + [i.name for i in graph.input]


def _attr_value(attr: AttributeProto) -> Any:
    if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        return f"<subgraph {attr.name}>"
    if attr.type == AttributeProto.TENSOR:
        return f"<tensor {list(attr.t.dims)}>"
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value)
    return value


def _subgraph_peak(node: onnx.NodeProto, shapes: Mapping[str, RawTensor]) -> int | None:
    """Peak live bytes of a control-flow node's largest subgraph, or None when unknown."""
    from ir.lifetimes import peak_live

    best: int | None = None
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs) if attr.type == AttributeProto.GRAPHS else []
        for g in graphs:
            local = dict(shapes)
            local.update(_collect_shapes(g))
            inner_outer = {i for n in g.node for i in n.input if i} - {o for n in g.node for o in n.output} - {t.name for t in g.initializer}
            outer_inputs = [i.name for i in g.input] + sorted(x for x in inner_outer if x not in {i.name for i in g.input})
            try:
                sub = build_graph(
                    name=g.name or "subgraph",
                    tensors=[t for n, t in local.items()],
                    nodes=[_raw_node(n, {}) for n in g.node],
                    inputs=outer_inputs,
                    outputs=[o.name for o in g.output],
                    initializers=[t.name for t in g.initializer],
                )
                peak = peak_live(sub)
            except Exception:  # noqa: BLE001 - best effort: unknown shapes inside the body
                return None
            best = peak if best is None else max(best, peak)
    return best


def _raw_node(
    node: onnx.NodeProto, shapes: Mapping[str, RawTensor], index: int = 0, dropped: frozenset[str] | set[str] = frozenset()
) -> RawNode:
    opaque = False
    reason = None
    extra = 0
    if node.op_type in CONTROL_FLOW_OPS and node.domain in STANDARD_DOMAINS:
        opaque = True
        peak = _subgraph_peak(node, shapes) if shapes else None
        if peak is None:
            reason = f"control flow ({node.op_type}); subgraph working memory unknown, counted as 0"
        else:
            extra = peak
            reason = f"control flow ({node.op_type}); working memory = subgraph peak {peak} bytes"
    elif node.domain not in STANDARD_DOMAINS:
        opaque = True
        reason = f"non-standard domain '{node.domain}'; run as one operator"
    return RawNode(
        name=node.name or f"{node.op_type}_{index}",
        op_type=node.op_type,
        domain=node.domain,
        inputs=tuple(node.input),
        outputs=tuple("" if o in dropped else o for o in node.output),
        attributes={a.name: _attr_value(a) for a in node.attribute},
        opaque=opaque,
        opaque_reason=reason,
        extra_bytes=extra,
    )


def import_model(
    model: ModelProto,
    name: str = "model",
    dims: Mapping[str, int] | None = None,
    element_bytes: int | None = None,
    source_path: str | None = None,
    source_sha256: str | None = None,
) -> Graph:
    """Import an in-memory ``ModelProto`` (external data need not be loaded)."""
    dims = dict(dims or {})
    for key, value in dims.items():
        if value <= 0:
            raise ModelError(f"--dim {key}={value}: dimension values must be positive integers")
    if element_bytes is not None and element_bytes <= 0:
        raise ModelError(f"element bytes must be a positive integer, got {element_bytes}")
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's
    _bind_dims(model, dims)
    inferred = _infer_shapes(model)
    shapes = _collect_shapes(inferred.graph)
    needed = set(_produced_names(inferred.graph))
    if any(n not in shapes for n in needed):
        sym = _symbolic_infer(inferred)
        if sym is not None:
            for n, t in _collect_shapes(sym.graph).items():
                shapes.setdefault(n, t)
    g = inferred.graph
    used = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
    # An unused result whose shape inference gave up (an old Dropout's mask) is never
    # materialised by an inference runtime: drop it instead of failing.
    dropped = {n for n in _produced_names(g) if n not in shapes and n not in used}
    missing = [n for n in _produced_names(g) if n not in shapes and n not in dropped]
    if missing:
        raise ModelError(
            f"shape of tensor '{missing[0]}' cannot be resolved"
            + (f" ({len(missing) - 1} more unresolved)" if len(missing) > 1 else "")
            + "; bind symbolic dims with --dim NAME=VALUE"
        )
    nodes = [_raw_node(n, shapes, i, dropped) for i, n in enumerate(g.node)]
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
    )


def load_graph(
    path: str | os.PathLike[str],
    dims: Mapping[str, int] | None = None,
    element_bytes: int | None = None,
) -> Graph:
    """Load and import an ``.onnx`` file.  Raises ``ModelError`` with a one-line message."""
    p = Path(path)
    model = read_model(p)
    log.info("loaded %s: %d nodes, %d initializers", p, len(model.graph.node), len(model.graph.initializer))
    return import_model(
        model,
        name=p.stem,
        dims=dims,
        element_bytes=element_bytes,
        source_path=str(p),
        source_sha256=file_sha256(p),
    )
