"""Shapes the importer does not get from onnx's or onnxruntime's static inference.

* **Declared shapes are checked, not trusted** (issue 17): a model's ``value_info`` and graph
  output shapes are claims of the exporter (or of a tool that edited the model afterwards).
  The importer takes them out before inference (``take_declared``) so that inference computes
  every shape from the inputs and the weights alone, and then compares (``compare_declared``):
  a declared shape that disagrees with the inferred one (or with a reference run's) is
  *overridden*, with a logged warning and an import note (``inspect`` prints it).  A stale
  ``value_info`` can therefore never make a buffer smaller than its tensor.  Only where
  nothing else gives a shape (an operator neither inference engine nor ONNX Runtime knows)
  is a declared shape used, unchecked, and the note says so.
* **Rules for com.microsoft quantized operators** that onnx's inference does not know and
  onnxruntime's symbolic inference skips (``contrib_shapes``): a raw ``quantize_static``
  QOperator file imports without the ``value_info`` that ``models/quantize.py`` adds.
* **Shapes by execution, the last resort** (``shapes_by_execution``): when shapes stay
  unknown and every input is bound, the model runs once in ONNX Runtime on seeded inputs with
  every intermediate value exposed as an output, and the shapes are read off the results.
  Those shapes hold for the values the run used; a shape that depends on input *values*
  wants ``--input-value`` instead, which is why the import note names the tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper, numpy_helper

from stowage.ir.build import RawTensor


def ort_session(m: ModelProto, log_severity: int = 3) -> Any:
    """An ONNX Runtime session of ``m`` as written (no graph optimisation, one thread: the run
    checks the model, it does not tune it).  A model saved by a newer onnx than this ORT reads
    gets the lowest IR version its opsets need (``m`` is updated).  ORT's errors propagate."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = log_severity
    try:
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        if "IR version" not in str(exc):
            raise
        m.ir_version = max(4, helper.find_min_ir_version_for(list(m.opset_import), ignore_unknown=True))
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

log = logging.getLogger(__name__)

_MS = "com.microsoft"


# --------------------------------------------------------------------------------------------
# Declared shapes


def _static(vi: onnx.ValueInfoProto) -> RawTensor | None:
    if not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    if not tt.HasField("shape") or tt.elem_type == 0:
        return None
    dims = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(int(d.dim_value))
    return RawTensor(vi.name, tuple(dims), int(tt.elem_type))


def take_declared(graph: onnx.GraphProto) -> dict[str, RawTensor]:
    """Remove the top-level ``value_info`` and the graph outputs' shapes (element types stay)
    from ``graph``, returning the static ones that were declared."""
    declared: dict[str, RawTensor] = {}
    for vi in (*graph.value_info, *graph.output):
        s = _static(vi)
        if s is not None:
            declared.setdefault(vi.name, s)
    del graph.value_info[:]
    for o in graph.output:
        if o.type.HasField("tensor_type"):
            o.type.tensor_type.ClearField("shape")
    return declared


def add_hints(model: ModelProto, shapes: Mapping[str, RawTensor]) -> ModelProto:
    """A copy of ``model`` whose ``value_info`` states ``shapes`` (facts the next round of
    inference builds on)."""
    out = ModelProto()
    out.CopyFrom(model)
    outputs = {o.name for o in out.graph.output}
    for name, t in sorted(shapes.items()):
        if name not in outputs:
            out.graph.value_info.append(helper.make_tensor_value_info(name, t.elem_type, list(t.shape)))
    return out


