"""Exact fixed-lifetime allocation: hand-checked instances, brute force, models, the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import light_models
from stowage.cli import main as cli_main
from stowage.commands.alloc import independent_check
from stowage.errors import CapacityError
from stowage.ir.lifetimes import lifetimes
from stowage.ir.onnx_import import load_graph
from stowage.plan.validate import validate
from stowage.solvers.alloc.exact import check_packing, solve_allocation
from stowage.solvers.alloc.interval import Interval, peak_live_at
from stowage.solvers.alloc.minimalloc_csv import read_csv
from stowage.solvers.problem import Problem
from stowage.solvers.registry import make_params, solve
from stowage.targets.hierarchy import load_target

DATA = Path(__file__).resolve().parent / "data" / "minimalloc"
EXAMPLE = DATA / "examples" / "input.12.csv"


def B(lower: int, upper: int, size: int) -> Interval:
    """A buffer live in MiniMalloc's half-open ``[lower, upper)`` (the hand-checked numbers
    below are in that form), as the allocator's inclusive ``Interval``."""
    return Interval(0, lower, upper - 1, size)


def assert_valid(bufs, res, capacity=None) -> None:
    assert res.offsets is not None
    assert check_packing(bufs, res.offsets, capacity) is None
    assert independent_check([(b.first, b.last + 1, b.size) for b in bufs], res.offsets,
                             capacity if capacity is not None else res.peak) is None
    assert res.peak == max((o + b.size for o, b in zip(res.offsets, bufs)), default=0)
    assert res.peak >= res.lower_bound >= peak_live_at(bufs)[0]


# -- hand-checked instances ----------------------------------------------------------------

def test_example_instance_packs_at_12_and_proves_11_infeasible() -> None:
    # b1 [0,3), b3 [0,9), b5 [0,21) are live together at time 0: 4+4+4 = 12 bytes, so 12
    # is a lower bound; a packing at 12 exists (b5 at 0, b3 at 4, b1 and b2 at 8 one after
    # the other, b4 reuses b3's slot after time 9), so the optimum is exactly 12.
    bufs = read_csv(EXAMPLE)
    res = solve_allocation(bufs, 12, 5.0)
    assert res.status == "optimal" and res.peak == 12
    assert_valid(bufs, res, 12)
    bad = solve_allocation(bufs, 11, 5.0)
    assert bad.status == "infeasible" and bad.offsets is None
    assert "at time 0, live buffers need 12 bytes > capacity 11" in bad.reason
    best = solve_allocation(bufs, None, 5.0, minimize_peak=True)
    assert (best.status, best.peak, best.lower_bound) == ("optimal", 12, 12)


def test_touching_lifetimes_share_addresses() -> None:
    # [0,2) and [2,4) are half-open and never live together: both go at offset 0; the
    # third buffer [1,3) overlaps both, so the optimum is 5 + 3 = 8, not 5 + 5 + 3.
    bufs = [B(0, 2, 5), B(2, 4, 5), B(1, 3, 3)]
    res = solve_allocation(bufs, None, 5.0, minimize_peak=True)
    assert (res.status, res.peak) == ("optimal", 8)
    assert_valid(bufs, res)
    assert res.offsets[0] == res.offsets[1]


def test_independent_time_ranges_are_solved_separately() -> None:
    # Two groups disjoint in time ([0,3) and [5,8)) need 6 and 7 bytes: the peak is 7, the
    # larger group, and each group starts again at offset 0.
    bufs = [B(0, 3, 2), B(1, 3, 4), B(5, 8, 3), B(6, 8, 4), B(5, 6, 1)]
    res = solve_allocation(bufs, None, 5.0, minimize_peak=True)
    assert (res.status, res.peak) == ("optimal", 7)
    assert_valid(bufs, res)
    assert min(res.offsets[2:]) == 0 and min(res.offsets[:2]) == 0


def test_zero_size_buffers_sit_at_zero_and_take_no_room() -> None:
    bufs = [B(0, 4, 0), B(0, 4, 6), B(1, 2, 0)]
    res = solve_allocation(bufs, 6, 5.0)
    assert res.status == "optimal" and res.offsets == (0, 0, 0)


