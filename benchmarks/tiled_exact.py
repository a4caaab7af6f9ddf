"""``--solver exact`` below M_R: the CP-SAT partition and joint models against the heuristic partition.

For each (model, capacity) it compiles with ``--solver exact`` once per mode: ``heuristic``
(``--param partition=heuristic``: the heuristic partition search, the macro graph planned by
exact), ``model`` (``partition=model joint=off``: the CP-SAT partition model in the file order
and each order of ``reorder``, min-peak and branch, ``stowage.solvers.exact.tiled_model``) and
``joint`` (``partition=model``, the default: the same plus the joint model packing the file
order's candidates with whole tensors and spills, ``stowage.solvers.exact.tiled_joint``); every
mode starts from ``auto``'s tiled plan.  It prints one markdown row per run: non-compulsory
bytes, the bound over every tiling (``solver.lower_bound``) and the gap to it, the partition
model's bound on cut traffic over its candidate partitions (``solver.partition_bound``), the
joint model's bound on traffic over every plan into the file order's candidates in that order
(``solver.joint_bound``) and the gap to it, which search's partition won and its order
(``solver.cascade_order``), validity (the one validator, run again here) and wall seconds.
8-bit sizes, activations only, ethos-u55-256.

    python benchmarks/tiled_exact.py                       # the issue's table
    python benchmarks/tiled_exact.py --cases mobilenet_v2:64 --time-limit 60
    python benchmarks/tiled_exact.py --cases /tmp/wheels/x_ddddocr/ddddocr/common_det.onnx:256
    python benchmarks/tiled_exact.py --cases det.onnx:256 --dim 'x[0]=1' --dim 'x[2]=320' --dim 'x[3]=320'
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Each mode's ``--param`` values.
MODES = {"heuristic": {"partition": "heuristic"}, "model": {"partition": "model", "joint": False},
         "joint": {"partition": "model", "joint": True}}
CASES = ("mobilenet_v2:128", "mobilenet_v2:96", "mobilenet_v2:64", "efficientnet_b0:256", "efficientnet_b0:128",
         "lraspp_mobilenet_v3:256", "lraspp_mobilenet_v3:128", "densenet121:256",
         "/tmp/wheels/x_ddddocr/ddddocr/common_det.onnx:256")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), help="MODEL:KiB (a suite name or an ONNX path)")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--modes", nargs="*", default=["heuristic", "model", "joint"], choices=sorted(MODES))
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                    help="bind a symbolic dimension of ONNX-path cases (repeatable), as stowage compile --dim")
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.rsplit("=", 1) for d in args.dim)}

    from stowage.api import compile as compile_plan
    from stowage.api import load_model
    from stowage.errors import StowageError
    from stowage.plan.validate import validate

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; machine: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; target ethos-u55-256; 8-bit; activations only; --solver exact "
          f"--time-limit {args.time_limit:g}")
    print("| model | capacity | partition | non-compulsory B | bound (every tiling) | gap | "
          "cut-traffic bound (candidates) | joint bound (candidates, file order) | gap to it | found by | order | "
          "valid | seconds |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|")
    for case in args.cases:
        name, kib = case.rsplit(":", 1)
        path = Path(name) if name.endswith(".onnx") else ROOT / "models" / "suite" / f"{name}.onnx"
        cap = int(kib) * 1024
        for mode in args.modes:
            # A fresh graph per run: the bounds cached per graph (``graph_cached``) would
            # otherwise make the second run look faster.
            g = load_model(path, element_bytes=1, in_place=True, qdq="fold", dims=dims or None)
            t0 = time.perf_counter()
            try:
                plan = compile_plan(g, capacity=cap, solver="exact", time_limit=args.time_limit,
                                    params=MODES[mode])
            except StowageError as exc:
                print(f"| {path.stem} | {kib} KiB | {mode} | refused: {str(exc)[:80]} | | | | | | | | | "
                      f"{time.perf_counter() - t0:.1f} |", flush=True)
                continue
            dt = time.perf_counter() - t0
            judged = g.without_concats if g.without_concats is not None and not plan.options.concat_in_place else g
            ok = validate(judged, plan).ok
            s, traffic = plan.solver, plan.metrics.noncompulsory_bytes
            lb = s.lower_bound
            gap = "-" if lb is None else f"{traffic - lb:,}"
            pb = "-" if s.partition_bound is None else f"{s.partition_bound:,}"
            jb = "-" if s.joint_bound is None else f"{s.joint_bound:,}"
            jgap = "-" if s.joint_bound is None else f"{traffic - s.joint_bound:,}"
            print(f"| {path.stem} | {kib} KiB | {mode} | {traffic:,} | {'-' if lb is None else f'{lb:,}'} | {gap} | "
                  f"{pb} | {jb} | {jgap} | {s.found_by} | {getattr(s, 'cascade_order', None) or '-'} | "
                  f"{'yes' if ok else 'NO'} | "
                  f"{dt:.1f}{' (time)' if s.stopped_by else ''} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
