"""Static QDQ quantization of a float ONNX model with random calibration data (onnxruntime's
tool), to make a QDQ int8 model for the row-map benchmarks (``benchmarks/row_map_ops.py``):
QDQ format, QInt8 activations and weights, per-tensor scales, 4 uniform [0, 1) inputs of the
given shape (seed 0).

    python benchmarks/quantize_qdq.py /tmp/wheels/x_nudenet/nudenet/320n.onnx /tmp/padops/320n_qdq.onnx 1,3,320,320
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("quantize_qdq")


def main(argv: list[str]) -> int:
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = argv[0], argv[1]
    shape = tuple(int(v) for v in argv[2].split(","))

    class Random(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            name = onnx.load(src).graph.input[0].name
            rng = np.random.default_rng(0)
            self.data = iter([{name: rng.random(shape, dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.data, None)

    pre = dst + ".pre.onnx"
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    quantize_static(pre, dst, Random(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=False)
    logging.basicConfig(level=logging.INFO)
    log.info("wrote %s", dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
