"""MiniMalloc's challenging instances at 1 MiB: does ``solve_allocation`` find a packing?

Runs every ``*.csv`` of ``<root>/challenging`` one at a time (decision mode, capacity from
the file name's ``.1048576.`` part, default 1 MiB), re-checks every packing with the naive
checker of ``stowage alloc``, and prints a Markdown table with the reference minimalloc times
of that folder's README beside ours.  ``--engine python`` runs the pure-Python search (the
same nodes, slower); with the default engine the one-off numba compile/load happens before
the first instance and is not timed.

    python benchmarks/minimalloc_bench.py [--root ../shared/benchmarks/minimalloc] [--time-limit 60]
        [--engine auto|jit|python] [--only A B ...]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from stowage.commands.alloc import independent_check
from stowage.solvers.alloc.exact import solve_allocation
from stowage.solvers.alloc.interval import peak_live_at
from stowage.solvers.alloc.minimalloc_csv import read_csv

REPO = Path(__file__).resolve().parents[1]


def reference_times(readme: Path) -> dict[str, str]:
    """Instance -> minimalloc time, read from the README table (``| A | 154 | ... | 7.1 s |``)."""
    out: dict[str, str] = {}
    if readme.is_file():
        for line in readme.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 4 and re.fullmatch(r"[A-Z]", cells[0]):
                out[cells[0]] = cells[3]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "benchmarks" / "minimalloc"))
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--only", nargs="*", help="instance names (default: all)")
    ap.add_argument("--engine", choices=("auto", "jit", "python"), default="auto",
                    help="search engine of solve_allocation (default auto: compiled when numba is installed)")
    args = ap.parse_args()
    root = Path(args.root)
    refs = reference_times(root / "README.md")
    files = sorted((root / "challenging").glob("*.csv"))
    if args.only:
        files = [f for f in files if f.name.split(".")[0] in args.only]
    if args.engine != "python":  # compile or load the numba search outside the timed runs
        solve_allocation([], 1, 1.0, engine=args.engine)
    print(f"engine {args.engine}, time limit {args.time_limit:g} s per instance, one at a time", flush=True)
    print("| instance | buffers | peak-live bound (B) | packing at 1 MiB? | status | time (s) | nodes "
          "| minimalloc (README) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    found = 0
    for f in files:
        name = f.name.split(".")[0]
        m = re.search(r"\.(\d+)\.csv$", f.name)
        cap = int(m.group(1)) if m else 1 << 20
        bufs = read_csv(f)
        bound, _ = peak_live_at(bufs)
        t0 = time.perf_counter()
        res = solve_allocation(bufs, cap, args.time_limit, engine=args.engine)
        wall = time.perf_counter() - t0
        ok = res.offsets is not None
        if ok:
            problem = independent_check([(b.lower, b.upper, b.size) for b in bufs], res.offsets, cap)
            if problem is not None:
                print(f"| {name} | invalid packing: {problem} |", flush=True)
                return 1
            found += 1
        answer = "yes" if ok else ("no (proven)" if res.status == "infeasible" else "not in time")
        print(f"| {name} | {len(bufs)} | {bound:,} | {answer} | {res.status} | {wall:.1f} | {res.nodes:,} "
              f"| {refs.get(name, '-')} |", flush=True)
    print(f"\n{found} of {len(files)} packed within {args.time_limit:g} s each.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
