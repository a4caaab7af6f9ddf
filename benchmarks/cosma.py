"""COSMA's evaluation protocol on the model suite, end to end, in one command.

For every network of ``models/suite.toml`` (8-bit elements, batch 1), in both settings
(activations only; activations + weights in the scratchpad), at the budgets M_R, M_H and M_P
(``stowage.solvers.budgets`` at the target's compute alignment), run the four baselines and our
planners (``heuristic``, ``divide``, ``exact``), each with a stated time limit.  Every plan
goes through the validator (``stowage.solvers.registry.solve``).  Each run happens in a forked child
process with a hard wall-clock guard, so a solver that overruns its time limit is recorded as
``timeout`` instead of stalling the benchmark.  The full run also runs the allocation-only
MiniMalloc suite (``benchmarks/minimalloc_bench.py`` on ``../shared/benchmarks/minimalloc``).

Outputs (in ``--out``, default ``benchmarks/results/cosma``): ``cosma.csv`` (one row per run),
``cosma.md`` (summary lines per budget, setting and suite group; a table per setting and
budget), and ``minimalloc.md`` when that suite ran.

Reduction = 1 - traffic / best-baseline-traffic.  When the best baseline has zero
non-compulsory traffic the reduction is undefined (nothing to reduce) and that case is left out
of the average; the summary says how many cases were averaged.  "best" is, per case, the
least traffic of our planners (ties: proven optimal first, then the fastest).

    python benchmarks/cosma.py --quick                         # < 2 minutes
    python benchmarks/cosma.py --models resnet50,darts --time-limit 10
    python benchmarks/cosma.py --out benchmarks/results/cosma_full   # the full protocol
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.build import SuiteModel, load_manifest  # noqa: E402
from stowage.errors import StowageError  # noqa: E402
from stowage.ir.graph import Graph  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.plan import write_text_atomic  # noqa: E402
from stowage.solvers.budgets import target_budgets  # noqa: E402
from stowage.solvers.problem import Problem, default_workers  # noqa: E402
from stowage.solvers.registry import available, solve  # noqa: E402
from stowage.targets.hierarchy import Hierarchy, load_target  # noqa: E402

log = logging.getLogger("benchmarks.cosma")

BASELINES = ("baseline-fileorder-belady", "baseline-fileorder-greedy",
             "baseline-minpeak-belady", "baseline-minpeak-greedy")
PLANNERS = ("heuristic", "divide", "exact")
BEST = "best"  # per case, the best of our planners (a column of the tables, not a solver)
BUDGETS = ("M_R", "M_H", "M_P")
SETTINGS = (False, True)  # weights in the scratchpad?
GROUPS = ("cosma", "nas", "extra")
QUICK_MODELS = ("resnet50", "densenet121", "darts", "mobilenet_v2")
#: Seconds per solver run.  ``exact`` gets more: it proves optimality on most COSMA cases
#: within a fraction of a second, and the rest is what the full protocol can afford on 2 cores.
DEFAULT_TIME_LIMIT = 10.0
DEFAULT_LIMITS = {"exact": 20.0}
QUICK_TIME_LIMIT = 2.0
QUICK_LIMITS = {"exact": 4.0}
ELEMENT_BYTES = 1
# COSMA's machine: a scratchpad and an unbounded off-chip memory, byte-granular (alignment 1).
# ``--target`` runs the same protocol on a preset (e.g. ethos-u55-256, 16-byte alignment);
# the budgets then follow its alignment.
TARGET = str(Path(__file__).resolve().parent / "cosma_target.toml")
MINIMALLOC_ROOT = ROOT.parent / "shared" / "benchmarks" / "minimalloc"


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
def run_model(m: SuiteModel, graph: Graph, target: Hierarchy, solvers: Sequence[str], limits: dict[str, float],
              settings: Sequence[bool], budget_names: Sequence[str]) -> list[Row]:
    """Every solver at every budget and setting of one network; ``limits`` maps a solver to
    its time limit (seconds)."""
    rows: list[Row] = []
    for weights in settings:
        b = target_budgets(graph, target, weights)
        done: dict[tuple[int, str], Row] = {}  # equal budgets (M_R == M_P) are solved once
        for name in budget_names:
            cap = b.get(name)
            for solver in solvers:
                prev = done.get((cap, solver))
                if prev is not None:
                    rows.append(Row(**{**asdict(prev), "budget": name}))
                    continue
                limit = limits[solver]
                # One run at a time, so a solver may use every core (the CLI's default too).
                problem = Problem(graph=graph, target=target.with_capacity(cap), weights_in_compute_level=weights,
                                  time_limit=limit, seed=0, workers=default_workers())
                result, seconds = run_guarded(problem, solver, hard_timeout_for(limit))
                if result[0] == "ok":
                    _, status, nc, comp, peak, lb = result
                    row = Row(m.name, m.group, setting_name(weights), name, cap, solver, status, nc, comp, peak,
                              lb, _gap(nc, lb), round(seconds, 3), limit)
                else:
                    row = Row(m.name, m.group, setting_name(weights), name, cap, solver,
                              "timeout" if result[0] == "timeout" else "error", None, None, None, None, None,
                              round(seconds, 3), limit, error=result[1].splitlines()[0])
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


Case = tuple[str, str, str]  # (model, setting, budget)


def _case(r: Row) -> Case:
    return (r.model, r.setting, r.budget)


def best_baseline(rows: Sequence[Row]) -> dict[Case, Row]:
    """Per case, the baseline row with the least traffic (ties: the first in BASELINES)."""
    out: dict[Case, Row] = {}
    for r in rows:
        if r.solver in BASELINES and r.noncompulsory_bytes is not None:
            cur = out.get(_case(r))
            if cur is None or r.noncompulsory_bytes < cur.noncompulsory_bytes:  # type: ignore[operator]
                out[_case(r)] = r
    return out


def best_planner(rows: Sequence[Row]) -> dict[Case, Row]:
    """Per case, our planner with the least traffic (ties: proven optimal, then fastest)."""
    out: dict[Case, Row] = {}
    for r in rows:
        if r.solver in BASELINES or r.noncompulsory_bytes is None:
            continue
        key = (r.noncompulsory_bytes, r.status != "optimal", r.seconds)
        cur = out.get(_case(r))
        if cur is None or key < (cur.noncompulsory_bytes, cur.status != "optimal", cur.seconds):
            out[_case(r)] = r
    return out


def _bytes(r: Row | None) -> str:
    if r is None:
        return "-"
    if r.noncompulsory_bytes is None:
        return r.status
    s = f"{r.noncompulsory_bytes:,}"
    if r.status == "optimal" and r.solver not in BASELINES:
        s += " opt"
    return s


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def summary_lines(rows: Sequence[Row], solvers: Sequence[str]) -> list[str]:
    """One line per setting, budget and suite group: the average reduction versus the best
    baseline of every planner and of the per-case best, over the networks where the best
    baseline spills (n), and how often the planner spills nothing there."""
    base, best = best_baseline(rows), best_planner(rows)
    planners = [s for s in solvers if s not in BASELINES]
    lines = []
    for setting in sorted({r.setting for r in rows}, key=len):
        for budget in BUDGETS:
            for group in GROUPS:
                models = list(dict.fromkeys(r.model for r in rows
                                            if r.setting == setting and r.budget == budget and r.group == group))
                if not models:
                    continue
                spilling = [m for m in models if (m, setting, budget) in base
                            and base[(m, setting, budget)].noncompulsory_bytes]
                parts = []
                for s in [*planners, BEST]:
                    if s == BEST:
                        mine = [best.get((m, setting, budget)) for m in spilling]
                    else:
                        mine = [next((r for r in rows if _case(r) == (m, setting, budget) and r.solver == s), None)
                                for m in spilling]
                    reds = [1.0 - r.noncompulsory_bytes / base[_case(r)].noncompulsory_bytes  # type: ignore[operator]
                            for r in mine if r is not None and r.noncompulsory_bytes is not None]
                    zero = sum(1 for r in mine if r is not None and r.noncompulsory_bytes == 0)
                    avg = f"{sum(reds) / len(reds):.1%}" if reds else "n/a"
                    label = f"**{s}**" if s == BEST else s
                    parts.append(f"{label} {avg} (n={len(reds)}, zero spill {zero})")
                lines.append(f"- **{budget}, {setting}, {group}** ({len(models)} networks, best baseline spills on "
                             f"{len(spilling)}): " + "; ".join(parts))
    return lines


def summary_table(rows: Sequence[Row], solvers: Sequence[str]) -> list[str]:
    """The summary as one table: per budget, setting (and both settings pooled) and suite
    group, the average reduction versus the best baseline over the networks where the best
    baseline spills (n), how many of those the best planner solves with zero spill, and how
    many of its results are proven optimal."""
    base, best = best_baseline(rows), best_planner(rows)
    planners = [s for s in solvers if s not in BASELINES]
    settings = sorted({r.setting for r in rows}, key=len)
    out = ["| budget | setting | group | networks | n | " + " | ".join(planners)
           + " | best | ceiling | best: zero spill | best: proven optimal |",
           "|---|---|---|---:|---:|" + "---:|" * len(planners) + "---:|---:|---:|---:|"]
    for budget in BUDGETS:
        for setting in [*settings, "both"] if len(settings) > 1 else settings:
            chosen = settings if setting == "both" else [setting]
            for group in GROUPS:
                cases = list(dict.fromkeys(_case(r) for r in rows if r.budget == budget and r.group == group
                                           and r.setting in chosen))
                if not cases:
                    continue
                spilling = [c for c in cases if c in base and base[c].noncompulsory_bytes]
                cells = []
                for s in [*planners, BEST]:
                    mine = ([best.get(c) for c in spilling] if s == BEST else
                            [next((r for r in rows if _case(r) == c and r.solver == s), None) for c in spilling])
                    reds = [1.0 - r.noncompulsory_bytes / base[_case(r)].noncompulsory_bytes  # type: ignore[operator]
                            for r in mine if r is not None and r.noncompulsory_bytes is not None]
                    cells.append(f"{sum(reds) / len(reds):.1%}" if reds else "n/a")
                # The most any plan could reduce: 1 - (best proven lower bound) / best baseline.
                bounds = [max((r.lower_bound for r in rows if _case(r) == c and r.lower_bound is not None
                               and r.solver not in BASELINES), default=0) for c in spilling]
                ceil = [1.0 - lb / base[c].noncompulsory_bytes for c, lb in zip(spilling, bounds)]  # type: ignore[operator]
                cells.append(f"{sum(ceil) / len(ceil):.1%}" if ceil else "n/a")
                mine = [best.get(c) for c in spilling]
                zero = sum(1 for r in mine if r is not None and r.noncompulsory_bytes == 0)
                opt = sum(1 for r in mine if r is not None and r.status == "optimal")
                nets = len({c[0] for c in cases})
                out.append(f"| {budget} | {setting} | {group} | {nets} | {len(spilling)} | " + " | ".join(cells)
                           + f" | {zero}/{len(spilling)} | {opt}/{len(spilling)} |")
    return out


def to_markdown(rows: Sequence[Row], solvers: Sequence[str], meta: dict[str, str]) -> str:
    out = ["# COSMA protocol results", ""]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    out += ["", ("Summary: average reduction of non-compulsory traffic versus the best baseline on the same "
                 "network, setting and budget, over the networks where the best baseline spills (n; a 0/0 reduction "
                 "is undefined); zero spill = how many of those n the planner solves with no spill at all. "
                 f"**{BEST}** = per network the least traffic of our planners; ceiling = the average reduction a "
                 "plan meeting the best proven lower bound would reach (100% where no bound above 0 is known)."),
            "", "## Summary", ""]
    out += summary_table(rows, solvers)
    out += ["", "Per setting, budget and group, with the zero-spill count of every planner:", ""]
    out += summary_lines(rows, solvers)
    out += table_sections(rows, solvers, level=2)
    times = [r for r in rows if r.noncompulsory_bytes is not None or r.status == "timeout"]
    if times:
        out += ["", "## Solve time (s, wall, including the validator)", "",
                "| solver | time limit | runs | mean | max | optimal | timeouts | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in solvers:
            mine = [r for r in rows if r.solver == s]
            secs = [r.seconds for r in mine if r.noncompulsory_bytes is not None]
            if mine:
                out.append(f"| {s} | {mine[0].time_limit:g} | {len(mine)} | "
                           f"{(sum(secs) / len(secs)) if secs else 0:.2f} | {max(secs, default=0):.2f} | "
                           f"{sum(1 for r in mine if r.status == 'optimal')} | "
                           f"{sum(1 for r in mine if r.status == 'timeout')} | "
                           f"{sum(1 for r in mine if r.status == 'error')} |")
    errors = [r for r in rows if r.status in ("error", "timeout")]
    if errors:
        out += ["", "## Errors and timeouts", ""]
        out += [f"- {r.model} {r.setting} {r.budget} {r.solver}: {r.status}: {r.error}" for r in errors]
    return "\n".join(out) + "\n"


def table_sections(rows: Sequence[Row], solvers: Sequence[str], level: int = 2) -> list[str]:
    """A table per setting and budget: per network the capacity, compulsory bytes, the best
    baseline, each planner's non-compulsory bytes, and the best planner's details (peak,
    status, bound, gap, time, reduction)."""
    base, best = best_baseline(rows), best_planner(rows)
    planners = [s for s in solvers if s not in BASELINES]
    out: list[str] = []
    for setting in sorted({r.setting for r in rows}, key=len):
        for budget in BUDGETS:
            sel = [r for r in rows if r.setting == setting and r.budget == budget]
            if not sel:
                continue
            out += ["", f"{'#' * level} {budget}, {setting}", ""]
            out.append("| network | group | capacity | compulsory | best baseline | " + " | ".join(planners)
                       + " | best | peak | status | bound | gap | time s | reduction |")
            out.append("|---|---|---:|---:|---|" + "---:|" * len(planners) + "---|---:|---|---:|---:|---:|---:|")
            for model in dict.fromkeys(r.model for r in sel):
                by = {r.solver: r for r in sel if r.model == model}
                any_row = next(iter(by.values()))
                key = (model, setting, budget)
                comp = next((r.compulsory_bytes for r in by.values() if r.compulsory_bytes is not None), None)
                b = base.get(key)
                bcell = "-" if b is None else f"{b.noncompulsory_bytes:,} ({b.solver.removeprefix('baseline-')})"
                w = best.get(key)
                if w is None:
                    detail = "- | - | - | - | - | - | -"
                else:
                    detail = (f"{w.solver} | {w.peak_bytes:,} | {w.status} | "
                              f"{'-' if w.lower_bound is None else f'{w.lower_bound:,}'} | {_pct(w.gap)} | "
                              f"{w.seconds:.2f} | {_pct(w.reduction)} |")
                    detail = detail.rstrip(" |")
                out.append(f"| {model} | {any_row.group} | {any_row.capacity_bytes:,} | "
                           f"{'-' if comp is None else f'{comp:,}'} | {bcell} | "
                           + " | ".join(_bytes(by.get(s)) for s in planners) + f" | {detail} |")
    return out


def run_minimalloc(root: Path, time_limit: float) -> tuple[str, float]:
    """The allocation-only MiniMalloc suite, as its own script prints it (a Markdown table)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "minimalloc_bench.py"), "--root", str(root),
                           "--time-limit", f"{time_limit:g}"], capture_output=True, text=True, cwd=ROOT, check=False)
    lines, text = proc.stdout.splitlines(), ""
    for i, line in enumerate(lines):  # a blank line before the table, so that it renders
        if line.startswith("|") and i and not lines[i - 1].startswith("|") and lines[i - 1].strip():
            text += "\n"
        text += line + "\n"
    if proc.returncode != 0:
        text += f"\n(minimalloc_bench.py exited with {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]})\n"
    return text, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------
