"""Shared test data: the onnx wheel's light model zoo (the small hand-built models are in helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

LIGHT_ZOO = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"


def light_models() -> list[Path]:
    """The zoo's models in name order, so that parametrized test ids are stable across runs."""
    return sorted(LIGHT_ZOO.glob("*.onnx"))


def pytest_sessionstart(session: object) -> None:
    """Compile (or load) the exact packer's numba kernel once, in this process, before any
    test: on a cold cache (a fresh clone in CI) ``engine="auto"`` would otherwise pack with the
    Python search until a background compile has written the cache, and tests with short time
    limits would then run at that speed."""
    del session
    from stowage.solvers.alloc.exact import _jit_compiled

    _jit_compiled()
