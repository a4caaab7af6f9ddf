"""Stowage: a compiler-style memory planner for DNN accelerators.

Public API (small and versioned): ``load_graph``, ``load_target``, ``compile``, ``validate``,
``sweep``.
Imports are lazy so that ``python -m planner --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["compile", "load_graph", "load_target", "sweep", "validate", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "compile":
        from planner.api import compile

        return compile
    if name == "sweep":
        from planner.sweep import sweep

        return sweep
    if name == "validate":
        from planner.validate import validate

        return validate
    if name == "load_graph":
        from ir.onnx_import import load_graph

        return load_graph
    if name == "load_target":
        from targets.hierarchy import load_target

        return load_target
    raise AttributeError(name)
