"""The four COSMA baselines: hand-checked traffic and validator-checked random cases."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.ir.lifetimes import m_r, peak_live
from stowage.solvers.baselines import BASELINES
from stowage.solvers.problem import Problem
from stowage.solvers.registry import available, solve
from tests.spill_cases import fanout_graph, random_graphs, two_level


def test_registered():
    assert set(BASELINES) <= set(available())


def test_fanout_hand_checked():
    # See tests/test_spill.py: file order spills a and c (2 x (16 + 16) = 64 bytes); the
    # min-peak order relu, sig, add_d, tanh, add_y only drops and reloads the input x (16).
    g = fanout_graph()
    expected = {"baseline-fileorder-belady": 64, "baseline-fileorder-greedy": 64,
                "baseline-minpeak-belady": 16, "baseline-minpeak-greedy": 16}
    for name, traffic in expected.items():
        plan = solve(Problem(g, two_level(48, 16), time_limit=2.0), name)
        assert plan.metrics.noncompulsory_bytes == traffic, name
        # compulsory: x in (16) + y out (16)
        assert plan.metrics.compulsory_bytes == 32
        assert plan.solver.lower_bound is not None and plan.solver.lower_bound <= traffic


def test_unbounded_capacity_never_spills():
    g = fanout_graph()
    for name in BASELINES:
        plan = solve(Problem(g, two_level(None, 16), time_limit=2.0), name)
        assert plan.metrics.noncompulsory_bytes == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=random_graphs(), frac=st.floats(0, 1), weights_in_compute_level=st.booleans(), name=st.sampled_from(BASELINES))
def test_random_dags(g, frac, weights_in_compute_level, name):
    lo, hi = m_r(g, weights_in_compute_level), peak_live(g, None, weights_in_compute_level)
    prob = Problem(g, two_level(int(lo + frac * (hi - lo))), weights_in_compute_level, time_limit=1.0)
    plan = solve(prob, name)  # validated inside solve
    assert plan.metrics.noncompulsory_bytes >= plan.solver.lower_bound
