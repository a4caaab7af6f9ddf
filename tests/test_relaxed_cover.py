"""When the group and disjunctive bounds cannot raise the bound (``stowage.solvers.exact.
relaxed_cover``): hand-checked covers of one order, the pipeline's skip rule on a case where
both bounds indeed return the bound already proven and on one where the group bound pays, and
the theorem itself on random graphs -- every cut, group and disjunctive bound is at most the
cheapest once-paid cover of every topological order, which is at most that order's
no-address optimum (the gap model)."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.solvers.budgets import target_budgets
from stowage.solvers.exact.auto import AutoPipeline
from stowage.solvers.exact.cut_bound import CutDag, cut_bound
from stowage.solvers.exact.disjunctive_bound import disjunctive_bound
from stowage.solvers.exact.group_bound import fixed_group_bound, group_bound
from stowage.solvers.exact.joint_data import greedy_solution, joint_data
from stowage.solvers.exact.params import ExactParams
from stowage.solvers.exact.relaxed_cover import cheapest_cover, over_steps
from stowage.solvers.exact.residency_model import solve_residency
from stowage.targets.hierarchy import load_target
from tests.test_exact import topo_orders
from tests.test_exact_lns import by_name, make_graph, problem, random_dag, two_branches


def reloaded_twice():
    """p -> X (16 B), then a chain a1, a2, m1, a3, m2 at 112 B where a2 (A1 48 + A2 64) and a3
    (M1 32 + A3 80) fill the capacity while X waits for m1 and m2: X is stored once and
    reloaded twice (48 B, the optimum), but each single-spill relaxation charges it once (32)."""
    sizes = {"in": 16, "X": 16, "A1": 48, "A2": 64, "M1": 32, "A3": 80, "y": 16}
    nodes = [("p", ["in"], ["X"]), ("a1", ["X"], ["A1"]), ("a2", ["A1"], ["A2"]), ("m1", ["X", "A2"], ["M1"]),
             ("a3", ["M1"], ["A3"]), ("m2", ["X", "A3"], ["y"])]
    return make_graph(sizes, nodes, ["in"], ["y"])


def test_the_cover_of_two_branches_run_one_after_the_other() -> None:
    # At 80 B, order a1, a2, b1, b2, j: x (16, an input: a reload of 16) crosses a2, which
    # fills the capacity; A2 (16, an activation: store + reload, 32) crosses b1 and b2, each
    # full.  Both must be off-chip: 48, the joint optimum.  Interleaved (a1, b1, a2, b2, j),
    # A1 and B1 (64 each, 128 each) and A2 must go: 288.
    g = two_branches()
    data = joint_data(problem(g, 80), "joint")
    dag = CutDag(data)
    seq = by_name(g, ["a1", "a2", "b1", "b2", "j"])
    rows = over_steps(data, dag, seq)
    name = {b: t for t, b in g.tensor_buffer.items()}
    assert [(e, [name[data.buffers[dag.bufs[i].k].id] for i in m]) for e, m in rows] == [
        (16, ["x"]), (16, ["A2"]), (16, ["A2"])]
    assert cheapest_cover(data, seq, 1000, 1.0, 30.0) == 48
    assert cheapest_cover(data, seq, 47, 1.0, 30.0) is None          # nothing cheaper exists
    assert cheapest_cover(data, by_name(g, ["a1", "b1", "a2", "b2", "j"]), 1000, 1.0, 30.0) == 288
    # At 96 B the branch-by-branch order fits as it is.
    assert cheapest_cover(joint_data(problem(g, 96), "joint"), seq, 0, 1.0, 30.0) == 0


def test_the_pipeline_skips_the_relaxations_where_they_cannot_pay() -> None:
    g = reloaded_twice()
    p = problem(g, 112)
    pipe = AutoPipeline(p, ExactParams(), time.perf_counter(), 10.0, 1, 0)
    seq = by_name(g, ["p", "a1", "a2", "m1", "a3", "m2"])
    pipe.offer(greedy_solution(pipe.data, seq), "greedy")
    pipe.cut()
    assert pipe.lb == 32 and pipe.best_value is not None and pipe.best_value > 32
    # The incumbent's order fits with X off-chip, paid once: 32 <= 32.
    assert cheapest_cover(pipe.data, seq, 32, 1.0, 30.0) == 32
    assert not pipe.relaxations_can_pay()
    # And indeed neither bound gets past 32 here (the chain and cover IPs, which charge each
    # reload, prove 48).
    data = pipe.data
    cut = cut_bound(data, time.perf_counter() + 30)
    assert group_bound(data, 5.0, time.perf_counter() + 30, cut.found).bound == 32
    assert fixed_group_bound(data, list(g.file_order()), 5.0, 30.0) == 32
    assert disjunctive_bound(data, 100, time.perf_counter() + 30).bound == 32


def test_the_pipeline_runs_the_group_bound_where_it_pays() -> None:
    # Two branches at 80 B: the cut bound proves 16, the incumbent's order needs 48 paid
    # once, and the group bound proves 48.
    g = two_branches()
    pipe = AutoPipeline(problem(g, 80), ExactParams(), time.perf_counter(), 10.0, 1, 0)
    pipe.offer(greedy_solution(pipe.data, by_name(g, ["a1", "a2", "b1", "b2", "j"])), "greedy")
    pipe.cut()
    assert pipe.lb == 16 and pipe.relaxations_can_pay()
    pipe.group()
    assert pipe.lb == 48 and pipe.how == "group bound"


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_ops=st.integers(4, 6), slack=st.sampled_from([0, 16, 48]),
       weights=st.booleans())
def test_no_relaxation_exceeds_the_cheapest_cover_of_any_order(seed: int, n_ops: int, slack: int,
                                                              weights: bool) -> None:
    g = random_dag(random.Random(seed), n_ops, weights)
    cap = target_budgets(g, load_target("ethos-u55-256"), weights).m_r + slack
    data = joint_data(problem(g, cap, weights), "joint")
    cut = cut_bound(data, time.perf_counter() + 30)
    bounds = {"cut": cut.bound,
              "group": group_bound(data, 5.0, time.perf_counter() + 30, cut.found).bound,
              "group of all": fixed_group_bound(data, list(g.file_order()), 5.0, 30.0),
              "disjunctive": disjunctive_bound(data, 200, time.perf_counter() + 30).bound}
    for seq in topo_orders(g)[:60]:
        cover = cheapest_cover(data, seq, 10**9, 5.0, 30.0)
        gap = solve_residency(data, seq, 10.0)
        assert cover is not None and gap.value is not None
        assert cover <= gap.value, seq                     # the gap model pays every spill at least once
        for name, value in bounds.items():
            assert value <= cover, (name, value, cover, seq)


def test_cheap_proofs_stop_at_a_bound_without_packing() -> None:
    # exact above M_R asks auto's cheap proofs at M_R to stop once their bound reaches its
    # incumbent: no plan at M_R can then be cheaper.  Here the cover bound proves 48 at once.
    from stowage.solvers.exact.auto import cheap_proofs

    p = problem(reloaded_twice(), 112)
    full = cheap_proofs(p, "auto", 10.0, 1, 0)
    assert full.plan is not None and full.plan.solver.status == "optimal"
    assert (full.bound, full.plan.metrics.noncompulsory_bytes) == (48, 48)
    early = cheap_proofs(p, "auto", 10.0, 1, 0, stop_at=48)
    assert (early.plan, early.bound, early.how) == (None, 48, "cover bound")
    assert cheap_proofs(p, "auto", 10.0, 1, 0, stop_at=49).plan is not None    # 48 < 49: packed
