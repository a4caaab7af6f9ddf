"""``stowage compare``: run several solvers at several capacities and write a report.

The report (``report.html``, self-contained; ``report.md`` with PNGs beside it) has a table
per capacity, a memory-layout picture per plan, traffic-versus-capacity curves and, for
targets with more than two levels, occupancy per level.  A solver that fails at a capacity
is a table row with its error, never a crash of the command.
"""

from __future__ import annotations

import argparse

from stowage import progress
from stowage.commands._common import (
    add_model_arguments,
    add_target_arguments,
    check_output_folder,
    load_model_from_args,
    load_target_from_args,
)
from stowage.errors import StowageError

NAME = "compare"
HELP = "run several solvers at several capacities and write an HTML/Markdown report"
ORDER = 45
DEFAULT_SOLVERS = ("baseline-fileorder-belady", "baseline-minpeak-greedy", "heuristic", "exact")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_target_arguments(p)
    p.set_defaults(capacity="M_R,M_H,M_P")
    for action in p._actions:  # same flag as every command, but a list here
        if action.dest == "capacity":
            action.metavar = "C1,C2,..."
            action.help = ("comma-separated compute-level capacities: bytes, sizes (64KiB) or M_R, M_H, M_P "
                           "(default: M_R,M_H,M_P)")
    p.add_argument("--solvers", default=None, metavar="S1,S2,...",
                   help="solvers to compare (see 'stowage solvers'); default: the registered ones of "
                   + ", ".join(DEFAULT_SOLVERS))
    p.add_argument("--time-limit", type=float, default=10.0, metavar="SECONDS",
                   help="time limit per solver run (default 10)")
    p.add_argument("--weights-in-sram", action="store_true",
                   help="COSMA's activations + weights setting: weights must be resident in the "
                   "compute level while their operator runs")
    p.add_argument("--seed", type=int, default=0, help="seed for randomised solvers (default 0)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                   help="folder for report.html, report.md, the PNGs and plans/*.json")


def _solver_names(text: str | None) -> list[str]:
    from stowage.solvers.registry import available

    names = available()
    if text is None:
        chosen = [s for s in DEFAULT_SOLVERS if s in names]
        return chosen or list(names)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    if not chosen:
        raise StowageError("--solvers needs at least one solver name")
    return list(dict.fromkeys(chosen))


def run(args: argparse.Namespace) -> int:
    from stowage.tools.report import run_comparison, write_report

    if args.time_limit <= 0:
        raise StowageError(f"--time-limit must be positive, got {args.time_limit}")
    # A bad -o is a one-line error before minutes of solving, not a traceback after them.
    out = check_output_folder(args.output, ("report.html", "report.md"), dirs=("plans",))
    graph = load_model_from_args(args)
    target = load_target_from_args(args)
    solvers = _solver_names(args.solvers)

    def on_run(i: int, total: int, name: str, cap) -> None:
        progress.status(f"[{i + 1}/{total}] {name} at {cap.label} ...")

    comparison = run_comparison(
        graph, target, str(args.capacity).split(","), solvers,
        weights_in_compute_level=args.weights_in_sram, time_limit=args.time_limit, seed=args.seed,
        on_run=on_run, on_progress=progress.status,
    )
    if progress.enabled():
        progress.status("")
        import sys

        sys.stderr.write("\r")
    with progress.stage("drawing the report"):
        write_report(comparison, out)
    for cap in comparison.capacities:
        best = comparison.best_at(cap)
        failed = [r.solver for r in comparison.runs_at(cap) if not r.ok]
        line = f"{cap.label}: best {best.solver} ({best.noncompulsory:,} B non-compulsory)" if best \
            else f"{cap.label}: no plan fits"
        if failed:
            line += f"; failed: {', '.join(failed)}"
        print(line)
    print(f"wrote {out / 'report.html'} and {out / 'report.md'}")
    return 0
