"""Regenerate the int8 ``.tflite`` models in ``models/tflite/`` (needs TensorFlow; the tests do not).

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0
    /tmp/tfvenv/bin/python models/make_tflite.py            # writes models/tflite/*.tflite

Each model is a ``keras.applications`` network with seeded random weights (the machines here
cannot download ImageNet weights, and planning needs none: sizes and structure are what
count), converted by TFLite's converter with full-integer quantization (int8 activations,
weights, input and output; int32 biases) calibrated on 8 seeded random images.  This is the
ordinary path a TFLite user takes, so the files are what Arm Vela and TFLite-Micro are given.

* ``mobilenet_v2_int8.tflite``: MobileNetV2 1.0, 224x224 (the ONNX twins are
  ``models/int8/mobilenet_v2_int8_{qop,qdq}.onnx``);
* ``mobilenet_v3_small_int8.tflite``: MobileNetV3-Small 1.0, 224x224 (hard-swish, squeeze and
  excitation: ``HARD_SWISH``, ``MUL``, ``MEAN`` besides the convolutions).

The converter's output is deterministic for a given TensorFlow version, seed and input; pin
tensorflow-cpu 2.21.0 to reproduce the files byte for byte.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "tflite"
SEED = 0
CALIBRATION_IMAGES = 8


def _models() -> dict[str, Callable[[], object]]:
    import tensorflow as tf

    apps = tf.keras.applications
    return {
        "mobilenet_v2_int8": lambda: apps.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None,
                                                      classes=1000),
        "mobilenet_v3_small_int8": lambda: apps.MobileNetV3Small(input_shape=(224, 224, 3), alpha=1.0,
                                                                 weights=None, classes=1000,
                                                                 include_preprocessing=False),
    }


def convert(build: Callable[[], object]) -> bytes:
    """Full-integer int8 conversion of the Keras model ``build()`` makes (seeded weights)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    model = build()
    rng = np.random.default_rng(SEED)

    def representative() -> Iterator[list[np.ndarray]]:
        for _ in range(CALIBRATION_IMAGES):
            yield [rng.uniform(-1.0, 1.0, (1, 224, 224, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="models to build (default: all)")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    models = _models()
    for name in args.names or sorted(models):
        data = convert(models[name])
        path = OUT / f"{name}.tflite"
        path.write_bytes(data)
        print(f"wrote {path.relative_to(HERE.parent)} ({len(data):,} bytes)")


if __name__ == "__main__":
    main()
