"""On time (issue 14): a solver returns within ``time_limit`` + 10% + 2 s of wall time, with
the best plan found so far, and says in ``solver.stopped_by`` when the wall clock (not a work
budget) ended its search.  The bound is checked with a generous margin (CI machines are shared
and loaded); ``benchmarks/planner_quality.py`` records wall vs limit for every run."""

from __future__ import annotations

import random
import time

import onnx
import pytest
from onnx import TensorProto, helper

from stowage.ir.graph import Graph
from stowage.ir.lifetimes import m_r
from stowage.ir.onnx_import import import_model
from stowage.plan.json_format import plan_from_dict, plan_to_dict
from stowage.solvers.problem import Problem
from stowage.solvers.registry import available, solve
from tests.spill_cases import fanout_graph, two_level

#: What the issue promises, and the factor allowed on top of it for a loaded test machine:
#: ``benchmarks/on_time.py`` measured at most 0.92 of the promise at load average 5-6 on the
#: 2-core VM (10,000 operators, ``auto``: 8.96-10.59 s for 10 s, 4.12-5.91 s for 4 s;
#: docs/benchmarks.md); the margin was 2.0 while the linear passes ignored the limit
#: (24.6 s for 10 s at load 10-13).
SLACK_SHARE, SLACK_SECONDS, LOAD_MARGIN = 0.1, 2.0, 1.5


def layered_model(n: int, seed: int = 0, name: str = "layered") -> onnx.ModelProto:
    """A random DAG of ``n`` Relu / Add / Concat operators over [1, w] tensors, each reading
    recent tensors (a window of 8): residual-like and branchy parts.  Also the large graphs
    of ``benchmarks/heuristics.py``."""
    rng = random.Random(seed)
    widths = {"x": 64}
    names = ["x"]
    nodes = []
    for i in range(n):
        recent = names[-8:]
        a = rng.choice(recent)
        out = f"t{i}"
        r = rng.random()
        same = [m for m in recent if widths[m] == widths[a] and m != a]
        if r < 0.3 and same:
            nodes.append(helper.make_node("Add", [a, rng.choice(same)], [out], name=f"n{i}"))
            widths[out] = widths[a]
        elif r < 0.45 and widths[a] <= 256:
            b = rng.choice(recent)
            nodes.append(helper.make_node("Concat", [a, b], [out], name=f"n{i}", axis=1))
            widths[out] = widths[a] + widths[b]
        else:
            nodes.append(helper.make_node("Relu", [a], [out], name=f"n{i}"))
            widths[out] = widths[a]
        names.append(out)
    consumed = {i for nd in nodes for i in nd.input}
    outs = [m for m in names[1:] if m not in consumed]
    v = lambda m: helper.make_tensor_value_info(m, TensorProto.FLOAT, [1, widths[m]])  # noqa: E731
    g = helper.make_graph(nodes, name, [v("x")], [v(m) for m in outs])
    return helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])


def layered_graph(n: int, seed: int = 0) -> Graph:
    """``layered_model`` imported at 8-bit sizes."""
    return import_model(layered_model(n, seed), element_bytes=1)


def allowed(limit: float) -> float:
    return LOAD_MARGIN * (limit * (1 + SLACK_SHARE) + SLACK_SECONDS)


@pytest.mark.slow
@pytest.mark.parametrize("solver, limit", [("auto", 10.0), ("auto", 4.0), ("exact", 4.0)])
def test_auto_on_a_10000_operator_graph_returns_on_time(solver, limit):
    g = layered_graph(10_000)
    assert len(g.computing_ops) == 10_000
    # The passes that cannot shrink with the limit (one simulation, the assembly, the
    # validation) are measured against one simulation's wall time at the start and the search
    # stops early enough for them (``stowage.solvers.divide.POST_SEARCH_PASSES``).
    available()    # importing the solver modules (OR-Tools...) is the process's start, not the run
    prob = Problem(g, two_level(m_r(g, False)), time_limit=limit)
    t0 = time.perf_counter()
    # exact: its reference heuristic gets what the passes after it leave
    # (``stowage.solvers.exact.auto.AutoPipeline.reference_limit``).
    plan = solve(prob, solver)    # validated inside solve (part of the wall time)
    wall = time.perf_counter() - t0
    assert wall <= allowed(limit), f"{wall:.1f}s for a {limit:g}s limit"
    assert plan.metrics.noncompulsory_bytes >= (plan.solver.lower_bound or 0)
    assert plan.solver.found_by is not None


def test_stopped_by_is_absent_when_work_budgets_end_the_search():
    # The fan-out graph (5 operators) finishes long before any wall-clock stop: no stopped_by,
    # and the JSON form leaves the key out (older readers see the same file as before).
    plan = solve(Problem(fanout_graph(), two_level(48, 16), time_limit=2.0), "auto")
    assert plan.solver.stopped_by is None
    d = plan_to_dict(plan)
    assert "stopped_by" not in d["solver"]
    d["solver"]["stopped_by"] = "time"
    assert plan_from_dict(d).solver.stopped_by == "time"


def test_same_seed_same_plan_within_work_budgets():
    # Load independence: a run that no wall clock stopped is the same plan every time.
    g = layered_graph(16, seed=3)
    prob = Problem(g, two_level(m_r(g, False) + 64), time_limit=10.0, seed=2)
    a, b = solve(prob, "auto"), solve(prob, "auto")
    assert a.solver.stopped_by is None and b.solver.stopped_by is None
    assert (a.steps, a.placements, a.transfers) == (b.steps, b.placements, b.transfers)


@pytest.mark.parametrize(("ops", "seed"), [(60, 1), (120, 4)])
def test_exact_returns_the_reference_plan_itself_when_it_stays_the_incumbent(ops, seed):
    # When nothing after exact's reference heuristic beats it, exact's answer is the
    # heuristic's own plan (the same steps, placements and transfers), not the plan read back
    # and lowered a second time (one more assembly: 0.5-1.4 s on 10,000 operators): the plan
    # of ``--solver heuristic`` for the same problem and seed.  At M_R both spill (896 B and
    # 10,752 B on these graphs at an idle or loaded machine).
    g = layered_graph(ops, seed=seed)
    prob = Problem(g, two_level(m_r(g, False)), time_limit=2.0, seed=1)
    ex, heur = solve(prob, "exact"), solve(prob, "heuristic")
    cut = "time" in (ex.solver.stopped_by, heur.solver.stopped_by)
    if ex.metrics.noncompulsory_bytes > heur.metrics.noncompulsory_bytes and cut:
        # exact's reference run is the heuristic's plan only when work, not the clock, ends both.
        pytest.skip("a wall-clock stop gave exact's reference heuristic another plan (the plans say so)")
    assert ex.metrics.noncompulsory_bytes <= heur.metrics.noncompulsory_bytes   # never worse
    if ex.solver.found_by != "heuristic":
        return                    # a later phase or a baseline won: nothing to compare
    same = (ex.steps, ex.placements, ex.transfers) == (heur.steps, heur.placements, heur.transfers)
    if not same and cut:
        pytest.skip("a wall-clock stop gave the two heuristic runs different plans (the plans say so)")
    assert same
    assert ex.solver.name == "exact" and ex.metrics.noncompulsory_bytes > 0
