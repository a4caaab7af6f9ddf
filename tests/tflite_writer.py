"""A small TFLite flatbuffer writer for tests: int8 models built in code, no TensorFlow.

Uses the builder functions the ``tflite`` package generates from TFLite's schema (the same
package the importer reads with).  ``tiny_int8_model()`` is a residual CNN that LiteRT runs:
CONV_2D -> DEPTHWISE_CONV_2D (stride 2) -> CONV_2D 1x1 -> ADD (residual) -> RESHAPE ->
FULLY_CONNECTED, int8 activations with real per-tensor/per-channel quantization parameters.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np

INT8, INT32, FLOAT32 = 9, 2, 0


def _mod(name: str) -> Any:
    # ``tflite/__init__`` star-imports every module, so ``tflite.Model`` is the class: take the
    # module itself, whose ``ModelStart``/``ModelAdd...`` functions build tables.
    return importlib.import_module(f"tflite.{name}")


@dataclass
class T:
    """A tensor: shape, TFLite type, optional constant data, quantization (scales, zero points,
    quantized dimension)."""

    name: str
    shape: tuple[int, ...]
    type: int = INT8
    data: np.ndarray | None = None
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    qdim: int = 0


@dataclass
class Op:
    code: str                       # builtin name ("CONV_2D") or "CUSTOM:<code>"
    inputs: list[int]
    outputs: list[int]
    options: str | None = None      # options table name ("Conv2DOptions")
    fields: dict[str, Any] = field(default_factory=dict)   # its fields ("Padding": 0)


def _table(b: flatbuffers.Builder, name: str, fields: dict[str, Any]) -> int:
    m = _mod(name)
    getattr(m, f"{name}Start")(b)
    for k, v in fields.items():
        getattr(m, f"{name}Add{k}")(b, v)
    return int(getattr(m, f"{name}End")(b))


def _vec(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return int(b.EndVector())


def write_model(tensors: list[T], ops: list[Op], inputs: list[int], outputs: list[int],
                version: int = 3, subgraphs: int = 1) -> bytes:
    """Serialise one subgraph (repeated ``subgraphs`` times) as a TFLite flatbuffer."""
    import tflite

    b = flatbuffers.Builder(1024)
    # Buffers: 0 is the empty sentinel, then one per constant tensor.
    buf_index: dict[int, int] = {}
    buf_offsets = [_table(b, "Buffer", {})]
    for i, t in enumerate(tensors):
        if t.data is not None:
            raw = np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)
            data = b.CreateNumpyVector(raw)
            buf_index[i] = len(buf_offsets)
            buf_offsets.append(_table(b, "Buffer", {"Data": data}))
    codes: list[str] = list(dict.fromkeys(op.code for op in ops))
    code_offsets = []
    for c in codes:
        if c.startswith("CUSTOM:"):
            s = b.CreateString(c.split(":", 1)[1])
            code_offsets.append(_table(b, "OperatorCode", {"DeprecatedBuiltinCode": 32, "BuiltinCode": 32,
                                                           "CustomCode": s, "Version": 1}))
        else:
            code = getattr(tflite.BuiltinOperator, c)
            code_offsets.append(_table(b, "OperatorCode", {"DeprecatedBuiltinCode": min(code, 127),
                                                           "BuiltinCode": code, "Version": 1}))

    def subgraph() -> int:
        t_offsets = []
        for i, t in enumerate(tensors):
            name = b.CreateString(t.name)
            shape = b.CreateNumpyVector(np.array(t.shape, dtype=np.int32))
            q = None
            if t.scale is not None:
                sc = b.CreateNumpyVector(np.array(t.scale, dtype=np.float32))
                zp = b.CreateNumpyVector(np.array(t.zero_point or [0] * len(t.scale), dtype=np.int64))
                q = _table(b, "QuantizationParameters", {"Scale": sc, "ZeroPoint": zp, "QuantizedDimension": t.qdim})
            fields: dict[str, Any] = {"Shape": shape, "Type": t.type, "Buffer": buf_index.get(i, 0), "Name": name}
            if q is not None:
                fields["Quantization"] = q
            t_offsets.append(_table(b, "Tensor", fields))
        op_offsets = []
        for op in ops:
            ins = b.CreateNumpyVector(np.array(op.inputs, dtype=np.int32))
            outs = b.CreateNumpyVector(np.array(op.outputs, dtype=np.int32))
            fields = {"OpcodeIndex": codes.index(op.code), "Inputs": ins, "Outputs": outs}
            if op.options:
                opt = _table(b, op.options, op.fields)
                fields["BuiltinOptionsType"] = getattr(tflite.BuiltinOptions, op.options)
                fields["BuiltinOptions"] = opt
            op_offsets.append(_table(b, "Operator", fields))
        tv, ov = _vec(b, t_offsets), _vec(b, op_offsets)
        iv = b.CreateNumpyVector(np.array(inputs, dtype=np.int32))
        outv = b.CreateNumpyVector(np.array(outputs, dtype=np.int32))
        return _table(b, "SubGraph", {"Tensors": tv, "Inputs": iv, "Outputs": outv, "Operators": ov})

    sgs = [subgraph() for _ in range(subgraphs)]
    sgv, cv, bv = _vec(b, sgs), _vec(b, code_offsets), _vec(b, buf_offsets)
    desc = b.CreateString("stowage test model")
    root = _table(b, "Model", {"Version": version, "OperatorCodes": cv, "Subgraphs": sgv, "Description": desc,
                               "Buffers": bv})
    b.Finish(root, file_identifier=b"TFL3")
    return bytes(b.Output())


def tiny_int8_model(seed: int = 0, custom: bool = False, version: int = 3, subgraphs: int = 1) -> bytes:
    """The residual int8 CNN of the module docstring (``custom``: the ADD becomes a CUSTOM op,
    which LiteRT cannot run but the importer plans as an opaque step)."""
    rng = np.random.default_rng(seed)
    s_in, s_a, s_b, s_c, s_d, s_y = 0.02, 0.05, 0.04, 0.06, 0.08, 0.1
    w1s, w2s, w3s, w4s = 0.01, 0.02, 0.015, 0.005

    def w(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-127, 128, shape).astype(np.int8)

    def bias(n: int) -> np.ndarray:
        return rng.integers(-500, 500, n).astype(np.int32)

    tensors = [
        T("x", (1, 8, 8, 3), scale=[s_in], zero_point=[-3]),                                  # 0
        T("conv1/w", (8, 3, 3, 3), data=w((8, 3, 3, 3)), scale=[w1s] * 8, zero_point=[0] * 8),  # 1
        T("conv1/b", (8,), INT32, data=bias(8), scale=[s_in * w1s] * 8, zero_point=[0] * 8),   # 2
        T("a", (1, 8, 8, 8), scale=[s_a], zero_point=[-128]),                                 # 3
        T("dw/w", (1, 3, 3, 8), data=w((1, 3, 3, 8)), scale=[w2s] * 8, zero_point=[0] * 8, qdim=3),  # 4
        T("dw/b", (8,), INT32, data=bias(8), scale=[s_a * w2s] * 8, zero_point=[0] * 8),       # 5
        T("b", (1, 4, 4, 8), scale=[s_b], zero_point=[5]),                                    # 6
        T("conv2/w", (8, 1, 1, 8), data=w((8, 1, 1, 8)), scale=[w3s] * 8, zero_point=[0] * 8),  # 7
        T("conv2/b", (8,), INT32, data=bias(8), scale=[s_b * w3s] * 8, zero_point=[0] * 8),    # 8
        T("c", (1, 4, 4, 8), scale=[s_c], zero_point=[-2]),                                   # 9
        T("d", (1, 4, 4, 8), scale=[s_d], zero_point=[1]),                                    # 10
        T("shape", (2,), INT32, data=np.array([1, 128], np.int32)),                           # 11
        T("r", (1, 128), scale=[s_d], zero_point=[1]),                                        # 12
        T("fc/w", (10, 128), data=w((10, 128)), scale=[w4s], zero_point=[0]),                 # 13
        T("fc/b", (10,), INT32, data=bias(10), scale=[s_d * w4s], zero_point=[0]),            # 14
        T("y", (1, 10), scale=[s_y], zero_point=[0]),                                         # 15
    ]
    ops = [
        Op("CONV_2D", [0, 1, 2], [3], "Conv2DOptions",
           {"Padding": 0, "StrideW": 1, "StrideH": 1, "FusedActivationFunction": 1,
            "DilationWFactor": 1, "DilationHFactor": 1}),
        Op("DEPTHWISE_CONV_2D", [3, 4, 5], [6], "DepthwiseConv2DOptions",
           {"Padding": 0, "StrideW": 2, "StrideH": 2, "DepthMultiplier": 1, "FusedActivationFunction": 3,
            "DilationWFactor": 1, "DilationHFactor": 1}),
        Op("CONV_2D", [6, 7, 8], [9], "Conv2DOptions",
           {"Padding": 1, "StrideW": 1, "StrideH": 1, "FusedActivationFunction": 0,
            "DilationWFactor": 1, "DilationHFactor": 1}),
        Op("CUSTOM:MyAdd", [6, 9], [10]) if custom else Op("ADD", [6, 9], [10], "AddOptions",
                                                           {"FusedActivationFunction": 0}),
        Op("RESHAPE", [10, 11], [12]),
        Op("FULLY_CONNECTED", [12, 13, 14], [15], "FullyConnectedOptions", {"FusedActivationFunction": 0}),
    ]
    return write_model(tensors, ops, inputs=[0], outputs=[15], version=version, subgraphs=subgraphs)


def rows_int8_model(seed: int = 0, keep_dims: bool = True) -> bytes:
    """An int8 NHWC graph of the TFLite operators whose rows tiling maps (issue 12), which
    LiteRT runs::

        x (1x16x8x4) -> CONV_2D 3x3 SAME (a, 1x16x8x8) -> HARD_SWISH (h)
          -> PAD rows 1 above, 2 below (p, 1x19x8x8)
          -> CONV_2D 3x3 VALID, dilation 2 (q, 1x15x4x8)
          -> STRIDED_SLICE rows 1:15:2 (r, 1x7x4x8)
          -> SPLIT on channels into s0, s1 (1x7x4x4 each)
        s0 -> DEPTHWISE_CONV_2D 3x3 SAME, dilation 2 (d, 1x7x4x4) -> STRIDED_SLICE channels 1:4 (c)
        s1 -> SPLIT_V on channels [1, 3] (v0: an output, v1)
        c + v1 -> ADD (e, 1x7x4x3) -> MEAN over H, W keeping dims (m, 1x1x1x3: an output)

    Operators that only move values (PAD, STRIDED_SLICE, SPLIT, SPLIT_V) keep their operand's
    scale and zero point, as LiteRT requires.  ``keep_dims`` False: the MEAN's result is
    ``m (1x3)``, 2-D, as Keras' global average pooling converts."""
    rng = np.random.default_rng(seed)

    def w(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-127, 128, shape).astype(np.int8)

    def bias(n: int) -> np.ndarray:
        return rng.integers(-300, 300, n).astype(np.int32)

    def ints(*v: int) -> np.ndarray:
        return np.array(v, np.int32)

    s_x, s_a, s_h, s_q, s_d, s_e, s_m = 0.03, 0.05, 0.04, 0.06, 0.05, 0.07, 0.02
    tensors = [
        T("x", (1, 16, 8, 4), scale=[s_x], zero_point=[-2]),                                    # 0
        T("c0/w", (8, 3, 3, 4), data=w((8, 3, 3, 4)), scale=[0.01] * 8, zero_point=[0] * 8),     # 1
        T("c0/b", (8,), INT32, data=bias(8), scale=[s_x * 0.01] * 8, zero_point=[0] * 8),        # 2
        T("a", (1, 16, 8, 8), scale=[s_a], zero_point=[3]),                                     # 3
        T("h", (1, 16, 8, 8), scale=[s_h], zero_point=[-20]),                                   # 4
        T("pads", (4, 2), INT32, data=ints(0, 0, 1, 2, 0, 0, 0, 0)),                            # 5
        T("p", (1, 19, 8, 8), scale=[s_h], zero_point=[-20]),                                   # 6
        T("c1/w", (8, 3, 3, 8), data=w((8, 3, 3, 8)), scale=[0.004] * 8, zero_point=[0] * 8),    # 7
        T("c1/b", (8,), INT32, data=bias(8), scale=[s_h * 0.004] * 8, zero_point=[0] * 8),       # 8
        T("q", (1, 15, 4, 8), scale=[s_q], zero_point=[1]),                                     # 9
        T("ss/begin", (4,), INT32, data=ints(0, 1, 0, 0)),                                      # 10
        T("ss/end", (4,), INT32, data=ints(1, 15, 4, 8)),                                       # 11
        T("ss/strides", (4,), INT32, data=ints(1, 2, 1, 1)),                                    # 12
        T("r", (1, 7, 4, 8), scale=[s_q], zero_point=[1]),                                      # 13
        T("split/axis", (), INT32, data=ints(3)),                                               # 14
        T("s0", (1, 7, 4, 4), scale=[s_q], zero_point=[1]),                                     # 15
        T("s1", (1, 7, 4, 4), scale=[s_q], zero_point=[1]),                                     # 16
        T("dw/w", (1, 3, 3, 4), data=w((1, 3, 3, 4)), scale=[0.02] * 4, zero_point=[0] * 4, qdim=3),  # 17
        T("dw/b", (4,), INT32, data=bias(4), scale=[s_q * 0.02] * 4, zero_point=[0] * 4),        # 18
        T("d", (1, 7, 4, 4), scale=[s_d], zero_point=[-4]),                                     # 19
        T("sc/begin", (4,), INT32, data=ints(0, 0, 0, 1)),                                      # 20
        T("sc/end", (4,), INT32, data=ints(1, 7, 4, 4)),                                        # 21
        T("sc/strides", (4,), INT32, data=ints(1, 1, 1, 1)),                                    # 22
        T("c", (1, 7, 4, 3), scale=[s_d], zero_point=[-4]),                                     # 23
        T("sv/sizes", (2,), INT32, data=ints(1, 3)),                                            # 24
        T("sv/axis", (), INT32, data=ints(-1)),                                                 # 25
        T("v0", (1, 7, 4, 1), scale=[s_q], zero_point=[1]),                                     # 26
        T("v1", (1, 7, 4, 3), scale=[s_q], zero_point=[1]),                                     # 27
        T("e", (1, 7, 4, 3), scale=[s_e], zero_point=[0]),                                      # 28
        T("mean/axis", (2,), INT32, data=ints(1, 2)),                                           # 29
        T("m", (1, 1, 1, 3) if keep_dims else (1, 3), scale=[s_m], zero_point=[0]),             # 30
    ]
    conv = {"StrideW": 1, "StrideH": 1, "FusedActivationFunction": 0}
    slice_opts = {"BeginMask": 0, "EndMask": 0, "EllipsisMask": 0, "NewAxisMask": 0, "ShrinkAxisMask": 0}
    ops = [
        Op("CONV_2D", [0, 1, 2], [3], "Conv2DOptions", {"Padding": 0, **conv, "DilationWFactor": 1,
                                                         "DilationHFactor": 1}),
        Op("HARD_SWISH", [3], [4], "HardSwishOptions", {}),
        Op("PAD", [4, 5], [6], "PadOptions", {}),
        Op("CONV_2D", [6, 7, 8], [9], "Conv2DOptions", {"Padding": 1, **conv, "DilationWFactor": 2,
                                                         "DilationHFactor": 2}),
        Op("STRIDED_SLICE", [9, 10, 11, 12], [13], "StridedSliceOptions", slice_opts),
        Op("SPLIT", [14, 13], [15, 16], "SplitOptions", {"NumSplits": 2}),
        Op("DEPTHWISE_CONV_2D", [15, 17, 18], [19], "DepthwiseConv2DOptions",
           {"Padding": 0, **conv, "DepthMultiplier": 1, "DilationWFactor": 2, "DilationHFactor": 2}),
        Op("STRIDED_SLICE", [19, 20, 21, 22], [23], "StridedSliceOptions", slice_opts),
        Op("SPLIT_V", [16, 24, 25], [26, 27], "SplitVOptions", {"NumSplits": 2}),
        Op("ADD", [23, 27], [28], "AddOptions", {"FusedActivationFunction": 0}),
        Op("MEAN", [28, 29], [30], "ReducerOptions", {"KeepDims": keep_dims}),
    ]
    return write_model(tensors, ops, inputs=[0], outputs=[30, 26])
