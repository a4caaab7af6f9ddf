"""``stowage compare``'s time pictures (issue 15, "What users see"): the timeline of each
capacity's best plan and the capacity-vs-latency curves, on the tiny CNN and the ethos-u55-256
preset (500 MHz, 256 MACs, one DMA channel; sram 4 GB/s, dram 0.5 GB/s, latency 32 / 64 cycles,
bursts 32 / 128 B), and the one-line note when the target has no ``[compute]`` table.

Hand-checked copy times (``docs/timing.md``: latency = max of the two levels' = 64 cycles =
128 ns; bytes rounded up to the larger burst, 128 B, over min(read, write) = 0.5 GB/s):
- the 12,288 B input, dram -> sram: 128 ns + 12,288 / 0.5e9 s = 24.704 us;
- the 40 B output, sram -> dram: 128 ns + 128 / 0.5e9 s = 0.384 us;
- a 16,384 B activation spilled or reloaded: 128 ns + 16,384 / 0.5e9 s = 32.896 us.
"""

from __future__ import annotations

import pytest

from models.build import TINY_PATH
from stowage.ir.onnx_import import load_graph
from stowage.targets.hierarchy import load_target
from stowage.tools.report import Figure, latency_points, md_escape, render_pages, run_comparison, timeline_lanes

BASELINE = "baseline-fileorder-belady"
LOAD_IN = 24.704e-6
STORE_OUT = 0.384e-6
SPILL = 32.896e-6
#: Sum of the 25 steps' busy times on ethos-u55-256 (the per-layer table's busy_s column).
BUSY = 154.71123076923077e-6
#: The latency bound: the busy times plus the input load every first step waits for and the
#: output store after the last step (docs/timing.md); it holds for every order and capacity,
#: so it is the same at M_R and M_P.
BOUND = BUSY + LOAD_IN + STORE_OUT


@pytest.fixture(scope="module")
def graph():
    return load_graph(TINY_PATH)


@pytest.fixture(scope="module")
def cmp(graph):
    # M_R = 32,784 B (one 16 KiB spill needed), M_P = 48 KiB (nothing spilled).
    return run_comparison(graph, load_target("ethos-u55-256"), ["M_R", "M_P"], ["heuristic", BASELINE],
                          time_limit=5)


def test_runs_carry_timed_plans(cmp):
    assert cmp.timed and cmp.time_note == ""
    for run in cmp.runs:
        assert run.ok and run.timeline is not None
        assert run.plan.metrics.estimated_seconds == run.estimated_seconds == run.timeline.makespan
        assert all(t.start is not None and t.end is not None and t.channel == 0 for t in run.plan.transfers)
        assert run.timeline.lower_bound == pytest.approx(BOUND, rel=1e-12)


def test_timeline_at_m_p_is_the_bound_plus_the_compulsory_copies(cmp):
    # Nothing spilled: the engine waits only for the input, the output store runs after the
    # last step, so makespan = busy sum + load + store.
    best = cmp.best_at(cmp.capacities[1])
    assert best is not None and best.noncompulsory == 0
    assert best.estimated_seconds == pytest.approx(BUSY + LOAD_IN + STORE_OUT, rel=1e-12) == BOUND
    compute, dma = timeline_lanes(best)
    assert compute[0] == "compute" and dma[0] == "DMA 0"
    stalls = [b for b in compute[1] if b[2] == "stall"]
    assert stalls == [(0.0, pytest.approx(LOAD_IN), "stall")]
    assert sum(1 for b in compute[1] if b[2] == "step") == 25
    (l0, l1, lk), (s0, s1, sk) = dma[1]
    assert (lk, sk) == ("load", "store") and l0 == 0.0 and l1 == pytest.approx(LOAD_IN)
    assert s1 - s0 == pytest.approx(STORE_OUT) and s1 == pytest.approx(best.estimated_seconds)


