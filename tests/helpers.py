"""Builders for small hand-checked ONNX graphs (onnx.helper), shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def chain_model(n: int = 3, size: int = 16, opset: int = 17) -> onnx.ModelProto:
    """x[1,size] -> Relu -> Relu ... (n ops) -> y.  Every tensor is size*4 bytes."""
    nodes = []
    prev = "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(helper.make_node("Relu", [prev], [out], name=f"relu{i}"))
        prev = out
    g = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def diamond_model(opset: int = 17) -> onnx.ModelProto:
    """x[1,8] f32 (32 B) -> a=Relu(x), b=Sigmoid(x), c=Add(a,W) where W[1,8] is a weight,
    r=Reshape(c,[8]) (a view), y=Mul(b, Flatten(c)) -> y[1,8].

    Hand-computed, float32: every activation 32 B, W 32 B, shape constant 8 B.
    """
    w = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(1, 8), "W")
    shape = numpy_helper.from_array(np.array([1, 8], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["b"], name="sig"),
        helper.make_node("Add", ["a", "W"], ["c"], name="add"),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="view"),
        helper.make_node("Mul", ["b", "r"], ["y"], name="mul"),
    ]
    g = helper.make_graph(
        nodes, "diamond",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        initializer=[w, shape],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
