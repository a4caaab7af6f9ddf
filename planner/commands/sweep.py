"""``stowage sweep``: the planner over a grid of models x capacities x targets x solvers."""

from __future__ import annotations

import argparse

from stowage import progress
from stowage.commands._common import parse_dim, positive_int, positive_seconds

NAME = "sweep"
HELP = "run solvers over models x capacities x targets, locally or on a Dask cluster (resumable)"
ORDER = 70
DESCRIPTION = (
    "Runs one plan per (model, target, capacity, solver) cell and appends each finished cell to "
    "RESULTS_DIR/results.csv; rerunning with the same arguments skips finished cells. Writes "
    "sweep.md and sweep.html with traffic-versus-capacity curves, the Pareto front and the "
    "smallest capacity with zero non-compulsory traffic per model and target. The results folder is "
    "locked while a sweep runs (a second sweep into it fails at once) and a grid has at most "
    "10,000 cells."
)


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL", help="ONNX files or folders of them")
    p.add_argument("--capacity", required=True, metavar="LIST",
                   help="comma-separated sizes (256KiB), M_R/M_H/M_P, and ranges M_R..M_P:N (N evenly spaced points)")
    p.add_argument("--target", type=_csv, default=["ethos-u55-256"], metavar="T1,T2",
                   help="presets or target files (default: ethos-u55-256)")
    p.add_argument("--solvers", type=_csv, default=["auto"], metavar="S1,S2", help="solver names (default: auto)")
    p.add_argument("--element-bytes", type=positive_int, default=None, metavar="B")
    p.add_argument("--weights-in-sram", action="store_true", help="weights must be resident in the compute level")
    p.add_argument("--time-limit", type=positive_seconds, default=10.0, metavar="SEC", help="per cell (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", action="append", type=parse_dim, default=[], metavar="NAME=VALUE")
    p.add_argument("--executor", choices=("local", "dask", "serial"), default="local",
                   help="local process pool (default), dask, or serial")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="with --executor dask: an existing Dask scheduler (default: start a LocalCluster)")
    p.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    p.add_argument("-o", "--output", required=True, metavar="RESULTS_DIR")


def run(args: argparse.Namespace) -> int:
    from stowage.tools.sweep import sweep

    def show(done: int, total: int, failed: int, elapsed: float) -> None:
        eta = elapsed / done * (total - done) if done else 0.0
        progress.status(f"sweep: {done}/{total} cells, {failed} failed, {elapsed:.0f}s elapsed, ETA {eta:.0f}s")

    result = sweep(
        args.models, args.capacity, targets=args.target, solvers=args.solvers, results_dir=args.output,
        element_bytes=args.element_bytes, weights_in_sram=args.weights_in_sram, time_limit=args.time_limit,
        seed=args.seed, dims=dict(args.dim), executor=args.executor, workers=args.workers,
        scheduler=args.scheduler, on_progress=show,
    )
    progress.finish()  # the last status line ends before the summary
    # ``failed`` counts the whole table: a resume that skipped 24 failed cells says so.
    this_run = f" ({result.failed_this_run} in this run)" if result.skipped and result.failed else ""
    print(f"{len(result.rows)} cells in {result.results_dir}: ran {result.ran}, skipped {result.skipped} "
          f"(already done), failed {result.failed}{this_run}")
    for f in result.files:
        print(f"  {f}")
    return 0
