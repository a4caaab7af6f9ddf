"""Benchmark (issue 14, item 6): does load change the plan where the exact packer decides?

For one model (8-bit, in-place operators fused as the CLI does), one setting and the chosen
points of ``M_R..M_P:6`` + M_H (``planner_quality.capacities``) on ethos-u55-256, each solver
plans every capacity ``--repeats`` times with no extra load, then as often with ``--busy``
processes spinning on the cores.  The table counts, per (point, solver), the runs whose plan
says ``stopped_by = time`` and the distinct plans (steps, placements, transfers) among the runs
that do not -- the promise is one -- and the traffic of each load setting.  The exact packer
(``solvers.alloc.exact``) runs on a node budget (``PACK_NODES_PER_SECOND``), so its packings
do not depend on the load; what still does is reported by ``stopped_by``.

    python benchmarks/pack_load.py MODEL [--weights] [--points p1,p2,M_H] [--solvers auto,exact]
        [--time-limit 4] [--repeats 2] [--busy 3]

Prints a Markdown table (with the command, UTC time and load average at the start and end).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planner_quality import capacities  # noqa: E402

from stowage.ir.inplace import fuse_in_place  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.budgets import target_budgets  # noqa: E402
from stowage.solvers.problem import Problem  # noqa: E402
from stowage.solvers.registry import solve  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402


def _busy(stop_at: float) -> None:
    """Spin until the wall-clock time ``stop_at``: one core's worth of load."""
    while time.time() < stop_at:
        pass


def _digest(plan) -> str:
    """A short fingerprint of what a plan does (its order, placements and transfers)."""
    return hashlib.sha1(repr((plan.steps, plan.placements, plan.transfers)).encode()).hexdigest()[:8]


def runs(model: Path, weights: bool, points: list[str], solvers: list[str], time_limit: float,
         repeats: int) -> dict[tuple[str, str], list[tuple[int, str, str]]]:
    """(point, solver) -> [(traffic, stopped_by, digest)] over ``repeats`` runs."""
    target = load_target("ethos-u55-256")
    g = fuse_in_place(load_graph(model, element_bytes=1))
    b = target_budgets(g, target, weights)
    out: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for label, cap in capacities(b.m_r, b.m_p, b.m_h, 6):
        if label not in points:
            continue
        for solver in solvers:
            for _ in range(repeats):
                prob = Problem(g, target.with_capacity(cap), weights, time_limit=time_limit, seed=0, workers=1)
                plan = solve(prob, solver)
                out.setdefault((label, solver), []).append(
                    (plan.metrics.noncompulsory_bytes, plan.solver.stopped_by or "", _digest(plan)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--weights", action="store_true", help="weights in the compute level")
    ap.add_argument("--points", default="p1,p2,M_H")
    ap.add_argument("--solvers", default="auto,exact")
    ap.add_argument("--time-limit", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--busy", type=int, default=3)
    args = ap.parse_args()
    points, solvers = args.points.split(","), args.solvers.split(",")
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    idle = runs(args.model, args.weights, points, solvers, args.time_limit, args.repeats)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_busy, args=(time.time() + 3600,), daemon=True) for _ in range(args.busy)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)
        loaded_load = os.getloadavg()[0]
        loaded = runs(args.model, args.weights, points, solvers, args.time_limit, args.repeats)
        loaded_load = max(loaded_load, os.getloadavg()[0])
    finally:
        for p in procs:
            p.terminate()
            p.join()
    print(f"`python benchmarks/pack_load.py {' '.join(sys.argv[1:])}` ({start}, 2-core shared VM, load "
          f"{load0:.1f} at the start, {loaded_load:.1f} with the busy loops, {os.getloadavg()[0]:.1f} at the end)\n")
    print("| point | solver | traffic, no extra load (B) | traffic, busy loops (B) | stopped_by=time (of runs) | "
          "distinct plans without stopped_by |")
    print("|---|---|---|---|---:|---:|")
    for key in idle:
        both = idle[key] + loaded[key]
        clean = {d for _, s, d in both if s != "time"}
        fmt = lambda rs: ", ".join(f"{t:,}" + (" (time)" if s else "") for t, s, _ in rs)  # noqa: E731
        print(f"| {key[0]} | {key[1]} | {fmt(idle[key])} | {fmt(loaded[key])} | "
              f"{sum(1 for _, s, _ in both if s == 'time')} of {len(both)} | {len(clean)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
