"""Benchmark (issue 14, item 6): does load change the plan?  The min-peak scheduler and `auto`
on small layered graphs, repeated, with and without busy-loop processes competing for the cores.

For each graph (``tests.test_on_time.layered_graph(OPS, seed)``, 8-bit) and load setting (no
extra load, then ``--busy`` processes spinning on the cores), it runs ``--repeats`` times, each
on a fresh graph object (nothing memoised):

* ``min_peak_run`` with ``--order-limit`` seconds (the scheduler's budget; 0.5 s is `auto`'s):
  how many runs the wall clock cut (``MinPeakRun.cut``), how many were proven, how many
  distinct orders;
* ``auto`` at a capacity a third of the way from M_R to the peak, ``--time-limit`` seconds:
  how many plans say ``stopped_by=time``, how many distinct plans (order, placements,
  transfers).

    python benchmarks/load_independence.py [--ops 40] [--seeds 2,3] [--repeats 4] [--busy 3]
        [--order-limit 0.5] [--time-limit 10]

Prints a Markdown table (with the command, UTC time and load average).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stowage.ir.lifetimes import m_r, peak_live  # noqa: E402
from stowage.solvers.analysis.schedule import min_peak_run  # noqa: E402
from stowage.solvers.problem import Problem  # noqa: E402
from stowage.solvers.registry import available, solve  # noqa: E402
from tests.spill_cases import two_level  # noqa: E402
from tests.test_on_time import layered_graph  # noqa: E402


def _busy(stop_at: float) -> None:
    """Spin until the wall-clock time ``stop_at``: one core's worth of load."""
    while time.time() < stop_at:
        pass


def measure(ops: int, seed: int, repeats: int, order_limit: float, time_limit: float) -> dict[str, object]:
    cuts = proven = stopped = 0
    orders, plans = set(), set()
    for _ in range(repeats):
        g = layered_graph(ops, seed=seed)
        run = min_peak_run(g, False, order_limit, 1)
        cuts += run.cut
        proven += run.proven
        orders.add(run.order)
        g = layered_graph(ops, seed=seed)
        lo, hi = m_r(g, False), peak_live(g, None, False)
        plan = solve(Problem(g, two_level(lo + (hi - lo) // 3), time_limit=time_limit, seed=1), "auto")
        stopped += plan.solver.stopped_by == "time"
        plans.add((plan.steps, plan.placements, plan.transfers))
    return {"cut": cuts, "proven": proven, "orders": len(orders), "stopped": stopped, "plans": len(plans)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=40)
    ap.add_argument("--seeds", default="2,3")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--busy", type=int, default=3, help="busy-loop processes for the loaded runs (0: none)")
    ap.add_argument("--order-limit", type=float, default=0.5)
    ap.add_argument("--time-limit", type=float, default=10.0)
    args = ap.parse_args(argv)
    available()                          # import the solver modules before timing anything
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    rows = []
    for busy in sorted({0, args.busy}):
        procs = [mp.get_context("fork").Process(target=_busy, args=(time.time() + 3600,), daemon=True)
                 for _ in range(busy)]
        for p in procs:
            p.start()
        try:
            if busy:
                time.sleep(1.0)
            for seed in seeds:
                r = measure(args.ops, seed, args.repeats, args.order_limit, args.time_limit)
                rows.append((busy, seed, os.getloadavg()[0], r))
        finally:
            for p in procs:
                p.terminate()
                p.join()
    cmd = "python benchmarks/load_independence.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"`{cmd}` ({started}, load average {load0:.2f} at the start, 2-core shared VM)\n")
    print("| busy loops | graph | load after | scheduler runs cut | proven | distinct orders | "
          "auto stopped_by=time | distinct auto plans |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for busy, seed, load, r in rows:
        n = args.repeats
        print(f"| {busy} | layered {args.ops} ops, seed {seed} | {load:.1f} | {r['cut']}/{n} | {r['proven']}/{n} | "
              f"{r['orders']} | {r['stopped']}/{n} | {r['plans']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
