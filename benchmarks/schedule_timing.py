"""Benchmark: how long ``min_peak_order`` takes on random layered graphs, and whether its
safety stop fired (the result then differs from the unbounded, work-budget-only run).

The tests check what does not depend on the machine (``tests/test_schedule.py`` runs the
search without its safety stop); this script measures what does.  The reference figure:
a 300-operator graph with a 2 s limit finished in about 0.6 s on the 2-core reference
machine, well inside the limit (the old test asserted < 4 s).

    python benchmarks/schedule_timing.py [--ops 300 1000] [--time-limit 2.0] [--repeat 3]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stowage.ir.lifetimes import peak_live  # noqa: E402
from stowage.solvers.analysis.schedule import min_peak_order  # noqa: E402
from tests.test_schedule import random_layered_graph  # noqa: E402

log = logging.getLogger("schedule_timing")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--time-limit", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3, help="graph seed (the test uses 3)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print("| ops | file-order peak | min-peak peak | seconds (min / max) | safety stop changed the order |")
    print("|---:|---:|---:|---:|---|")
    for n in args.ops:
        g = random_layered_graph(n, seed=args.seed)
        reference = min_peak_order(g, True, time_limit=args.time_limit, seed=0, safety_stop=False)
        times, differs = [], False
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            order = min_peak_order(g, True, time_limit=args.time_limit, seed=0)
            times.append(time.perf_counter() - t0)
            differs |= order != reference
        print(f"| {n} | {peak_live(g, None):,} | {peak_live(g, reference):,} | "
              f"{min(times):.2f} / {max(times):.2f} | {'yes' if differs else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
