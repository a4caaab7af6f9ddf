"""``auto`` against ``exact`` below M_R, side by side: does exact's tiled plan beat auto's?

Below M_R both solvers search cascades along the file, min-peak and branch orders
(``stowage.solvers.tiling.orders.ORDERS``); ``exact`` adds the CP-SAT partition model per order,
the joint model on the file order, and starts from ``auto``'s tiled plan, so its plan should
never move more than ``auto``'s.  For each model and capacity this compiles with ``--solver
auto`` and then ``--solver exact`` (same time limit and seed, each on a freshly loaded graph, so
no memoised walk, order or bound carries over) and prints one markdown row: both plans'
non-compulsory bytes and wall seconds (``(time)`` when ``solver.stopped_by`` says the wall clock
shaped the run), exact's change against auto, the order whose cascades exact's plan uses
(``solver.order``; parsed from ``found_by`` on builds without it), exact's ``found_by``, its
bound over every tiling and every order (``solver.lower_bound``), its joint bound (file order
only, ``solver.joint_bound``) and whether both plans pass the validator.  8-bit, activations
only, ethos-u55-256.

    python benchmarks/exact_orders.py                                  # the suite CNNs, 256/128/64 KiB
    python benchmarks/exact_orders.py --models lraspp_mobilenet_v3 --kib 256 --time-limit 60
    python benchmarks/exact_orders.py --models --files det.onnx --dim 'x[0]=1' --dim 'x[2]=320' --dim 'x[3]=320'
    python benchmarks/exact_orders.py --solvers exact        # exact alone (auto's column from another run)
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

from reorder import timed_plan  # noqa: E402  (benchmarks/, next to this script)
from tiling import CNNS  # noqa: E402  (benchmarks/, next to this script: the same suite CNNs)


def order_of(plan: Any) -> str:
    """The order whose runs are the plan's cascades: ``solver.order``, or on a build without
    that field the ``(NAME order)`` of ``found_by`` (the file order when it names none)."""
    got = getattr(plan.solver, "order", None)
    if got:
        return str(got)
    fb = plan.solver.found_by or ""
    for name in ("min-peak", "branch"):
        if f"({name} order)" in fb:
            return name
    return "file" if plan.cascades else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(CNNS))
    ap.add_argument("--files", nargs="*", default=[], help="ONNX files, planned at 8-bit (QDQ groups folded)")
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                    help="bind a symbolic dimension of the --files (repeatable), as stowage compile --dim")
    ap.add_argument("--kib", nargs="*", type=int, default=[256, 128, 64])
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--solvers", nargs="*", default=["auto", "exact"], choices=("auto", "exact"),
                    help="run only these (a column left out prints '-': e.g. exact alone on a second tree)")
    args = ap.parse_args()

    from stowage.api import load_model
    from stowage.ir.graph import Graph

    dims = {k: int(v) for k, v in (d.rsplit("=", 1) for d in args.dim)}

    def load(name: str) -> Graph:
        if name in args.models:
            return load_model(ROOT / "models" / "suite" / f"{name}.onnx", element_bytes=1, in_place=True, qdq="fold")
        return load_model(name, element_bytes=1, dims=dims or None, in_place=True, qdq="fold")

    def run(name: str, cap: int, solver: str) -> tuple[str, Any]:
        return timed_plan(load(name), cap, solver, None, args.time_limit)

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; machine: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; target ethos-u55-256; 8-bit; activations only; --time-limit {args.time_limit:g}")
    print("| model | capacity | auto B | s | exact B | s | exact vs auto | exact's order | exact found by | "
          "bound (every tiling, every order) | joint bound (file order) | valid |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|")
    for name in [*args.models, *args.files]:
        for cap in sorted({k * 1024 for k in args.kib}, reverse=True):
            sa, ra = run(name, cap, "auto") if "auto" in args.solvers else ("-", None)
            se, re_ = run(name, cap, "exact") if "exact" in args.solvers else ("-", None)
            ba = f"{ra[0].metrics.noncompulsory_bytes:,}" if ra else "-"
            be = f"{re_[0].metrics.noncompulsory_bytes:,}" if re_ else "-"
            change = ""
            if ra and re_:
                a, e = ra[0].metrics.noncompulsory_bytes, re_[0].metrics.noncompulsory_bytes
                change = f"{100 * (e / a - 1):+.1f}%" if a else ("0" if e == 0 else f"+{e:,} B")
            order = order_of(re_[0]) if re_ else ""
            found = re_[0].solver.found_by if re_ else ""
            lb = re_[0].solver.lower_bound if re_ else None
            jb = re_[0].solver.joint_bound if re_ else None
            valid = "/".join("yes" if r and r[1] else ("-" if r is None else "NO") for r in (ra, re_))
            print(f"| {Path(name).stem} | {cap:,} | {ba} | {sa} | {be} | {se} | {change} | {order} | {found} | "
                  f"{'-' if lb is None else f'{lb:,}'} | {'-' if jb is None else f'{jb:,}'} | {valid} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