def test_one_buffer_larger_than_the_capacity() -> None:
    res = solve_allocation([B(0, 1, 10), B(3, 4, 2)], 9, 5.0)
    assert res.status == "infeasible"
    assert "10 bytes > capacity 9" in res.reason


def test_minimum_peak_above_capacity_is_reported_infeasible() -> None:
    res = solve_allocation([B(0, 2, 3), B(1, 3, 3)], 5, 5.0, minimize_peak=True)
    assert res.status == "infeasible" and res.lower_bound == 6
    assert "at time 1, live buffers need 6 bytes > capacity 5" in res.reason


def test_deterministic_for_a_seed_and_any_worker_count() -> None:
    bufs = read_csv(DATA / "challenging" / "K.1048576.csv")[:60]
    a = solve_allocation(bufs, None, 10.0, seed=0, workers=1, minimize_peak=True)
    b = solve_allocation(bufs, None, 10.0, seed=0, workers=2, minimize_peak=True)
    assert a.offsets == b.offsets and a.status == b.status == "optimal"
    assert_valid(bufs, a)


# -- brute force over the unit grid ------------------------------------------------------

def brute_force_min_peak(bufs: list[Interval]) -> int:
    """Smallest P such that some integer offsets pack everything below P (exhaustive DFS)."""
    n = len(bufs)
    overl = [[j for j in range(i) if bufs[i].first <= bufs[j].last and bufs[j].first <= bufs[i].last]
             for i in range(n)]

    def fits(i: int, offs: list[int], cap: int) -> bool:
        if i == n:
            return True
        for o in range(0, cap - bufs[i].size + 1):
            if all(o + bufs[i].size <= offs[j] or offs[j] + bufs[j].size <= o for j in overl[i]):
                offs.append(o)
                if fits(i + 1, offs, cap):
                    return True
                offs.pop()
        return False

    cap = max(b.size for b in bufs)
    while not fits(0, [], cap):
        cap += 1
    return cap


buffers_st = st.lists(
    st.tuples(st.integers(0, 5), st.integers(1, 4), st.integers(1, 4)).map(
        lambda t: B(t[0], t[0] + t[1], t[2])),
    min_size=1, max_size=6)


@pytest.mark.slow  # 120 brute-force searches, ~3.5 s
@settings(max_examples=120, deadline=None)
@given(buffers_st)
def test_exact_optimum_equals_brute_force(bufs: list[Interval]) -> None:
    opt = brute_force_min_peak(bufs)
    res = solve_allocation(bufs, None, 10.0, minimize_peak=True)
    assert res.status == "optimal" and res.peak == opt
    assert_valid(bufs, res)
    # Decision mode agrees at the optimum and proves one byte less infeasible.
    assert solve_allocation(bufs, opt, 10.0).status in ("optimal", "feasible")
    below = solve_allocation(bufs, opt - 1, 10.0)
    assert below.status == "infeasible" and below.offsets is None and below.reason


# -- the compiled search is the same search ------------------------------------------------

wider_st = st.lists(
    st.tuples(st.integers(0, 12), st.integers(1, 8), st.integers(1, 9)).map(
        lambda t: B(t[0], t[0] + t[1], t[2])),
    min_size=1, max_size=16)


@pytest.mark.slow  # engine='jit': compiles alloc/exact_jit.py on a cold numba cache
@settings(max_examples=150, deadline=None)
@given(wider_st, st.integers(0, 12))
def test_compiled_and_python_searches_agree_node_for_node(bufs: list[Interval], slack: int) -> None:
    # Same rules, same order, same restarts: identical offsets, status and node counts, in
    # decision mode (capacities around the peak-live bound, feasible or not) and min-peak mode.
    cap = peak_live_at(bufs)[0] + slack - 3
    for kw in ({"capacity": cap}, {"capacity": None, "minimize_peak": True}):
        a = solve_allocation(bufs, time_limit=20.0, engine="python", **kw)
        b = solve_allocation(bufs, time_limit=20.0, engine="jit", **kw)
        assert (a.offsets, a.status, a.nodes, a.lower_bound) == (b.offsets, b.status, b.nodes, b.lower_bound)
        if b.offsets is not None:
            assert check_packing(bufs, b.offsets, kw["capacity"]) is None


