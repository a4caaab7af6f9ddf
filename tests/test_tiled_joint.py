"""The joint model below M_R (``stowage.solvers.exact.tiled_joint``): candidate cascades, whole
tensors and their spills in one CP-SAT model.  A hand-checked DAG where it beats the partition
model followed by the macro solve (a whole tensor spilled beside a cascade decides the cut),
its relaxation against a brute force over every partition, off-chip set and spill set on tiny
instances, and its plans judged by the validator and the simulator."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from stowage.api import compile as compile_plan
from stowage.api import load_model
from stowage.errors import CapacityError
from stowage.ir.graph import BufferId, Graph
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import import_model, load_graph
from stowage.plan import plan_from_json, plan_to_json
from stowage.plan.validate import validate
from stowage.simulate import simulate
from stowage.solvers.exact.tiled_joint import JointTiledModel, joint_partition, whole_set, wholes
from stowage.solvers.exact.tiled_model import Candidate, enumerate_candidates, exact_partition, sendable
from stowage.solvers.tiling.partition import Partitioner
from tests.test_tiling_bound import _random_dag
from tests.test_tiling_partition import chain, names

ROOT = Path(__file__).resolve().parents[1]


def side_graph() -> Graph:
    """``side_model`` imported, one byte per element, in-place operators fused."""
    return fuse_in_place(import_model(side_model(), element_bytes=1))


def side_model() -> onnx.ModelProto:
    """x (4 x 16 x 8, 512 B) -> side conv -> t0 (1 channel, 128 B), read only by a Softmax over H
    at the end (a step that needs whole tensors, so t0 can never cross a cut row by row);
    x -> conv0..conv3 -> u0, u1, u2 (8 channels, 1,024 B each), u3 (4 channels, 512 B); then
    softmax(t0) -> s (128 B) -> 1x1 conv -> sm (512 B); y = u3 + sm.  One byte per element,
    3x3 convs with pads 1."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 4, 3, 3)).astype(np.float32), "ws")]
    nodes = [helper.make_node("Conv", ["x", "ws"], ["t0"], name="side", pads=[1] * 4, kernel_shape=[3, 3])]
    cur, cin = "x", 4
    for i, c in enumerate((8, 8, 8, 4)):
        inits.append(numpy_helper.from_array(rng.standard_normal((c, cin, 3, 3)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [cur, f"w{i}"], [f"u{i}"], name=f"conv{i}", pads=[1] * 4,
                                      kernel_shape=[3, 3]))
        cur, cin = f"u{i}", c
    nodes.append(helper.make_node("Softmax", ["t0"], ["s"], name="softmax", axis=2))
    inits.append(numpy_helper.from_array(rng.standard_normal((4, 1, 1, 1)).astype(np.float32), "wm"))
    nodes.append(helper.make_node("Conv", ["s", "wm"], ["sm"], name="mix", kernel_shape=[1, 1]))
    nodes.append(helper.make_node("Add", [cur, "sm"], ["y"], name="add"))
    graph = helper.make_graph(nodes, "side", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _solve(part: Partitioner, cap: int, addresses: bool):
    cands, complete = enumerate_candidates(part, cap)
    assert complete
    r = JointTiledModel(part, cap, cands, addresses=addresses).solve(60, 20, 1, 0)
    assert r is not None
    return r


def test_spilling_a_whole_tensor_beside_a_cascade_decides_the_cut() -> None:
    """``side_graph`` at 800 B.  The partition model keeps t0 (128 B) on chip from the side conv
    to the Softmax, so conv3 cannot run beside it with u2 in rows and u3 whole, and it sends
    u1 and u3 through DRAM instead: 2 x 1,024 + 2 x 512 = 3,072 B of cut traffic.  The joint
    model runs side..conv2 as one cascade storing u2 (1,024 B), spills t0 whole after it
    (stored 128 B), runs conv3 loading u2 (1,024 B) with u3 whole, and reloads t0 for the
    Softmax (128 B): 2,304 B, which its relaxation proves optimal over its candidates in the
    file order (with and without addresses)."""
    g = side_graph()
    part = Partitioner(g, False, 1)
    res = exact_partition(part, 800, None, float("inf"), 1, 0)
    assert res is not None and (res.traffic, res.status) == (3072, "optimal")
    assert names(g, frozenset().union(*(s.dram for s in res.segments))) == ["u1", "u3"]
    t0 = g.tensor_buffer["t0"]
    for addresses in (False, True):
        r = _solve(part, 800, addresses)
        assert (r.traffic, r.bound, r.status) == (2304, 2304, "optimal")
        assert [(c.i, c.j, c.stripe_rows > 0) for c in r.chosen] == [(0, 3, True), (4, 4, True), (5, 5, False),
                                                                      (6, 7, True)]
        assert names(g, r.off) == ["u2"]
        assert r.spills == frozenset({(t0, 0)})


def test_the_joint_model_is_the_partition_model_when_nothing_need_spill() -> None:
    """The chain of ``test_tiled_model`` (4 -> 8 -> 2 -> 8 -> 4 channels) at 543 B: no whole
    tensor lives across a cascade, so the joint model's optimum is the partition model's, the
    cut through t1 (2 x 256 B)."""
    g = chain([4, 8, 2, 8, 4], [1, 1, 1, 1])
    part = Partitioner(g, False, 1)
    for addresses in (False, True):
        r = _solve(part, 543, addresses)
        assert (r.traffic, r.bound, r.status, r.spills) == (512, 512, "optimal", frozenset())
        assert names(g, r.off) == ["t1"]


def test_compile_exact_plans_the_joint_partition_and_the_validator_accepts_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``side_graph`` compiled with ``--solver exact`` at 800 B (the target's 16-byte alignment
    changes no size): without the joint model (``--param joint=off``) the plan moves 3,072 B;
    with it 2,304 B, found by the joint model, valid, and ``solver.joint_bound`` 2,304 proves
    it optimal over every plan into its candidates in the file order.  ``stowage simulate``
    runs the joint model's plan (t0 spilled whole and reloaded, u2 through DRAM row by row) of
    the fp32 model against onnxruntime.  The joint model's candidates hold rings, so this is
    with rings only: with rows by slot (the default) the heuristic's partition, its first
    cascade slotted, moves 1,024 B, below the joint optimum over ring candidates, and no joint
    bound is reported."""
    import stowage.solvers.tiling.partition as partition

    g = side_graph()
    slotted = compile_plan(g, "ethos-u55-256", capacity=800, solver="exact", time_limit=60)
    assert validate(g, slotted).ok and slotted.metrics.noncompulsory_bytes == 1024
    assert [c.slotted for c in slotted.cascades] == [True, False] and slotted.solver.joint_bound is None
    monkeypatch.setattr(partition, "SLOT_ROWS", False)
    off = compile_plan(g, "ethos-u55-256", capacity=800, solver="exact", time_limit=30, params={"joint": False})
    on = compile_plan(g, "ethos-u55-256", capacity=800, solver="exact", time_limit=30)
    assert off.metrics.noncompulsory_bytes == 3072 and off.solver.joint_bound is None
    assert on.metrics.noncompulsory_bytes == 2304 and on.solver.joint_bound == 2304
    assert on.solver.found_by is not None and on.solver.found_by.startswith("tiling joint model")
    for plan in (off, on):
        assert validate(g, plan).ok
        assert plan.solver.lower_bound is not None and plan.solver.lower_bound <= plan.metrics.noncompulsory_bytes
    # The plan file keeps the bound (an optional key: absent without the joint model).
    assert plan_from_json(plan_to_json(on)).solver.joint_bound == 2304
    assert '"joint_bound"' not in plan_to_json(off)
    # In fp32 (4 bytes per element, every size times 4) at 3,200 B the same plan moves 9,216 B,
    # and the simulator runs it against onnxruntime.
    path = tmp_path / "side.onnx"
    onnx.save(side_model(), path)
    plan = compile_plan(path, "ethos-u55-256", capacity=3200, solver="exact", time_limit=30)
    assert plan.metrics.noncompulsory_bytes == 9216 and plan.solver.joint_bound == 9216
    assert plan.solver.found_by is not None and plan.solver.found_by.startswith("tiling joint model")
    graph = load_graph(path, dims=dict(plan.options.dims))
    r = simulate(path, fuse_in_place(graph) if plan.options.in_place else graph, plan)
    assert r.ok, r.first_problem


def _private(part: Partitioner, c: Candidate, off: frozenset[BufferId]) -> int:
    """Candidate ``c``'s bytes beside the whole tensors: its footprint (``Windows.quick`` with
    its off-chip boundary tensors) less the whole tensors it counts that stay whole."""
    g = part.g
    dram = frozenset(b for b in c.moves if b in off)
    if c.stripe_rows == 0:
        own = c.base
    else:
        w = part.windows(c.i, c.j, c.stripe_rows, c.pace_rows)
        assert w is not None
        q = w.quick(dram)
        assert q is not None
        own = q
    return own - sum(part._a(g.buffers[b].bytes) for b in whole_set(part, c) if b not in dram)


def _brute_force(part: Partitioner, cap: int, cands: list[Candidate]) -> int | None:
    """The least traffic over every partition into ``cands``, every off-chip set (each chosen
    maker stores it, every chosen cascade reading it loads it) and every set of spilled gaps
    of the whole tensors, judged per macro step by bytes (no addresses); None if none fits."""
    g = part.g
    movable = sorted(sendable(part))
    table, _per = wholes(part, cands)
    by_start: dict[int, list[Candidate]] = {}
    for c in cands:
        by_start.setdefault(c.i, []).append(c)

    def partitions(p: int) -> list[list[Candidate]]:
        if p == part.n:
            return [[]]
        return [[c, *rest] for c in by_start.get(p, []) for rest in partitions(c.j + 1)]

    best: int | None = None
    for chosen in partitions(0):
        macro = {p: k for k, c in enumerate(chosen) for p in range(c.i, c.j + 1)}
        for r in range(len(movable) + 1):
            for offs in itertools.combinations(movable, r):
                off = frozenset(offs)
                if any(b in off for c in chosen for b in c.on_chip):
                    continue
                if any(not any(b in c.moves and g.buffers[b].producer in part.order[c.i:c.j + 1] for c in chosen)
                       for b in off):
                    continue
                cut = sum(g.buffers[b].bytes for c in chosen for b in c.moves if b in off)
                counted = set().union(*(whole_set(part, c) for c in chosen))
                live = [w for w in table if w.buffer in counted and w.buffer not in off]
                gaps = [(w, k) for w in live for k in range(len(w.touches) - 1)
                        if macro[w.touches[k]] < macro[w.touches[k + 1]]]
                base = [_private(part, c, off) for c in chosen]
                for mask in itertools.product((False, True), repeat=len(gaps)):
                    spilled = {(w.buffer, k) for (w, k), s in zip(gaps, mask) if s}
                    mem = list(base)
                    for w in live:
                        first, last = macro[w.touches[0]], macro[w.touches[-1]]
                        for m in range(first, last + 1):
                            inside = any((w.buffer, k) in spilled and macro[w.touches[k]] < m < macro[w.touches[k + 1]]
                                         for k in range(len(w.touches) - 1))
                            if not inside:
                                mem[m] += w.size
                    if max(mem) > cap:
                        continue
                    spill = sum(w.reload for w in live for k in range(len(w.touches) - 1)
                                if (w.buffer, k) in spilled)
                    spill += sum(w.store for w in live if any((w.buffer, k) in spilled for k in range(len(w.touches))))
                    if best is None or cut + spill < best:
                        best = cut + spill
    return best


@pytest.mark.parametrize("cap", [760, 800, 840, 1300, 1400])
def test_the_relaxation_meets_a_brute_force_on_the_side_graph(cap: int) -> None:
    """``side_graph`` around its interesting capacities: the relaxation's optimum equals the
    brute force (3,072 B at 760, 2,304 at 800, 2,048 at 840, 1,024 at 1,300, 0 at 1,400)."""
    g = side_graph()
    part = Partitioner(g, False, 1, work=None)
    cands, _ = enumerate_candidates(part, cap)
    brute = _brute_force(part, cap, cands)
    r = JointTiledModel(part, cap, cands, addresses=False).solve(60, 20, 1, 0)
    assert r is not None and r.status == "optimal"
    assert r.traffic == brute == {760: 3072, 800: 2304, 840: 2048, 1300: 1024, 1400: 0}[cap]


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), n=st.integers(3, 5), frac=st.sampled_from([0.1, 0.15, 0.25]))
def test_the_relaxation_meets_a_brute_force_on_random_dags(seed: int, n: int, frac: float) -> None:
    """Property: on random small DAGs (at most 7 steps, 4 movable intermediates, 8 whole-tensor
    gaps) the relaxation's proven optimum equals the brute force over every partition into
    its candidates, off-chip set and spill set, and the address model, when it proves its
    optimum, is never below it."""
    g = fuse_in_place(_random_dag(seed, n, 8, 2))
    part = Partitioner(g, False, 1, work=None)
    if part.n > 7 or len(sendable(part)) > 4:
        return
    cap = max(48, int(frac * sum(b.bytes for b in g.buffers)))
    cands, _ = enumerate_candidates(part, cap)
    if not cands or sum(len(w.touches) - 1 for w in wholes(part, cands)[0]) > 8:
        return
    brute = _brute_force(part, cap, cands)
    r = JointTiledModel(part, cap, cands, addresses=False).solve(60, 20, 1, 0)
    if brute is None:
        assert r is None
        return
    assert r is not None and r.status == "optimal" and r.traffic == brute
    p = JointTiledModel(part, cap, cands, addresses=True).solve(60, 20, 1, 0)
    if p is not None and p.status == "optimal":
        assert p.traffic >= brute


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), frac=st.sampled_from([0.12, 0.2]))
def test_exact_plans_with_the_joint_model_are_valid_and_never_worse(seed: int, frac: float) -> None:
    """Property judged by the validator: on random DAGs, ``--solver exact`` with the joint
    model gives a valid plan moving no more than without it, and its ``joint_bound`` is at
    most the plan's traffic."""
    g = fuse_in_place(_random_dag(seed, 5, 8, 2))
    cap = max(64, int(frac * sum(b.bytes for b in g.buffers)) // 16 * 16)
    try:
        off = compile_plan(g, "ethos-u55-256", capacity=cap, solver="exact", time_limit=30, params={"joint": False})
    except CapacityError as exc:  # a capacity no tiled plan reaches: both refuse it
        with pytest.raises(type(exc)):
            compile_plan(g, "ethos-u55-256", capacity=cap, solver="exact", time_limit=30)
        return
    on = compile_plan(g, "ethos-u55-256", capacity=cap, solver="exact", time_limit=30)
    assert validate(g, on).ok
    if not (on.solver.stopped_by or off.solver.stopped_by):
        assert on.metrics.noncompulsory_bytes <= off.metrics.noncompulsory_bytes
    if on.solver.joint_bound is not None:
        assert on.solver.joint_bound <= on.metrics.noncompulsory_bytes


def test_joint_partition_on_int8_tiny_cnn_simulates_bit_exactly() -> None:
    """The int8 tiny CNN below its zero-traffic capacity, ``--solver exact``: the joint model
    runs (its bound is reported), and the plan passes the validator and ``stowage simulate``
    bit-exactly against onnxruntime."""
    path = ROOT / "models" / "int8" / "tiny_cnn_int8_qop.onnx"
    g = load_model(path, element_bytes=1, in_place=True, qdq="fold")
    part = Partitioner(g, False, 16)
    cap = None
    for kib in (2, 3, 4, 6, 8, 12):
        if part.fewest_stripes(kib * 1024) is None:
            cap = kib * 1024
    assert cap is not None
    plan = compile_plan(path, capacity=cap, solver="exact", time_limit=30)
    assert plan.cascades and plan.solver.joint_bound is not None
    assert plan.solver.joint_bound <= plan.metrics.noncompulsory_bytes
    judged = load_model(path, element_bytes=plan.options.element_bytes if hasattr(plan.options, "element_bytes") else 1,
                        in_place=True, qdq="fold")
    assert validate(judged, plan).ok
    r = simulate(path, judged, plan)
    assert r.ok, r.first_problem
    assert all(o.exact for o in r.outputs)


def test_joint_partition_needs_activations_only() -> None:
    """Weights in the compute level are not modelled (they would be whole tensors shared by
    cascades): the phase returns None and exact keeps its other partitions."""
    g = side_graph()
    part = Partitioner(g, True, 1)
    cands, _ = enumerate_candidates(part, 4000)
    assert joint_partition(part, 4000, cands, None, float("inf"), 1, 0) is None


def test_partial_loads_flags_a_slice_of_rows_and_not_a_full_reader(tmp_path: Path) -> None:
    """``partial_loads``: a Slice of rows 2:6 of 8 needs only part of its operand (a load of it
    may move fewer than its bytes, so the joint model's full charge is no bound there); a
    3x3 pad-1 convolution and the int8 tiny CNN (whose global pools reduce every row) read
    every row."""
    from stowage.solvers.exact.tiled_search import partial_loads

    def model(sliced: bool) -> Path:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 4])
        w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])]
        inits = [w]
        if sliced:
            inits += [numpy_helper.from_array(np.array(v, np.int64), n)
                      for n, v in (("st", [2]), ("en", [6]), ("ax", [2]))]
            nodes.append(helper.make_node("Slice", ["c", "st", "en", "ax"], ["y"]))
            out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
        else:
            nodes.append(helper.make_node("Relu", ["c"], ["y"]))
            out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 4])
        m = helper.make_model(helper.make_graph(nodes, "g", [x], [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
        p = tmp_path / f"m{int(sliced)}.onnx"
        onnx.save(m, p)
        return p

    assert partial_loads(load_model(model(True), element_bytes=1))
    assert not partial_loads(load_model(model(False), element_bytes=1))
    tiny = ROOT / "models" / "int8" / "tiny_cnn_int8_qop.onnx"
    assert not partial_loads(load_model(tiny, element_bytes=1, in_place=True, qdq="fold"))
