"""COSMA's protocol with ``--tiling auto`` against ``--tiling off`` (issue 12's last goal).

Issue 12 promises that at capacities at or above M_R the COSMA protocol's numbers do not get
worse when tiling is on.  ``stowage.api.compile`` keeps a tiled plan above M_R only when it
moves strictly fewer bytes off-chip than the whole-tensor plan, so "never worse" holds by
construction; this script measures it, and shows where tiling *improves* on the whole-tensor
optimum (a cascade can keep a tensor on chip as a ring that COSMA's model must spill).

For every network of the chosen suite groups (default ``cosma``), 8-bit, both settings, at
COSMA's budgets M_R, M_H, M_P (in-place fusion off: COSMA's budget definitions), it compiles
with the same solver twice, ``tiling="off"`` and ``tiling="auto"``, and records the
non-compulsory traffic of both, whether the auto plan is tiled, and the wall time.  Every plan
is checked by the validator inside ``compile``; this script checks it again.

    python benchmarks/cosma_tiling.py --time-limit 10 --out benchmarks/results/cosma_tiling
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.build import load_manifest  # noqa: E402
from stowage.api import compile as compile_plan  # noqa: E402
from stowage.errors import StowageError  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.plan import write_text_atomic  # noqa: E402
from stowage.plan.validate import validate  # noqa: E402
from stowage.solvers.budgets import target_budgets  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402

log = logging.getLogger("benchmarks.cosma_tiling")

TARGET = str(Path(__file__).resolve().parent / "cosma_target.toml")
BUDGETS = ("M_R", "M_H", "M_P")


@dataclass(frozen=True)
class Row:
    model: str
    setting: str
    budget: str
    capacity: int
    off_bytes: int | None
    auto_bytes: int | None
    auto_tiled: bool
    off_seconds: float
    auto_seconds: float
    off_bound: int | None = None      # the whole-tensor solver's bound (--tiling off)
    auto_bound: int | None = None     # the bound reported with --tiling auto (valid over tilings)
    error: str = ""


def _run(graph, target: str, cap: int, weights: bool, solver: str, limit: float, tiling: str):
    t0 = time.perf_counter()
    plan = compile_plan(graph, target, capacity=cap, solver=solver, time_limit=limit, weights_in_sram=weights,
                        in_place=False, tiling=tiling)
    seconds = time.perf_counter() - t0
    verdict = validate(graph, plan)
    if not verdict.ok:
        raise RuntimeError(f"invalid plan ({tiling}): {verdict.errors[0].message}")
    return plan, seconds


def run(models: Sequence[str], groups: Sequence[str], solver: str, limit: float, target_path: str) -> list[Row]:
    target = load_target(target_path)
    rows: list[Row] = []
    for m in load_manifest():
        if (models and m.name not in models) or (not models and m.group not in groups):
            continue
        graph = load_graph(m.path, element_bytes=1)
        for weights in (False, True):
            setting = "activations+weights" if weights else "activations"
            budgets = target_budgets(graph, target, weights)
            seen: dict[int, Row] = {}
            for name in BUDGETS:
                cap = budgets.get(name)
                if cap in seen:
                    prev = seen[cap]
                    rows.append(Row(m.name, setting, name, cap, prev.off_bytes, prev.auto_bytes, prev.auto_tiled,
                                    prev.off_seconds, prev.auto_seconds, prev.off_bound, prev.auto_bound,
                                    prev.error))
                    continue
                try:
                    off, t_off = _run(graph, target_path, cap, weights, solver, limit, "off")
                    auto, t_auto = _run(graph, target_path, cap, weights, solver, limit, "auto")
                    row = Row(m.name, setting, name, cap, off.metrics.noncompulsory_bytes,
                              auto.metrics.noncompulsory_bytes, bool(auto.cascades), round(t_off, 2),
                              round(t_auto, 2), off.solver.lower_bound, auto.solver.lower_bound)
                except StowageError as exc:
                    row = Row(m.name, setting, name, cap, None, None, False, 0.0, 0.0,
                              error=str(exc).splitlines()[0])
                log.info("%s %s %s: off %s auto %s%s", m.name, setting, name, row.off_bytes, row.auto_bytes,
                         " (tiled)" if row.auto_tiled else "")
                seen[cap] = row
                rows.append(row)
    return rows


def _b(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def to_markdown(rows: Sequence[Row], meta: dict[str, str]) -> str:
    worse = [r for r in rows if r.off_bytes is not None and r.auto_bytes is not None and r.auto_bytes > r.off_bytes]
    better = [r for r in rows if r.off_bytes is not None and r.auto_bytes is not None and r.auto_bytes < r.off_bytes]
    errors = [r for r in rows if r.error]
    lines = ["# COSMA protocol, `--tiling auto` vs `--tiling off`", "",
             f"`{meta['command']}`", "",
             f"machine: {meta['machine']}, load average at the end {meta['load']}, {meta['seconds']} s", "",
             f"- runs: {len(rows)} (model, setting, budget), errors: {len(errors)}",
             f"- auto worse than off: {len(worse)}",
             f"- auto better than off (a tiled plan moved fewer bytes): {len(better)}", "",
             ("`off bound`: the whole-tensor solver's bound (COSMA's model); `auto bound`: the bound reported "
             "with `--tiling auto`, valid over tiled plans too (`stowage.solvers.tiling.bound`)."), "",
             ("| model | setting | budget | capacity | off B | off bound | auto B | auto bound | auto tiled | off s "
             "| auto s | error |"),
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.setting} | {r.budget} | {r.capacity:,} | {_b(r.off_bytes)} | "
                     f"{_b(r.off_bound)} | {_b(r.auto_bytes)} | {_b(r.auto_bound)} | {'yes' if r.auto_tiled else 'no'} "
                     f"| {r.off_seconds} | {r.auto_seconds} | {r.error.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=[], help="suite names (default: the --groups)")
    p.add_argument("--groups", nargs="*", default=["cosma"], help="suite groups (cosma, nas, extra)")
    p.add_argument("--solver", default="auto")
    p.add_argument("--time-limit", type=float, default=10.0)
    p.add_argument("--target", default=TARGET)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cosma_tiling"))
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s")
    t0 = time.perf_counter()
    rows = run(a.models, a.groups, a.solver, a.time_limit, a.target)
    meta = {"command": "python benchmarks/cosma_tiling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.platform()}, {os.cpu_count()} cores",
            "load": f"{os.getloadavg()[0]:.2f}", "seconds": f"{time.perf_counter() - t0:.0f}"}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "cosma_tiling.md", to_markdown(rows, meta))
    print((out / "cosma_tiling.md").read_text())
    worse = sum(1 for r in rows if r.off_bytes is not None and r.auto_bytes is not None and r.auto_bytes > r.off_bytes)
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
