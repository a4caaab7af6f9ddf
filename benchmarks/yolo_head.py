"""A YOLOv8 detector (nudenet's ``320n.onnx``) below M_R: traffic, validity and simulation
per capacity (issue 12, 3-D detection heads in bands).

For each capacity it compiles the model at 8-bit sizes (``--element-bytes 1``, as the issue
measures it; input and output in DRAM, ethos-u55-256, activations only) and runs the
validator again; with ``--simulate`` it also compiles the fp32 model at four times the
capacity (the same bytes per element count, since simulation refuses an element-size
override) and executes that plan (``stowage.simulate``), reporting the largest difference
from ONNX Runtime.  One markdown row per capacity.

    python benchmarks/yolo_head.py --kib 384 352 320 288 256 --simulate
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "/tmp/wheels/x_nudenet/nudenet/320n.onnx"
DIMS = {"batch": 1, "height": 320, "width": 320}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--kib", nargs="*", type=int, default=[384, 352, 320, 288, 256])
    ap.add_argument("--simulate", action="store_true", help="also plan fp32 at 4x and simulate it")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=V",
                    help="symbolic dims for another model (replace nudenet's batch/height/width)")
    ap.add_argument("--bytes", nargs="*", type=int, default=[], help="further capacities in bytes")
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)} if args.dim else (
        DIMS if args.model == MODEL else None)

    from stowage.api import compile as compile_plan
    from stowage.api import load_model
    from stowage.errors import StowageError
    from stowage.plan.validate import validate

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; load {os.getloadavg()[0]:.2f}; "
          f"{Path(args.model).name}; ethos-u55-256; activations only; --time-limit {args.time_limit:g}")
    print("| capacity | tiled | cascades | non-compulsory B | compulsory B | SRAM peak | valid | seconds "
          "| fp32 at 4x: simulate | max abs diff |")
    print("|---:|---|---:|---:|---:|---:|---|---:|---|---:|")
    g8 = load_model(args.model, element_bytes=1, dims=dims, in_place=True)
    for cap in [k * 1024 for k in args.kib] + list(args.bytes):
        kib = f"{cap // 1024}" if cap % 1024 == 0 else f"{cap / 1024:.2f}"
        t0 = time.monotonic()
        try:
            plan = compile_plan(g8, capacity=cap, time_limit=args.time_limit)
        except StowageError as exc:
            print(f"| {kib} KiB | - | - | refused: {str(exc)[:90]} | | | | {time.monotonic() - t0:.1f} | | |")
            continue
        secs = time.monotonic() - t0
        res = validate(g8, plan)
        m = res.metrics
        sram = plan.target.compute_level
        sim, diff = "", ""
        if args.simulate:
            from stowage.simulate import simulate

            g32 = load_model(args.model, dims=dims, in_place=True)
            try:
                p32 = compile_plan(g32, capacity=4 * cap, time_limit=args.time_limit)
                r = simulate(args.model, g32, p32)
                sim = "ok" if r.ok else f"FAIL: {(r.first_problem or '')[:80]}"
                diff = f"{max((o.max_abs_diff for o in r.outputs), default=0.0):.2e}"
                sim += f" ({len(p32.cascades)} cascades)"
            except StowageError as exc:
                sim = f"refused: {str(exc)[:60]}"
        print(f"| {kib} KiB | {'yes' if plan.cascades else 'no'} | {len(plan.cascades)} | "
              f"{m.noncompulsory_bytes:,} | {m.compulsory_bytes:,} | {m.peak_bytes.get(sram, 0):,} | "
              f"{'yes' if res.ok else 'NO'} | {secs:.1f}{' (time)' if plan.solver.stopped_by == 'time' else ''} | "
              f"{sim} | {diff} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
