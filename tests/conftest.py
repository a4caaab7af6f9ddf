"""Shared test data: the onnx wheel's light model zoo (the small hand-built models are in helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

LIGHT_ZOO = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"


def light_models() -> list[Path]:
    """The zoo's models in name order, so that parametrized test ids are stable across runs."""
    return sorted(LIGHT_ZOO.glob("*.onnx"))
