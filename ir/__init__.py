"""Graph IR: tensors, operators, buffers, the ONNX importer and lifetime analysis."""

from ir.errors import StowageError
from ir.graph import Buffer, Graph, Operator, Tensor, TensorKind
from ir.lifetimes import Lifetimes, lifetimes, m_r, peak_live, summarize
from ir.onnx_import import load_graph

__all__ = [
    "Buffer", "Graph", "Lifetimes", "Operator", "StowageError", "Tensor", "TensorKind",
    "lifetimes", "load_graph", "m_r", "peak_live", "summarize",
]
