"""The order LNS of ``exact`` (``stowage.solvers.exact.lns``) and the disjunctive bound
(``stowage.solvers.exact.disjunctive_bound``): hand-checked cases, and property checks that
every bound stays at or below the traffic of plans from other solvers (judged by the
validator) and below the no-address optimum of every order."""

from __future__ import annotations

import itertools
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from stowage.ir.build import RawNode, RawTensor, build_graph
from stowage.ir.graph import Graph
from stowage.plan.validate import validate
from stowage.solvers.exact import lns
from stowage.solvers.exact.cut_bound import cut_bound, min_crossing_bytes
from stowage.solvers.exact.disjunctive_bound import disjunctive_bound
from stowage.solvers.exact.joint_data import check_solution, greedy_solution, joint_data, traffic_of
from stowage.solvers.exact.params import ExactParams
from stowage.solvers.exact.residency_model import solve_residency
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target
from tests.test_exact import topo_orders


def make_graph(sizes: dict[str, int], nodes: list[tuple[str, list[str], list[str]]], inputs: list[str],
               outputs: list[str], weights: dict[str, int] | None = None) -> Graph:
    weights = weights or {}
    tensors = [RawTensor(n, (s,), TensorProto.UINT8) for n, s in {**sizes, **weights}.items()]
    raw = [RawNode(name, "Add", tuple(i), tuple(o)) for name, i, o in nodes]
    return build_graph("lns", tensors, raw, inputs, outputs, initializers=list(weights), element_bytes=1)


def problem(graph: Graph, capacity: int, weights: bool = False, time_limit: float = 10.0) -> Problem:
    # ethos-u55-256: sram (alignment 16) and dram one hop away: a byte moved costs 1.
    return Problem(graph, load_target("ethos-u55-256").with_capacity(capacity), weights,
                   time_limit=time_limit, seed=0, workers=1)


def two_branches() -> Graph:
    """x -> a1 -> a2 and x -> b1 -> b2, joined by j.  Run branch by branch, the peak is 96 B
    (at a2: x 16 + A1 64 + A2 16); interleaved (a1, b1, ...) x, A1 and B1 meet at b1: 144 B."""
    sizes = {"x": 16, "A1": 64, "A2": 16, "B1": 64, "B2": 16, "y": 16}
    nodes = [("a1", ["x"], ["A1"]), ("a2", ["A1"], ["A2"]), ("b1", ["x"], ["B1"]), ("b2", ["B1"], ["B2"]),
             ("j", ["A2", "B2"], ["y"])]
    return make_graph(sizes, nodes, ["x"], ["y"])


def by_name(graph: Graph, names: list[str]) -> tuple[int, ...]:
    idx = {graph.operators[o].name: o for o in graph.file_order()}
    return tuple(idx[n] for n in names)


# -- the LNS -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("capacity", "bad", "best"), [(96, 256, 0), (80, 288, 48)])
def test_lns_reorders_an_interleaved_order(capacity: int, bad: int, best: int) -> None:
    # The interleaved order a1, b1, a2, b2, j: at 96 B the greedy spills A1 around b1 (and
    # more); branch by branch needs nothing.  At 80 B even the best order pays 48 B (the
    # exact joint model's optimum): the window (the whole order here) finds it.
    g = two_branches()
    data = joint_data(problem(g, capacity), "joint")
    start = greedy_solution(data, by_name(g, ["a1", "b1", "a2", "b2", "j"]))
    assert start is not None and traffic_of(data, start) == bad
    res = lns.search(data, start, 0, 5.0, time.perf_counter() + 30, 1, 0, lambda s: None, iteration_work=1.0)
    assert res.solution is not None and res.value == best
    assert check_solution(data, res.solution) is None
    assert res.solution.order == by_name(g, ["a1", "a2", "b1", "b2", "j"])
    assert not res.hit_wall


def chain_then_branches() -> Graph:
    """A chain p0 -> p1 -> p2 -> p3 in front of ``two_branches``: a window over the branches
    must leave the chain's steps alone."""
    sizes = {"x0": 16, "p0": 16, "p1": 16, "p2": 16, "x": 16, "A1": 64, "A2": 16, "B1": 64, "B2": 16, "y": 16}
    nodes = [("c0", ["x0"], ["p0"]), ("c1", ["p0"], ["p1"]), ("c2", ["p1"], ["p2"]), ("c3", ["p2"], ["x"]),
             ("a1", ["x"], ["A1"]), ("a2", ["A1"], ["A2"]), ("b1", ["x"], ["B1"]), ("b2", ["B1"], ["B2"]),
             ("j", ["A2", "B2"], ["y"])]
    return make_graph(sizes, nodes, ["x0"], ["y"])


