"""Stowage's per-operator time model against Vela's, class by class, and the port checked against Vela's own code.

Part 1 (``--vela PATH``): for a ``.tflite`` model, Vela 5.2's ``--verbose-performance`` per-layer
CSV with its default core (Regor) and with ``--debug-force-legacy-core`` (the Python core that
``stowage.solvers.block_model`` ports), on ``ethos-u55-256`` (Ethos_U55_High_End_Embedded,
Shared_Sram) and ``ethos-u65-256`` (Ethos_U65_High_End, Dedicated_Sram_256KB), beside Stowage's
``compile --per-layer`` of a whole-tensor plan (``--tiling off``, 8 MiB, activations only);
NPU cycles and per-operator totals summed per operator class, in millions of cycles.

Part 2 (``--check-port N``, run with a Python that has ``ethos-u-vela`` installed): N random
operations (conv, depthwise, pooling, elementwise, fully connected; 8 and 16 bits; NHWC and
NHCWB16; kernels to 9x9, strides, dilations, activations) through Vela's
``architecture_allocator.find_block_config``, ``npu_performance.measure_cycle_cost``,
``measure_element_access`` and ``_estimate_memory_transfer_efficiency`` and through the port;
prints how many agree in every field.

    python benchmarks/vela_layers.py --vela /tmp/tfvenv/bin/vela
    PYTHONPATH=<stowage> /tmp/tfvenv/bin/python benchmarks/vela_layers.py --check-port 1000
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("vela_layers")

SYSTEMS = (("ethos-u55-256", "Ethos_U55_High_End_Embedded", "Shared_Sram", 500e6),
           ("ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_256KB", 1e9))
CLASS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "ADD": "elementwise", "SUB": "elementwise",
         "MUL": "elementwise", "HARD_SWISH": "elementwise", "MEAN": "MEAN", "FULLY_CONNECTED": "fully connected",
         "SOFTMAX": "SOFTMAX", "AVERAGE_POOL_2D": "pool", "MAX_POOL_2D": "pool"}


def _vela_table(vela: str, model: Path, accel: str, system: str, mode: str, legacy: bool, work: Path
                ) -> dict[str, list[float]]:
    out = work / f"{accel}-{'legacy' if legacy else 'regor'}"
    cmd = [vela, str(model), "--config", "Arm/vela.ini", "--accelerator-config", accel, "--system-config", system,
           "--memory-mode", mode, "--optimise", "Performance", "--output-dir", str(out), "--verbose-performance"]
    if legacy:
        cmd.append("--debug-force-legacy-core")
    subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    rows = list(csv.reader((out / f"{model.stem}_per-layer.csv").open()))
    head = rows[0]
    agg: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows[1:]:
        if r == head or len(r) != len(head):
            continue    # a repeated header (one table per subgraph) or a summary line
        cls = CLASS.get(_tflite_name(r[0]), r[0])   # legacy prints TFLite names, Regor CamelCase
        agg[cls][0] += float(r[head.index("NPU")])
        agg[cls][1] += float(r[head.index("Op Cycles")])
    return agg


def _tflite_name(name: str) -> str:
    """Regor prints ``Conv2D``, ``DepthwiseConv2D``, ``FullyConnected``...: TFLite's names."""
    return {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "FullyConnected": "FULLY_CONNECTED",
            "Add": "ADD", "Mul": "MUL", "Sub": "SUB", "Mean": "MEAN", "Softmax": "SOFTMAX",
            "HardSwish": "HARD_SWISH", "AveragePool2D": "AVERAGE_POOL_2D", "MaxPool2D": "MAX_POOL_2D"}.get(name, name)


def _ours(model: Path, target: str, clock: float, work: Path) -> dict[str, list[float]]:
    csv_path = work / f"{target}.csv"
    subprocess.run([sys.executable, "-m", "stowage", "compile", str(model), "--target", target, "--capacity", "8MiB",
                    "--tiling", "off", "-q", "-o", str(work / target), "--per-layer", str(csv_path)],
                   check=True, capture_output=True, text=True, env={**os.environ})
    agg: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in csv.DictReader(csv_path.open()):
        cls = CLASS.get(r["op_type"], r["op_type"])
        agg[cls][0] += float(r["compute_s"] or 0) * clock
        agg[cls][1] += float(r["busy_s"] or 0) * clock
    return agg


