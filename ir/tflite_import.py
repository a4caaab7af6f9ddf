"""TFLite importer: ``.tflite`` flatbuffer -> the same immutable ``Graph`` as an ONNX model.

Read with the ``tflite`` package (pure-Python flatbuffer accessors generated from TFLite's
``schema.fbs``), so planning a ``.tflite`` needs neither TensorFlow nor LiteRT.  What becomes of
the file:

* **subgraph 0** only: it is the model's entry point.  A file with more subgraphs (control-flow
  bodies of ``WHILE``/``IF``, ``CALL_ONCE`` initialisers) is planned as subgraph 0 with a
  warning; the operators that call the others are opaque steps (their working memory unknown).
* **tensors** keep their TFLite element type (int8, int16, uint8, float32, ...; mapped to the IR's
  ONNX element-type numbers, so bytes count as for ONNX) and the static ``shape`` stored in the
  file, in the file's layout (NHWC for images: nothing is transposed).  Names are the file's;
  an empty or repeated name gets ``#<tensor index>`` so that every tensor has one name.
* **weights** are the tensors whose buffer holds data (constant tensors) and variable tensors
  (state that lives as long as the model does).  An operator whose every input is a weight
  (a ``DEQUANTIZE`` of float16 weights) is folded, as in the ONNX importer.
* **operators** carry their builtin names (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``ADD``...),
  domain ``tflite``, and their builtin options as attributes (snake_case field names, enums as
  their names: ``padding: SAME``, ``fused_activation_function: RELU6``).  Convolutions and pools
  also get ONNX-style ``kernel_shape``, ``strides``, ``dilations`` and explicit ``pads``
  ``[top, left, bottom, right]`` (SAME resolved as TFLite does: the odd pixel at the bottom and
  right) and ``layout: NHWC``.  The small constant integer operands of ``SPLIT``, ``SPLIT_V``,
  ``STRIDED_SLICE``, ``SLICE``, ``PAD``/``PADV2`` and ``MEAN`` become attributes too
  (``OPERAND_ATTRIBUTES``: ``axis``, ``size_splits``, ``begin``/``end``/``strides``, ``size``,
  ``paddings`` flattened, ``axis``), as the ONNX importer does for Slice and Pad
  (``stowage.ir.operand_values``): tiling reads which rows they take from them.  ``RESHAPE`` and
  ``SQUEEZE`` (and ``EXPAND_DIMS``) are views: their
  output is the input's bytes (one buffer, no step).  ``CUSTOM`` operators and the control-flow
  builtins are opaque.
* **cost**: MACs for ``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``TRANSPOSE_CONV``, ``FULLY_CONNECTED`` and
  ``BATCH_MATMUL``; FLOPs for elementwise ops and pools; bytes touched otherwise.

Every defect of the file (not a flatbuffer, truncated, schema version other than 3, no
subgraph, an element type without a size) is a one-line ``ModelError``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from stowage.errors import ModelError
from stowage.ir.build import RawNode, RawTensor, build_graph
from stowage.ir.files import read_model_bytes
from stowage.ir.graph import Graph

log = logging.getLogger(__name__)

#: The flatbuffer file identifier of a TFLite model (bytes 4..8 of the file).
TFLITE_IDENTIFIER = b"TFL3"
#: The only schema version in use since TensorFlow 1.0 (``Model.version``).
SCHEMA_VERSION = 3
#: The domain of every imported operator (the ONNX importer's are "" or a custom domain).
DOMAIN = "tflite"
#: TFLite's own names: only these are views (same bytes as input 0).
VIEW_OPS: Mapping[str, str] = {"RESHAPE": "Reshape", "SQUEEZE": "Squeeze", "EXPAND_DIMS": "Unsqueeze"}
#: Builtins that call other subgraphs or hold state: one opaque step, memory unknown.
OPAQUE_BUILTINS = frozenset({"WHILE", "IF", "CALL", "CALL_ONCE", "DELEGATE", "STABLEHLO_WHILE",
                             "STABLEHLO_COMPOSITE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"})

#: TFLite ``TensorType`` -> ONNX ``TensorProto.DataType`` (the IR's element-type numbers).
_ONNX_TYPE = {
    0: 1,    # FLOAT32 -> FLOAT
    1: 10,   # FLOAT16
    2: 6,    # INT32
    3: 2,    # UINT8
    4: 7,    # INT64
    5: 8,    # STRING
    6: 9,    # BOOL
    7: 5,    # INT16
    8: 14,   # COMPLEX64
    9: 3,    # INT8
    10: 11,  # FLOAT64 -> DOUBLE
    11: 15,  # COMPLEX128
    12: 13,  # UINT64
    15: 12,  # UINT32
    16: 4,   # UINT16
    17: 22,  # INT4 (packed two to a byte, as ONNX int4)
    18: 16,  # BFLOAT16
}
_TYPE_NAMES = {13: "RESOURCE", 14: "VARIANT"}

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDINGS = {0: "SAME", 1: "VALID"}

_MAC_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL"})
#: Never folded into weights although their inputs may all be constant: random.
_NEVER_FOLD = frozenset({"RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL"})
_ELEMENTWISE = frozenset({"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "RELU", "RELU6", "RELU_N1_TO_1",
                          "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "PRELU", "SOFTMAX", "QUANTIZE",
                          "DEQUANTIZE", "SQUARED_DIFFERENCE", "EXP", "GELU", "ABS", "NEG", "SQRT", "RSQRT"})
_POOLS = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"})
#: Constants longer than this are not the operand lists of a 4-D SPLIT, SLICE, PAD or MEAN.
MAX_OPERAND_ELEMENTS = 16
#: Per builtin, its small constant integer operands recorded as attributes (operand position,
#: attribute name), so that tiling (``stowage.ir.tiling`` row maps) and the validator know
#: which rows it reads; the values of an operand computed at run time are simply not recorded.
OPERAND_ATTRIBUTES: Mapping[str, tuple[tuple[int, str], ...]] = {
    "SPLIT": ((0, "axis"),),
    "SPLIT_V": ((1, "size_splits"), (2, "axis")),
    "STRIDED_SLICE": ((1, "begin"), (2, "end"), (3, "strides")),
    "SLICE": ((1, "begin"), (2, "size")),
    "PAD": ((1, "paddings"),),
    "PADV2": ((1, "paddings"),),
    "MIRROR_PAD": ((1, "paddings"),),
    "MEAN": ((1, "axis"),),
}
#: TensorType codes of integer operands (INT32, INT64).
_INT_TYPES = {2: np.int32, 4: np.int64}

#: ``progress(label)`` returns a context manager shown while a stage runs.
Progress = Callable[[str], AbstractContextManager[Any]]


def _no_progress(label: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def is_tflite(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a TFLite model: the ``.tflite`` suffix, or the ``TFL3`` flatbuffer
    identifier in bytes 4..8 (a TFLite file saved under another name).  The one place the
    importers are chosen (``stowage.ir.onnx_import.load_graph`` asks it first)."""
    p = Path(path)
    if p.suffix.lower() == ".tflite":
        return True
    try:
        with p.open("rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] == TFLITE_IDENTIFIER


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class TfliteModel:
    """Subgraph 0 of a parsed file, as plain Python values (the importer and the simulator's
    reference run agree on tensor names through ``tensor_names``)."""

    tensor_names: tuple[str, ...]
    tensors: tuple[RawTensor, ...]
    constant: frozenset[int]
    nodes: tuple[RawNode, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    subgraphs: int


def _read_bytes(p: Path) -> bytes:
    return read_model_bytes(p, "a .tflite")


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@functools.cache
def _option_table_names() -> dict[int, str]:
    """``BuiltinOptions`` union tag -> options table class name (``1: "Conv2DOptions"``)."""
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOptions).items() if isinstance(v, int) and not k.startswith("_")}


