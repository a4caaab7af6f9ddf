"""Models whose operators gained row maps (issue 12 item 2: edge / reflect Pad, the QDQ-wrapped
Split) below M_R: traffic, validity and simulation per capacity, and the least capacity that
plans.

For each capacity it compiles the model at 8-bit sizes (``--element-bytes 1``: every
activation 1 B per element, as the issue measures; input and output in DRAM, ethos-u55-256,
activations only, ``auto``) and runs the validator again.  With ``--simulate`` it also
compiles the model at its own element sizes (simulation refuses an element-size override) at
``--sim-scale`` times the capacity (1 for an int8 QDQ model, 4 for fp32) and executes that
plan (``stowage.simulate``) against ONNX Runtime.  ``--least`` bisects the least capacity at
which ``compile`` returns a plan (to 1 KiB).  One markdown row per capacity; the banded
operators of the kinds this branch added are counted per plan (``mirror`` Pads, QDQ Splits).

    python benchmarks/row_map_ops.py MODEL.onnx --dim batch=1 --kib 512 384 320 288 --least --simulate

Run it with another tree's package on ``PYTHONPATH`` for the "before" column.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _banded(graph, plan) -> str:  # type: ignore[no-untyped-def]
    """``"<Split stripes>/<Pad stripes>"`` of the plan: stripes of Split and non-constant Pad
    operators (a folded QDQ group's core included), the ones this branch lets run in bands."""
    splits = pads = 0
    for c in plan.cascades:
        for s in c.stripes:
            op = graph.operators[s.op]
            if op.op_type == "Split":
                splits += 1
            elif op.op_type == "Pad" and op.attributes.get("mode", "constant") not in ("constant", b"constant"):
                pads += 1
    return f"{splits}/{pads}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--kib", nargs="*", type=float, default=[512, 384, 320, 288, 256])
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=V")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--least", action="store_true", help="bisect the least capacity that plans (to 1 KiB)")
    ap.add_argument("--least-from", type=float, default=0.0, help="lower end of the bisection (KiB)")
    ap.add_argument("--simulate", action="store_true")
    ap.add_argument("--sim-scale", type=float, default=1.0)
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)} or None

    import stowage
    from stowage.api import compile as compile_plan
    from stowage.api import load_model
    from stowage.errors import StowageError
    from stowage.plan.validate import validate

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; load {os.getloadavg()[0]:.2f}; "
          f"{Path(args.model).name}; stowage from {Path(stowage.__file__).parent}; ethos-u55-256; "
          f"--element-bytes 1; activations only; --time-limit {args.time_limit:g}")
    print()
    print("| capacity | cascades | Split/Pad stripes | non-compulsory B | compulsory B | SRAM peak | valid | seconds "
          "| simulate | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|---|---:|")
    # As ``stowage compile`` loads it (``--qdq fold``, the CLI's default): a QDQ model's
    # DequantizeLinear -> op -> QuantizeLinear groups are int8 steps (stowage.ir.qdq).
    g8 = load_model(args.model, element_bytes=1, dims=dims, in_place=True, qdq="fold")

    def plans(cap: int) -> bool:
        try:
            compile_plan(g8, capacity=cap, time_limit=args.time_limit)
            return True
        except StowageError:
            return False

    for kib in args.kib:
        cap = int(kib * 1024)
        t0 = time.monotonic()
        try:
            plan = compile_plan(g8, capacity=cap, time_limit=args.time_limit)
        except StowageError as exc:
            print(f"| {kib:g} KiB | - | - | refused: {str(exc)[:110]} | | | | {time.monotonic() - t0:.1f} | | |",
                  flush=True)
            continue
        secs = time.monotonic() - t0
        res = validate(g8, plan)
        m = res.metrics
        sim, diff = "", ""
        if args.simulate:
            from stowage.simulate import simulate

            gn = load_model(args.model, dims=dims, in_place=True, qdq="fold")
            try:
                pn = compile_plan(gn, capacity=int(cap * args.sim_scale), time_limit=args.time_limit)
                r = simulate(args.model, gn, pn)
                exact = r.outputs and all(o.exact for o in r.outputs)
                sim = ("bit-exact" if exact else "ok") if r.ok else f"FAIL: {(r.first_problem or '')[:80]}"
                sim += f" ({len(pn.cascades)} cascades, {_banded(gn, pn)})"
                diff = f"{max((o.max_abs_diff for o in r.outputs), default=0.0):.2e}"
            except StowageError as exc:
                sim = f"refused: {str(exc)[:60]}"
        stop = " (time)" if plan.solver.stopped_by == "time" else ""
        print(f"| {kib:g} KiB | {len(plan.cascades)} | {_banded(g8, plan)} | {m.noncompulsory_bytes:,} | "
              f"{m.compulsory_bytes:,} | {m.peak_bytes.get(plan.target.compute_level, 0):,} | "
              f"{'yes' if res.ok else 'NO'} | {secs:.1f}{stop} | {sim} | {diff} |", flush=True)
    if args.least:
        hi = int(max(args.kib) * 1024)
        lo = int(args.least_from * 1024)
        if not plans(hi):
            print(f"\nleast capacity: nothing plans at {hi:,} B")
        else:
            while hi - lo > 1024:
                mid = (lo + hi) // 2
                if plans(mid):
                    hi = mid
                else:
                    lo = mid
            print(f"\nleast capacity that plans (to 1 KiB): {hi:,} B ({hi / 1024:.1f} KiB); "
                  f"{lo:,} B is refused")
    print(f"load at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
