"""Stowage: a compiler-style memory planner for DNN accelerators.

Public API (small and versioned): ``load_graph``, ``load_target``, ``compile``, ``validate``,
``sweep``.  Imports are lazy so that ``stowage --help`` does not pay for onnx, OR-Tools or
matplotlib.  No submodule shares a name with these functions, so ``stowage.validate`` is the
function whatever has been imported before.

Layers (each imports only the ones before it; ``tests/test_layers.py`` checks it):
``stowage.errors`` <- ``stowage.ir`` <- ``stowage.targets`` <- ``stowage.plan`` <-
``stowage.solvers`` <- ``stowage.simulate``, ``stowage.backend``, ``stowage.tools`` <-
``stowage.api``, ``stowage.cli``, ``stowage.commands``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "compile", "load_graph", "load_target", "sweep", "validate"]

if TYPE_CHECKING:
    from stowage.api import compile
    from stowage.ir.onnx_import import load_graph
    from stowage.plan.validate import validate
    from stowage.targets.hierarchy import load_target
    from stowage.tools.sweep import sweep

_LAZY = {
    "compile": "stowage.api",
    "sweep": "stowage.tools.sweep",
    "validate": "stowage.plan.validate",
    "load_graph": "stowage.ir.onnx_import",
    "load_target": "stowage.targets.hierarchy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stowage' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