def _show(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def compare_declared(declared: Mapping[str, RawTensor], found: Mapping[str, RawTensor],
                     source: Mapping[str, str]) -> list[str]:
    """Notes for declared shapes that disagree with the ones found (which win)."""
    notes: list[str] = []
    for name, d in declared.items():
        f = found.get(name)
        if f is None or (f.shape == d.shape and f.elem_type == d.elem_type):
            continue
        from stowage.ir.dtypes import dtype_name

        what = (f"shape {_show(d.shape)}" if f.shape != d.shape else "") + (
            (" and " if f.shape != d.shape else "") + f"type {dtype_name(d.elem_type)}"
            if f.elem_type != d.elem_type else "")
        got = (f"{_show(f.shape)}" if f.shape != d.shape else "") + (
            (" " if f.shape != d.shape else "") + dtype_name(f.elem_type) if f.elem_type != d.elem_type else "")
        notes.append(f"tensor '{name}': the model declares {what}, but {source.get(name, 'shape inference')} "
                     f"gives {got}; using {got}")
    for n in notes:
        log.warning("%s", n)
    return notes


# --------------------------------------------------------------------------------------------
# com.microsoft quantized operators


def _ms_output(node: onnx.NodeProto, shapes: Mapping[str, RawTensor]) -> RawTensor | None:
    """Output 0 of a com.microsoft QLinear / QGemm node, or None when its inputs are unknown
    or it is not one of the ops covered."""
    ins = list(node.input)

    def get(i: int) -> RawTensor | None:
        return shapes.get(ins[i]) if i < len(ins) and ins[i] else None

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    out = node.output[0] if node.output else ""
    op = node.op_type
    if op in ("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"):
        x = get(0)
        return RawTensor(out, x.shape, x.elem_type) if x else None
    if op == "QLinearGlobalAveragePool":
        x = get(0)
        if x is None or len(x.shape) < 2:
            return None
        ones = (1,) * (len(x.shape) - 2)
        if int(attrs.get("channels_last", 0)):
            return RawTensor(out, (x.shape[0], *ones, x.shape[-1]), x.elem_type)
        return RawTensor(out, (x.shape[0], x.shape[1], *ones), x.elem_type)
    if op in ("QLinearAdd", "QLinearMul"):
        a, b = get(0), get(3)
        if a is None or b is None:
            return None
        shape = _broadcast(a.shape, b.shape)
        return RawTensor(out, shape, a.elem_type) if shape is not None else None
    if op == "QLinearConcat":
        parts = [get(i) for i in range(2, len(ins), 3)]
        if not parts or any(p is None for p in parts):
            return None
        known = [p for p in parts if p is not None]
        rank = len(known[0].shape)
        axis = int(attrs.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank or any(len(p.shape) != rank for p in known):
            return None
        dims = list(known[0].shape)
        dims[axis] = sum(p.shape[axis] for p in known)
        return RawTensor(out, tuple(dims), known[0].elem_type)
    if op == "QGemm":
        a, b = get(0), get(3)
        if a is None or b is None or len(a.shape) != 2 or len(b.shape) != 2:
            return None
        m = a.shape[1] if int(attrs.get("transA", 0)) else a.shape[0]
        n = b.shape[0] if int(attrs.get("transB", 0)) else b.shape[1]
        if len(ins) > 7 and ins[7]:  # y_scale given: quantized output, typed by y_zero_point
            zp = get(8)
            elem = zp.elem_type if zp else a.elem_type
        else:
            elem = TensorProto.FLOAT
        return RawTensor(out, (m, n), elem)
    return None


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(pa, pb):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 1 in (x, y) else x)
    return tuple(out)


def _type_of(t: RawTensor) -> onnx.TypeProto:
    return helper.make_tensor_type_proto(t.elem_type, list(t.shape))


def propagate(model: ModelProto, graph: onnx.GraphProto, shapes: Mapping[str, RawTensor]) -> dict[str, RawTensor]:
    """One pass in node order that fills unknown top-level shapes: the com.microsoft rules for
    the ops they cover (authoritative, see ``contrib_shapes``), onnx's own per-node inference
    for standard ops whose inputs became known (``infer_node_outputs``, with the data of
    small constants).  Returns what it found or changed; inference runs again on it."""
    merged = dict(shapes)
    found: dict[str, RawTensor] = {}
    opsets = {o.domain: o.version for o in model.opset_import}
    consts = {t.name: t for t in graph.initializer if t.data_location != TensorProto.EXTERNAL}
    for node in graph.node:
        outs = [o for o in node.output if o]
        if not outs:
            continue
        if node.domain == _MS:
            t = _ms_output(node, merged)
            if t is not None and merged.get(t.name) != t:
                found[t.name] = merged[t.name] = t
            continue
        if node.domain not in ("", "ai.onnx"):
            continue
        if all(o in merged for o in outs) and not any(i in found for i in node.input if i):
            # Known, and none of its inputs changed in this pass.  (An input a rule just found
            # or corrected makes the node inferred again: the symbolic engine's guess for it,
            # built on a guessed com.microsoft result (a rank-0 float), must not stand.  A
            # chain of QLinearConv -> QLinearMul -> QLinearSigmoid blocks (YOLO's SiLU in
            # QOperator form) otherwise resolves one block per round and ends on guesses.)
            continue
        ins = [i for i in node.input if i]
        if any(i not in merged for i in ins) or any(True for a in node.attribute if a.type in (
                onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)):
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, opsets.get("", opsets.get("ai.onnx", 1)), "")
            res = onnx.shape_inference.infer_node_outputs(
                schema, node, {i: _type_of(merged[i]) for i in ins},
                {i: consts[i] for i in ins if i in consts}, opset_imports=list(model.opset_import))
        except Exception as exc:  # noqa: BLE001 - onnx raises several types for unknown cases
            log.debug("per-node inference of %s '%s': %s", node.op_type, node.name, exc)
            continue
        for o in outs:
            tp = res.get(o)
            if tp is None or not tp.HasField("tensor_type"):
                continue
            t = _static(helper.make_value_info(o, tp))
            if t is not None:
                found[o] = merged[o] = t
    return found


