"""COSMA's evaluation protocol on the model suite, end to end, in one command.

For every network of ``models/suite.toml`` (8-bit elements, batch 1), in both settings
(activations only; activations + weights in the scratchpad), at the budgets M_R, M_H and M_P,
run the four baselines, the heuristic planners and the exact solver (whichever of them are
registered), each with a stated time limit.  Every plan goes through the validator
(``solvers.registry.solve``).  Each run happens in a forked child process with a hard
wall-clock guard, so a solver that overruns its time limit is recorded as ``timeout`` instead
of stalling the benchmark.

Outputs (in ``--out``, default ``benchmarks/results/cosma``): ``cosma.csv`` (one row per run),
``cosma.md`` (a table per setting and budget, and a summary line per budget: the average
reduction of non-compulsory traffic versus the best baseline on the same graph and budget).

Reduction = 1 - traffic / best-baseline-traffic.  When the best baseline has zero
non-compulsory traffic the reduction is undefined (nothing to reduce) and that case is left out
of the average; the summary says how many cases were averaged.

    python benchmarks/cosma.py --quick
    python benchmarks/cosma.py --models resnet50,darts --time-limit 30
    python benchmarks/cosma.py                      # the full protocol (hours)
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import multiprocessing as mp
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ir.errors import StowageError  # noqa: E402
from ir.graph import Graph  # noqa: E402
from ir.onnx_import import load_graph  # noqa: E402
from models.build import SuiteModel, load_manifest  # noqa: E402
from planner.plan import write_text_atomic  # noqa: E402
from solvers.budgets import budgets  # noqa: E402
from solvers.problem import Problem  # noqa: E402
from solvers.registry import available, solve  # noqa: E402
from targets.hierarchy import Hierarchy, load_target  # noqa: E402

log = logging.getLogger("benchmarks.cosma")

BASELINES = ("baseline-fileorder-belady", "baseline-fileorder-greedy",
             "baseline-minpeak-belady", "baseline-minpeak-greedy")
PLANNERS = ("heuristic", "exact")
BUDGETS = ("M_R", "M_H", "M_P")
SETTINGS = (False, True)  # weights in the scratchpad?
QUICK_MODELS = ("resnet50", "mobilenet_v2")
QUICK_TIME_LIMIT = 3.0
ELEMENT_BYTES = 1
# COSMA's machine: a scratchpad and an unbounded off-chip memory, byte-granular (no alignment,
# which would otherwise make M_R itself infeasible when an operator reads tiny tensors).
TARGET = str(Path(__file__).resolve().parent / "cosma_target.toml")


@dataclass(frozen=True)
class Row:
    model: str
    group: str
    setting: str          # "activations" | "activations+weights"
    budget: str           # M_R | M_H | M_P
    capacity_bytes: int
    solver: str
    status: str           # optimal | feasible | reference | timeout | error
    noncompulsory_bytes: int | None
    compulsory_bytes: int | None
    peak_bytes: int | None  # compute level
    lower_bound: int | None
    gap: float | None     # (traffic - bound) / traffic; 0 when traffic == bound
    seconds: float
    time_limit: float
    reduction: float | None = None  # vs the best baseline at the same model/setting/budget
    error: str = ""


def setting_name(weights: bool) -> str:
    return "activations+weights" if weights else "activations"


# ---------------------------------------------------------------------------------------
# One run, guarded
# ---------------------------------------------------------------------------------------
def _run_in_child(conn, problem: Problem, solver: str) -> None:
    try:
        plan = solve(problem, solver)
        m = plan.metrics
        conn.send(("ok", plan.solver.status, m.noncompulsory_bytes, m.compulsory_bytes,
                   m.peak_bytes.get(plan.target.compute_level, 0), plan.solver.lower_bound))
    except StowageError as exc:
        conn.send(("error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - reported as a row, not a crash
        conn.send(("error", f"crashed: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
    finally:
        conn.close()


def run_guarded(problem: Problem, solver: str, hard_timeout: float) -> tuple[tuple, float]:
    """Solve in a forked child (it inherits the graph, nothing is pickled but the result);
    kill it after ``hard_timeout`` seconds."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    started = time.perf_counter()
    child = ctx.Process(target=_run_in_child, args=(send, problem, solver), daemon=True)
    child.start()
    send.close()
    result: tuple
    if recv.poll(hard_timeout):
        try:
            result = recv.recv()
        except EOFError:
            result = ("error", f"solver process died (exit code {child.exitcode})")
    else:
        result = ("timeout", f"no result within {hard_timeout:.0f} s (time limit {problem.time_limit:g} s)")
    seconds = time.perf_counter() - started
    child.join(1.0)
    if child.is_alive():
        child.kill()
        child.join()
    recv.close()
    return result, seconds


def hard_timeout_for(time_limit: float) -> float:
    """Grace for model building and the validator on top of the solver's own limit."""
    return 2.0 * time_limit + 10.0


def _gap(traffic: int, bound: int | None) -> float | None:
    if bound is None:
        return None
    if traffic == bound:
        return 0.0
    return (traffic - bound) / traffic if traffic > 0 else None