def _options(op: Any) -> dict[str, Any]:
    """An operator's builtin options table as ``{snake_case_field: value}``: every scalar field
    and every vector of scalars, read through the generated accessors (no per-op code)."""
    import tflite

    kind = op.BuiltinOptionsType()
    if not kind:
        return {}
    cls = getattr(tflite, _option_table_names().get(kind, ""), None)
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for field_name, fn in inspect.getmembers(cls, inspect.isfunction):
        if field_name.startswith(("Init", "GetRootAs", "_")) or field_name.endswith(
                ("IsNone", "Length", "AsNumpy", "BufferHasIdentifier")):
            continue
        params = list(inspect.signature(fn).parameters)
        if params == ["self"]:
            value = getattr(obj, field_name)()
            if isinstance(value, bool | int | float):
                out[_snake(field_name)] = value
            elif isinstance(value, bytes):
                out[_snake(field_name)] = value.decode("utf-8", "replace")
        elif params == ["self", "j"] and hasattr(obj, field_name + "AsNumpy"):
            if not getattr(obj, field_name + "IsNone")():
                out[_snake(field_name)] = [x.item() if hasattr(x, "item") else x
                                           for x in getattr(obj, field_name + "AsNumpy")()]
    if "padding" in out:
        out["padding"] = _PADDINGS.get(out["padding"], out["padding"])
    if "fused_activation_function" in out:
        act = out["fused_activation_function"]
        out["fused_activation_function"] = _ACTIVATIONS.get(act, act)
    return out


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding of one axis: (before, after), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_attributes(op_type: str, attrs: dict[str, Any], shapes: Sequence[tuple[int, ...] | None]) -> None:
    """Add ``kernel_shape``, ``strides``, ``dilations``, explicit ``pads`` and ``layout`` to a
    convolution's or pool's attributes (``shapes``: the operator's input shapes, NHWC)."""
    x = shapes[0] if shapes else None
    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = shapes[1] if len(shapes) > 1 else None
        k = (w[1], w[2]) if w is not None and len(w) == 4 else None
    elif op_type == "TRANSPOSE_CONV":
        w = shapes[1] if len(shapes) > 1 else None
        k = (w[1], w[2]) if w is not None and len(w) == 4 else None
        x = shapes[2] if len(shapes) > 2 else None
    else:
        k = (int(attrs.get("filter_height", 1)), int(attrs.get("filter_width", 1)))
    sh, sw = int(attrs.get("stride_h", 1)) or 1, int(attrs.get("stride_w", 1)) or 1
    dh, dw = int(attrs.get("dilation_h_factor", 1)) or 1, int(attrs.get("dilation_w_factor", 1)) or 1
    attrs["layout"] = "NHWC"
    attrs["strides"] = [sh, sw]
    attrs["dilations"] = [dh, dw]
    if k is None:
        return
    attrs["kernel_shape"] = [int(k[0]), int(k[1])]
    if attrs.get("padding") == "SAME" and x is not None and len(x) == 4 and op_type != "TRANSPOSE_CONV":
        top, bottom = _same_pads(x[1], k[0], sh, dh)
        left, right = _same_pads(x[2], k[1], sw, dw)
        attrs["pads"] = [top, left, bottom, right]
    elif attrs.get("padding") == "VALID":
        attrs["pads"] = [0, 0, 0, 0]


