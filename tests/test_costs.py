"""The one cost model (``solvers.costs``) by hand, and the exact solver through it.

The regression case is the review's (docs: review-2026-12 section 2.6): on a three-level
target whose middle level is too small for any buffer, the exact model used to price every
spill at that level, chose one, and the assembler then found no room for it.
"""

from __future__ import annotations

import pytest

from stowage.plan.validate import validate
from stowage.solvers.costs import CostModel, home_level
from stowage.solvers.exact.params import ExactMipParams, ExactParams
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import Hierarchy, Level
from tests.spill_cases import fanout_graph, three_level


def four_levels(hbm: int | None) -> Hierarchy:
    """sram (compute) -> hbm (``hbm`` bytes) -> ddr (unbounded) -> rom (read-only)."""
    return Hierarchy(name="test4", levels=(Level("sram", 64, 1), Level("hbm", hbm, 1, 100.0, 50.0),
                                           Level("ddr", None, 1, 10.0, 10.0), Level("rom", None, 1, writable=False)),
                     compute_level="sram", weights_home="rom", inputs_home="ddr", outputs_home="ddr")


def test_hops_and_copy_cost() -> None:
    cm = CostModel(four_levels(32))
    assert [cm.hops(n) for n in ("sram", "hbm", "ddr", "rom")] == [0, 1, 2, 3]
    assert cm.copy_cost(16, "hbm") == 16 and cm.copy_cost(16, "ddr") == 32 and cm.copy_cost(16, "rom") == 48
    assert cm.copy_cost(16, "sram") == 0


def test_spill_rank_orders_by_byte_hops_then_time_and_ignores_capacity() -> None:
    cm = CostModel(four_levels(8))
    ranked = cm.spill_rank(16)
    # rom is not writable: no spill level.  hbm: store + reload = 2 * 16 * 1 = 32 byte-hops,
    # 16/50 + 16/100 = 0.48 s; ddr: 2 * 16 * 2 = 64, 16/10 + 16/10 = 3.2 s.  hbm (8 bytes)
    # cannot hold 16 bytes, but the ranking lists it all the same (the engine's tie-breaks).
    assert [lv.name for _, lv in ranked] == ["hbm", "ddr"]
    assert [key for key, _ in ranked] == [(32, pytest.approx(0.48), 0), (64, pytest.approx(3.2), 1)]


def test_capacity_filter_and_store_level() -> None:
    cm = CostModel(four_levels(32))
    assert cm.spill_candidates(32) == ("hbm", "ddr")       # fits exactly
    assert cm.spill_candidates(33) == ("ddr",)             # hbm can never hold it
    assert cm.store_level(32) == "hbm" and cm.store_level(33) == "ddr"
    # No spill level at all when the only slower level is read-only.
    rom_only = Hierarchy(name="t", levels=(Level("sram", 64, 1), Level("rom", None, 1, writable=False)),
                         compute_level="sram", weights_home="rom", inputs_home="rom", outputs_home="rom")
    assert CostModel(rom_only).spill_candidates(1) == () and CostModel(rom_only).store_level(1) is None
    assert CostModel(rom_only).spill_cost(1) is None


def test_spill_cost_and_reload_cost() -> None:
    g = fanout_graph()                      # every tensor 16 bytes: x (input), a, b, c, d, y (output)
    by_name = {b.tensors[0]: b.id for b in g.buffers}
    small, roomy = CostModel(three_level(48, 1)), CostModel(three_level(48, 100))
    # hbm of 1 byte: a spill goes to ddr, 2 hops each way: 2 * 16 * 2.
    assert small.spill_cost(16) == 64 and roomy.spill_cost(16) == 32
    # Clean buffers come back from home (ddr, 2 hops); an activation pays store + reload.
    assert small.reload_cost(g, by_name["x"]) == 32 == roomy.reload_cost(g, by_name["x"])
    assert small.reload_cost(g, by_name["y"]) == 32
    assert small.reload_cost(g, by_name["c"]) == 64 and roomy.reload_cost(g, by_name["c"]) == 32
    t = three_level(48, 1)
    assert home_level(g, t, by_name["x"]) == "ddr" and home_level(g, t, by_name["y"]) == "ddr"
    assert home_level(g, t, by_name["c"]) is None


def test_exact_model_prices_spills_at_the_level_that_can_hold_them() -> None:
    from stowage.solvers.exact.joint_data import joint_data
    g = fanout_graph()
    data = joint_data(Problem(g, three_level(48, 1)), "joint")
    c = next(mb for mb in data.buffers if g.buffers[mb.id].tensors == ("c",))
    assert (c.store_dst, c.reload_src, c.store_cost, c.reload_cost) == ("ddr", "ddr", 32, 32)
    data = joint_data(Problem(g, three_level(48, 100)), "joint")
    c = next(mb for mb in data.buffers if g.buffers[mb.id].tensors == ("c",))
    assert (c.store_dst, c.reload_src, c.store_cost, c.reload_cost) == ("hbm", "hbm", 16, 16)


@pytest.mark.parametrize("name,params", [
    ("exact", None),
    ("exact", ExactParams(mode="joint")),
    ("exact", ExactParams(mode="fixed-schedule")),
    ("exact-mip", ExactMipParams(backend="cbc")),
])
def test_exact_plans_where_the_heuristic_plans_on_a_small_middle_level(name: str, params: object) -> None:
    # The review's case: sram 48 B, hbm 1 B.  Reloading the input x from ddr (16 B x 2 hops)
    # is the cheapest move; a spilled activation would cost 64 (it cannot go to hbm).
    g = fanout_graph()
    p = Problem(g, three_level(48, 1), False, time_limit=5.0, workers=1)
    assert solve(p, "heuristic").metrics.noncompulsory_bytes == 32
    plan = solve(p, name, params)
    verdict = validate(g, plan)
    assert verdict.ok, verdict.summary()
    assert plan.metrics.noncompulsory_bytes == 32
    assert plan.solver.name == name and plan.solver.found_by is not None
