"""``stowage alloc``: solve a MiniMalloc instance (CSV ``id,lower,upper,size``) at a capacity.

The solver's packing is re-checked here by a deliberately tiny pairwise checker that shares
no code with the search (time-intersecting buffers never share a byte; every buffer ends
within the capacity) before anything is written.  Exit 0 when a packing was found, 1 when
the instance is proven infeasible or none was found in time, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stowage.commands._common import positive_int, positive_seconds

NAME = "alloc"
HELP = "pack a MiniMalloc CSV instance (fixed lifetimes) into a capacity, exactly"
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("instance", metavar="INSTANCE.csv",
                   help="MiniMalloc CSV: id,lower,upper,size (lifetimes [lower, upper))")
    p.add_argument("--capacity", required=True, metavar="SIZE", help="capacity in bytes or with a unit (1MiB)")
    p.add_argument("--time-limit", type=positive_seconds, default=60.0, metavar="S", help="seconds (default 60)")
    p.add_argument("--seed", type=int, default=0, help="accepted for uniformity; the search is deterministic")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="accepted for uniformity; the search is single-threaded")
    p.add_argument("-o", "--output", metavar="SOLUTION.csv", help="write the instance with an offset column")


def independent_check(rows: Sequence[tuple[int, int, int]], offsets: Sequence[int], capacity: int) -> str | None:
    """Pairwise O(n^2) check of (lower, upper, size) rows: ``None`` when the packing is valid."""
    for i, ((lo, hi, size), off) in enumerate(zip(rows, offsets)):
        if off < 0 or off + size > capacity:
            return f"row {i}: [{off}, {off + size}) is outside [0, {capacity})"
        for j in range(i):
            lo2, hi2, size2 = rows[j]
            if lo < hi2 and lo2 < hi and off < offsets[j] + size2 and offsets[j] < off + size:
                return f"rows {j} and {i} are live together and overlap in memory"
    return None


def run(args: argparse.Namespace) -> int:
    from stowage.solvers.alloc.exact import solve_allocation
    from stowage.solvers.alloc.minimalloc_csv import read_csv, write_csv
    from stowage.targets.hierarchy import parse_size

    capacity = parse_size(args.capacity, "--capacity")
    buffers = read_csv(args.instance)
    res = solve_allocation(buffers, capacity, args.time_limit, args.seed, args.workers)
    print(f"instance   {args.instance} ({len(buffers)} buffers)")
    print(f"capacity   {capacity:,}")
    print(f"status     {res.status}")
    print(f"bound      {res.lower_bound:,} (no packing below this peak)")
    if res.offsets is None:
        print(f"time       {res.seconds:.2f} s ({res.nodes} nodes)")
        print(f"why        {res.reason}")
        return 1
    problem = independent_check([(b.lower, b.upper, b.size) for b in buffers], res.offsets, capacity)
    if problem is not None:
        print(f"stowage: internal error: the packing fails the independent check: {problem}", file=sys.stderr)
        return 1
    print(f"peak       {res.peak:,}")
    print(f"time       {res.seconds:.2f} s ({res.nodes} nodes)")
    if args.output:
        write_csv(args.output, buffers, res.offsets)
        print(f"wrote      {args.output}")
    return 0