def test_timeline_at_m_r_shows_the_spill_the_reload_and_their_stalls(cmp):
    cap = cmp.capacities[0]
    by_solver = {r.solver: r for r in cmp.runs_at(cap)}
    # Both spill the same 32,768 B; the tie goes to the smaller estimated time (heuristic).
    assert by_solver["heuristic"].noncompulsory == by_solver[BASELINE].noncompulsory == 32_768
    assert by_solver["heuristic"].estimated_seconds < by_solver[BASELINE].estimated_seconds
    assert cmp.best_at(cap).solver == "heuristic"
    compute, dma = timeline_lanes(by_solver[BASELINE])
    assert [k for _, _, k in dma[1]] == ["load", "spill", "reload", "store"]
    for a, b, k in dma[1]:
        if k in ("spill", "reload"):
            assert b - a == pytest.approx(SPILL)
    # One channel on the preset; asking for two draws an empty second lane.
    lanes = timeline_lanes(by_solver[BASELINE], dma_channels=2)
    assert [name for name, _ in lanes] == ["compute", "DMA 0", "DMA 1"] and lanes[2][1] == []
    # The reload is waited for: a stall on the compute lane ends when the reload ends.
    reload_end = next(b for _, b, k in dma[1] if k == "reload")
    assert any(k == "stall" and b == pytest.approx(reload_end) for _, b, k in compute[1])
    stall_total = sum(b - a for a, b, k in compute[1] if k == "stall")
    assert stall_total == pytest.approx(by_solver[BASELINE].timeline.stall)


def test_latency_points(cmp):
    curves, bounds = latency_points(cmp)
    assert list(curves) == ["heuristic", BASELINE]
    (c0, t0), (c1, t1) = curves["heuristic"]
    assert (c0, c1) == (32_784, 49_152)
    assert t1 == pytest.approx(BUSY + LOAD_IN + STORE_OUT) and t0 > t1  # more memory, less time here
    assert [c for c, _ in bounds] == [32_784, 49_152]
    assert all(b == pytest.approx(BOUND) for _, b in bounds)


def test_report_pages_show_time_columns_and_the_latency_section(cmp):
    sections = [{"capacity": c, "rows": [], "figures": [], "spills": [], "steps": None} for c in cmp.capacities]
    curves = Figure("traffic_vs_capacity.png", "traffic", b"")
    latency = Figure("latency_vs_capacity.png", "estimated time versus capacity", b"")
    pages = render_pages(cmp, sections, curves, latency)
    assert "## Estimated time versus capacity" in pages["report.md"]
    assert "![estimated time versus capacity](latency_vs_capacity.png)" in pages["report.md"]
    assert "| est. (ms) | stall (ms) |" in pages["report.md"]
    assert "<th>est. (ms)</th><th>stall (ms)</th>" in pages["report.html"]


def test_a_target_without_compute_gets_a_one_line_note(graph, tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text(
        'name = "plain"\ncompute_level = "sram"\n[homes]\nweights = "dram"\ninputs = "dram"\noutputs = "dram"\n'
        '[[levels]]\nname = "sram"\ncapacity = "256KiB"\nalignment = 16\nread_bandwidth = 4.0e9\n'
        'write_bandwidth = 4.0e9\n[[levels]]\nname = "dram"\nalignment = 16\nread_bandwidth = 0.5e9\n'
        'write_bandwidth = 0.5e9\n')
    cmp = run_comparison(graph, load_target(str(path)), ["M_P"], [BASELINE], time_limit=5)
    (run,) = cmp.runs
    assert run.ok and run.timeline is None and run.estimated_seconds is None
    assert run.plan.metrics.estimated_seconds is None and all(t.start is None for t in run.plan.transfers)
    assert not cmp.timed and latency_points(cmp) == ({}, [])
    note = ("Time unknown: target 'plain' has no [compute] table (docs/timing.md), so there is no timeline "
            "and no latency curve.")
    assert cmp.time_note == note
    pages = render_pages(cmp, [], Figure("traffic_vs_capacity.png", "traffic", b""))
    assert md_escape(note) in pages["report.md"] and note.replace("'", "&#39;") in pages["report.html"]
    assert "latency_vs_capacity" not in pages["report.md"]


@pytest.mark.slow  # draws five PNGs (about 1.5 s)
def test_render_report_draws_a_timeline_per_best_plan_and_the_latency_curve(cmp):
    from stowage.tools.report import render_report

    files = render_report(cmp, with_occupancy=False)
    timelines = sorted(k for k in files if k.startswith("timeline_"))
    # One per capacity, for its best plan (heuristic at M_R by its smaller estimated time; at
    # M_P both plans tie in traffic and time, and the smaller peak decides).
    best_mp = cmp.best_at(cmp.capacities[1]).solver
    assert timelines == ["timeline_cap32784_heuristic.png", f"timeline_cap49152_{best_mp}.png"]
    for name in (*timelines, "latency_vs_capacity.png"):
        png = files[name]
        assert isinstance(png, bytes) and png[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in files["report.md"]
    assert str(files["report.html"]).count('src="data:image/png;base64,') == sum(k.endswith(".png") for k in files)
    assert '"estimated_seconds": 0.000' in str(files["plans/cap49152_heuristic.json"])
