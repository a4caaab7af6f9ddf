"""``exact --objective latency`` with weight streams (issue 15; ``docs/timing.md``, "Weight
streams"): the CP-SAT schedule orders the weight slices and the activations' copies on the DMA
channels together.

Per case: the plan's estimated makespan (its recorded schedule), the makespan of the same plan
with the DMA queue in plan order (``estimate`` with the recorded times removed: what a plan
with weight streams was timed with before), the latency bound, ``solver.latency_status`` and
``solver.status``, the weight slices, the validator's verdict and the wall time.  Cases: the
contention case of ``tests/test_weight_streams.py`` (two int8 1x1 convolutions whose first
result is also a graph output, ethos-u55-256) and MobileNetV2-1.0-224 int8 (the TFLite file
Vela reads, and onnxruntime's QOperator ONNX file) on ethos-u55-256 and ethos-u65-256 at 8 MiB
(whole tensors, ``--tiling off``) and 256 KiB (``--tiling auto``).  Run it at two commits to compare:

    python benchmarks/exact_weight_streams.py --time-limit 10
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import onnx  # noqa: E402
from weight_streams import planned_graph  # noqa: E402

from stowage.api import compile as compile_plan  # noqa: E402
from stowage.api import load_model  # noqa: E402
from stowage.plan.validate import validate  # noqa: E402
from stowage.solvers.timing import estimate  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402

MODELS = {"MobileNetV2 int8 (tflite)": ROOT / "models" / "tflite" / "mobilenet_v2_int8.tflite",
          "MobileNetV2 int8 (onnx qop)": ROOT / "models" / "int8" / "mobilenet_v2_int8_qop.onnx"}
TARGETS = ("ethos-u55-256", "ethos-u65-256")
CASES = (("8 MiB", 8 << 20, "off"), ("256 KiB", 256 << 10, "auto"))


def _row(label: str, path: Path, target: str, cap: int | None, tiling: str, limit: float) -> str:
    t0 = time.monotonic()
    plan = compile_plan(path, target=target, capacity=cap, tiling=tiling, time_limit=limit, seed=0,
                        solver="exact", objective="latency")
    secs = time.monotonic() - t0
    graph = planned_graph(load_model(path), plan)
    hier = load_target(target) if cap is None else load_target(target).with_capacity(cap)
    untimed = dataclasses.replace(plan, transfers=tuple(dataclasses.replace(t, channel=None, start=None, end=None)
                                                        for t in plan.transfers), weight_loads=())
    order = estimate(graph, untimed, hier)
    est = plan.metrics.estimated_seconds
    bound = plan.solver.latency_bound
    ok = validate(graph, plan).ok
    return (f"| {label} | {target} | {'preset' if cap is None else cap} | {len(plan.cascades)} | "
            f"{order.makespan * 1e3 if order else float('nan'):.4f} | {est * 1e3 if est else float('nan'):.4f} | "
            f"{bound * 1e3 if bound else float('nan'):.4f} | {plan.solver.latency_status} | {plan.solver.status} | "
            f"{plan.solver.stopped_by or ''} | {len(plan.weight_loads)} | {plan.metrics.noncompulsory_bytes:,} | "
            f"{'yes' if ok else 'NO'} | {secs:.1f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--skip-mobilenet", action="store_true", help="only the contention case")
    args = ap.parse_args(argv)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}, "
          f"time limit {args.time_limit:g} s")
    print("| model | target | SRAM B | cascades | plan-order ms | est. ms | bound ms | latency status | status | "
          "stopped by | weight loads | non-compulsory B | valid | compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    from test_weight_streams import conv_chain

    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp) / "chain_out.onnx"
        onnx.save(conv_chain(16, (64, 256, 128), extra_output=True), chain)
        print(_row("contention case", chain, "ethos-u55-256", None, "off", args.time_limit), flush=True)
    if not args.skip_mobilenet:
        for label, path in MODELS.items():
            for target in TARGETS:
                for _, cap, tiling in CASES:
                    print(_row(label, path, target, cap, tiling, args.time_limit), flush=True)
    print(f"# load at end {os.getloadavg()[0]:.2f}, {datetime.now(UTC):%H:%M} UTC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
