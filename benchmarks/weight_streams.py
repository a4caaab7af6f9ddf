"""Weight streams as timed DMA transfers (issue 15, item 3; ``docs/timing.md``, "Weight streams").

MobileNetV2-1.0-224 int8, as onnxruntime's QOperator ONNX file and as the TFLite file Vela
reads, compiled by ``stowage.compile`` (default solver, ``--tiling auto``) on ``ethos-u55-256``
and ``ethos-u65-256`` at the preset's 256 KiB and at 8 MiB (whole tensors, ``--tiling off``):
the estimated makespan and bound, the weight slices the plan streams (count, bytes), the
weight DMA busy time (the sum of their copies), the NPU's wait for slices, the DMA channels'
busy time in all (weight loads + transfers), and the validator's verdict on the timed plan.

Run it at two commits to compare (the columns about weight loads are 0 before they existed):

    python benchmarks/weight_streams.py --time-limit 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stowage.api import compile as compile_plan  # noqa: E402
from stowage.api import load_model  # noqa: E402
from stowage.ir.graph import Graph  # noqa: E402
from stowage.plan import Plan  # noqa: E402
from stowage.plan.validate import validate  # noqa: E402
from stowage.solvers.timing import estimate  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402

MODELS = {"onnx qop": ROOT / "models" / "int8" / "mobilenet_v2_int8_qop.onnx",
          "tflite": ROOT / "models" / "tflite" / "mobilenet_v2_int8.tflite"}
TARGETS = ("ethos-u55-256", "ethos-u65-256")
CASES = (("256 KiB", 256 << 10, "auto"), ("8 MiB, whole tensors", 8 << 20, "off"))


def planned_graph(graph: Graph, plan: Plan) -> Graph:
    """The graph ``compile`` planned (QDQ folded, in-place operators fused, as the plan says):
    what the time model and the validator take."""
    if plan.options.qdq == "fold":
        from stowage.ir.qdq import fold_qdq

        graph = fold_qdq(graph)
    if plan.options.in_place:
        from stowage.ir.inplace import fuse_in_place

        graph = fuse_in_place(graph, concat=plan.options.concat_in_place)
    return graph


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=20.0)
    args = ap.parse_args(argv)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}, "
          f"time limit {args.time_limit:g} s")
    print("| model | target | SRAM | cascades | est. ms | bound ms | weight loads | weight MB | "
          "weight DMA ms | NPU wait for weights ms | DMA busy ms | valid | compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, path in MODELS.items():
        graph0 = load_model(path)
        for target in TARGETS:
            for sram, cap, tiling in CASES:
                t0 = time.monotonic()
                plan = compile_plan(path, target=target, capacity=cap, tiling=tiling, time_limit=args.time_limit,
                                    seed=0)
                secs = time.monotonic() - t0
                graph = planned_graph(graph0, plan)
                hier = load_target(target).with_capacity(cap)
                tl = estimate(graph, plan, hier)
                loads = getattr(plan, "weight_loads", ())
                wdma = sum(w.end - w.start for w in loads)
                wait = sum(getattr(s, "weight_stall", 0.0) for s in tl.steps) if tl is not None else 0.0
                dma = wdma + sum((t.end or 0.0) - (t.start or 0.0) for t in plan.transfers)
                est = plan.metrics.estimated_seconds
                bound = tl.lower_bound if tl is not None else None
                ok = validate(graph, plan).ok
                print(f"| {label} | {target} | {sram} | {len(plan.cascades)} | "
                      f"{est * 1e3:.4f} | {bound * 1e3 if bound is not None else float('nan'):.4f} | {len(loads)} | "
                      f"{sum(w.bytes for w in loads) / 1e6:.3f} | {wdma * 1e3:.4f} | {wait * 1e3:.4f} | "
                      f"{dma * 1e3:.4f} | {'yes' if ok else 'NO'} | {secs:.1f} |", flush=True)
    print(f"# load at end {os.getloadavg()[0]:.2f}, {datetime.now(UTC):%H:%M} UTC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
