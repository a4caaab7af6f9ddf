"""The exact packer on a cold numba cache: a background compile, the Python search meanwhile.

Compiling the kernel in the process took 10-15 s past the time limit on a fresh install's first
compile (PP-OCRv4 det at 128 KiB: 27 s for a 10 s limit, 12.5 s once the cache was warm).  Now
``engine="auto"`` starts one detached compile and packs with the Python search, node for node the
same; ``engine="jit"`` still compiles in the process."""

from __future__ import annotations

import functools

import pytest

import stowage.solvers.alloc.exact as exact
from stowage.solvers.alloc.interval import Interval


def _cold(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    started: list[int] = []
    monkeypatch.setattr(exact, "_jit_cache_warm", lambda: False)
    monkeypatch.setattr(exact, "_jit_compiled", functools.cache(lambda: "compiled"))
    monkeypatch.setattr(exact, "_compile_in_background", lambda: started.append(1))
    return started


def test_a_cold_cache_compiles_in_the_background_and_packs_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _cold(monkeypatch)
    assert exact._jit_module() is None and started == [1]
    assert exact._jit_module(inline=True) == "compiled"   # engine="jit": in the process
    assert exact._jit_module() == "compiled"              # once loaded, every later solve uses it


def test_the_cold_path_packs_exactly_as_the_python_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four buffers of 2 B each, pairwise overlapping in time except the last: 6 B, as the
    Python search finds it, and the same result on the cold path."""
    bufs = [Interval(0, 0, 3, 2), Interval(1, 1, 3, 2), Interval(2, 2, 3, 2), Interval(3, 4, 5, 2)]
    python = exact.solve_allocation(bufs, 8, 5.0, engine="python")
    started = _cold(monkeypatch)
    cold = exact.solve_allocation(bufs, 8, 5.0, engine="auto")
    assert started   # asked for (the real one starts at most one process)
    assert python.offsets is not None and cold.offsets == python.offsets
    assert max(o + b.size for o, b in zip(cold.offsets, bufs, strict=True)) == 6


def test_the_cache_check_reads_numbas_index_file() -> None:
    """On this machine the session start compiled the kernel, so its index file exists."""
    pytest.importorskip("numba")
    assert exact._jit_cache_warm()
