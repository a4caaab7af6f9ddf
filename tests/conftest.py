"""Shared fixtures: small hand-built ONNX models and the onnx wheel's light model zoo."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest

LIGHT_ZOO = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"


def light_models() -> list[Path]:
    return sorted(LIGHT_ZOO.glob("*.onnx"))


@pytest.fixture
def light_zoo() -> Path:
    return LIGHT_ZOO
