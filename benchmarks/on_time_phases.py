"""Benchmark (issue 14, item 3): where a run's CPU goes before its first valid plan and after its
deadline.

``benchmarks/on_time.py`` says whether a run returned within ``time_limit`` + 10% + 2 s; this
says why not.  It plans one case (the 10,000-operator layered graph of ``tests/test_on_time.py``
through ``registry.solve``, or a suite model at a capacity through ``stowage.api.compile``, as
``on_time.py`` does) with the phases of the compile path wrapped in timers (process CPU
seconds and wall seconds, inclusive, with call counts; no cProfile, whose overhead triples
this code's CPU), and records three instants: the first valid plan in hand (the whole-tensor
solve's return above M_R, the first macro solve's return below it), the deadline
(``time_limit`` after the start) and the return.  The table has each phase's CPU and wall
seconds and how much of its CPU came after the deadline.

    python benchmarks/on_time_phases.py CASE SOLVER LIMIT [--busy N] [--settle S] [--out FILE.md]

``CASE``: ``layered`` or ``NAME:CAPACITY`` (a suite model, 8-bit, activations only, in place,
ethos-u55-256).  ``--busy N`` starts N busy-loop processes for the run (``on_time.py``'s).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stowage.solvers.registry import available  # noqa: E402

log = logging.getLogger("benchmarks.on_time_phases")

#: (module, attribute) of every phase timed; ``Class.method`` for methods.  Nested phases are
#: timed inclusively (a phase's time includes its sub-phases').
PHASES: tuple[tuple[str, str], ...] = (
    ("stowage.solvers.budgets", "resolve_capacity"),
    ("stowage.solvers.registry", "solve"),
    ("stowage.solvers.heuristic", "auto"),
    ("stowage.solvers.heuristic", "plan_heuristic"),
    ("stowage.solvers.divide", "plan_divide"),
    ("stowage.solvers.exact.pipeline", "exact"),
    ("stowage.solvers.exact.auto", "AutoPipeline.reference"),
    ("stowage.solvers.baselines", "baseline_results"),
    ("stowage.solvers.assemble", "assemble_plan"),
    ("stowage.solvers.analysis.schedule", "min_peak_run"),
    ("stowage.solvers.analysis.schedule", "build_model"),
    ("stowage.plan.validate", "validate"),
    ("stowage.api", "_try_tiled"),
    ("stowage.api", "_timed"),
    ("stowage.api", "_whole_bound_over_tilings"),
    ("stowage.solvers.tiling.plan", "plan_tiled"),
    ("stowage.solvers.tiling.plan", "choose_candidates"),
    ("stowage.solvers.tiling.partition", "Partitioner.fewest_stripes"),
    ("stowage.solvers.tiling.partition", "Partitioner.least_traffic"),
    ("stowage.solvers.tiling.partition", "Partitioner.min_peak"),
    ("stowage.solvers.exact.tiled_search", "exact_candidates"),
    ("stowage.solvers.tiling.orders", "reorder_candidates"),
    ("stowage.solvers.tiling.plan", "_plan_partition"),
    ("stowage.solvers.tiling.plan", "with_tiled_bound"),
    ("stowage.solvers.tiling.bound", "tiled_lower_bound"),
)


@dataclass
class Tally:
    calls: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    cpu_late: float = 0.0   # CPU of calls (parts) after the deadline


@dataclass
class Clock:
    start_wall: float = 0.0
    start_cpu: float = 0.0
    deadline: float = 0.0
    cpu_at_deadline: float | None = None
    first_plan: tuple[float, float] | None = None   # (wall, cpu) since the start
    tallies: dict[str, Tally] = field(default_factory=dict)


CLOCK = Clock()


def _wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        c0, w0 = time.process_time(), time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            c1, w1 = time.process_time(), time.monotonic()
            t = CLOCK.tallies.setdefault(name, Tally())
            t.calls += 1
            t.cpu += c1 - c0
            t.wall += w1 - w0
            if CLOCK.cpu_at_deadline is not None:
                t.cpu_late += c1 - max(c0, CLOCK.cpu_at_deadline)
            if name in ("stowage.solvers.registry.solve", "stowage.solvers.tiling.plan._plan_partition") \
                    and CLOCK.first_plan is None:
                CLOCK.first_plan = (w1 - CLOCK.start_wall, c1 - CLOCK.start_cpu)
    return timed


def install() -> None:
    """Wrap every phase in ``PHASES`` where it is looked up: its class, or every loaded
    ``stowage`` module holding the function under some name (``from X import f as g``)."""
    for mod_name, attr in PHASES:
        mod = importlib.import_module(mod_name)
        owner: Any = mod
        *outer, leaf = attr.split(".")
        for part in outer:
            owner = getattr(owner, part)
        fn = getattr(owner, leaf)
        timed = _wrap(f"{mod_name}.{attr}", fn)
        if outer:
            setattr(owner, leaf, timed)
            continue
        for other in list(sys.modules.values()):
            if getattr(other, "__name__", "").startswith("stowage"):
                for key, value in list(vars(other).items()):
                    if value is fn:
                        setattr(other, key, timed)
        from stowage.solvers import registry

        for name, spec in list(registry._REGISTRY.items()):
            if spec.fn is fn:
                registry._REGISTRY[name] = replace(spec, fn=timed)


def _busy(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def run_case(case: str, solver: str, limit: float) -> tuple[Any, float, float]:
    from stowage.ir.lifetimes import m_r
    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from tests.spill_cases import two_level
    from tests.test_on_time import layered_graph

    if case == "layered":
        g = layered_graph(10_000, seed=0)
        prob = Problem(g, two_level(m_r(g, False)), time_limit=limit)
        run: Callable[[], Any] = lambda: solve(prob, solver)  # noqa: E731
    else:
        from stowage.api import compile as compile_plan
        from stowage.ir.inplace import fuse_in_place
        from stowage.ir.onnx_import import load_graph

        name, cap = case.split(":", 1)
        g = fuse_in_place(load_graph(ROOT / "models" / "suite" / f"{name}.onnx", element_bytes=1))
        run = lambda: compile_plan(g, capacity=cap, solver=solver, time_limit=limit, seed=0)  # noqa: E731
    CLOCK.start_wall, CLOCK.start_cpu = time.monotonic(), time.process_time()
    CLOCK.deadline = CLOCK.start_wall + limit

    def mark() -> None:
        CLOCK.cpu_at_deadline = time.process_time()

    timer = threading.Timer(limit, mark)
    timer.daemon = True
    timer.start()
    plan = run()
    timer.cancel()
    return plan, time.monotonic() - CLOCK.start_wall, time.process_time() - CLOCK.start_cpu


def table(case: str, solver: str, limit: float, plan: Any, wall: float, cpu: float) -> str:
    fp = CLOCK.first_plan
    late = cpu - (CLOCK.cpu_at_deadline - CLOCK.start_cpu) if CLOCK.cpu_at_deadline is not None else 0.0
    head = (f"{case}, {solver}, limit {limit:g} s: wall {wall:.2f} s, CPU {cpu:.2f} s (share of a core "
            f"{cpu / wall:.2f}), CPU after the deadline {late:.2f} s; first valid plan at "
            + (f"{fp[0]:.2f} s wall / {fp[1]:.2f} s CPU" if fp else "-")
            + f"; {plan.metrics.noncompulsory_bytes:,} B, found_by {plan.solver.found_by}, "
            f"stopped_by {plan.solver.stopped_by or '-'}")
    lines = [head, "", "| phase | calls | CPU s | wall s | CPU after the deadline s |", "|---|---:|---:|---:|---:|"]
    for mod_name, attr in PHASES:
        t = CLOCK.tallies.get(f"{mod_name}.{attr}")
        if t is None:
            continue
        short = mod_name.replace("stowage.", "") + "." + attr
        lines.append(f"| {short} | {t.calls} | {t.cpu:.2f} | {t.wall:.2f} | {t.cpu_late:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case")
    ap.add_argument("solver")
    ap.add_argument("limit", type=float)
    ap.add_argument("--busy", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="append the table to this file")
    ap.add_argument("--settle", type=float, default=20.0,
                    help="seconds the busy loops run before the case starts (the load average rises)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    available()
    install()
    procs = [mp.get_context("fork").Process(target=_busy, args=(time.time() + 3600,), daemon=True)
             for _ in range(args.busy)]
    for p in procs:
        p.start()
    if procs:
        time.sleep(args.settle)
    load0 = os.getloadavg()[0]
    plan, wall, cpu = run_case(args.case, args.solver, args.limit)
    for p in procs:
        p.terminate()
        p.join()
    text = (f"`{' '.join(sys.argv)}` at {time.strftime('%H:%M:%S', time.gmtime())} UTC, "
            f"load 1-min {load0:.2f} / {os.getloadavg()[0]:.2f}, {args.busy} busy loops\n\n"
            + table(args.case, args.solver, args.limit, plan, wall, cpu) + "\n")
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