def per_class(vela: str, model: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="vela_layers_") as tmp:
        work = Path(tmp)
        for target, system, mode, clock in SYSTEMS:
            cols = [_ours(model, target, clock, work),
                    _vela_table(vela, model, target, system, mode, True, work),
                    _vela_table(vela, model, target, system, mode, False, work)]
            print(f"\n{model.stem} on {target} (M NPU cycles: compute or NPU / busy or Op Cycles)\n")
            print("| class | Stowage | Vela legacy core | Vela Regor |")
            print("|---|---|---|---|")
            classes = sorted({k for c in cols for k in c if k != "Relu6"})
            totals = [[0.0, 0.0] for _ in cols]
            for k in classes:
                cells = []
                for i, c in enumerate(cols):
                    v = c.get(k, [0.0, 0.0])
                    totals[i] = [totals[i][0] + v[0], totals[i][1] + v[1]]
                    cells.append(f"{v[0] / 1e6:.3f} / {v[1] / 1e6:.3f}")
                print(f"| {k} | {' | '.join(cells)} |")
            print(f"| network | {' | '.join(f'{a / 1e6:.3f} / {b / 1e6:.3f}' for a, b in totals)} |")


def check_port(n: int, seed: int = 0) -> int:
    """``n`` random operations through Vela and the port; the number that differ."""
    from ethosu.vela import architecture_allocator as aa
    from ethosu.vela import npu_performance as npp
    from ethosu.vela.architecture_features import ArchitectureFeatures, TensorFormat
    from ethosu.vela.ethos_u55_regs.ethos_u55_regs import resampling_mode
    from ethosu.vela.operation import Kernel as VKernel
    from ethosu.vela.operation import NpuBlockType, Op
    from ethosu.vela.shape4d import Shape4D
    from ethosu.vela.tensor import MemArea

    from stowage.solvers import block_model as bm
    from stowage.targets.hierarchy import load_target

    arch = ArchitectureFeatures(None, "ethos-u55-256", "Ethos_U55_High_End_Embedded", "Shared_Sram", 3, False, None)
    engine = load_target("ethos-u55-256").compute_engine
    assert engine is not None and engine.blocks is not None
    mine = engine.blocks
    sram, flash = bm.Memory(8.0, 32, 32), bm.Memory(1.0, 64, 128)
    kinds = {bm.CONV: (NpuBlockType.ConvolutionMxN, Op.Conv2DBias),
             bm.DEPTHWISE: (NpuBlockType.ConvolutionDepthWise, Op.DepthwiseConv2DBias),
             bm.VECTOR_PRODUCT: (NpuBlockType.VectorProduct, Op.FullyConnected),
             bm.POOLING: (NpuBlockType.Pooling, Op.AvgPool), bm.ELEMENTWISE: (NpuBlockType.ElementWise, Op.Add)}
    faf = {"none": None, "relu": Op.Relu6, "lut": Op.Sigmoid}
    rnd = random.Random(seed)
    bad = 0
    for _ in range(n):
        kind = rnd.choice([bm.CONV, bm.CONV, bm.DEPTHWISE, bm.POOLING, bm.ELEMENTWISE, bm.VECTOR_PRODUCT])
        h = 1 if kind == bm.VECTOR_PRODUCT else rnd.choice([1, 2, 5, 7, 14, 28, 33, 56, 112])
        w = 1 if kind == bm.VECTOR_PRODUCT else rnd.choice([1, 2, 7, 9, 14, 28, 56, 112])
        cin = rnd.choice([3, 8, 16, 24, 32, 96, 144, 320, 960, 1280])
        cout = cin if kind in (bm.DEPTHWISE, bm.POOLING, bm.ELEMENTWISE) else rnd.choice([8, 16, 24, 32, 64, 96, 1000])
        k = 1 if kind in (bm.VECTOR_PRODUCT, bm.ELEMENTWISE) else rnd.choice([1, 3, 5, 7, 9])
        s = 1 if kind in (bm.VECTOR_PRODUCT, bm.ELEMENTWISE) else rnd.choice([1, 2])
        d = rnd.choice([1, 1, 2]) if kind in (bm.CONV, bm.DEPTHWISE) else 1
        ih, iw = ((h, w) if kind == bm.ELEMENTWISE else ((h - 1) * s + (k - 1) * d + 1, (w - 1) * s + (k - 1) * d + 1))
        bits = rnd.choice([8, 8, 8, 16])
        fi, fo = rnd.choice([bm.NHWC, bm.NHCWB16]), rnd.choice([bm.NHWC, bm.NHCWB16])
        act = rnd.choice(["none", "relu", "lut"])
        ifm, ofm = bm.Shape(1, ih, iw, cin), bm.Shape(1, h, w, cout)
        ifm2 = ofm if kind == bm.ELEMENTWISE else None
        kernel = bm.Kernel(k, k, s, s, d, d)
        has_const = kind in (bm.CONV, bm.DEPTHWISE, bm.VECTOR_PRODUCT)
        q = bm.Query(kind=kind, ifm=bm.Operand(ifm, bits, sram, fi), ofm=bm.Operand(ofm, 8, sram, fo),
                     ifm2=None if ifm2 is None else bm.Operand(ifm2, bits, sram, fi), kernel=kernel,
                     variant="add" if kind == bm.ELEMENTWISE else "", activation=act,
                     const=flash if has_const else None)
        c = bm.op_cost(mine, q)
        vk = VKernel(k, k, s, s, d, d)

        def s4(x: bm.Shape) -> Shape4D:
            return Shape4D(x.n, x.h, x.w, x.c)

        npu_type, op_type = kinds[kind]
        cfg = aa.find_block_config(arch, npu_type, s4(ofm), s4(ifm), None if ifm2 is None else s4(ifm2), False, bits,
                                   vk, 2 if act == "lut" else 0, True, resampling_mode.NONE)
        vq = npp.PerformanceQuery(npu_type)
        fmt = {bm.NHWC: TensorFormat.NHWC, bm.NHCWB16: TensorFormat.NHCWB16}
        vq.ifm_shape, vq.ifm_format, vq.ifm_memory_area, vq.ifm_bits = s4(ifm), fmt[fi], MemArea.Sram, bits
        if ifm2 is not None:
            vq.ifm2_shape, vq.ifm2_format, vq.ifm2_memory_area, vq.ifm2_bits = s4(ifm2), fmt[fi], MemArea.Sram, bits
        vq.ofm_shape, vq.ofm_format, vq.ofm_memory_area, vq.ofm_bits = s4(ofm), fmt[fo], MemArea.Sram, 8
        if has_const:
            vq.const_shape, vq.const_memory_area = Shape4D(1, 1, 1, cout), MemArea.OffChipFlash
        vq.kernel, vq.config = vk, cfg
        if c is None or cfg is None:
            bad += (c is None) != (cfg is None)
            continue
        cc = npp.measure_cycle_cost(arch, op_type, faf[act], vq)
        acc = npp.measure_element_access(arch, vq)
        vs = npp._estimate_memory_transfer_efficiency(arch, True, MemArea.Sram, fmt[fi], bits, cfg.ifm_block,
                                                      vq.ifm_shape, 1000) / 1000
        vo = npp._estimate_memory_transfer_efficiency(arch, False, MemArea.Sram, fmt[fo], 8, cfg.ofm_block,
                                                      vq.ofm_shape, 1000) / 1000
        got = (c.cycles, c.macs, (c.config.ofm_block.h, c.config.ofm_block.w, c.config.ofm_block.c),
               (c.config.ifm_block.h, c.config.ifm_block.w, c.config.ifm_block.c), c.config.part_kernel,
               c.ifm_read, c.ifm2_read, c.ofm_write, c.weight_read, c.scale_read, round(c.ifm_scale, 9),
               round(c.ofm_scale, 9))
        want = (cc.op_cycles, cc.op_macs, (cfg.ofm_block.height, cfg.ofm_block.width, cfg.ofm_block.depth),
                (cfg.ifm_block.height, cfg.ifm_block.width, cfg.ifm_block.depth), cfg.is_partkernel,
                acc.ifm_read[0], acc.ifm_read[1], acc.ofm_write, acc.const_read[0], acc.const_read[1], round(vs, 9),
                round(vo, 9))
        if got != want:
            bad += 1
            log.warning("differs: %s %s -> %s k%d s%d d%d %d-bit %s/%s %s: ours %s, Vela %s", kind, ifm, ofm, k, s, d,
                        bits, fi, fo, act, got, want)
    print(f"{n - bad} of {n} random operations identical to Vela's own functions")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vela", metavar="PATH", help="the vela executable (part 1)")
    ap.add_argument("--model", default=str(ROOT / "models" / "tflite" / "mobilenet_v2_int8.tflite"))
    ap.add_argument("--check-port", type=int, metavar="N", default=0, help="part 2 with N random operations")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not args.vela and not args.check_port:
        ap.error("give --vela PATH (part 1) and/or --check-port N (part 2)")
    if args.vela:
        per_class(args.vela, Path(args.model))
    return 1 if args.check_port and check_port(args.check_port) else 0


if __name__ == "__main__":
    raise SystemExit(main())
