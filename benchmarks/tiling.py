"""Tiled planning below M_R: capacity -> traffic curves (issue 12's performance table).

For each model (8-bit sizes, activations only, input and output in DRAM, ethos-u55-256), it
compiles at fixed capacities (256 KiB and below) and at M_R, M_R/2, M_R/4, ... down to the
first capacity that cannot be planned, and prints one markdown row per cell: capacity,
whether the plan is tiled, its cascades, non-compulsory and compulsory bytes, SRAM peak,
validity (the one validator, run again here) and wall time.

    python benchmarks/tiling.py                       # MobileNetV2 + the suite CNNs
    python benchmarks/tiling.py --models mobilenet_v2 --kib 256 192 160 128 64
    python benchmarks/tiling.py --models --files models/int8/mobilenet_v2_int8_qdq.onnx --halvings 0
    python benchmarks/tiling.py --models --files det.onnx --dim 'x[0]=1' --dim 'x[2]=320' --dim 'x[3]=320'
    python benchmarks/tiling.py --models --files det.onnx --element-bytes 1 --kib 256 --halvings 0 ...

``--files``: ONNX files planned at their own element types, or all at ``--element-bytes N``
(a float model at 8-bit sizes, as ``stowage compile --element-bytes 1``), with QDQ groups
folded and in-place operators fused, as ``stowage compile`` does.  A ``(time)`` after the seconds: the wall clock,
not a work budget, ended a search (``solver.stopped_by``), so the plan may depend on load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CNNS = ("mobilenet_v2", "resnet50", "efficientnet_b0", "lraspp_mobilenet_v3", "densenet121", "resnext50",
        "fcn_resnet50", "deeplabv3_resnet50")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(CNNS))
    ap.add_argument("--files", nargs="*", default=[], help="ONNX files at their own element types")
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                    help="bind a symbolic dimension of the --files (repeatable), as stowage compile --dim")
    ap.add_argument("--element-bytes", type=int, default=None, metavar="N",
                    help="import the --files with every tensor at N bytes, as stowage compile --element-bytes "
                    "(default: their own element types)")
    ap.add_argument("--kib", nargs="*", type=int, default=[256, 192, 160, 128, 64])
    ap.add_argument("--halvings", type=int, default=6, help="M_R / 2^k capacities tried, k = 0..N")
    ap.add_argument("--time-limit", type=float, default=10.0)
    args = ap.parse_args()

    from stowage.api import compile as compile_plan
    from stowage.api import load_model
    from stowage.errors import StowageError
    from stowage.ir.inplace import fuse_in_place
    from stowage.ir.lifetimes import m_r
    from stowage.ir.onnx_import import load_graph
    from stowage.plan.validate import validate

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; machine: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; target ethos-u55-256; 8-bit; activations only; --time-limit {args.time_limit:g}")
    print("| model | capacity | M_R (in place) | tiled | cascades | non-compulsory B | compulsory B | "
          "SRAM peak | valid | seconds |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---|---:|")
    graphs = [(name, fuse_in_place(load_graph(ROOT / "models" / "suite" / f"{name}.onnx", element_bytes=1)))
              for name in args.models]
    dims = {k: int(v) for k, v in (d.rsplit("=", 1) for d in args.dim)}
    graphs += [(Path(f).stem, load_model(f, element_bytes=args.element_bytes, dims=dims or None, in_place=True,
                                           qdq="fold")) for f in args.files]
    for name, g in graphs:
        mr = m_r(g, False)
        caps = sorted({k * 1024 for k in args.kib} | {mr >> k for k in range(args.halvings + 1)}, reverse=True)
        for cap in caps:
            t0 = time.perf_counter()
            try:
                plan = compile_plan(g, capacity=cap, time_limit=args.time_limit)
            except StowageError as exc:
                print(f"| {name} | {cap:,} | {mr:,} | - | - | refused: {str(exc).replace('|', chr(92) + '|')} | | | | "
                      f"{time.perf_counter() - t0:.1f} |", flush=True)
                continue
            dt = time.perf_counter() - t0
            # Below M_R a graph with Concats in place is planned without them (stowage.compile).
            judged = g.without_concats if g.without_concats is not None and not plan.options.concat_in_place else g
            ok = validate(judged, plan).ok
            m = plan.metrics
            print(f"| {name} | {cap:,} | {mr:,} | {'yes' if plan.cascades else 'no'} | {len(plan.cascades)} | "
                  f"{m.noncompulsory_bytes:,} | {m.compulsory_bytes:,} | {m.peak_bytes.get('sram', 0):,} | "
                  f"{'yes' if ok else 'NO'} | {dt:.1f}{' (time)' if plan.solver.stopped_by else ''} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
