"""Real float models from pip wheels, quantized to int8 and planned below M_R, proven by execution.

The suite's int8 files (``models/int8``) are all made from suite models.  This takes float ONNX
files a user would have (models shipped inside pip packages: OCR detectors, YOLO heads, ...),
binds their symbolic input dimensions, quantizes them with onnxruntime's own tool in both forms
(static, per-tensor, s8s8, MinMax on seeded N(0, 1) inputs: the settings of
``models/quantize.py``), and for each form and capacity runs what a user would run:
``compile`` (default solver and target, the model's own int8 sizes), then ``validate`` and
``simulate`` (every stripe executed with ONNX Runtime, outputs compared with a whole-model run).

    python benchmarks/wheel_int8.py \\
        --model 'det_infer.onnx:x[0]=1,x[2]=320,x[3]=320' --model 320n.onnx:batch=1,height=320,width=320 \\
        --kib 256 64 [--forms qdq,qop] [--time-limit 10] [--work /tmp/wheel_int8]

One markdown row per (model, form, capacity): M_R, non-compulsory bytes, whether the plan is
tiled, ``stopped_by``, the compile's wall time, the validator's verdict, the simulator's
verdict (its first problem when it fails) and whether the outputs are bit-exact.  A refusal
prints its one-line error.  The quantized files go to ``--work`` (not committed: they are
derived from files outside this repository).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _fixed(path: Path, dims: dict[str, int], out: Path):
    """The model with its symbolic input dimensions bound (name or ``input[axis]``), its graph
    outputs' shapes cleared (the quantizer re-infers them), saved to ``out``."""
    import onnx

    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            key = d.dim_param if d.HasField("dim_param") else f"{vi.name}[{axis}]"
            if not d.HasField("dim_value") or d.dim_value <= 0:
                if key not in dims and f"{vi.name}[{axis}]" not in dims:
                    raise SystemExit(f"{path}: bind input '{vi.name}' axis {axis} ('{key}') with NAME=VALUE")
                d.Clear()
                d.dim_value = dims.get(key, dims.get(f"{vi.name}[{axis}]", 1))
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    del m.graph.value_info[:]
    onnx.save(m, str(out))
    return m


def quantize(path: Path, dims: dict[str, int], form: str, work: Path) -> Path:
    """``path`` quantized in ``form`` (``qdq`` or ``qop``) into ``work`` (reused when present)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from models.quantize import _annotate_shapes, _reader

    out = work / f"{path.stem}_int8_{form}.onnx"
    if out.exists():
        return out
    work.mkdir(parents=True, exist_ok=True)
    fixed = work / f"{path.stem}_fixed.onnx"
    src = _fixed(path, dims, fixed)
    tmp = out.with_name(out.name + ".tmp.onnx")
    quantize_static(str(fixed), str(tmp), _reader(src, 4, 0),
                    quant_format=QuantFormat.QDQ if form == "qdq" else QuantFormat.QOperator,
                    per_channel=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    q = onnx.load(str(tmp))
    if form == "qop":
        _annotate_shapes(q, src)
    onnx.save(q, str(out))
    tmp.unlink()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="PATH[:NAME=VALUE,...]",
                    help="a float ONNX file and its input dimensions (repeatable)")
    ap.add_argument("--kib", nargs="*", type=int, default=[256, 64])
    ap.add_argument("--forms", default="qdq,qop")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/wheel_int8"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from stowage.api import compile as compile_plan
    from stowage.api import load_model
    from stowage.errors import StowageError
    from stowage.ir.lifetimes import m_r
    from stowage.plan.validate import validate
    from stowage.simulate import simulate

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; machine: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; target ethos-u55-256 (default); int8 as quantized; --time-limit "
          f"{args.time_limit:g}")
    print("| model | form | capacity | M_R | tiled | non-compulsory B | stopped_by | compile s | valid | "
          "simulate | outputs |")
    print("|---|---|---:|---:|---|---:|---|---:|---|---|---|")
    for spec in args.model:
        path_s, _, dim_s = spec.partition(":")
        dims = {k: int(v) for k, v in (d.rsplit("=", 1) for d in dim_s.split(",") if d)}
        path = Path(path_s)
        for form in args.forms.split(","):
            try:
                q = quantize(path, dims, form, args.work)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer fails on some graphs
                print(f"| {path.stem} | {form} | | | onnxruntime's quantizer failed: "
                      f"{type(exc).__name__}: {str(exc)[:100].replace('|', '/')} | | | | | | |", flush=True)
                continue
            graph = load_model(q, in_place=True, qdq="fold")
            mr = m_r(graph, False)
            for kib in args.kib:
                cap = kib * 1024
                row = f"| {path.stem} | {form} | {cap:,} | {mr:,} |"
                t0 = time.perf_counter()
                try:
                    plan = compile_plan(graph, capacity=cap, time_limit=args.time_limit)
                except StowageError as exc:
                    print(f"{row} refused: {str(exc).replace('|', '/')} | | | {time.perf_counter() - t0:.1f} | | | |",
                          flush=True)
                    continue
                secs = time.perf_counter() - t0
                verdict = validate(graph, plan)
                sim = simulate(q, graph, plan)
                exact = "bit-exact" if sim.outputs and all(o.exact for o in sim.outputs) else (
                    "within tolerance" if sim.ok else "-")
                problem = "match" if sim.ok else f"MISMATCH: {(sim.first_problem or '')[:160].replace('|', '/')}"
                print(f"{row} {'yes' if plan.cascades else 'no'} | {plan.metrics.noncompulsory_bytes:,} | "
                      f"{plan.solver.stopped_by or '-'} | {secs:.1f} | {'yes' if verdict.ok else 'NO'} | "
                      f"{problem} | {exact} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
