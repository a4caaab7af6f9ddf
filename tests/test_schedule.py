"""Memory-aware scheduling: hand-checked orders, the exact DP against brute force over all
topological orders, and the never-worse-than-file-order guarantee."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from stowage.ir.build import RawNode, RawTensor, build_graph
from stowage.ir.graph import Graph
from stowage.ir.lifetimes import lifetimes, m_r, peak_live
from stowage.solvers.analysis.schedule import exact_min_peak_order, min_peak_order, min_peak_order_ex

U8 = TensorProto.UINT8  # one byte per element: a tensor of shape (n,) is n bytes


def make_graph(name: str, sizes: dict[str, int], nodes: list[tuple[str, tuple[str, ...], str]],
               inputs: tuple[str, ...] = ("x",), weights: tuple[str, ...] = ()) -> Graph:
    """A graph of one-output ops; ``sizes`` gives every tensor's bytes; graph outputs are the
    tensors nothing consumes."""
    consumed = {i for _, ins, _ in nodes for i in ins}
    outputs = [out for _, _, out in nodes if out not in consumed]
    return build_graph(
        name,
        [RawTensor(t, (b,), U8) for t, b in sizes.items()],
        [RawNode(n, "Add" if len(ins) > 1 else "Relu", ins, (out,)) for n, ins, out in nodes],
        list(inputs) + list(weights), outputs, initializers=weights,
    )


def two_branch_graph() -> Graph:
    """x(10 B) feeds two branches, each a big intermediate (100 B) reduced to 1 B, joined by D.

    File order A, B, A2, B2, D has both 100 B intermediates live at step B:
    x 10 + a 100 + b 100 = 210.  Finishing one branch first keeps at most one alive:
    A: x+a = 110; A2: x+a+a2 = 111; B: x+a2+b = 111; B2: a2+b+b2 = 102; D: a2+b2+y = 3.
    No order does better than 111: whichever of A/B runs second does so with x (10), its own
    output (100) and at least the other branch's 1 B result live."""
    sizes = {"x": 10, "a": 100, "b": 100, "a2": 1, "b2": 1, "y": 1}
    nodes = [("A", ("x",), "a"), ("B", ("x",), "b"), ("A2", ("a",), "a2"),
             ("B2", ("b",), "b2"), ("D", ("a2", "b2"), "y")]
    return make_graph("two_branch", sizes, nodes)


def names(graph: Graph, order) -> list[str]:
    return [graph.operators[i].name for i in order]


def test_two_branch_hand_checked():
    g = two_branch_graph()
    assert peak_live(g, g.file_order()) == 210
    assert m_r(g) == 110  # A or B: x + its 100 B output
    order, proven = exact_min_peak_order(g, weights_in_compute_level=True, time_limit=5.0)
    assert proven
    assert peak_live(g, order) == 111
    # Ties between the two symmetric optima break towards file position: branch A first.
    assert names(g, order) == ["A", "A2", "B", "B2", "D"]
    assert lifetimes(g, order).live_bytes == (110, 111, 111, 102, 3)
    heuristic = min_peak_order(g, weights_in_compute_level=True)
    assert peak_live(g, heuristic) == 111


def test_chain_keeps_file_order():
    # A chain has exactly one topological order.
    sizes = {"x": 4, "t0": 8, "t1": 2, "y": 6}
    g = make_graph("chain", sizes, [("r0", ("x",), "t0"), ("r1", ("t0",), "t1"), ("r2", ("t1",), "y")])
    assert min_peak_order(g, True) == g.file_order()
    assert peak_live(g, g.file_order()) == 12  # step r0: x 4 + t0 8


def test_weights_setting_changes_the_best_order():
    """A weight counts only with weights_in_compute_level: W (50 B) is read by A and by D.

    With weights: x 10, A reads x and W, writes a 20; B reads x writes b 20; D reads a, b, W.
    Whatever the order, W is live from A to D, so the peak is at B or D; without weights the
    same graph peaks at 50 bytes (x + a + b at step B = 10 + 20 + 20)."""
    sizes = {"x": 10, "W": 50, "a": 20, "b": 20, "y": 5}
    nodes = [("A", ("x", "W"), "a"), ("B", ("x",), "b"), ("D", ("a", "b", "W"), "y")]
    g = make_graph("weights", sizes, nodes, weights=("W",))
    with_w, proven_w = exact_min_peak_order(g, True, 5.0)
    without_w, proven_wo = exact_min_peak_order(g, False, 5.0)
    assert proven_w and proven_wo
    # With weights, order A, B, D: A: 10+50+20 = 80; B: 10+50+20+20 = 100; D: 50+20+20+5 = 95.
    # Order B, A, D: B: 10+20 = 30; A: 10+50+20+20 = 100; D: 95.  Both peak at 100.
    assert peak_live(g, with_w, True) == 100
    assert peak_live(g, without_w, False) == 50