def test_window_model_fixes_the_steps_outside_the_window() -> None:
    g = chain_then_branches()
    data = joint_data(problem(g, 96), "joint")
    order = by_name(g, ["c0", "c1", "c2", "c3", "a1", "b1", "a2", "b2", "j"])
    start = greedy_solution(data, order)
    assert start is not None and traffic_of(data, start) > 0
    # Steps 4..6 (a1, b1, a2) may move; b2 and j stay at 7 and 8: a1, a2, b1 fixes it.
    res = lns.window_model(data, start, 4, 6, True).solve(10, 1, 0, work=2.0)
    assert res.solution is not None and res.value == 0
    assert res.solution.order == by_name(g, ["c0", "c1", "c2", "c3", "a1", "a2", "b1", "b2", "j"])
    # A window over the chain alone cannot reorder anything (the chain has one order): the
    # best is the order's own optimum, 256 B (the gap model's), which the greedy already had.
    res = lns.window_model(data, start, 0, 3, True).solve(10, 1, 0, work=2.0)
    assert res.solution is not None and res.solution.order == order
    assert res.value == solve_residency(data, order, 10.0).value == traffic_of(data, start) == 256


def test_spill_windows_centre_on_the_costliest_spill() -> None:
    g = chain_then_branches()
    data = joint_data(problem(g, 96), "joint")
    start = greedy_solution(data, by_name(g, ["c0", "c1", "c2", "c3", "a1", "b1", "a2", "b2", "j"]))
    assert start is not None
    wins = lns.spill_windows(data, start, 4)
    assert wins and all(hi - lo == 3 and 0 <= lo and hi < 9 for lo, hi in wins)
    # The windows of a pass cover every step.
    covered = {s for lo, hi in lns.windows(data, start, 4) for s in range(lo, hi + 1)}
    assert covered == set(range(9))


def nas_like(seed: int, cells: int, branches: int = 4) -> Graph:
    """NAS-style cells: ``branches`` two-operator branches (a weighted one, then one more)
    on the two previous cells' outputs, summed pairwise and concatenated.  4 cells: 44
    operators."""
    rng = random.Random(seed)
    sizes, weights, nodes = {"x": 384}, {}, []
    prev = prev2 = "x"
    k = 0
    for c in range(cells):
        outs: list[str] = []
        for _b in range(branches):
            src = rng.choice([prev, prev2, *outs[-1:]])
            weights[f"w{k}"] = rng.choice([256, 512, 768, 1024])
            sizes[f"t{k}"] = rng.choice([128, 256, 384])
            nodes.append((f"conv{k}", [src, f"w{k}"], [f"t{k}"]))
            sizes[f"t{k + 1}"] = rng.choice([128, 256])
            nodes.append((f"op{k + 1}", [f"t{k}"], [f"t{k + 1}"]))
            outs.append(f"t{k + 1}")
            k += 2
        sizes[f"a{c}"] = sizes[f"b{c}"] = 256
        sizes[f"cat{c}"] = 384
        nodes += [(f"add{c}a", outs[:2], [f"a{c}"]), (f"add{c}b", outs[2:], [f"b{c}"]),
                  (f"concat{c}", [f"a{c}", f"b{c}"], [f"cat{c}"])]
        prev2, prev = prev, f"cat{c}"
    return make_graph(sizes, nodes, ["x"], [prev], weights)


@pytest.mark.slow
def test_lns_improves_the_greedy_on_nas_cells() -> None:
    # Weights in SRAM at M_R (1,792 B): from the greedy on the file order, two window solves
    # of 0.5 deterministic seconds already cut the traffic, the same way twice.
    from stowage.solvers.budgets import target_budgets

    g = nas_like(2, 2)
    assert len(g.computing_ops) == 22
    p = problem(g, target_budgets(g, load_target("ethos-u55-256"), True).m_r, True)
    data = joint_data(p, "joint")
    start = greedy_solution(data, g.file_order())
    assert start is not None
    res = lns.search(data, start, 0, 1.0, time.perf_counter() + 60, 1, 0, lambda s: None, iteration_work=0.5)
    assert res.iterations == 2 and res.work == 1.0
    assert res.solution is not None and check_solution(data, res.solution) is None
    assert res.value is not None and res.value < traffic_of(data, start)
    again = lns.search(data, start, 0, 1.0, time.perf_counter() + 60, 1, 0, lambda s: None, iteration_work=0.5)
    assert again.solution == res.solution            # deterministic for the same budget and seed


