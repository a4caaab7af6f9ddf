"""Operator cost estimates: multiply-accumulates where the op type allows, bytes otherwise.

Costs are informational (reports, tie-breaking); planning never depends on them being exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


class _Shapes:
    """Shape lookup over raw tensors: a view, not a copy (copying per node was quadratic)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> tuple[int, ...]:
        return self._raw[name].shape


def estimate_cost(node: Any, raw: Mapping[str, Any], element_bytes: int | None = None) -> tuple[int | None, str | None]:
    """Return ``(cost, unit)`` for a ``RawNode`` given raw tensor shapes, or ``(None, None)``
    to fall back to bytes touched."""
    shape = _Shapes(raw)
    ins = [x for x in node.inputs]
    outs = [x for x in node.outputs if x]
    try:
        if node.op_type in ("Conv", "ConvTranspose", "QLinearConv", "ConvInteger") and outs:
            w_name = ins[3] if node.op_type == "QLinearConv" else ins[1]
            w = shape[w_name]
            out = shape[outs[0]]
            # The weight's dim 1 is already C_in / group, so grouped convs need no extra factor.
            if node.op_type == "ConvTranspose":
                # Every input element is scattered through the kernel.
                return _numel(shape[ins[0]]) * _numel(w[1:]), "MACs"
            return _numel(out) * (w[1] * _numel(w[2:])), "MACs"
        if node.op_type in ("MatMul", "MatMulInteger", "QLinearMatMul") and outs:
            a = shape[ins[0]]
            k = a[-1] if a else 1
            return _numel(shape[outs[0]]) * k, "MACs"
        if node.op_type in ("Gemm", "QGemm") and outs:
            # QGemm (com.microsoft): A, A_scale, A_zero_point, B, ...: A is still input 0.
            a = shape[ins[0]]
            trans_a = int(node.attributes.get("transA", 0))
            k = a[0] if trans_a else a[-1]
            return _numel(shape[outs[0]]) * k, "MACs"
        if node.op_type in ("Relu", "Add", "Mul", "Sub", "Div", "Sigmoid", "Tanh", "Sum",
                            "BatchNormalization", "Clip", "LeakyRelu", "HardSigmoid",
                            "HardSwish", "Softmax", "Erf", "Gelu",
                            # onnxruntime's quantized elementwise ops (com.microsoft)
                            "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
                            "QLinearSoftmax") and outs:
            return _numel(shape[outs[0]]), "FLOPs"
        if node.op_type in ("MaxPool", "AveragePool", "QLinearAveragePool") and outs:
            k = node.attributes.get("kernel_shape", ())
            return _numel(shape[outs[0]]) * _numel(tuple(k)), "FLOPs"
    except (KeyError, IndexError, TypeError):
        pass
    return None, None
