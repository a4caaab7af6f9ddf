"""Cascades across a reordering: the file order alone against the file, min-peak and branch orders.

For each model and capacity it compiles twice with the same solver, time limit and seed, once
with ``--param reorder=`` (the file order only, the planner before ``stowage.solvers.tiling.orders``)
and once with the default (``reorder=min-peak,branch``; ``--reorder``: another list), each on a freshly loaded graph (no
memoised walk, order or bound carries over), and prints one markdown row: non-compulsory bytes
and wall seconds of both, which search found the second plan (``solver.found_by``), whether both
plans pass the validator, and whether the wall clock shaped a run (``solver.stopped_by``, a
``(time)`` after its seconds: on a less loaded machine it may choose other cascades).

    python benchmarks/reorder.py                                   # the suite CNNs, 256/128/64 KiB
    python benchmarks/reorder.py --models lraspp_mobilenet_v3 --kib 256
    python benchmarks/reorder.py --models --files det.onnx --dim 'x[0]=1' --dim 'x[2]=320' --dim 'x[3]=320'

With ``--solver exact`` the first run is exact in the file order alone (its own searches and
the ``auto`` run it starts from), the second exact with every order (``--reorder``), whose
partition model then runs in each order too (``stowage.solvers.exact.tiled_search``).

Suite models are planned at 8-bit, ``--files`` at their own element types or ``--element-bytes``
(QDQ groups folded), activations only, target ethos-u55-256.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tiling import CNNS  # noqa: E402  (benchmarks/, next to this script: the same suite CNNs)


def timed_plan(g: Any, cap: int, solver: str, params: dict[str, Any] | None, time_limit: float) -> tuple[str, Any]:
    """Compile ``g`` at ``cap`` and judge the plan with the validator: ``(seconds, with
    "(time)" when a wall-clock stop shaped it, (plan, valid))``, or ``("refused (...)", None)``
    (also ``benchmarks/exact_orders.py``)."""
    from stowage.api import compile as compile_plan
    from stowage.errors import StowageError
    from stowage.plan.validate import validate

    t0 = time.perf_counter()
    try:
        plan = compile_plan(g, capacity=cap, solver=solver, params=params, time_limit=time_limit)
    except StowageError as exc:
        return f"refused ({str(exc)[:60]})", None
    dt = time.perf_counter() - t0
    judged = g.without_concats if g.without_concats is not None and not plan.options.concat_in_place else g
    ok = validate(judged, plan).ok
    return f"{dt:.1f}{' (time)' if plan.solver.stopped_by else ''}", (plan, ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(CNNS))
    ap.add_argument("--files", nargs="*", default=[], help="ONNX files at their own element types")
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                    help="bind a symbolic dimension of the --files (repeatable), as stowage compile --dim")
    ap.add_argument("--element-bytes", type=int, default=None,
                    help="plan the --files at this element size (1: 8-bit), as stowage compile --element-bytes")
    ap.add_argument("--kib", nargs="*", type=int, default=[256, 128, 64])
    ap.add_argument("--solver", default="auto", choices=("auto", "heuristic", "exact"))
    ap.add_argument("--reorder", default="min-peak,branch", help="the second run's --param reorder")
    ap.add_argument("--time-limit", type=float, default=10.0)
    args = ap.parse_args()

    from stowage.api import load_model
    from stowage.ir.graph import Graph
    from stowage.ir.inplace import fuse_in_place
    from stowage.ir.onnx_import import load_graph

    dims = {k: int(v) for k, v in (d.rsplit("=", 1) for d in args.dim)}

    def load(name: str) -> Graph:
        if name in args.models:
            return fuse_in_place(load_graph(ROOT / "models" / "suite" / f"{name}.onnx", element_bytes=1))
        return load_model(name, element_bytes=args.element_bytes, dims=dims or None, in_place=True, qdq="fold")

    def run(name: str, cap: int, reorder: str) -> tuple[str, Any]:
        params = {"reorder": tuple(x for x in reorder.split(",") if x)}
        return timed_plan(load(name), cap, args.solver, params, args.time_limit)

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; machine: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; target ethos-u55-256; activations only; --solver {args.solver} "
          f"--element-bytes {args.element_bytes or 'own'} (files); reordered: --param reorder={args.reorder} "
          f"--time-limit {args.time_limit:g}")
    print("| model | capacity | file order B | s | reordered B | s | change | found by | valid |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name in [*args.models, *args.files]:
        for cap in sorted({k * 1024 for k in args.kib}, reverse=True):
            s0, r0 = run(name, cap, "")
            s1, r1 = run(name, cap, args.reorder)
            b0 = f"{r0[0].metrics.noncompulsory_bytes:,}" if r0 else "-"
            b1 = f"{r1[0].metrics.noncompulsory_bytes:,}" if r1 else "-"
            change = ""
            if r0 and r1 and r0[0].metrics.noncompulsory_bytes:
                change = f"{100 * (r1[0].metrics.noncompulsory_bytes / r0[0].metrics.noncompulsory_bytes - 1):+.1f}%"
            found = r1[0].solver.found_by if r1 else ""
            valid = "/".join("yes" if r and r[1] else ("-" if r is None else "NO") for r in (r0, r1))
            print(f"| {Path(name).stem} | {cap:,} | {b0} | {s0} | {b1} | {s1} | {change} | {found} | {valid} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