# -- the disjunctive bound --------------------------------------------------------------------
def test_disjunctive_bound_hand_checked() -> None:
    # At 80 B no order of ``two_branches`` is free, yet nothing crosses an operator in every
    # order (x is live at a2 only when b1 runs later): the crossing bound is 0.  Branching on
    # the order proves 32 B: a2 before b1 leaves x beside a2's 80 B (16 B over: x's reload,
    # 16), and the deeper leaves put A1 or B1 (64 B) beside the other branch.  The optimum
    # (the joint model's) is 48 B; at 96 B the branch-by-branch order is free and the bound 0.
    from stowage.solvers.analysis.traffic_bound import traffic_lower_bound

    g = two_branches()
    p = problem(g, 80)
    data = joint_data(p, "joint")
    assert traffic_lower_bound(p) == 0
    res = disjunctive_bound(data, 200, time.perf_counter() + 30)
    assert res.root == 0 and res.bound == 32 and res.exhausted
    assert solve(p, "exact", ExactParams(mode="joint")).metrics.noncompulsory_bytes == 48
    assert disjunctive_bound(joint_data(problem(g, 96), "joint"), 200, time.perf_counter() + 30).bound == 0


def random_dag(rng: random.Random, n_ops: int, with_weights: bool) -> Graph:
    sizes = {"x": rng.choice([16, 32])}
    weights: dict[str, int] = {}
    nodes = []
    avail = ["x"]
    for i in range(n_ops):
        ins = rng.sample(avail, rng.randint(1, min(3, len(avail))))
        if with_weights and rng.random() < 0.4:
            weights[f"w{i}"] = rng.choice([16, 32, 48])
            ins.append(f"w{i}")
        sizes[f"t{i}"] = rng.choice([16, 32, 48, 64])
        nodes.append((f"op{i}", ins, [f"t{i}"]))
        avail.append(f"t{i}")
    consumed = {t for _, ins, _ in nodes for t in ins}
    outputs = [t for t in avail if t not in consumed] or [avail[-1]]
    return make_graph(sizes, nodes, ["x"], outputs, weights)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_ops=st.integers(4, 6), slack=st.sampled_from([0, 16, 48]),
       weights=st.booleans())
def test_disjunctive_bound_below_every_order_and_every_plan(seed: int, n_ops: int, slack: int,
                                                            weights: bool) -> None:
    # Below the no-address optimum of EVERY topological order (the gap model is exact for a
    # fixed order without addresses, and every plan's residency is a point of it), and
    # below the traffic of the heuristic's and exact's plans (validated).
    from stowage.solvers.budgets import target_budgets

    g = random_dag(random.Random(seed), n_ops, weights)
    cap = target_budgets(g, load_target("ethos-u55-256"), weights).m_r + slack
    p = problem(g, cap, weights)
    data = joint_data(p, "joint")
    res = disjunctive_bound(data, 400, time.perf_counter() + 30)
    cut = cut_bound(data, time.perf_counter() + 30)
    assert cut.complete
    per_order = []
    for order in topo_orders(g)[:60]:
        r = solve_residency(data, order, 10.0)
        assert r.status == "optimal"
        assert r.value is not None
        per_order.append(r.value)
    assert res.bound <= min(per_order)
    assert cut.bound <= min(per_order)
    for name in ("heuristic", "exact"):
        plan = solve(p, name)
        assert validate(g, plan).ok
        assert res.bound <= plan.metrics.noncompulsory_bytes
        assert cut.bound <= plan.metrics.noncompulsory_bytes
        # exact's own bound (which now includes both) holds for the heuristic's plan too.
        assert (plan.solver.lower_bound or 0) <= min(per_order)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cells=st.integers(1, 2), slack=st.sampled_from([0, 128, 512]),
       weights=st.booleans())
