"""Plans of the spilling solvers, executed by the simulator (``stowage.simulate``), compute
what ONNX Runtime computes: spills, reloads at other offsets and packed reuse never corrupt a
tensor.  A small sample of random DAGs, sizes and capacities."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.ir.lifetimes import m_r, peak_live
from stowage.ir.onnx_import import import_model
from stowage.simulate import simulate
from stowage.solvers.heuristic import HeuristicParams
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from tests.spill_cases import random_models, three_level, two_level

SOLVERS = ("heuristic", "divide", "baseline-fileorder-belady", "baseline-minpeak-greedy")


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=random_models(max_ops=8), frac=st.floats(0, 0.4), weights_in_compute_level=st.booleans(),
       name=st.sampled_from(SOLVERS), levels=st.sampled_from([2, 3]))
def test_random_dag_plans_match_onnx_runtime(model, frac, weights_in_compute_level, name, levels):
    graph = import_model(model)  # float32: real element sizes, as the simulator requires
    lo, hi = m_r(graph, weights_in_compute_level), peak_live(graph, None, weights_in_compute_level)
    cap = int(lo + frac * (hi - lo))
    target = two_level(cap, 4) if levels == 2 else three_level(cap, 64)
    params = HeuristicParams(order_time=0.2, improve_iters=3, pack_time=0.1) if name == "heuristic" else None
    plan = solve(Problem(graph, target, weights_in_compute_level, time_limit=2.0), name, params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, path)
        result = simulate(path, graph, plan)
    assert result.ok, result.first_problem
    assert result.corruptions == ()
