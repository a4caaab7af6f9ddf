"""``orders.cone_orders`` and exact's phase "cone descent" (issue 14, item 8).

A NAS stem in miniature: ``stem`` makes ``s`` (64 B), read by two branches (``u1 -> u2``,
``v1 -> v2``) and by a big ``pad -> sl`` chain whose 128 B steps leave 32 B of a 160 B
capacity; ``cat`` joins the branches' 16 B results and the chain's.  In the order
``stem u1 v1 pad sl u2 v2 cat`` the branches' 32 B middles both cross the chain, one must be
off-chip (64 B of traffic in that order's best plan); finishing both branches before the
chain (``stem u1 v1 u2 v2 pad sl cat``) leaves only their 16 B results beside it: 0 B.
Hand-checked neighbour lists, the descent that walks there, and on random graphs every
neighbour is a topological order of the same operators.
"""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from stowage.plan.validate import validate
from stowage.solvers.exact.auto import CONE_EVALS, AutoPipeline
from stowage.solvers.exact.joint_data import check_solution, joint_data
from stowage.solvers.exact.lower import lower_solution
from stowage.solvers.exact.orders import cone_orders
from stowage.solvers.exact.params import ExactParams
from tests.test_exact import make_graph, problem, random_dag, topo_orders

SIZES = {"x": 64, "s": 64, "a1": 32, "b1": 32, "p": 64, "q": 64, "o1": 16, "o2": 16, "y": 16}
NODES = [("stem", ["x"], ["s"]), ("u1", ["s"], ["a1"]), ("v1", ["s"], ["b1"]), ("pad", ["s"], ["p"]),
         ("sl", ["p"], ["q"]), ("u2", ["a1"], ["o1"]), ("v2", ["b1"], ["o2"]), ("cat", ["o1", "o2", "q"], ["y"])]
START = ("stem", "u1", "v1", "pad", "sl", "u2", "v2", "cat")


def stem_case():
    g = make_graph(SIZES, NODES, ["x"], ["y"])
    idx = {op.name: op.index for op in g.computing_ops}
    return g, idx, {v: k for k, v in idx.items()}


def test_cone_orders_hand_checked():
    g, idx, name = stem_case()
    data = joint_data(problem(g, 160), "joint")
    order = tuple(idx[n] for n in START)
    # Pivot pad (step 3; a1 lives 1-5, b1 2-6): start v1 after it (a1's first use + 1 = 2),
    # then finish u2 before it (b1's last use - 1 = 5; a1's bound 4 moves only sl, a
    # descendant).  Pivot sl (step 4): finish u2 before it, then start v1 after it (pad is
    # its ancestor and stays).  Same footprint (128 B): the earlier step first.
    expected = [("stem", "u1", "pad", "v1", "sl", "u2", "v2", "cat"),
                ("stem", "u1", "v1", "u2", "pad", "sl", "v2", "cat"),
                ("stem", "u1", "v1", "pad", "u2", "sl", "v2", "cat"),
                ("stem", "u1", "pad", "sl", "v1", "u2", "v2", "cat")]
    got = [tuple(name[o] for o in cand) for cand in cone_orders(data, order, frozenset({3, 4}))]
    assert got == expected
    # Only the focus steps pivot: cat (step 7) has nothing live across it; no focus, no move.
    assert cone_orders(data, order, frozenset({7})) == []
    assert cone_orders(data, order, frozenset()) == []


def test_cone_descent_finishes_the_branches_before_the_chain():
    g, idx, name = stem_case()
    prob = problem(g, 160)
    pipe = AutoPipeline(prob, ExactParams(), time.perf_counter(), 20.0, 1, 0)
    pipe.gap_model(tuple(idx[n] for n in START), "gap", None)
    assert pipe.best_value == 64           # a1 or b1 stored and reloaded once (32 + 32 B)
    pipe.improve(CONE_EVALS, cone=True)
    assert pipe.best is not None and pipe.best_value == 0
    assert pipe.best_source == "exact: cone descent"
    assert [name[o] for o in pipe.best.order] == ["stem", "u1", "v1", "u2", "v2", "pad", "sl", "cat"]
    assert check_solution(pipe.data, pipe.best) is None
    plan = lower_solution(prob, pipe.data, pipe.best, "exact", "optimal", 0, time.perf_counter(), pipe.best_source)
    assert plan.metrics.noncompulsory_bytes == 0
    assert validate(g, plan).ok


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_ops=st.integers(2, 12))
def test_cone_orders_stay_topological(seed: int, n_ops: int):
    g = random_dag(random.Random(seed), n_ops)
    data = joint_data(problem(g, None), "joint")
    rng = random.Random(seed)
    order = rng.choice(topo_orders(g)) if n_ops <= 6 else g.file_order()
    every = frozenset(range(len(order)))
    cands = cone_orders(data, order, every)
    assert len(set(cands)) == len(cands) and tuple(order) not in cands
    for cand in cands:
        assert sorted(cand) == sorted(order) and g.is_topological(cand)