# -- random tiny DAGs: the DP equals brute force ---------------------------------------------

@st.composite
def tiny_graphs(draw, max_ops: int = 6) -> Graph:
    n = draw(st.integers(1, max_ops))
    sizes = {"x": draw(st.integers(1, 40))}
    nodes = []
    weights = []
    for i in range(n):
        pool = ["x"] + [f"t{j}" for j in range(i)]
        ins = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        if draw(st.booleans()):
            w = f"w{i}"
            sizes[w] = draw(st.integers(1, 40))
            weights.append(w)
            ins.append(w)
        sizes[f"t{i}"] = draw(st.integers(1, 60))
        nodes.append((f"op{i}", tuple(ins), f"t{i}"))
    return make_graph("tiny", sizes, nodes, weights=tuple(weights))


def brute_force_min_peak(g: Graph, weights_in_compute_level: bool) -> int:
    deps = g.op_dependencies()
    best = None
    for perm in itertools.permutations(g.file_order()):
        done: set[int] = set()
        ok = True
        for op in perm:
            if not deps[op] <= done:
                ok = False
                break
            done.add(op)
        if ok:
            p = peak_live(g, perm, weights_in_compute_level)
            best = p if best is None else min(best, p)
    assert best is not None
    return best


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_graphs(), st.booleans())
def test_exact_dp_matches_brute_force(g, weights_in_compute_level):
    optimum = brute_force_min_peak(g, weights_in_compute_level)
    order, proven = exact_min_peak_order(g, weights_in_compute_level, 5.0)
    assert proven
    assert g.is_topological(order)
    assert peak_live(g, order, weights_in_compute_level) == optimum
    heuristic, _ = min_peak_order_ex(g, weights_in_compute_level, 1.0)
    assert g.is_topological(heuristic)
    assert optimum <= peak_live(g, heuristic, weights_in_compute_level) <= peak_live(g, None, weights_in_compute_level)


def random_layered_graph(n_ops: int, width: int = 8, seed: int = 0) -> Graph:
    """Layers of up to ``width`` ops, each reading 1-3 tensors of the last 3 layers."""
    rng = random.Random(seed)
    sizes = {"x": rng.randint(1, 64) * 64}
    nodes = []
    layers = [["x"]]
    while len(nodes) < n_ops:
        layer = []
        for _ in range(min(rng.randint(1, width), n_ops - len(nodes))):
            pool = [t for lay in layers[-3:] for t in lay]
            ins = tuple(sorted(set(rng.sample(pool, min(len(pool), rng.randint(1, 3))))))
            name = f"t{len(nodes)}"
            sizes[name] = rng.randint(1, 64) * 64
            nodes.append((f"op{len(nodes)}", ins, name))
            layer.append(name)
        layers.append(layer)
    return make_graph(f"random{n_ops}", sizes, nodes)


@pytest.mark.slow  # 300 operators without a safety stop, ~1.5-2.5 s
def test_medium_random_graph_beats_file_order_quickly():
    # No safety stop: the work budgets of a 2 s limit and the DP's state caps alone bound the
    # search, so the result cannot depend on the machine's load.  How long it takes is
    # measured by benchmarks/schedule_timing.py, not asserted here.
    g = random_layered_graph(300, seed=3)
    order = min_peak_order(g, True, time_limit=2.0, seed=0, safety_stop=False)
    assert g.is_topological(order)
    # Layered random DAGs leave real room: the search finds a lower peak than file order.
    assert peak_live(g, order) < peak_live(g, None)
    # Same seed, same order (the work budget, not the clock, bounds the search here).
    assert min_peak_order(g, True, time_limit=2.0, seed=0, safety_stop=False) == order
