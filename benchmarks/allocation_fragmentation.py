"""Benchmark: min-peak ordering and offset packing (fragmentation), unbounded capacity.

For every real model (the onnx wheel's light zoo and the ``models/suite`` networks that
import without extra ``--dim`` bindings), 8-bit, with and without weights in the compute
level: the file-order peak live bytes, the ``min_peak_order`` peak (and whether the exact DP
proved it), then ``allocate_offsets`` on that order's lifetimes at alignment 1 (the pure
packing problem) and at the default target's alignment (ethos-u55-256, 16 B), reporting
fragmentation = (peak address - peak live) / peak live.  Then times ordering + packing on
random layered graphs of 1,000 and 10,000 operators.

    python benchmarks/allocation_fragmentation.py [--order-time 1.0] [--alloc-time 1.0]
        [--big-order-time 15] [--skip-random]

Prints markdown tables (paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402
from onnx import TensorProto  # noqa: E402

from stowage.errors import StowageError  # noqa: E402
from stowage.ir.build import RawNode, RawTensor, build_graph  # noqa: E402
from stowage.ir.graph import Graph  # noqa: E402
from stowage.ir.lifetimes import lifetimes, peak_live  # noqa: E402
from stowage.ir.onnx_import import load_graph  # noqa: E402
from stowage.solvers.alloc.greedy import Interval, allocate_offsets, peak_address  # noqa: E402
from stowage.solvers.analysis.schedule import min_peak_order_ex  # noqa: E402
from stowage.targets.hierarchy import load_target  # noqa: E402

log = logging.getLogger("benchmarks.allocation_fragmentation")


def model_paths() -> list[Path]:
    light = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
    return sorted(light.glob("*.onnx")) + sorted((ROOT / "models" / "suite").glob("*.onnx"))


def random_layered_graph(n_ops: int, width: int = 8, seed: int = 0) -> Graph:
    """Layers of up to ``width`` ops, each reading 1-3 tensors of the last 3 layers; tensor
    sizes uniform in 64..4096 bytes (multiples of 64)."""
    rng = random.Random(seed)
    tensors = [RawTensor("x", (rng.randint(1, 64) * 64,), TensorProto.UINT8)]
    nodes: list[RawNode] = []
    layers = [["x"]]
    while len(nodes) < n_ops:
        layer = []
        for _ in range(min(rng.randint(1, width), n_ops - len(nodes))):
            pool = [t for lay in layers[-3:] for t in lay]
            ins = tuple(sorted(set(rng.sample(pool, min(len(pool), rng.randint(1, 3))))))
            name = f"t{len(nodes)}"
            tensors.append(RawTensor(name, (rng.randint(1, 64) * 64,), TensorProto.UINT8))
            nodes.append(RawNode(f"op{len(nodes)}", "Add" if len(ins) > 1 else "Relu", ins, (name,)))
            layer.append(name)
        layers.append(layer)
    consumed = {i for n in nodes for i in n.inputs}
    outputs = [n.outputs[0] for n in nodes if n.outputs[0] not in consumed]
    return build_graph(f"random{n_ops}", tensors, nodes, ["x"], outputs)


def measure(g: Graph, weights_in_compute_level: bool, order_time: float, alloc_time: float, align: int) -> dict:
    t0 = time.perf_counter()
    order, proven = min_peak_order_ex(g, weights_in_compute_level, order_time, 0)
    t_order = time.perf_counter() - t0
    lt = lifetimes(g, order, weights_in_compute_level)
    ivs = [Interval(b, lt.first[b], lt.last[b], g.buffers[b].bytes) for b in sorted(lt.first)]
    row = {
        "ops": len(order), "buffers": len(ivs), "file_peak": peak_live(g, None, weights_in_compute_level),
        "min_peak": lt.peak, "proven": proven, "t_order": t_order,
    }
    for a in sorted({1, align}):
        t1 = time.perf_counter()
        off = allocate_offsets(ivs, a, None, alloc_time, 0)
        assert off is not None
        row[f"addr{a}"] = peak_address(off, ivs)
        row[f"t_alloc{a}"] = time.perf_counter() - t1
    return row


def pct(a: int, b: int) -> str:
    return f"{100.0 * (a - b) / b:.2f}%" if b else "0.00%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order-time", type=float, default=1.0)
    ap.add_argument("--alloc-time", type=float, default=1.0)
    ap.add_argument("--big-order-time", type=float, default=15.0,
                    help="ordering time limit for the 10,000-op graph")
    ap.add_argument("--skip-random", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    align = load_target("ethos-u55-256").compute.alignment

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print(f"| model | weights | ops | buffers | file-order peak | min-peak peak | reduction | proven "
          f"| order s | addr (align 1) | frag | addr (align {align}) | frag | alloc s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    frags: list[float] = []
    frags_aligned: list[float] = []
    for path in model_paths():
        try:
            g = load_graph(path, element_bytes=1)
        except StowageError as err:
            print(f"| {path.stem} | - | skipped: {str(err)[:80]} |")
            continue
        for weights_in_compute_level in (False, True):
            r = measure(g, weights_in_compute_level, args.order_time, args.alloc_time, align)
            frags.append((r["addr1"] - r["min_peak"]) / r["min_peak"])
            frags_aligned.append((r[f"addr{align}"] - r["min_peak"]) / r["min_peak"])
            print(f"| {path.stem} | {'yes' if weights_in_compute_level else 'no'} | {r['ops']} | {r['buffers']} "
                  f"| {r['file_peak']} "
                  f"| {r['min_peak']} | {pct(r['file_peak'], r['min_peak'])} | {'yes' if r['proven'] else 'no'} "
                  f"| {r['t_order']:.2f} | {r['addr1']} | {pct(r['addr1'], r['min_peak'])} "
                  f"| {r[f'addr{align}']} | {pct(r[f'addr{align}'], r['min_peak'])} "
                  f"| {r['t_alloc1'] + r[f't_alloc{align}']:.2f} |", flush=True)
    n = len(frags)
    print()
    print(f"- cases (model x setting): {n}")
    print(f"- zero fragmentation at alignment 1: {sum(f == 0 for f in frags)}/{n}; "
          f"max {100 * max(frags, default=0):.3f}%")
    print(f"- zero fragmentation at alignment {align}: {sum(f == 0 for f in frags_aligned)}/{n}; "
          f"within 0.01%: {sum(f <= 1e-4 for f in frags_aligned)}/{n}; max {100 * max(frags_aligned, default=0):.3f}%")

    if not args.skip_random:
        print()
        print("| random layered graph | ops | order time limit | file-order peak | min-peak peak | order s "
              "| addr (align 1) | frag | alloc s | total s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for n_ops, tl in ((1000, args.order_time), (10_000, args.big_order_time)):
            g = random_layered_graph(n_ops, seed=1)
            r = measure(g, True, tl, args.alloc_time, 1)
            print(f"| seed 1 | {n_ops} | {tl:g} | {r['file_peak']} | {r['min_peak']} | {r['t_order']:.2f} "
                  f"| {r['addr1']} | {pct(r['addr1'], r['min_peak'])} | {r['t_alloc1']:.2f} "
                  f"| {r['t_order'] + r['t_alloc1']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
