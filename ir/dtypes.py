"""Element sizes for every ONNX tensor element type.

Sizes are in *bits* so that sub-byte types (int4, uint4, float4, int2, float6) pack densely;
``tensor_bytes`` rounds the packed bit count up to whole bytes, which is how ONNX stores them.
"""

from __future__ import annotations

import math

from onnx import TensorProto

# Bits per element, by TensorProto.DataType name.  STRING has no fixed size: we count a
# pointer-sized handle (8 bytes), which is what a runtime keeps in the tensor buffer.
_BITS_BY_NAME: dict[str, int] = {
    "FLOAT": 32, "UINT8": 8, "INT8": 8, "UINT16": 16, "INT16": 16, "INT32": 32, "INT64": 64,
    "STRING": 64, "BOOL": 8, "FLOAT16": 16, "DOUBLE": 64, "UINT32": 32, "UINT64": 64,
    "COMPLEX64": 64, "COMPLEX128": 128, "BFLOAT16": 16,
    "FLOAT8E4M3FN": 8, "FLOAT8E4M3FNUZ": 8, "FLOAT8E5M2": 8, "FLOAT8E5M2FNUZ": 8,
    "UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "FLOAT8E8M0": 8, "UINT2": 2, "INT2": 2,
    "FLOAT6E2M3": 6, "FLOAT6E3M2": 6,
}

BITS_BY_TYPE: dict[int, int] = {
    value: _BITS_BY_NAME[name]
    for name, value in TensorProto.DataType.items()
    if name in _BITS_BY_NAME
}


def dtype_name(elem_type: int) -> str:
    """Lower-case ONNX name of an element type (``float``, ``int4`` ...)."""
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type{elem_type}"


def element_bits(elem_type: int) -> int:
    """Bits per element; unknown future types are an error rather than a guess."""
    try:
        return BITS_BY_TYPE[elem_type]
    except KeyError:
        from stowage.errors import ModelError

        raise ModelError(
            f"unsupported ONNX element type {elem_type} ({dtype_name(elem_type)})"
        ) from None


def tensor_bytes(shape: tuple[int, ...], elem_type: int, element_bytes: int | None = None) -> int:
    """Byte size of a dense tensor; ``element_bytes`` overrides the element size (COSMA's 8-bit
    setting uses ``element_bytes=1`` on float models).  A scalar has one element."""
    numel = math.prod(shape) if shape else 1
    if element_bytes is not None:
        return numel * element_bytes
    return (numel * element_bits(elem_type) + 7) // 8