# ---------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------
def run_model(m: SuiteModel, graph: Graph, target: Hierarchy, solvers: Sequence[str], time_limit: float,
              settings: Sequence[bool], budget_names: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    for weights in settings:
        b = budgets(graph, weights)
        done: dict[tuple[int, str], Row] = {}  # equal budgets (M_R == M_P) are solved once
        for name in budget_names:
            cap = b.get(name)
            problem = Problem(graph=graph, target=target.with_capacity(cap), weights_in_compute_level=weights,
                              time_limit=time_limit, seed=0, workers=1)
            for solver in solvers:
                prev = done.get((cap, solver))
                if prev is not None:
                    rows.append(Row(**{**asdict(prev), "budget": name}))
                    continue
                result, seconds = run_guarded(problem, solver, hard_timeout_for(time_limit))
                if result[0] == "ok":
                    _, status, nc, comp, peak, lb = result
                    row = Row(m.name, m.group, setting_name(weights), name, cap, solver, status, nc, comp, peak,
                              lb, _gap(nc, lb), round(seconds, 3), time_limit)
                else:
                    row = Row(m.name, m.group, setting_name(weights), name, cap, solver,
                              "timeout" if result[0] == "timeout" else "error", None, None, None, None, None,
                              round(seconds, 3), time_limit, error=result[1].splitlines()[0])
                log.info("%s %s %s %s: %s %s (%.1fs)", m.name, setting_name(weights), name, solver,
                         row.status, row.noncompulsory_bytes, seconds)
                done[(cap, solver)] = row
                rows.append(row)
    return with_reductions(rows)


def with_reductions(rows: Sequence[Row]) -> list[Row]:
    """Fill ``reduction`` for every non-baseline row from the best baseline of its group."""
    best: dict[tuple[str, str, str], int] = {}
    for r in rows:
        if r.solver in BASELINES and r.noncompulsory_bytes is not None:
            key = (r.model, r.setting, r.budget)
            best[key] = min(best.get(key, r.noncompulsory_bytes), r.noncompulsory_bytes)
    out = []
    for r in rows:
        base = best.get((r.model, r.setting, r.budget))
        red = None
        if r.noncompulsory_bytes is not None and base:
            red = 1.0 - r.noncompulsory_bytes / base
        out.append(Row(**{**asdict(r), "reduction": red}))
    return out


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    names = [f.name for f in fields(Row)]
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    return buf.getvalue()


def _cell(r: Row | None) -> str:
    if r is None:
        return "-"
    if r.noncompulsory_bytes is None:
        return r.status
    s = f"{r.noncompulsory_bytes:,}"
    if r.reduction is not None and r.solver not in BASELINES:
        s += f" ({r.reduction:.0%} less)" if r.reduction >= 0 else f" ({-r.reduction:.0%} more)"
    if r.status not in ("optimal", "feasible", "reference"):
        s += f" {r.status}"
    elif r.status == "optimal" and r.solver not in BASELINES:
        s += " opt"
    elif r.gap is not None and r.gap > 0 and r.solver not in BASELINES:
        s += f" gap {r.gap:.0%}"
    return s


def summary_lines(rows: Sequence[Row], solvers: Sequence[str]) -> list[str]:
    lines = []
    for setting in sorted({r.setting for r in rows}, key=lambda s: len(s)):
        for budget in BUDGETS:
            sel = [r for r in rows if r.setting == setting and r.budget == budget]
            if not sel:
                continue
            parts = []
            for s in solvers:
                if s in BASELINES:
                    continue
                mine = [r for r in sel if r.solver == s]
                reds = [r.reduction for r in mine if r.reduction is not None]
                zero = sum(1 for r in mine if r.noncompulsory_bytes == 0)
                ok = sum(1 for r in mine if r.noncompulsory_bytes is not None)
                avg = f"{sum(reds) / len(reds):.1%}" if reds else "n/a"
                parts.append(f"{s} {avg} (n={len(reds)}; zero spill {zero}/{ok})")
            base_zero = sum(1 for m in {r.model for r in sel}
                            if min((r.noncompulsory_bytes for r in sel if r.model == m and r.solver in BASELINES
                                    and r.noncompulsory_bytes is not None), default=None) == 0)
            lines.append(f"- **{budget}, {setting}**, average reduction vs best baseline "
                         f"({len({r.model for r in sel})} networks, best baseline spill-free on {base_zero}): "
                         + "; ".join(parts))
    return lines


def to_markdown(rows: Sequence[Row], solvers: Sequence[str], meta: dict[str, str]) -> str:
    out = ["# COSMA protocol results", ""]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    out += ["", "Non-compulsory traffic in bytes (spill + reload); in brackets the reduction versus the best "
            "baseline on the same network, setting and budget; `opt` = proven optimal. Summary: n = networks "
            "averaged (those where the best baseline spills; a 0/0 reduction is undefined).", "",
            "## Summary", ""]
    out += summary_lines(rows, solvers)
    for setting in sorted({r.setting for r in rows}, key=lambda s: len(s)):
        for budget in BUDGETS:
            sel = [r for r in rows if r.setting == setting and r.budget == budget]
            if not sel:
                continue
            out += ["", f"## {budget}, {setting}", ""]
            out.append("| network | capacity | compulsory | " + " | ".join(solvers) + " |")
            out.append("|---|---:|---:|" + "---:|" * len(solvers))
            for model in dict.fromkeys(r.model for r in sel):
                by = {r.solver: r for r in sel if r.model == model}
                any_row = next(iter(by.values()))
                comp = next((r.compulsory_bytes for r in by.values() if r.compulsory_bytes is not None), None)
                out.append(f"| {model} | {any_row.capacity_bytes:,} | {'-' if comp is None else f'{comp:,}'} | "
                           + " | ".join(_cell(by.get(s)) for s in solvers) + " |")
    times = [r for r in rows if r.solver not in BASELINES and r.noncompulsory_bytes is not None]
    if times:
        out += ["", "## Solve time (s)", "", "| solver | mean | max | timeouts |", "|---|---:|---:|---:|"]
        for s in solvers:
            mine = [r for r in rows if r.solver == s]
            secs = [r.seconds for r in mine if r.noncompulsory_bytes is not None]
            if secs:
                out.append(f"| {s} | {sum(secs) / len(secs):.2f} | {max(secs):.2f} | "
                           f"{sum(1 for r in mine if r.status == 'timeout')} |")
    errors = [r for r in rows if r.status in ("error", "timeout")]
    if errors:
        out += ["", "## Errors and timeouts", ""]
        out += [f"- {r.model} {r.setting} {r.budget} {r.solver}: {r.status}: {r.error}" for r in errors]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run COSMA's protocol on the model suite.")
    p.add_argument("--quick", action="store_true",
                   help=f"{', '.join(QUICK_MODELS)} with a {QUICK_TIME_LIMIT:g} s time limit (under 2 minutes)")
    p.add_argument("--models", default=None, help="comma-separated suite names, or groups cosma,nas,extra")
    p.add_argument("--solvers", default=None,
                   help="comma-separated solver names (default: the four baselines, heuristic, exact)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per solver run (default 60; quick 3)")
    p.add_argument("--budgets", default=",".join(BUDGETS), help="subset of M_R,M_H,M_P")
    p.add_argument("--settings", choices=("both", "activations", "weights"), default="both")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cosma"), help="output folder")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    suite = load_manifest()
    by_name = {m.name: m for m in suite}
    if args.models:
        chosen: list[SuiteModel] = []
        for item in (s.strip() for s in args.models.split(",") if s.strip()):
            group = [m for m in suite if m.group == item]
            if item in by_name:
                chosen.append(by_name[item])
            elif group:
                chosen += group
            else:
                p.error(f"unknown model or group '{item}'; known: {', '.join(by_name)}")
    elif args.quick:
        chosen = [by_name[n] for n in QUICK_MODELS]
    else:
        chosen = list(suite)
    registered = available()
    wanted = [s.strip() for s in args.solvers.split(",")] if args.solvers else [*BASELINES, *PLANNERS]
    missing = [s for s in wanted if s not in registered]
    if args.solvers and missing:
        p.error(f"unknown solver(s): {', '.join(missing)}; registered: {', '.join(registered)}")
    solvers = [s for s in wanted if s in registered]
    if missing:
        print(f"not registered, skipped: {', '.join(missing)}", file=sys.stderr)
    time_limit = args.time_limit or (QUICK_TIME_LIMIT if args.quick else 60.0)
    budget_names = [b.strip().upper() for b in args.budgets.split(",") if b.strip()]
    settings = {"both": SETTINGS, "activations": (False,), "weights": (True,)}[args.settings]
    target = load_target(TARGET)

    rows: list[Row] = []
    started = time.perf_counter()
    for i, m in enumerate(chosen):
        if not m.path.exists():
            print(f"[{i + 1}/{len(chosen)}] {m.name}: {m.file} missing (run models/build.py), skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        graph = load_graph(m.path, element_bytes=ELEMENT_BYTES)
        rows += run_model(m, graph, target, solvers, time_limit, settings, budget_names)
        print(f"[{i + 1}/{len(chosen)}] {m.name}: {len(graph.computing_ops)} operators, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    meta = {
        "command": "python benchmarks/cosma.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "networks": ", ".join(m.name for m in chosen),
        "setting": f"{ELEMENT_BYTES}-byte elements, batch 1, target benchmarks/cosma_target.toml "
                   "(scratchpad + unbounded off-chip, alignment 1)",
        "solvers": f"{', '.join(solvers)}; time limit {time_limit:g} s each (hard kill at "
                   f"{hard_timeout_for(time_limit):g} s)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "wall time": f"{time.perf_counter() - started:.0f} s",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "cosma.csv", to_csv(rows))
    md = to_markdown(rows, solvers, meta)
    write_text_atomic(out / "cosma.md", md)
    print("\n".join(summary_lines(rows, solvers)))
    print(f"wrote {out / 'cosma.csv'} and {out / 'cosma.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
