"""Estimated inference time (issue 15): Stowage's time model against Vela's, and the latency
objective against the traffic objective.

Part 1 -- MobileNetV2-1.0-224 int8 (``models/int8/mobilenet_v2_int8_qop.onnx``, onnxruntime's
QOperator form) planned by ``heuristic`` and timed by ``stowage.solvers.timing``:

* ``ethos-u55-256`` at Vela's own SRAM use for U55 Shared_Sram, ``--optimise Performance``
  (1474.44 KiB = 1,509,826 B), and at the preset's 256 KiB (tiled);
* ``ethos-u65-256`` at its dedicated 256 KiB (Vela: Dedicated_Sram_256KB).

Vela 5.2.0's estimates on the same network as TFLite (``../shared/docs/frontier-tiling.md``
2.7): 12.10 ms (U55) and 4.20 ms (U65).  Two Stowage figures per row: the whole ONNX model,
and without its float boundary: the work of the ``QuantizeLinear`` of the float input and the
final ``DequantizeLinear`` set to 0 and the clock started at the first step (Vela's TFLite
model is int8 end to end and has neither op; in Shared_Sram its input is already in SRAM).

Part 2 -- ``--objective latency`` vs ``traffic`` with ``heuristic`` on the COSMA suite
(``models/suite.toml``, 8-bit elements, activations only, whole tensors) at M_R and M_H on
``ethos-u55-256``: estimated time and non-compulsory traffic of both plans.

Part 3 -- the cost of a timeline: median wall time of ``estimate`` over 5 runs per plan.

Part 4 -- ``exact`` (``--objective latency``: ``stowage.solvers.exact.latency_model``), before
(``latency_residency=false``) and after the residency model, against ``exact`` for traffic on
the COSMA group (``models/suite.toml`` group ``cosma``, 8-bit, activations only, whole tensors)
at M_R and M_H on ``ethos-u55-256`` (``--part4-target``): estimated time, traffic,
the latency bound and gap of both plans, and what is proven about the latency plan's makespan
(``solver.latency_status``: ``optimal`` = meets the bound, ``order-optimal`` = no timing of its
order, placements and copies is faster).

Part 5 -- the same comparison (exact's traffic plan, ``exact --objective latency`` before and
after the residency model) on seeded random graphs of 5-12 ``Relu`` / ``Add`` / ``MatMul``
operators on a toy engine (10 ns per element, DRAM at 1 GB/s, one and two DMA channels) at M_R
and M_H: synthetic, to show what the residency model does where whole-tensor plans have slack.

Part 1 plans with ``--objective latency`` by default (``--objective traffic`` for the figures
of the traffic objective); ``--solver`` picks its solver (``heuristic`` or ``exact``).

    python benchmarks/latency.py --time-limit 20      # parts 1-3, about 15 minutes
    python benchmarks/latency.py --skip-suite         # part 1 and 3 only (< 1 minute)
    python benchmarks/latency.py --models resnet50,darts --time-limit 5
    python benchmarks/latency.py --skip-suite --exact --time-limit 10   # parts 1, 3 and 4
    python benchmarks/latency.py --skip-part1 --skip-suite --exact --part4-target ethos-u65-256
    python benchmarks/latency.py --skip-part1 --skip-suite --random 30 --time-limit 2   # part 5
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.build import load_manifest  # noqa: E402
from stowage.api import compile as compile_plan  # noqa: E402
from stowage.api import load_model  # noqa: E402
from stowage.ir.graph import Graph  # noqa: E402
from stowage.plan import Plan  # noqa: E402
from stowage.solvers.timing import Timeline, estimate  # noqa: E402
from stowage.targets.hierarchy import Hierarchy, load_target  # noqa: E402

MBV2 = ROOT / "models" / "int8" / "mobilenet_v2_int8_qop.onnx"
VELA = {"ethos-u55-256": 12.10e-3, "ethos-u65-256": 4.20e-3}
CASES = (("ethos-u55-256", 1_509_826, "Vela's U55 SRAM use (1474.44 KiB)"),
         ("ethos-u55-256", 256 * 1024, "preset 256 KiB"),
         ("ethos-u65-256", 256 * 1024, "dedicated 256 KiB"))
BOUNDARY = ("QuantizeLinear", "DequantizeLinear")


def _timeline(graph: Graph, plan: Plan, target: str, capacity: int) -> Timeline:
    tl = estimate(graph, plan, load_target(target).with_capacity(capacity))
    assert tl is not None, "the presets describe their compute engines"
    return tl


def _core(graph: Graph, plan: Plan, target: str, capacity: int) -> float:
    """The plan's estimated time without the float boundary: the same timeline with the work
    of ``QuantizeLinear`` / ``DequantizeLinear`` set to 0, from the first step's start (so
    without the wait for the float input's load).  Their steps' memory access (reading the
    float input) still counts."""
    ops = tuple(replace(op, cost=0) if op.op_type in BOUNDARY else op for op in graph.operators)
    tl = _timeline(replace(graph, operators=ops), plan, target, capacity)
    return tl.makespan - tl.steps[0].start


def _median_estimate(graph: Graph, plan: Plan, target: str, capacity: int) -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        _timeline(graph, plan, target, capacity)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def part1(time_limit: float, objective: str = "latency", solver: str = "heuristic") -> list[str]:
    graph = load_model(MBV2, in_place=True)
    print(f"part 1: {solver}, objective {objective}", flush=True)
    lines = [("| target | SRAM | steps (cascades) | non-compulsory B | estimated ms (whole / no float boundary) | "
              "bound ms | gap ms | stall ms | Vela ms | vs Vela (no boundary; whole) | estimate s (median of 5) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for target, cap, label in CASES:
        plan = compile_plan(graph, target=target, capacity=cap, solver=solver, time_limit=time_limit,
                            objective=objective)
        tl = _timeline(graph, plan, target, cap)
        core = _core(graph, plan, target, cap)
        vela = VELA[target]
        lines.append(f"| {target} | {label} | {len(plan.steps)} ({len(plan.cascades)}) | "
                     f"{plan.metrics.noncompulsory_bytes:,} | {tl.makespan * 1e3:.2f} / {core * 1e3:.2f} | "
                     f"{tl.lower_bound * 1e3:.2f} | {(tl.makespan - tl.lower_bound) * 1e3:.3f} | "
                     f"{tl.stall * 1e3:.3f} | {vela * 1e3:.2f} | {100 * (core / vela - 1):+.0f}% "
                     f"(whole {100 * (tl.makespan / vela - 1):+.0f}%) | "
                     f"{_median_estimate(graph, plan, target, cap):.4f} |")
        print(lines[-1], flush=True)
    return lines


def part2(models: list[str] | None, time_limit: float) -> list[str]:
    lines = [("| model | budget | traffic obj: ms / non-compulsory B | latency obj: ms / non-compulsory B | "
              "faster by | traffic cost | bound ms | gap ms (traffic, latency) | stopped by time (traffic, latency) |"),
             "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    target = load_target("ethos-u55-256")
    never_slower = True
    for m in load_manifest():
        if m.group not in ("cosma", "nas") or (models and m.name not in models):
            continue
        graph = load_model(m.path, element_bytes=1, in_place=True)
        for budget in ("M_R", "M_H"):
            res = {}
            for obj in ("traffic", "latency"):
                p = compile_plan(graph, target=target, capacity=budget, solver="heuristic", objective=obj,
                                 time_limit=time_limit, tiling="off")
                assert p.metrics.estimated_seconds is not None
                res[obj] = (p.metrics.estimated_seconds, p.metrics.noncompulsory_bytes, p.solver.stopped_by == "time")
                bound = _timeline(graph, p, target.name, p.target.level(p.target.compute_level).capacity).lower_bound
            (tt, tb, ts), (lt, lb, ls) = res["traffic"], res["latency"]
            # The guarantee is against the traffic winner of the same search: a search cut
            # short by the wall clock may end elsewhere, so those rows are marked.
            if not (ts or ls):
                never_slower &= lt <= tt
            lines.append(f"| {m.name} | {budget} | {tt * 1e3:.3f} / {tb:,} | {lt * 1e3:.3f} / {lb:,} | "
                         f"{100 * (1 - lt / tt):.2f}% | {lb - tb:+,} B | {bound * 1e3:.3f} | "
                         f"{(tt - bound) * 1e3:.3f}, {(lt - bound) * 1e3:.3f} | {'yes' if ts else 'no'}, "
                         f"{'yes' if ls else 'no'} |")
            print(lines[-1], flush=True)
    lines.append(f"latency plan never slower (rows not stopped by time): {never_slower}")
    print(lines[-1])
    return lines


def part4(models: list[str] | None, time_limit: float, target_name: str = "ethos-u55-256") -> list[str]:
    """``exact`` for latency against ``exact`` for traffic (module docstring, part 4): the
    latency plan before the residency model (``latency_residency=false``: the DMA schedule of
    fixed plans only) and after it (the default: CP-SAT also chooses which buffers to spill and
    when, ``stowage.solvers.exact.latency_residency``)."""
    lines = [("| model | steps | budget | exact traffic: ms / non-compulsory B / status | latency before: ms / B | "
              "latency after: ms / B | after vs traffic | after vs before | latency bound ms | gap ms (traffic, "
              "before, after) | status after | found by (after) | s (traffic, before, after) | stopped by time |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    print(f"part 4: {target_name}", flush=True)
    print("\n".join(lines), flush=True)
    target = load_target(target_name)
    never_slower, never_slower_before, proven, rows, faster = True, True, 0, 0, 0
    for m in load_manifest():
        if m.group != "cosma" or (models and m.name not in models):
            continue
        graph = load_model(m.path, element_bytes=1, in_place=True)
        for budget in ("M_R", "M_H"):
            res = {}
            for key, obj, params in (("traffic", "traffic", None), ("before", "latency", {"latency_residency": False}),
                                     ("after", "latency", None)):
                t0 = time.perf_counter()
                p = compile_plan(graph, target=target, capacity=budget, solver="exact", objective=obj,
                                 time_limit=time_limit, tiling="off", params=params)
                res[key] = (p, time.perf_counter() - t0)
            (tp, tw), (bp, bw), (lp, lw) = res["traffic"], res["before"], res["after"]
            tt, bt, lt = tp.metrics.estimated_seconds, bp.metrics.estimated_seconds, lp.metrics.estimated_seconds
            assert tt is not None and bt is not None and lt is not None and lp.solver.latency_bound is not None
            bound = lp.solver.latency_bound
            never_slower &= lt <= tt * (1 + 1e-12)
            never_slower_before &= lt <= bt * (1 + 1e-12)
            faster += lt < bt * (1 - 1e-9)
            rows += 1
            proven += lp.solver.latency_status in ("optimal", "order-optimal")
            stopped = ", ".join(x for x, p in (("traffic", tp), ("before", bp), ("after", lp))
                                if p.solver.stopped_by == "time")
            lines.append(f"| {m.name} | {len(lp.steps)} | {budget} | {tt * 1e3:.3f} / "
                         f"{tp.metrics.noncompulsory_bytes:,} / {tp.solver.status} | {bt * 1e3:.3f} / "
                         f"{bp.metrics.noncompulsory_bytes:,} | {lt * 1e3:.3f} / {lp.metrics.noncompulsory_bytes:,} | "
                         f"{100 * (1 - lt / tt):.2f}% "
                         f"({lp.metrics.noncompulsory_bytes - tp.metrics.noncompulsory_bytes:+,} B) | "
                         f"{100 * (1 - lt / bt):.3f}% | {bound * 1e3:.3f} | "
                         f"{(tt - bound) * 1e3:.3f}, {(bt - bound) * 1e3:.3f}, {(lt - bound) * 1e3:.3f} | "
                         f"{lp.solver.latency_status} | {lp.solver.found_by} | {tw:.1f}, {bw:.1f}, {lw:.1f} | "
                         f"{stopped or 'no'} |")
            print(lines[-1], flush=True)
    lines.append(f"after never slower than exact's traffic plan: {never_slower}; never slower than before: "
                 f"{never_slower_before}; faster than before in {faster} of {rows}; makespan proven "
                 f"(optimal or order-optimal) in {proven} of {rows} cases")
    print(lines[-1], flush=True)
    return lines


def _random_graph(rng: random.Random, n_ops: int) -> Graph:
    """A random DAG of ``Relu`` / ``Add`` / ``MatMul`` (with a weight) over ``[1, w]`` float
    tensors, w in {8, 16, 32}, each op reading recent tensors (residual-like reuse), imported at
    8-bit elements; the last tensor and any unused one are graph outputs."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from stowage.ir.onnx_import import import_model

    widths = {"x": rng.choice((8, 16, 32))}
    nodes, inits, used = [], [], set()
    for i in range(n_ops):
        names = list(widths)
        kind = rng.choice(("relu", "add", "matmul", "matmul"))
        a = rng.choice(names[-4:])
        out = f"t{i}"
        if kind == "add":
            same = [m for m in names if widths[m] == widths[a] and m != a]
            if same:
                b = rng.choice(same)
                nodes.append(helper.make_node("Add", [a, b], [out], name=f"add{i}"))
                used |= {a, b}
                widths[out] = widths[a]
                continue
            kind = "relu"
        if kind == "relu":
            nodes.append(helper.make_node("Relu", [a], [out], name=f"relu{i}"))
            widths[out] = widths[a]
        else:
            w_out = rng.choice((8, 16, 32))
            w = f"W{i}"
            inits.append(numpy_helper.from_array(np.ones((widths[a], w_out), np.float32), w))
            nodes.append(helper.make_node("MatMul", [a, w], [out], name=f"matmul{i}"))
            widths[out] = w_out
        used.add(a)
    outs = [n for n in widths if n != "x" and (n not in used or n == f"t{n_ops - 1}")]
    vi = lambda t: helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, widths[t]])  # noqa: E731
    model = helper.make_model(helper.make_graph(nodes, "random", [vi("x")], [vi(o) for o in outs], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    return import_model(model, element_bytes=1)


def _toy(channels: int) -> Hierarchy:
    """1 MAC per cycle at 100 MHz (10 ns per element), SRAM at 64 GB/s, DRAM at 1 GB/s."""
    from stowage.targets.hierarchy import Compute, Level

    engine = Compute(clock_hz=1e8, macs_per_cycle=1, dma_channels=channels, efficiency={"elementwise": 1.0})
    return Hierarchy(name=f"toy-{channels}ch", levels=(Level("sram", None, 1, 64e9, 64e9),
                                                       Level("dram", None, 1, 1e9, 1e9)),
                     compute_level="sram", weights_home="dram", inputs_home="dram", outputs_home="dram",
                     compute_engine=engine)


def part5(count: int, time_limit: float, seed: int = 0) -> list[str]:
    """Random graphs (``_random_graph``, 5-12 operators, seeded) on the toy engine with one and
    two DMA channels at M_R and M_H: ``exact --objective latency`` before
    (``latency_residency=false``) and after the residency model, against exact's traffic plan."""
    rng = random.Random(seed)
    lines = [("| case | ops | target | budget | traffic: ns / B | before: ns / B | after: ns / B | after vs before | "
              "bound ns | found by (after) | stopped by time |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    print(f"part 5: {count} random graphs, seed {seed}", flush=True)
    print("\n".join(lines), flush=True)
    faster, slower, rows, gains, traffic_up = 0, 0, 0, [], 0
    for case in range(count):
        n_ops = rng.randint(5, 12)
        graph = _random_graph(rng, n_ops)
        for channels in (1, 2):
            target = _toy(channels)
            for budget in ("M_R", "M_H"):
                res = {}
                for key, obj, params in (("traffic", "traffic", None),
                                         ("before", "latency", {"latency_residency": False}),
                                         ("after", "latency", None)):
                    res[key] = compile_plan(graph, target=target, capacity=budget, solver="exact", objective=obj,
                                            time_limit=time_limit, tiling="off", in_place=False, params=params)
                tp, bp, lp = res["traffic"], res["before"], res["after"]
                tt, bt, lt = tp.metrics.estimated_seconds, bp.metrics.estimated_seconds, lp.metrics.estimated_seconds
                assert tt is not None and bt is not None and lt is not None
                rows += 1
                slower += lt > bt * (1 + 1e-12)
                if lt < bt * (1 - 1e-9):
                    faster += 1
                    gains.append(1 - lt / bt)
                    traffic_up += lp.metrics.noncompulsory_bytes > bp.metrics.noncompulsory_bytes
                stopped = ", ".join(k for k, p in res.items() if p.solver.stopped_by == "time")
                lines.append(f"| {case} | {n_ops} | {target.name} | {budget} | {tt * 1e9:.0f} / "
                             f"{tp.metrics.noncompulsory_bytes} | {bt * 1e9:.0f} / {bp.metrics.noncompulsory_bytes} | "
                             f"{lt * 1e9:.0f} / {lp.metrics.noncompulsory_bytes} | {100 * (1 - lt / bt):.2f}% | "
                             f"{(lp.solver.latency_bound or 0) * 1e9:.0f} | {lp.solver.found_by} | {stopped or 'no'} |")
                print(lines[-1], flush=True)
    mean = 100 * sum(gains) / len(gains) if gains else 0.0
    lines.append(f"after faster than before in {faster} of {rows} (mean {mean:.2f}% where faster, max "
                 f"{100 * max(gains, default=0.0):.2f}%; {traffic_up} of them with more traffic); slower in {slower}")
    print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=None, help="comma-separated suite names for part 2 (default: cosma + nas)")
    ap.add_argument("--time-limit", type=float, default=10.0, help="heuristic time limit per plan (default 10 s)")
    ap.add_argument("--skip-suite", action="store_true", help="part 1 and 3 only")
    ap.add_argument("--exact", action="store_true", help="part 4: exact for latency vs traffic on the cosma group")
    ap.add_argument("--skip-part1", action="store_true", help="no MobileNetV2 rows")
    ap.add_argument("--objective", choices=("traffic", "latency"), default="latency", help="part 1's objective")
    ap.add_argument("--solver", default="heuristic", help="part 1's solver (heuristic or exact)")
    ap.add_argument("--part4-target", default="ethos-u55-256", help="part 4's target (default ethos-u55-256)")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="part 5: N random graphs on a toy engine, exact latency before/after the residency model")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, load {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    names = args.models.split(",") if args.models else None
    if not args.skip_part1:
        part1(args.time_limit, args.objective, args.solver)
    if not args.skip_suite:
        part2(names, args.time_limit)
    if args.exact:
        part4(names, args.time_limit, args.part4_target)
    if args.random:
        part5(args.random, args.time_limit)
    load = os.getloadavg()
    print(f"# load at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
