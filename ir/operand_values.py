"""Constant integer operands of Slice and Pad, given to the IR in their older attribute form.

Tiling needs to know which rows a Slice or a Pad reads (``stowage.ir.tiling``).  Since opset
10 (Slice) and 11 (Pad) the numbers that say so are *inputs* (``starts``, ``ends``, ``axes``,
``steps``; ``pads``), and the IR keeps no tensor values.  When those inputs are small integer
constants (initializers or ``Constant`` nodes, as exporters write them), the importer records
their values as the attributes the operators had before (Slice-1's ``starts`` / ``ends`` /
``axes``, plus ``steps``; Pad-2's ``pads``), so every reader of the IR (row maps, the
validator's rule 8) sees one form.  An operand computed at run time leaves the operator as it
is: it then needs whole tensors, as before.  The model file is not changed; the simulator
executes the node with its own inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

#: Constants longer than this are not operand lists of a 4-D Slice or Pad.
MAX_ELEMENTS = 16

_STANDARD = frozenset({"", "ai.onnx"})
#: Per operator, its operand positions that carry attribute-form values, by name.
_OPERANDS = {"Slice": ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")), "Pad": ((1, "pads"),)}


def _ints(t: TensorProto) -> tuple[int, ...] | None:
    if t.data_location == TensorProto.EXTERNAL:
        return None
    try:
        arr = numpy_helper.to_array(t)
    except Exception:  # noqa: BLE001 - a malformed constant is just not a known value
        return None
    if arr.dtype.kind not in "iu" or arr.ndim > 1 or arr.size > MAX_ELEMENTS:
        return None
    return tuple(int(v) for v in np.asarray(arr).reshape(-1))


def constant_ints(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Small 0-D or 1-D integer constants of ``graph`` (initializers and ``Constant`` nodes)."""
    out: dict[str, tuple[int, ...]] = {}
    for t in graph.initializer:
        if t.dims and len(t.dims) > 1:
            continue
        v = _ints(t)
        if v is not None:
            out[t.name] = v
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in _STANDARD or not node.output:
            continue
        for a in node.attribute:
            if a.name == "value" and a.type == AttributeProto.TENSOR:
                v = _ints(a.t)
                if v is not None:
                    out[node.output[0]] = v
    return out


def operand_attributes(node: onnx.NodeProto, consts: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The attribute form of ``node``'s constant operands (empty when it has none, when one of
    them is computed at run time, or when the node has the attributes already)."""
    spec = _OPERANDS.get(node.op_type)
    if spec is None or node.domain not in _STANDARD or len(node.input) < 2:
        return {}
    if node.op_type == "Pad" and len(node.input) > 3 and node.input[3]:
        return {}  # Pad-18's axes: pads for some axes only, no older form
    have = {a.name for a in node.attribute}
    out: dict[str, tuple[int, ...]] = {}
    for pos, name in spec:
        src = node.input[pos] if pos < len(node.input) else ""
        if not src:
            continue  # an optional operand left out: its default
        if name in have or src not in consts:
            return {}
        out[name] = consts[src]
    return out


__all__ = ["MAX_ELEMENTS", "constant_ints", "operand_attributes"]