@pytest.mark.parametrize("engine", [pytest.param("jit", marks=pytest.mark.slow), "python"])  # jit: a cold numba compile
def test_challenging_instance_h_packs_at_one_mib(engine: str) -> None:
    # MiniMalloc's instance H: 316 buffers whose peak-live bound is exactly 1 MiB, so any
    # packing within 1 MiB is optimal (zero slack).  Before hatless pruning and the dynamic
    # T key, the search ran out of 60 s here; now it takes 9,513 nodes with either engine.
    bufs = read_csv(DATA / "challenging" / "H.1048576.csv")
    res = solve_allocation(bufs, 1 << 20, 30.0, engine=engine)
    assert (res.status, res.peak, res.nodes) == ("optimal", 1 << 20, 9513)
    assert_valid(bufs, res, 1 << 20)


def test_unknown_engine_is_rejected() -> None:
    with pytest.raises(ValueError, match="engine must be"):
        solve_allocation([B(0, 1, 1)], 1, 1.0, engine="gpu")


# -- plans for models ------------------------------------------------------------------------

def light(name: str) -> Path:
    return next(p for p in light_models() if p.stem == f"light_{name}")


@pytest.mark.parametrize("name, weights", [("squeezenet", False), ("shufflenet", True)])
def test_exact_alloc_plans_pass_the_validator(name: str, weights: bool) -> None:
    g = load_graph(str(light(name)), element_bytes=1)
    target = load_target("ethos-u55-256").with_capacity(None)
    params = make_params("exact-alloc", {"time_limit": 5.0})
    plan = solve(Problem(g, target, weights_in_compute_level=weights, time_limit=5.0), "exact-alloc", params)
    assert validate(g, plan).ok
    assert [s.op for s in plan.steps] == [g.operators[i].name for i in g.file_order()]
    assert not any(t.src == "sram" and t.dst == "dram" and not g.buffers[t.buffer].is_output
                   for t in plan.transfers)  # no spills
    lt = lifetimes(g, g.file_order(), weights)
    sram_peak = plan.metrics.peak_bytes["sram"]
    assert plan.solver.status == "optimal"
    assert plan.solver.lower_bound <= plan.solver.objective
    assert sram_peak <= plan.solver.objective < sram_peak + 16  # aligned peak
    assert plan.solver.objective >= lt.peak

    # Exactly the optimum fits; one alignment unit less is a CapacityError.
    fit = solve(Problem(g, target.with_capacity(plan.solver.objective), weights, time_limit=5.0),
                "exact-alloc", params)
    assert fit.metrics.peak_bytes["sram"] <= plan.solver.objective
    with pytest.raises(CapacityError, match="exact-alloc: the file order needs"):
        solve(Problem(g, target.with_capacity(plan.solver.objective - 16), weights, time_limit=5.0),
              "exact-alloc", params)


# -- the CLI -------------------------------------------------------------------------------

def test_cli_solves_writes_and_exits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sol.csv"
    assert cli_main(["alloc", str(EXAMPLE), "--capacity", "12", "-o", str(out)]) == 0
    sol = read_csv(out)
    assert all(b.offset is not None for b in sol)
    assert independent_check([(b.lower, b.upper, b.size) for b in sol], [b.offset for b in sol], 12) is None
    assert "status     optimal" in capsys.readouterr().out
    assert cli_main(["alloc", str(EXAMPLE), "--capacity", "11", "-o", str(tmp_path / "no.csv")]) == 1
    assert "live buffers need 12 bytes" in capsys.readouterr().out
    assert not (tmp_path / "no.csv").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lower,upper,size\na,2,1,4\n")
    assert cli_main(["alloc", str(bad), "--capacity", "12"]) == 2
    assert "empty lifetime" in capsys.readouterr().err


def test_independent_checker_catches_overlaps() -> None:
    rows = [(0, 2, 4), (1, 3, 4)]
    assert independent_check(rows, [0, 4], 8) is None
    assert "overlap" in independent_check(rows, [0, 3], 8)
    assert "outside" in independent_check(rows, [0, 5], 8)
    assert independent_check([(0, 1, 4), (1, 2, 4)], [0, 0], 4) is None  # touching lifetimes


def test_paths_are_relative_to_the_checkout() -> None:
    assert EXAMPLE.is_file(), f"expected the vendored instances in tests/data ({os.fspath(EXAMPLE)})"