def parse_limits(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--limit {item!r}: use SOLVER=SECONDS, e.g. exact=20")
        out[name.strip()] = float(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run COSMA's protocol on the model suite.")
    p.add_argument("--quick", action="store_true",
                   help=f"{', '.join(QUICK_MODELS)} with a {QUICK_TIME_LIMIT:g} s time limit "
                   f"(exact {QUICK_LIMITS['exact']:g} s), no MiniMalloc suite: under 2 minutes")
    p.add_argument("--models", default=None, help="comma-separated suite names, or groups cosma,nas,extra")
    p.add_argument("--solvers", default=None,
                   help="comma-separated solver names (default: the four baselines, heuristic, divide, exact)")
    p.add_argument("--time-limit", type=float, default=None,
                   help=f"seconds per solver run (default {DEFAULT_TIME_LIMIT:g}; quick {QUICK_TIME_LIMIT:g})")
    p.add_argument("--limit", action="append", default=[], metavar="SOLVER=SEC",
                   help=f"a solver's own time limit (default exact={DEFAULT_LIMITS['exact']:g}; "
                   f"quick exact={QUICK_LIMITS['exact']:g})")
    p.add_argument("--budgets", default=",".join(BUDGETS), help="subset of M_R,M_H,M_P")
    p.add_argument("--settings", choices=("both", "activations", "weights"), default="both")
    p.add_argument("--target", default=TARGET,
                   help="target preset or file (default COSMA's byte-granular machine, benchmarks/cosma_target.toml)")
    p.add_argument("--minimalloc", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the allocation-only MiniMalloc suite (default: on for the full run, off with "
                   "--quick or --models)")
    p.add_argument("--minimalloc-root", default=str(MINIMALLOC_ROOT))
    p.add_argument("--minimalloc-time-limit", type=float, default=60.0)
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
    time_limit = args.time_limit or (QUICK_TIME_LIMIT if args.quick else DEFAULT_TIME_LIMIT)
    try:
        overrides = parse_limits(args.limit)
    except ValueError as exc:
        p.error(str(exc))
    limits = {s: time_limit for s in solvers}
    limits.update({k: v for k, v in (QUICK_LIMITS if args.quick else DEFAULT_LIMITS).items() if k in limits})
    limits.update(overrides)
    budget_names = [b.strip().upper() for b in args.budgets.split(",") if b.strip()]
    settings = {"both": SETTINGS, "activations": (False,), "weights": (True,)}[args.settings]
    target = load_target(args.target)
    run_mm = args.minimalloc if args.minimalloc is not None else not (args.quick or args.models)

    rows: list[Row] = []
    started = time.perf_counter()
    for i, m in enumerate(chosen):
        if not m.path.exists():
            print(f"[{i + 1}/{len(chosen)}] {m.name}: {m.file} missing (run models/build.py), skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        graph = load_graph(m.path, element_bytes=ELEMENT_BYTES)
        rows += run_model(m, graph, target, solvers, limits, settings, budget_names)
        print(f"[{i + 1}/{len(chosen)}] {m.name}: {len(graph.computing_ops)} operators, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    protocol_seconds = time.perf_counter() - started
    target_desc = ("benchmarks/cosma_target.toml (scratchpad + unbounded off-chip, alignment 1)"
                   if args.target == TARGET else f"{target.name} (compute level {target.compute_level}, "
                   f"alignment {target.compute.alignment})")
    meta = {
        "command": "python benchmarks/cosma.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "networks": ", ".join(m.name for m in chosen),
        "setting": f"{ELEMENT_BYTES}-byte elements, batch 1, target {target_desc}; budgets at alignment "
                   f"{target.compute.alignment}",
        "solvers": "; ".join(f"{s} {limits[s]:g} s" for s in solvers)
                   + " (time limit per run; hard kill at 2 x limit + 10 s)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "wall time": f"{protocol_seconds:.0f} s (protocol)",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "cosma.csv", to_csv(rows))
    md = to_markdown(rows, solvers, meta)
    if run_mm:
        mm_root = Path(args.minimalloc_root)
        if (mm_root / "challenging").is_dir():
            table, secs = run_minimalloc(mm_root, args.minimalloc_time_limit)
            shown = os.path.relpath(mm_root, ROOT)
            mm = (f"# MiniMalloc challenging instances (allocation only)\n\n- command: python "
                  f"benchmarks/minimalloc_bench.py --root {shown} --time-limit {args.minimalloc_time_limit:g}"
                  f"\n- wall time: {secs:.0f} s\n\n{table}")
            write_text_atomic(out / "minimalloc.md", mm)
            md += "\n## MiniMalloc challenging instances (allocation only)\n\nSee minimalloc.md.\n\n" + table
            print(table.rstrip().splitlines()[-1])
        else:
            print(f"MiniMalloc suite not found under {mm_root}, skipped", file=sys.stderr)
    write_text_atomic(out / "cosma.md", md)
    print("\n".join(summary_lines(rows, solvers)))
    print(f"wrote {out / 'cosma.csv'} and {out / 'cosma.md'} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