def _cost(op_type: str, ins: Sequence[tuple[int, ...] | None], outs: Sequence[tuple[int, ...] | None],
          attrs: Mapping[str, Any]) -> tuple[int | None, str | None]:
    out = outs[0] if outs else None
    if out is None:
        return None, None
    n_out = math.prod(out) if out else 1
    w = ins[1] if len(ins) > 1 else None
    if op_type == "CONV_2D" and w is not None and len(w) == 4:
        return n_out * w[1] * w[2] * w[3], "MACs"  # weights [C_out, KH, KW, C_in / groups]
    if op_type == "DEPTHWISE_CONV_2D" and w is not None and len(w) == 4:
        return n_out * w[1] * w[2], "MACs"  # weights [1, KH, KW, C_out]: one input channel each
    if op_type == "TRANSPOSE_CONV" and w is not None and len(w) == 4 and len(ins) > 2 and ins[2] is not None:
        x = ins[2]
        return (math.prod(x) if x else 1) * w[0] * w[1] * w[2], "MACs"  # each input pixel scattered
    if op_type == "FULLY_CONNECTED" and w is not None and len(w) == 2:
        rows = (math.prod(ins[0]) // w[1]) if ins[0] else 1
        return rows * w[0] * w[1], "MACs"  # weights [units, K]
    if op_type == "BATCH_MATMUL" and ins and ins[0]:
        a = ins[0]
        k = a[-2] if attrs.get("adj_x") else a[-1]
        return n_out * k, "MACs"
    if op_type in _ELEMENTWISE:
        return n_out, "FLOPs"
    if op_type in _POOLS:
        return n_out * int(attrs.get("filter_height", 1)) * int(attrs.get("filter_width", 1)), "FLOPs"
    return None, None


def parse_model(data: bytes, origin: str = "model") -> TfliteModel:
    """Subgraph 0 of a TFLite flatbuffer; every defect of the file is a one-line ModelError."""
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{origin} is not a TFLite model (no 'TFL3' flatbuffer identifier; truncated or "
                         "another format)")
    try:
        return _parse_model(data, origin)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails in struct, index or decode errors
        raise ModelError(f"{origin} is a corrupt TFLite file (the flatbuffer cannot be read: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else 'bad offset'})"
                         ) from None


def _parse_model(data: bytes, origin: str) -> TfliteModel:
    import tflite
    from tflite.utils import BUILTIN_OPCODE2NAME

    size = len(data)
    model = tflite.Model.GetRootAs(data, 0)
    version = model.Version()
    if version != SCHEMA_VERSION:
        raise ModelError(f"{origin}: TFLite schema version {version} is not supported (stowage reads version "
                         f"{SCHEMA_VERSION}, the format since TensorFlow 1.0)")
    nsub = model.SubgraphsLength()
    if nsub * 4 > size or model.OperatorCodesLength() * 4 > size:
        raise ModelError(f"{origin} is a corrupt TFLite file (vector lengths exceed the file size)")
    if nsub == 0:
        raise ModelError(f"{origin} has no subgraph: there is nothing to plan")
    if nsub > 1:
        log.warning("%s has %d subgraphs: planning subgraph 0 (the entry point); operators that call the "
                    "others are opaque steps", origin, nsub)
    sg = model.Subgraphs(0)
    ntensors = sg.TensorsLength()
    nops = sg.OperatorsLength()
    nbuffers = model.BuffersLength()
    if ntensors * 4 > size or nops * 4 > size or nbuffers * 4 > size:
        raise ModelError(f"{origin} is a corrupt TFLite file (vector lengths exceed the file size)")

    names: list[str] = []
    seen: set[str] = set()
    raw: list[RawTensor] = []
    constant: set[int] = set()
    for i in range(ntensors):
        t = sg.Tensors(i)
        name = (t.Name() or b"").decode("utf-8", "replace")
        if not name or name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        names.append(name)
        ttype = t.Type()
        if ttype not in _ONNX_TYPE:
            what = _TYPE_NAMES.get(ttype, f"type {ttype}")
            raise ModelError(f"{origin}: tensor '{name}' has element type {what}, which has no size "
                             "(resource and variant tensors are not supported)")
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if not t.ShapeIsNone() and t.ShapeLength() else ()
        if any(d < 0 for d in shape):
            raise ModelError(f"{origin}: tensor '{name}' has a dynamic shape {list(shape)} in the file: "
                             "resize the model's inputs and convert it with static shapes")
        raw.append(RawTensor(name, shape, _ONNX_TYPE[ttype]))
        b = t.Buffer()
        if t.IsVariable():
            constant.add(i)
        elif 0 < b < nbuffers:
            buf = model.Buffers(b)
            if buf.DataLength() > 0 or (buf.Offset() > 1 and buf.Size() > 0):
                constant.add(i)
        elif b >= nbuffers:
            raise ModelError(f"{origin} is a corrupt TFLite file (tensor '{name}' names buffer {b} of {nbuffers})")

    index = {n: i for i, n in enumerate(names)}

    def const_ints(idx: int) -> tuple[int, ...] | None:
        """The values of a small constant INT32/INT64 tensor (at most ``MAX_OPERAND_ELEMENTS``),
        or None: not constant, another type, or too long."""
        if idx < 0 or idx >= ntensors or idx not in constant:
            return None
        t = sg.Tensors(idx)
        dt = _INT_TYPES.get(t.Type())
        b = t.Buffer()
        if dt is None or not 0 < b < nbuffers:
            return None
        buf = model.Buffers(b)
        if buf.DataLength() <= 0:
            return None   # the >2 GiB offset form holds weights, not operand lists
        raw = buf.DataAsNumpy()
        if not isinstance(raw, np.ndarray) or raw.size % np.dtype(dt).itemsize:
            return None
        vals = raw.view(dt)
        if vals.size > MAX_OPERAND_ELEMENTS:
            return None
        return tuple(int(v) for v in vals)

    def tensor_name(idx: int) -> str:
        if idx < 0:
            return ""  # an omitted optional input
        if idx >= ntensors:
            raise ModelError(f"{origin} is a corrupt TFLite file (an operator names tensor {idx} of {ntensors})")
        return names[idx]

    codes: list[tuple[str, bool, str]] = []
    for j in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(j)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == 32:  # CUSTOM
            custom = (oc.CustomCode() or b"").decode("utf-8", "replace")
            codes.append(("CUSTOM", True, f"custom operator '{custom}': its memory use is unknown"))
        elif code in BUILTIN_OPCODE2NAME:
            n = BUILTIN_OPCODE2NAME[code]
            opaque = n in OPAQUE_BUILTINS
            codes.append((n, opaque, f"TFLite {n} (calls other subgraphs or holds state): opaque"
                          if opaque else ""))
        else:
            codes.append((f"BUILTIN_{code}", True, f"TFLite builtin code {code} is unknown to this schema"))

    nodes: list[RawNode] = []
    for k in range(nops):
        op = sg.Operators(k)
        oi = op.OpcodeIndex()
        if oi >= len(codes):
            raise ModelError(f"{origin} is a corrupt TFLite file (operator {k} names opcode {oi} of {len(codes)})")
        op_type, opaque, reason = codes[oi]
        ins = tuple(tensor_name(int(x)) for x in (op.InputsAsNumpy() if op.InputsLength() else ()))
        outs = tuple(tensor_name(int(x)) for x in (op.OutputsAsNumpy() if op.OutputsLength() else ()))
        attrs = {} if op_type == "CUSTOM" else _options(op)
        if op_type == "CUSTOM":
            oc = model.OperatorCodes(oi)
            attrs["custom_code"] = (oc.CustomCode() or b"").decode("utf-8", "replace")
        for pos, attr in OPERAND_ATTRIBUTES.get(op_type, ()):
            if pos < op.InputsLength():
                vals = const_ints(int(op.Inputs(pos)))
                if vals is not None and attr not in attrs:
                    attrs[attr] = list(vals)
        in_shapes = [raw[index[n]].shape if n else None for n in ins]
        out_shapes = [raw[index[n]].shape if n else None for n in outs]
        if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") or op_type in _POOLS:
            _spatial_attributes(op_type, attrs, in_shapes)
        cost, unit = _cost(op_type, in_shapes, out_shapes, attrs)
        # Views are built under the ONNX name build_graph aliases (renamed back after the build);
        # the domain is "" during the build so that weight-only operators fold as in ONNX.
        nodes.append(RawNode(
            name=f"{op_type}_{k}",
            op_type=VIEW_OPS.get(op_type, op_type),
            inputs=ins,
            outputs=outs,
            domain="" if not opaque and op_type not in _NEVER_FOLD else DOMAIN,
            attributes=attrs,
            opaque=opaque,
            opaque_reason=reason or None,
            cost=cost,
            cost_unit=unit,
        ))
    inputs = tuple(tensor_name(int(x)) for x in (sg.InputsAsNumpy() if sg.InputsLength() else ()))
    outputs = tuple(tensor_name(int(x)) for x in (sg.OutputsAsNumpy() if sg.OutputsLength() else ()))
    if not outputs:
        raise ModelError(f"{origin}: subgraph 0 has no outputs: there is nothing to plan")
    return TfliteModel(tuple(names), tuple(raw), frozenset(constant), tuple(nodes), inputs, outputs, nsub)


def import_tflite(tm: TfliteModel, name: str, element_bytes: int | None = None,
                  source_path: str | None = None, source_sha256: str | None = None) -> Graph:
    """The ``Graph`` of a parsed model (``build_graph``'s rules for folding, views and order)."""
    constant_names = [tm.tensor_names[i] for i in sorted(tm.constant)]
    graph = build_graph(
        name,
        tm.tensors,
        tm.nodes,
        inputs=tm.inputs,
        outputs=tm.outputs,
        initializers=constant_names,
        element_bytes=element_bytes,
        source_path=source_path,
        source_sha256=source_sha256,
    )
    # Operators get their TFLite names and domain back (views were built as Reshape/Squeeze).
    back = {v: k for k, v in VIEW_OPS.items()}
    ops = tuple(replace(op, op_type=back.get(op.op_type, op.op_type), domain=DOMAIN) for op in graph.operators)
    # NHWC as stored: tiling's rows are axis 1 (``stowage.ir.tiling.row_axis``).
    return replace(graph, operators=ops, layout="NHWC")


def load_graph(
    path: str | os.PathLike[str],
    dims: Mapping[str, int] | None = None,
    element_bytes: int | None = None,
    *,
    progress: Progress | None = None,
) -> Graph:
    """Load and import a ``.tflite`` file.  Raises ``ModelError`` with a one-line message.
    ``dims`` must be empty: a TFLite file stores static shapes (its ``shape_signature`` marks
    dynamic axes, which LiteRT resizes at run time; re-convert the model for another size)."""
    stage = progress or _no_progress
    p = Path(path)
    if dims:
        raise ModelError(f"--dim does not apply to {p.name}: a .tflite file stores static shapes "
                         f"(got {', '.join(f'{k}={v}' for k, v in dims.items())})")
    size = p.stat().st_size if p.is_file() else 0
    with stage(f"reading {p.name} ({size / 1e6:.1f} MB)"):
        data = _read_bytes(p)
        sha = hashlib.sha256(data).hexdigest()
        tm = parse_model(data, str(p))
    log.info("loaded %s: %d operators, %d tensors (%d constant)", p, len(tm.nodes), len(tm.tensors),
             len(tm.constant))
    return import_tflite(tm, p.stem, element_bytes=element_bytes, source_path=str(p), source_sha256=sha)


__all__ = ["DOMAIN", "MAX_OPERAND_ELEMENTS", "OPERAND_ATTRIBUTES", "SCHEMA_VERSION", "TFLITE_IDENTIFIER", "TfliteModel",
           "import_tflite", "is_tflite",
           "load_graph", "parse_model"]
