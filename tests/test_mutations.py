"""Mutation tests: corrupt valid plans of real models; the validator AND the simulator must
catch every mutant.

The naive reference plan never reuses memory, so overlap mutants and reload mutants need a
plan with reuse and spills: ``reuse_plan`` below is a deliberately simple planner written for
these tests only (file order, first-fit offset reuse, and a spill + reload of every value
whose next use is more than ``gap`` steps away).  It must itself validate and simulate.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from conftest import light_models
from helpers import chain_model, diamond_model
from stowage.ir.graph import Graph, TensorKind
from stowage.ir.onnx_import import load_graph
from stowage.plan import (
    LevelRef,
    Metrics,
    ModelRef,
    Placement,
    Plan,
    PlanBuffer,
    PlanOptions,
    PlanStep,
    SolverInfo,
    TargetRef,
    Transfer,
    plan_from_json,
    plan_to_json,
)
from stowage.plan.validate import validate
from stowage.simulate import simulate
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import load_target

LIGHT = {p.stem: p for p in light_models()}


# ---------------------------------------------------------------------------------------
# A tiny planner with reuse and spills (test fixture)
# ---------------------------------------------------------------------------------------
def _first_fit(taken: list[tuple[int, int, int, int]], size: int, first: int, last: int, align: int) -> int:
    busy = sorted((o, e) for lo, hi, o, e in taken if not (hi < first or lo > last))
    off = 0
    for o, e in busy:
        if off + size <= o:
            break
        off = max(off, -(-e // align) * align)
    taken.append((first, last, off, off + size))
    return off


def _segments(uses: list[int], gap: int | None) -> list[tuple[int, int]]:
    """Split sorted use steps into residency segments where the gap exceeds ``gap``."""
    segs = [[uses[0], uses[0]]]
    for u in uses[1:]:
        if gap is not None and u - segs[-1][1] > gap:
            segs.append([u, u])
        else:
            segs[-1][1] = u
    return [(a, b) for a, b in segs]


def reuse_plan(graph: Graph, target_name: str = "ethos-u55-256", weights: bool = True,
               gap: int | None = None, spill_level: str | None = None) -> Plan:
    target = load_target(target_name)
    compute = target.compute_level
    spill = spill_level or target.spill_levels()[0].name
    order = graph.file_order()
    end = len(order) - 1
    uses: dict[int, list[int]] = {}
    for s, idx in enumerate(order):
        op = graph.operators[idx]
        for b in (*graph.op_reads(op), *graph.op_writes(op)):
            if graph.buffers[b].kind is TensorKind.WEIGHT and not weights:
                continue
            uses.setdefault(b, []).append(s)
    home = {}
    for b in graph.buffers:
        if b.kind is TensorKind.INPUT:
            home[b.id] = target.inputs_home
        elif b.kind is TensorKind.WEIGHT:
            home[b.id] = target.weights_home
        elif b.is_output:
            home[b.id] = target.outputs_home
    comp: list[tuple[int, int, int]] = []          # (buffer, first, last)
    off_chip: list[tuple[int, str, int, int]] = []  # (buffer, level, first, last)
    before: dict[int, list[Transfer]] = {}
    after: dict[int, list[Transfer]] = {}
    for b in graph.buffers:
        if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            off_chip.append((b.id, home[b.id], 0, end))
    for bid, us in sorted(uses.items()):
        b = graph.buffers[bid]
        segs = _segments(sorted(set(us)), gap)
        produced = b.producer is not None
        store_to = home[bid] if b.is_output else spill
        if produced and b.is_output:
            after.setdefault(segs[0][1], []).append(Transfer(bid, compute, store_to, segs[0][1], "after"))
            off_chip.append((bid, store_to, segs[0][1], end))
        elif produced and len(segs) > 1:
            after.setdefault(segs[0][1], []).append(Transfer(bid, compute, store_to, segs[0][1], "after"))
            off_chip.append((bid, store_to, segs[0][1], segs[-1][0]))
        for k, (f, last) in enumerate(segs):
            comp.append((bid, f, last))
            if not produced or k > 0:
                src = store_to if produced else home[bid]
                before.setdefault(f, []).append(Transfer(bid, src, compute, f, "before"))
    placements: list[Placement] = []
    taken: dict[str, list] = {lv.name: [] for lv in target.levels}
    align = {lv.name: lv.alignment for lv in target.levels}
    for bid, f, last in sorted(comp, key=lambda x: (x[1], x[0])):
        off = _first_fit(taken[compute], graph.buffers[bid].bytes, f, last, align[compute])
        placements.append(Placement(bid, compute, off, f, last))
    for bid, lv, f, last in sorted(off_chip, key=lambda x: (x[2], x[0])):
        off = _first_fit(taken[lv], graph.buffers[bid].bytes, f, last, align[lv])
        placements.append(Placement(bid, lv, off, f, last))
    transfers = tuple(t for s in range(len(order)) for t in (*before.get(s, []), *after.get(s, [])))
    # Metrics, from their definition (rule 6).
    names = list(target.level_names)
    hops = lambda a, c: abs(names.index(a) - names.index(c))  # noqa: E731
    compulsory = 0
    for bid in uses:
        b = graph.buffers[bid]
        if b.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            compulsory += b.bytes * hops(home[bid], compute)
        if b.is_output and b.producer is not None:
            compulsory += b.bytes * hops(compute, home[bid])
    moved = sum(graph.buffers[t.buffer].bytes * hops(t.src, t.dst) for t in transfers)
    peak = {n: max((p.offset + graph.buffers[p.buffer].bytes for p in placements if p.level == n), default=0)
            for n in names}
    return Plan(
        model=ModelRef(graph.source_path, graph.source_sha256),
        target=TargetRef(target.name, compute, tuple(LevelRef(lv.name, None if lv.name == compute else lv.capacity,
                                                               lv.alignment) for lv in target.levels)),
        options=PlanOptions(graph.element_bytes, weights, dict(graph.dims)),
        solver=SolverInfo("test-reuse", "feasible", moved - compulsory, None, 0.0),
        buffers=tuple(PlanBuffer(b.id, b.tensors, b.bytes,
                                 "output" if b.is_output and b.kind is TensorKind.ACTIVATION else b.kind.value,
                                 home.get(b.id)) for b in graph.buffers),
        steps=tuple(PlanStep(graph.operators[i].name, graph.operators[i].op_type,
                             graph.op_reads(graph.operators[i]), graph.op_writes(graph.operators[i])) for i in order),
        placements=tuple(placements),
        transfers=transfers,
        metrics=Metrics(compulsory, moved - compulsory, peak),
    )


# ---------------------------------------------------------------------------------------
# Mutants
# ---------------------------------------------------------------------------------------
def _reads_at(plan: Plan, bid: int, step: int) -> bool:
    return bid in plan.steps[step].reads


def overlap_mutants(plan: Plan, limit: int, rng: random.Random) -> list[tuple[str, Plan]]:
    """Move placement A onto live neighbour B, where A begins while B is still needed (B is
    read at its last step, which is at or after A's first)."""
    compute = plan.target.compute_level
    comp = [(i, p) for i, p in enumerate(plan.placements) if p.level == compute and plan.buffers[p.buffer].bytes]
    pairs = [(i, j) for i, a in comp for j, b in comp
             if a.buffer != b.buffer and b.first < a.first <= b.last and _reads_at(plan, b.buffer, b.last)]
    rng.shuffle(pairs)
    out = []
    for i, j in pairs[:limit]:
        pls = list(plan.placements)
        pls[i] = replace(pls[i], offset=pls[j].offset)
        out.append((f"overlap: buffer {pls[i].buffer} moved onto buffer {pls[j].buffer}",
                    replace(plan, placements=tuple(pls))))
    return out


def dropped_load_mutants(plan: Plan, limit: int, rng: random.Random) -> list[tuple[str, Plan]]:
    compute = plan.target.compute_level
    idx = [k for k, t in enumerate(plan.transfers) if t.dst == compute]
    rng.shuffle(idx)
    return [(f"dropped transfer {plan.transfers[k]}",
             replace(plan, transfers=plan.transfers[:k] + plan.transfers[k + 1:]))
            for k in idx[:limit]]


def early_end_mutants(plan: Plan, limit: int, rng: random.Random) -> list[tuple[str, Plan]]:
    """End a placement one step early where the buffer is still needed at its last step:
    a compute placement read at its last step, or an off-chip one a transfer reads then."""
    needed = {(t.buffer, t.src, t.step) for t in plan.transfers}
    idx = [k for k, p in enumerate(plan.placements) if p.last > p.first and (
        (p.level == plan.target.compute_level and _reads_at(plan, p.buffer, p.last))
        or (p.buffer, p.level, p.last) in needed)]
    rng.shuffle(idx)
    out = []
    for k in idx[:limit]:
        pls = list(plan.placements)
        pls[k] = replace(pls[k], last=pls[k].last - 1)
        out.append((f"placement {plan.placements[k]} ends one step early", replace(plan, placements=tuple(pls))))
    return out


def assert_caught(name: str, graph: Graph, path, mutant: Plan, rule: int | None) -> None:
    v = validate(graph, mutant)
    assert not v.ok, f"validator missed mutant: {name}"
    if rule is not None:
        assert rule in {e.rule for e in v.errors}, f"{name}: expected rule {rule}, got {[e.message for e in v.errors]}"
    r = simulate(path, graph, mutant)
    assert not r.ok, f"simulator missed mutant: {name}"
    assert r.corruptions and r.corruptions[0].step is not None, r.first_problem


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def squeezenet() -> tuple[Graph, object]:
    path = LIGHT["light_squeezenet"]
    return load_graph(path), path


def test_reuse_plan_of_tiny_graph_hand_checked(tmp_path) -> None:
    """chain of 3 Relus, 64 B each: reuse puts t1 where x was; peak sram is 128 B, not 256."""
    model = chain_model(3)
    path = tmp_path / "chain.onnx"
    import onnx
    onnx.save(model, path)
    graph = load_graph(path)
    plan = reuse_plan(graph)
    comp = {p.buffer: (p.offset, p.first, p.last) for p in plan.placements if p.level == "sram"}
    assert comp == {0: (0, 0, 0), 1: (64, 0, 1), 2: (0, 1, 2), 3: (64, 2, 2)}
    assert plan.metrics.compulsory_bytes == 128 and plan.metrics.noncompulsory_bytes == 0
    assert plan.metrics.peak_bytes["sram"] == 128
    assert validate(graph, plan).ok
    assert simulate(path, graph, plan).ok


@pytest.mark.parametrize("target,spill,weights", [
    ("ethos-u55-256", None, True),
    ("ethos-u55-256", None, False),
    ("sn40l", "ddr", True),      # spills two levels away
    ("sn40l", "hbm", False),
])
def test_reuse_plans_with_spills_are_valid_and_simulate(squeezenet, target, spill, weights) -> None:
    graph, path = squeezenet
    plan = reuse_plan(graph, target, weights, gap=1, spill_level=spill)
    reloads = [t for t in plan.transfers
               if t.dst == plan.target.compute_level and plan.buffers[t.buffer].kind == "activation"]
    assert reloads, "the fixture must exercise reloads"
    moved_offsets = {t.buffer for t in reloads
                     if len({p.offset for p in plan.placements
                             if p.buffer == t.buffer and p.level == plan.target.compute_level}) > 1}
    assert moved_offsets, "some reload must land at a different offset"
    v = validate(graph, plan)
    assert v.ok, v.summary()
    assert v.metrics == plan.metrics
    assert v.metrics.noncompulsory_bytes > 0
    assert plan_from_json(plan_to_json(plan)) == plan
    r = simulate(path, graph, plan)
    assert r.ok, r.first_problem
    assert all(o.exact for o in r.outputs)
    # Reuse really happened: the compute peak is far below the sum of all compute placements.
    naive = solve(Problem(graph, load_target(target).with_capacity(None), weights), "naive")
    assert plan.metrics.peak_bytes[plan.target.compute_level] < naive.metrics.peak_bytes[plan.target.compute_level] / 2


# shufflenet takes about 2 s warm (its many mutants each go through the validator and the
# simulator); squeezenet, about 1 s, keeps the fast lane's coverage of every mutant kind.
@pytest.mark.parametrize("model", ["light_squeezenet", pytest.param("light_shufflenet", marks=pytest.mark.slow)])
def test_every_mutant_is_caught(model) -> None:
    path = LIGHT[model]
    graph = load_graph(path)
    rng = random.Random(7)
    plan = reuse_plan(graph, "ethos-u55-256", True, gap=1)
    assert validate(graph, plan).ok
    naive = solve(Problem(graph, load_target("ethos-u55-256").with_capacity(None), True), "naive")
    mutants = (
        [(n, m, 4) for n, m in overlap_mutants(plan, 4, rng)]
        + [(n, m, 2) for n, m in dropped_load_mutants(plan, 3, rng)]
        + [(n, m, 2) for n, m in dropped_load_mutants(naive, 2, rng)]
        + [(n, m, None) for n, m in early_end_mutants(plan, 4, rng)]
        + [(n, m, None) for n, m in early_end_mutants(naive, 2, rng)]
    )
    kinds = {n.split(" ")[0] for n, _, _ in mutants}
    assert kinds == {"overlap:", "dropped", "placement"}
    # Reloads specifically (a spilled activation's way back).
    reload_idx = [k for k, t in enumerate(plan.transfers)
                  if t.dst == "sram" and plan.buffers[t.buffer].kind == "activation"][:2]
    for k in reload_idx:
        mutants.append((f"dropped reload {plan.transfers[k]}",
                        replace(plan, transfers=plan.transfers[:k] + plan.transfers[k + 1:]), 2))
    for name, mutant, rule in mutants:
        assert_caught(name, graph, path, mutant, rule)


def test_overlap_mutant_message_names_step_buffers_and_range(squeezenet) -> None:
    graph, path = squeezenet
    plan = reuse_plan(graph, "ethos-u55-256", True, gap=1)
    (_name, mutant), = overlap_mutants(plan, 1, random.Random(1))
    v = validate(graph, mutant)
    overlap = next(e for e in v.errors if e.rule == 4)
    assert "overlaps buffer" in overlap.message and " in sram at [" in overlap.message
    assert overlap.message.startswith(f"step {overlap.step} ({plan.steps[overlap.step].op}): buffer ")
    r = simulate(path, graph, mutant)
    assert "corrupted" in r.first_problem or "overwrote" in r.first_problem


def test_diamond_weight_read_in_place_mutants(tmp_path) -> None:
    """Weights not in the compute level: a weight whose home placement is cut is caught."""
    import onnx
    path = tmp_path / "diamond.onnx"
    onnx.save(diamond_model(), path)
    graph = load_graph(path)
    plan = reuse_plan(graph, "ethos-u55-256", weights=False)
    assert validate(graph, plan).ok
    assert simulate(path, graph, plan).ok
    pls = [p for p in plan.placements if not (p.buffer == 0 and p.level == "dram")]
    mutant = replace(plan, placements=tuple(pls))
    v = validate(graph, mutant)
    assert [e.rule for e in v.errors if e.rule != 7] == [2]
    assert "reads weight buffer 0 (W) in place" in v.errors[0].message
    assert not simulate(path, graph, mutant).ok
