"""How often onnxruntime's fp32 Conv of a folded QDQ group (``DequantizeLinear -> Conv ->
QuantizeLinear``) quantizes an output row of a band one step away from the same row of the
whole tensor: the float sums differ in their last bits, and a value on a rounding boundary
lands on the other side.  ``stowage simulate`` runs a folded group's float core so, and reports
such a flip in a banded plan as a mismatch (it accepts one step only for folded reductions).

The subgraph from the int8 operand to the int8 result is cut out of the model
(``onnx.utils.extract_model``); the band runs with no H pads on operand rows ``[lo, hi)``
(an interior band: no border) and is compared with output row ``out_row`` of the whole run, on
``--trials`` random int8 operands.  Defaults: nudenet's YOLOv8 quantized to QDQ
(``/model.3/conv/Conv``, 3x3 stride 2 pad 1 on 1x32x80x80; output row 33 reads rows 65..67).

    python benchmarks/qdq_conv_bands.py /tmp/padops/320n_qdq.onnx --trials 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--x", default="/model.2/cv2/act/Mul_output_0_QuantizeLinear_Output", help="int8 operand")
    ap.add_argument("--y", default="/model.3/conv/Conv_output_0_QuantizeLinear_Output", help="int8 result")
    ap.add_argument("--shape", default="1,32,80,80")
    ap.add_argument("--rows", default="65,68", help="operand rows lo,hi of the band")
    ap.add_argument("--out-row", type=int, default=33)
    ap.add_argument("--trials", type=int, default=300)
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    from onnx import utils

    shape = [int(v) for v in args.shape.split(",")]
    lo, hi = (int(v) for v in args.rows.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "sub.onnx"
        utils.extract_model(args.model, str(sub), [args.x], [args.y])
        m = onnx.load(sub)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # as the simulator runs nodes
    whole = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    for a in conv.attribute:
        if a.name == "pads":
            a.ints[:] = [0, a.ints[1], 0, a.ints[3]]
    band = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = m.graph.input[0].name
    rng = np.random.default_rng(0)
    flips = total = worst = 0
    for _ in range(args.trials):
        xv = rng.integers(-128, 128, shape).astype(np.int8)
        yw = whole.run(None, {name: xv})[0][:, :, args.out_row:args.out_row + 1, :].astype(np.int64)
        yb = band.run(None, {name: np.ascontiguousarray(xv[:, :, lo:hi, :])})[0].astype(np.int64)
        d = np.abs(yw - yb)
        flips += int((d > 0).sum())
        total += d.size
        worst = max(worst, int(d.max()))
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {Path(args.model).name}; {conv.name}: "
          f"{flips} of {total:,} int8 values of output row {args.out_row} differ between the whole Conv and "
          f"the band of rows [{lo}, {hi}) (largest difference {worst} step{'s' if worst != 1 else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
