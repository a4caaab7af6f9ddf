"""Concat in place and output-channel weight tiling (issue 12, items 1 and 3): the figures of
the "Concat in place" section.

1. M_R before and after on the Concat-heavy models: 8-bit sizes (``--element-bytes 1``),
   with and without weights; "off" is COSMA's definition, "elementwise" the in-place fusion
   before this work (``fuse_in_place(..., concat=False)``), "+ Concat" the current default;
   with the Concats run in place out of all Concats.
2. DenseNet-121 planned at its M_R (float32 sizes, so the plan can be executed) and simulated
   against ONNX Runtime; and at its 8-bit M_R, validated.
3. MobileNetV2 at 256 KiB with every weight in the scratchpad (``--weights-in-sram``): the
   operators split along output channels, traffic, validity; the int8 QOperator model
   simulated.

    python benchmarks/concat_inplace.py              # everything
    python benchmarks/concat_inplace.py --skip-densenet-sim
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUITE = ("densenet121", "darts", "nasnet_a", "pnasnet5", "s3d")
#: GoogLeNet / Inception v1 and v2 and SqueezeNet from onnx's light model zoo (in the onnx wheel).
LIGHT = ("light_inception_v1", "light_inception_v2", "light_squeezenet")


def _light(name: str) -> Path:
    import onnx

    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light" / f"{name}.onnx"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-densenet-sim", action="store_true")
    ap.add_argument("--time-limit", type=float, default=20.0)
    args = ap.parse_args()

    from stowage.api import compile as compile_plan
    from stowage.ir.concat_inplace import concat_report, fuse_concats
    from stowage.ir.inplace import fuse_in_place
    from stowage.ir.lifetimes import m_r
    from stowage.ir.onnx_import import load_graph
    from stowage.plan.validate import validate
    from stowage.simulate import simulate

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; machine: {os.cpu_count()} cores (shared VM), "
          f"load {os.getloadavg()[0]:.2f}; command: python benchmarks/concat_inplace.py")
    print()
    print("M_R, 8-bit sizes: off (COSMA) / elementwise in place / + Concats in place (the default: only "
          "Concats whose step needs M_R) / every admissible Concat in place; and non-compulsory bytes of "
          "`compile --capacity <default M_R> --tiling off` (auto, activations only) with the default vs with "
          "every admissible Concat in place.")
    print()
    print("| model | Concats in place: default / admissible / all | M_R with weights | M_R without weights | "
          "non-compulsory at M_R: default / every Concat |")
    print("|---|---:|---:|---:|---:|")
    paths = [(n, ROOT / "models" / "suite" / f"{n}.onnx") for n in SUITE] + [(n, _light(n)) for n in LIGHT]
    for name, path in paths:
        raw = load_graph(path, element_bytes=1)
        ew = fuse_in_place(raw, concat=False)
        on = fuse_in_place(raw)
        every = fuse_concats(ew, at_m_r_only=False)
        total = sum(op.op_type == "Concat" and op.computing for op in raw.operators)
        cells = [" / ".join(f"{m_r(g, w):,}" for g in (raw, ew, on, every)) for w in (True, False)]
        traffic = "-"
        if every is not ew:
            cap = m_r(on, False)
            a, b = (compile_plan(g, capacity=cap, tiling="off", time_limit=args.time_limit).metrics.noncompulsory_bytes
                    for g in (on, every))
            traffic = f"{a:,} / {b:,}"
        print(f"| {name} | {len(concat_report(on))} / {len(concat_report(every))} / {total} | {cells[0]} | "
              f"{cells[1]} | {traffic} |", flush=True)
    print()

    print("| run | capacity | steps | non-compulsory B | valid | simulated | seconds |")
    print("|---|---:|---:|---:|---|---|---:|")
    dn = ROOT / "models" / "suite" / "densenet121.onnx"
    for eb in (1, None):
        t = time.perf_counter()
        plan = compile_plan(dn, capacity="M_R", element_bytes=eb, time_limit=args.time_limit)
        g = fuse_in_place(load_graph(dn, element_bytes=eb))
        ok = validate(g, plan).ok
        sim = "refused (8-bit sizes of a float model)" if eb else "skipped"
        if eb is None and not args.skip_densenet_sim:
            r = simulate(dn, g, plan)
            worst = max((o.max_abs_diff for o in r.outputs), default=0.0)
            sim = ("match" if r.ok else f"MISMATCH: {r.first_problem}") + f", max abs diff {worst:.3g}"
        cap = plan.target.levels[0].capacity
        print(f"| densenet121 at M_R, {'8-bit' if eb else 'float32'} | {cap:,} | {len(plan.steps)} | "
              f"{plan.metrics.noncompulsory_bytes:,} | {ok} | {sim} | {time.perf_counter() - t:.1f} |", flush=True)
    for label, path, eb in (("mobilenet_v2 8-bit", ROOT / "models" / "suite" / "mobilenet_v2.onnx", 1),
                            ("mobilenet_v2_int8_qop", ROOT / "models" / "int8" / "mobilenet_v2_int8_qop.onnx", None)):
        t = time.perf_counter()
        plan = compile_plan(path, capacity="256KiB", element_bytes=eb, weights_in_sram=True,
                            time_limit=args.time_limit)
        g = load_graph(path, element_bytes=eb)
        ok = validate(g, plan).ok
        sim = "refused (8-bit sizes of a float model)"
        if eb is None:
            from stowage.ir.channel_split import split_channels
            from stowage.ir.qdq import fold_qdq

            pg = split_channels(fuse_in_place(fold_qdq(g), concat=plan.options.concat_in_place),
                                plan.options.channel_split)
            r = simulate(path, pg, plan)
            sim = "bit-exact" if r.ok and all(o.exact for o in r.outputs) else f"ok={r.ok} {r.first_problem}"
        splits = ", ".join(f"{n.rsplit('/', 2)[-2] if '/' in n else n} x{k}"
                           for n, k in plan.options.channel_split.items())
        print(f"| {label}, weights in SRAM, {len(plan.cascades)} cascades; split: {splits} | 262,144 | "
              f"{len(plan.steps)} | {plan.metrics.noncompulsory_bytes:,} | {ok} | {sim} | "
              f"{time.perf_counter() - t:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
