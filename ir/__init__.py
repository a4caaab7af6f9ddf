"""Graph IR: tensors, operators, buffers, the ONNX importer and lifetime analysis.

``load_graph`` is imported lazily: the IR itself needs no onnx, and code that only reads a
graph (solvers, the validator, the CLI's ``--help``) should not pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stowage.errors import StowageError
from stowage.ir.graph import Buffer, Graph, Operator, Tensor, TensorKind
from stowage.ir.lifetimes import Lifetimes, lifetimes, m_r, peak_live, summarize

if TYPE_CHECKING:
    from stowage.ir.onnx_import import load_graph

__all__ = [
    "Buffer", "Graph", "Lifetimes", "Operator", "StowageError", "Tensor", "TensorKind",
    "lifetimes", "load_graph", "m_r", "peak_live", "summarize",
]


def __getattr__(name: str) -> Any:
    if name == "load_graph":
        from stowage.ir.onnx_import import load_graph

        return load_graph
    raise AttributeError(f"module 'stowage.ir' has no attribute {name!r}")
