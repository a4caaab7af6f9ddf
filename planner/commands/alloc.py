"""``stowage alloc``: solve a MiniMalloc instance (CSV ``id,lower,upper,size``) at a capacity.

The solver's packing is re-checked here by a deliberately tiny checker that shares no code
with the search (time-intersecting buffers never share a byte; every buffer ends within the
capacity) before anything is written: a sweep over start times that compares each buffer with
those still live, so 100,000 rows are checked in seconds, not the hours of all pairs.  Exit 0
when a packing was found, 1 when the instance is proven infeasible or none was found in time,
2 for bad input (a malformed or oversized CSV, a bad ``--capacity``, an output path that cannot
be written: a directory, a read-only folder, a full disk).  The solution is written atomically
(``stowage.plan.write_text_atomic``), so a failed write leaves no partial file.

Limits (``stowage.solvers.alloc.minimalloc_csv``): at most ``MAX_CSV_ROWS`` (200,000) rows and
``MAX_CSV_BYTES`` (64 MiB); larger instances are refused with one line.  Memory is linear in the
rows: groups of more than ``MAX_EXACT_GROUP`` time-connected buffers are packed greedily
(``stowage.solvers.alloc.exact``), measured at about 0.2 GB for 10,000 random rows and under
1 GB for 100,000.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stowage.commands._common import positive_int, positive_seconds
from stowage.errors import StowageError

NAME = "alloc"
HELP = "pack a MiniMalloc CSV instance (fixed lifetimes) into a capacity, exactly"
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("instance", metavar="INSTANCE.csv",
                   help="MiniMalloc CSV: id,lower,upper,size (lifetimes [lower, upper))")
    p.add_argument("--capacity", required=True, metavar="SIZE", help="capacity in bytes or with a unit (1MiB)")
    p.add_argument("--time-limit", type=positive_seconds, default=60.0, metavar="S",
                   help="seconds (default 60): the search's node budget is 100,000 per second "
                   "(the same answer on any machine), the seconds its wall-clock safety net")
    p.add_argument("--seed", type=int, default=0, help="accepted for uniformity; the search is deterministic")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="accepted for uniformity; the search is single-threaded")
    p.add_argument("-o", "--output", metavar="SOLUTION.csv", help="write the instance with an offset column")


def independent_check(rows: Sequence[tuple[int, int, int]], offsets: Sequence[int], capacity: int) -> str | None:
    """Check (lower, upper, size) rows, half-open lifetimes: ``None`` when the packing is valid.
    Rows in order of ``lower``; each is compared with every earlier row still live at its start
    (``upper > lower``), which is every row it can clash with."""
    for i, ((_, _, size), off) in enumerate(zip(rows, offsets)):
        if off < 0 or off + size > capacity:
            return f"row {i}: [{off}, {off + size}) is outside [0, {capacity})"
    live: list[int] = []
    for i in sorted(range(len(rows)), key=lambda k: rows[k][0]):
        lo, _, size = rows[i]
        live = [j for j in live if rows[j][1] > lo]
        off = offsets[i]
        for j in live:
            if size and rows[j][2] and off < offsets[j] + rows[j][2] and offsets[j] < off + size:
                a, b = min(i, j), max(i, j)
                return f"rows {a} and {b} are live together and overlap in memory"
        live.append(i)
    return None


def _check_output(path: str) -> None:
    """Refuse an output path that can never be written before spending the time limit."""
    out = Path(path)
    if out.is_dir():
        raise StowageError(f"-o {path}: is a directory; give a file name")
    if out.exists() and not os.access(out, os.W_OK):
        raise StowageError(f"-o {path}: not writable")


def run(args: argparse.Namespace) -> int:
    from stowage.solvers.alloc.exact import solve_allocation
    from stowage.solvers.alloc.minimalloc_csv import read_csv, write_csv
    from stowage.targets.hierarchy import parse_size

    capacity = parse_size(args.capacity, "--capacity")
    if args.output:
        _check_output(args.output)
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
    if res.reason:
        print(f"note       {res.reason}")
    print(f"time       {res.seconds:.2f} s ({res.nodes} nodes)")
    if args.output:
        try:
            write_csv(args.output, buffers, res.offsets)
        except OSError as e:  # write_csv is atomic: nothing partial is left behind
            raise StowageError(f"-o {args.output}: cannot write: {e.strerror or e}") from None
        print(f"wrote      {args.output}")
    return 0
