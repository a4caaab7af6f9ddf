"""Shared test data: the onnx wheel's light model zoo (the small hand-built models are in helpers.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

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


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """``time.perf_counter`` advancing ``step`` seconds per reading from the moment it is
    switched on: the scheduler reads the clock once per DP layer, per beam layer and per 16
    local-search moves, so elapsed "time" is proportional to its work, as on a slow machine
    (the compiled packer reads it through numba's object mode, so it sees the patch too:
    tests/test_exact_pack_work.py)."""
    def switch(step: float) -> None:
        ticks = [0]

        def clock() -> float:
            ticks[0] += 1
            return 1000.0 + step * ticks[0]

        monkeypatch.setattr(time, "perf_counter", clock)

    return switch


@pytest.fixture
def fast_clock(monkeypatch):
    """``time.perf_counter`` running ``factor`` times fast from the moment it is switched on
    (tests/test_load_independent.py, tests/test_search_work.py)."""
    real = time.perf_counter

    def switch(factor: float) -> None:
        t0 = real()
        monkeypatch.setattr(time, "perf_counter", lambda: t0 + factor * (real() - t0))

    return switch