def test_disjunctive_bound_below_plans_of_nas_cells(seed: int, cells: int, slack: int, weights: bool) -> None:
    # Larger graphs (11-22 operators, too many orders to enumerate): below the plans of the
    # heuristic and of every baseline, each judged by the validator.
    from stowage.solvers.baselines import BASELINES
    from stowage.solvers.budgets import target_budgets

    g = nas_like(seed, cells)
    cap = target_budgets(g, load_target("ethos-u55-256"), weights).m_r + slack
    p = problem(g, cap, weights, time_limit=2.0)
    data = joint_data(p, "joint")
    res = disjunctive_bound(data, 2000, time.perf_counter() + 30)
    cut = cut_bound(data, time.perf_counter() + 30)
    for name in ("heuristic", *BASELINES):
        plan = solve(p, name)
        assert validate(g, plan).ok
        assert res.bound <= plan.metrics.noncompulsory_bytes, name
        assert cut.bound <= plan.metrics.noncompulsory_bytes, name


def test_disjunctive_children_cover_every_order() -> None:
    # The branching step itself: for every unrelated pair (a, b) of a random DAG, each
    # topological order is an order of G + a->b or of G + b->a, and the closure of each child
    # holds exactly the orders that put a first (resp. b).
    from stowage.solvers.analysis.reach import reach_bitsets
    from stowage.solvers.exact.disjunctive_bound import add_precedence

    g = random_dag(random.Random(3), 6, False)
    ops = list(g.file_order())
    deps = g.op_dependencies()
    pos, anc0, desc0 = reach_bitsets(ops, deps.__getitem__)
    n = len(ops)
    orders = topo_orders(g)
    pairs = [(a, b) for a, b in itertools.combinations(range(n), 2) if not (anc0[b] >> a) & 1]
    assert pairs
    for a, b in pairs:
        for first, second in ((a, b), (b, a)):
            anc, desc = add_precedence(anc0, desc0, first, second)
            assert all((desc[x] >> y) & 1 == (anc[y] >> x) & 1 for x in range(n) for y in range(n))
            for order in orders:
                step = {pos[op]: s for s, op in enumerate(order)}
                consistent = all(step[x] < step[y] for y in range(n) for x in range(n) if (anc[y] >> x) & 1)
                assert consistent == (step[first] < step[second])


# -- the cut bound ---------------------------------------------------------------------------
def test_cut_bound_hand_checked() -> None:
    # two_branches: a2 runs with A1 + A2 = 80 B; whatever runs before it, x (b1 not yet run)
    # or B1 / B2 (b1 already run) is live beside it: at least 16 B in every order, and 0 at
    # the other operators.  At 80 B that is 16 B over, the cheapest being x's reload: 16.
    g = two_branches()
    data = joint_data(problem(g, 80), "joint")
    names = {g.operators[o].name: o for o in g.file_order()}
    assert {n: min_crossing_bytes(data, o) for n, o in names.items()} == {"a1": 0, "a2": 16, "b1": 0, "b2": 16,
                                                                         "j": 0}
    res = cut_bound(data, time.perf_counter() + 30)
    assert res.bound == 16 and res.best_single == 16 and res.complete
    assert cut_bound(joint_data(problem(g, 96), "joint"), time.perf_counter() + 30).bound == 0


def crossing_bytes(data, order: tuple[int, ...], op: int) -> int:
    """Bytes of buffers ``op`` does not touch that hold data before it and are needed after
    it in ``order`` (the definition the cut bound minimises)."""
    step = {o: s for s, o in enumerate(order)}
    t = step[op]
    total = 0
    for mb in data.buffers:
        if op in mb.users or len(mb.users) < 2:
            continue
        touches = [step[u] for u in mb.users]
        first = step[mb.producer] if mb.producer is not None else min(touches)
        if first < t < max(touches):
            total += mb.size
    return total


@pytest.mark.parametrize("seed", range(6))
def test_min_cut_is_the_least_crossing_over_all_orders(seed: int) -> None:
    # The minimum cut equals the brute-force minimum over every topological order, at every
    # operator (inputs and weights included: they cross when used before and after).
    g = random_dag(random.Random(seed), 6, seed % 2 == 1)
    data = joint_data(problem(g, 4096, seed % 2 == 1), "joint")
    orders = topo_orders(g)
    for op in g.file_order():
        assert min_crossing_bytes(data, op) == min(crossing_bytes(data, order, op) for order in orders)