def contrib_shapes(graph: onnx.GraphProto, shapes: Mapping[str, RawTensor]) -> dict[str, RawTensor]:
    """Shapes of the covered com.microsoft QLinear/QGemm outputs whose inputs are known.  They
    win over ``shapes``: onnxruntime's symbolic engine, not knowing these ops, may have
    guessed (a rank-0 float for QLinearGlobalAveragePool's int8 result)."""
    found: dict[str, RawTensor] = {}
    merged = dict(shapes)
    for node in graph.node:
        if node.domain != _MS or not node.output or not node.output[0]:
            continue
        t = _ms_output(node, merged)
        if t is not None:
            found[t.name] = merged[t.name] = t
    return found


# --------------------------------------------------------------------------------------------
# Shapes by execution


def _random(rng: np.random.Generator, dt: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 0.1).astype(dt)
    if dt.kind in "biu":
        return rng.integers(0, 2, shape).astype(dt)  # small: safe as indices of any axis
    raise ValueError(f"cannot make seeded values of dtype {dt}")


def shapes_by_execution(model: ModelProto, base_dir: Path | None, seed: int = 0
                        ) -> tuple[dict[str, RawTensor] | None, str]:
    """Shapes of every top-level value from one ONNX Runtime run of ``model`` (weights
    included; graph inputs bound) on seeded inputs: ``(shapes, "")``, or ``(None, why)`` when
    it cannot run.  Absent external data is replaced by seeded values: shapes rarely depend
    on weight values, and a shape tensor is small enough to be embedded."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:  # pragma: no cover - a dependency
        return None, "onnxruntime is not installed"
    from onnx.external_data_helper import load_external_data_for_tensor

    rng = np.random.default_rng(seed)
    m = ModelProto()
    m.CopyFrom(model)
    g = m.graph
    del g.value_info[:]
    for o in g.output:
        if o.type.HasField("tensor_type"):
            o.type.tensor_type.ClearField("shape")
    try:
        for t in g.initializer:
            if t.data_location != TensorProto.EXTERNAL:
                continue
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            if base_dir is not None and location and (base_dir / location).is_file():
                load_external_data_for_tensor(t, str(base_dir))
                t.data_location = TensorProto.DEFAULT
                del t.external_data[:]
            else:
                dt = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
                t.CopyFrom(numpy_helper.from_array(_random(rng, dt, tuple(t.dims)), t.name))
        init = {t.name for t in g.initializer}
        feeds: dict[str, np.ndarray] = {}
        for vi in g.input:
            if vi.name in init:
                continue
            tt = vi.type.tensor_type
            shape = tuple(int(d.dim_value) for d in tt.shape.dim)
            feeds[vi.name] = _random(rng, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)), shape)
    except Exception as exc:  # noqa: BLE001 - odd types, unreadable external data
        return None, f"cannot build its inputs ({str(exc).splitlines()[0][:120] if str(exc) else exc})"
    have = {o.name for o in g.output}
    wanted = [o for n in g.node for o in n.output if o and o not in have]
    g.output.extend(onnx.ValueInfoProto(name=o) for o in wanted)
    try:
        # A failure is reported in the import error, not as ORT's log.
        sess = ort_session(m, log_severity=4)
        names = [o.name for o in sess.get_outputs()]
        results = sess.run(names, feeds)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for every failure
        return None, f"ONNX Runtime cannot run it ({str(exc).splitlines()[0][:160] if str(exc) else exc})"
    out: dict[str, RawTensor] = {}
    for name, value in zip(names, results):
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            continue
        out[name] = RawTensor(name, tuple(int(d) for d in value.shape),
                              int(helper.np_dtype_to_tensor_dtype(value.dtype)))
    return out, ""


__all__ = ["add_hints", "compare_declared", "contrib_shapes", "propagate", "shapes_by_execution", "take_declared"]
