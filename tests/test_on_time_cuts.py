"""On time (issue 14, item 3): the compile path's cut points.  Each phase that runs once a valid
plan is in hand stops at the caller's deadline and returns the best plan so far, valid and
flagged ``solver.stopped_by = "time"``; here each is given a deadline that has already passed.

The tiny CNN (``models/tiny_cnn.onnx``, 8-bit, in place, ethos-u55-256, M_R = 8,196 B): at M_R
whole tensors move 8,192 B and a cascade through its gate moves nothing (README); at 4,098 B
(below M_R) the tiled plan moves 8,192 B (measured on an idle machine, 10 s limit)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import stowage.api as api
from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.plan.validate import validate
from stowage.solvers.problem import Problem
from stowage.solvers.tiling.partition import OutOfTime
from stowage.solvers.tiling.plan import plan_tiled
from stowage.targets.hierarchy import load_target

TINY = Path(__file__).resolve().parents[1] / "models" / "tiny_cnn.onnx"


def _problem(capacity: int, limit: float = 10.0) -> tuple[Problem, object]:
    g = load_model(TINY, element_bytes=1, in_place=True)
    hier = load_target("ethos-u55-256").with_capacity(capacity)
    return Problem(graph=g, target=hier, time_limit=limit), g


def test_m_r_resolves_without_the_budgets_scheduler():
    from stowage.solvers.budgets import resolve_capacity, target_budgets

    g = load_model(TINY, element_bytes=1, in_place=True)
    hier = load_target("ethos-u55-256")
    assert resolve_capacity("M_R", g, hier, False) == 8196
    assert resolve_capacity("m_r", g, hier, True) == target_budgets(g, hier, True).m_r


def test_above_m_r_a_passed_deadline_returns_the_whole_tensor_plan_validated_and_flagged(monkeypatch):
    on_time = compile_plan(TINY, capacity="M_R", element_bytes=1, time_limit=10)
    assert on_time.cascades and on_time.metrics.noncompulsory_bytes == 0
    # The promise ended before the tiled attempt could start: the whole-tensor plan, checked
    # before the attempt, is returned as it is, flagged.
    monkeypatch.setattr(api, "promise_end", lambda entered, limit: time.monotonic() - 1.0)
    t0 = time.monotonic()
    cut = compile_plan(TINY, capacity="M_R", element_bytes=1, time_limit=10)
    assert time.monotonic() - t0 < 10
    assert not cut.cascades
    assert cut.metrics.noncompulsory_bytes == 8192
    assert cut.solver.stopped_by == "time"
    assert validate(load_model(TINY, element_bytes=1, in_place=True), cut).ok


def test_the_tiled_attempt_with_a_plan_in_hand_and_a_passed_deadline_starts_nothing():
    prob, _g = _problem(8196)
    assert api._try_tiled(prob, "auto", None, stop_at=time.monotonic() - 1.0) == "time"
    with pytest.raises(OutOfTime):
        plan_tiled(prob, "auto", None, stop_at=time.monotonic() - 1.0, in_hand=True)
    # Without a deadline the same attempt makes the 0 B tiled plan.
    made = api._try_tiled(prob, "auto", None)
    assert not isinstance(made, str) and made.metrics.noncompulsory_bytes == 0


def test_below_m_r_a_passed_deadline_still_returns_the_first_tiled_plan(caplog):
    prob, g = _problem(4098)
    unbounded = plan_tiled(prob, "auto", None)
    assert validate(g, unbounded).ok and unbounded.metrics.noncompulsory_bytes == 8192
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stowage.solvers.tiling.plan"):
        cut = plan_tiled(prob, "auto", None, stop_at=time.monotonic() - 1.0)
    # Nothing else to return below M_R: one candidate is planned, the phases after it are cut.
    assert cut.cascades and validate(g, cut).ok
    assert cut.solver.stopped_by == "time"
    assert cut.metrics.noncompulsory_bytes >= unbounded.metrics.noncompulsory_bytes
    messages = [r.getMessage() for r in caplog.records]
    assert any("smallest-cascades search ran out of time; the least-traffic partition stands" in m for m in messages)


@pytest.mark.slow
def test_pnasnet5_at_m_r_returns_on_time():
    # PNASNet-5 (1,100+ operators) at M_R: the whole-tensor plan moves bytes, so the tiled
    # attempt follows; its smallest-cascades search alone was 6-8 s of CPU past a 4 s limit
    # (12-24 s of wall at load 7-15, docs/benchmarks.md).  Now it stops at the promise.
    from stowage.ir.inplace import fuse_in_place
    from stowage.ir.onnx_import import load_graph
    from stowage.solvers.registry import available
    from tests.test_on_time import allowed

    available()
    g = fuse_in_place(load_graph(TINY.parent / "suite" / "pnasnet5.onnx", element_bytes=1))
    t0 = time.monotonic()
    plan = compile_plan(g, capacity="M_R", time_limit=4.0)
    wall = time.monotonic() - t0
    assert wall <= allowed(4.0), f"{wall:.1f}s for a 4s limit"
    assert plan.metrics.noncompulsory_bytes >= (plan.solver.lower_bound or 0)
