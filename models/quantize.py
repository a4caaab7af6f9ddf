"""Regenerate the int8 models (``models/int8/``, listed in ``models/int8.toml``), with no network.

Each source model (a graph-only suite model, or the tiny CNN with its weights) gets every
missing initializer filled with seeded random data of its dtype and shape (float weights
``N(0, sqrt(2 / fan_in))``, He initialisation, so that activations stay in range), and is then
quantized by onnxruntime's own tool, ``onnxruntime.quantization.quantize_static``:

* static quantization, MinMax calibration on a few seeded ``N(0, 1)`` inputs (calibrated once
  per model; both forms reuse the same ranges, so their scales are identical);
* per-tensor (``per_channel=False``: every scale and zero point is a scalar);
* activations and weights ``QInt8`` (ONNX Runtime's CPU kernels run s8s8 ``QLinearConv``,
  ``QGemm``, ``QLinearAdd`` ... natively); asymmetric activations (the tool's default), so
  ``Relu`` / ``Clip`` after a quantized op are folded into that op's output range;
* two forms: ``QOperator`` (``QLinearConv``, ``QLinearAdd``, ``QGemm`` ...; the ``QLinear*``
  ops other than Conv/MatMul are ``com.microsoft`` ops) and ``QDQ`` (float ops between
  ``QuantizeLinear`` / ``DequantizeLinear`` pairs).

The QOperator form's ``com.microsoft`` ops have no onnx schema and no rule in onnxruntime's
symbolic shape inference (except QLinearAdd/QLinearMul), so the dtype and shape of their
results, measured by running the quantized model once, are written into ``value_info``.

Suite-derived models are saved *graph only*, like the suite: every initializer over 1 KiB
(int8 weights, int32 biases) points at ``<name>.weights.bin``, which is never written.  The
importer needs no weight data; the simulator fills absent initializers with seeded random
values of the right dtype.  ``tiny_cnn_int8_*`` keep their real quantized weights (a few KiB).

Usage (from the repository root)::

    python models/quantize.py                    # every model of int8.toml
    python models/quantize.py mobilenet_v2       # the files of some sources
    python models/quantize.py --list

Needs onnx, onnxruntime and numpy only (no torch).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

log = logging.getLogger("models.quantize")

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "int8.toml"
OUT_DIR = HERE / "int8"
SEED = 0
CALIBRATION_SAMPLES = 4
# Initializers above this size are stripped from suite-derived models (as build.py does).
STRIP_THRESHOLD = 1024


# ---------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8Model:
    name: str
    file: str
    form: str             # "qop" (QOperator) or "qdq"
    source: str           # suite model name, or "tiny_cnn"
    source_file: str      # relative to models/
    graph_only: bool
    activation_type: str
    weight_type: str
    per_channel: bool
    calibration: str
    calibration_samples: int
    seed: int
    float_ops: tuple[str, ...]
    notes: str

    @property
    def path(self) -> Path:
        return HERE / self.file

    @property
    def source_path(self) -> Path:
        return HERE / self.source_file


def load_int8_manifest(path: Path = MANIFEST) -> list[Int8Model]:
    """The int8 models as listed in ``int8.toml`` (the tests read it too)."""
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    q = raw.get("quantization", {})
    models = []
    for e in raw.get("model", []):
        models.append(Int8Model(
            name=e["name"], file=e["file"], form=e["form"], source=e["source"], source_file=e["source_file"],
            graph_only=bool(e.get("graph_only", True)),
            activation_type=e.get("activation_type", q.get("activation_type", "QInt8")),
            weight_type=e.get("weight_type", q.get("weight_type", "QInt8")),
            per_channel=bool(e.get("per_channel", q.get("per_channel", False))),
            calibration=e.get("calibration", q.get("calibration", "MinMax")),
            calibration_samples=int(e.get("calibration_samples", q.get("calibration_samples", CALIBRATION_SAMPLES))),
            seed=int(e.get("seed", q.get("seed", SEED))),
            float_ops=tuple(e.get("float_ops", ())),
            notes=e.get("notes", ""),
        ))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate model names")
    bad = [m.name for m in models if m.form not in ("qop", "qdq")]
    if bad:
        raise ValueError(f"{path}: form must be 'qop' or 'qdq' ({', '.join(bad)})")
    return models


# ---------------------------------------------------------------------------------------
# Filling the missing weights
# ---------------------------------------------------------------------------------------
def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    out: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                out.setdefault(name, []).append((node, i))
    return out


def _fan_in(shape: tuple[int, ...], uses: list[tuple[onnx.NodeProto, int]]) -> int:
    """Inputs per output of a weight: Conv [Cout, Cin/g, k...] -> Cin/g * k...; Gemm B with
    transB=1 [N, K] -> K, else [K, N] -> K; MatMul B [..., K, N] -> K."""
    for node, idx in uses:
        if node.op_type == "Gemm" and idx == 1:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            return shape[1] if trans_b else shape[0]
        if node.op_type == "MatMul" and idx == 1 and len(shape) >= 2:
            return shape[-2]
        if node.op_type == "ConvTranspose" and idx == 1:
            return shape[0] * math.prod(shape[2:])
    return math.prod(shape[1:]) if len(shape) > 1 else 1


def _fill_value(rng: np.random.Generator, t: TensorProto, uses: list[tuple[onnx.NodeProto, int]]) -> np.ndarray:
    dt = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    shape = tuple(int(d) for d in t.dims)
    if dt.kind != "f":
        raise ValueError(f"initializer '{t.name}' ({dt}, shape {list(shape)}) has no data and is not float: "
                         "no rule to invent it")
    bn = next((i for node, i in uses if node.op_type == "BatchNormalization"), None)
    if bn == 1:     # scale
        arr = 1.0 + 0.1 * rng.standard_normal(shape)
    elif bn == 4:   # variance: positive
        arr = 1.0 + 0.1 * np.abs(rng.standard_normal(shape))
    elif bn is not None:  # bias, mean
        arr = 0.1 * rng.standard_normal(shape)
    elif len(shape) >= 2:
        arr = rng.standard_normal(shape) * math.sqrt(2.0 / max(1, _fan_in(shape, uses)))
    else:           # biases and other vectors: small
        arr = 0.01 * rng.standard_normal(shape)
    return arr.astype(dt)


def fill_missing_weights(model: onnx.ModelProto, base_dir: Path, seed: int) -> int:
    """Give every initializer whose external data file is absent seeded random data, inline.
    Returns how many were filled."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    rng = np.random.default_rng(seed)
    uses = _consumers(model.graph)
    filled = 0
    for t in model.graph.initializer:
        if not uses_external_data(t):
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        if (base_dir / location).is_file():
            load_external_data_for_tensor(t, str(base_dir))
            t.data_location = TensorProto.DEFAULT
            del t.external_data[:]
            continue
        t.CopyFrom(numpy_helper.from_array(_fill_value(rng, t, uses.get(t.name, [])), t.name))
        filled += 1
    return filled


# ---------------------------------------------------------------------------------------
# Calibration data and quantization
# ---------------------------------------------------------------------------------------
def _input_specs(model: onnx.ModelProto) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim)
        specs.append((vi.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))))
    return specs


def _reader(model: onnx.ModelProto, samples: int, seed: int) -> Any:
    """A CalibrationDataReader yielding ``samples`` seeded N(0, 1) inputs."""
    from onnxruntime.quantization import CalibrationDataReader

    specs = _input_specs(model)

    class RandomReader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(seed)
            self._data = [{n: rng.standard_normal(s).astype(dt) for n, s, dt in specs} for _ in range(samples)]
            self._it = iter(self._data)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(self._data)

    return RandomReader()


def strip_weights(model: onnx.ModelProto, data_name: str) -> onnx.ModelProto:
    """Move every initializer over 1 KiB to external data ``data_name`` that is never kept
    (the same as models/build.py's ``strip_weights``); scales and zero points stay inline."""
    from onnx.external_data_helper import convert_model_to_external_data

    with tempfile.TemporaryDirectory() as tmp:
        convert_model_to_external_data(model, all_tensors_to_one_file=True, location=data_name,
                                       size_threshold=STRIP_THRESHOLD)
        onnx.save_model(model, os.path.join(tmp, "graph.onnx"))
        return onnx.load_model(os.path.join(tmp, "graph.onnx"), load_external_data=False)


def _save_atomic(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)


def quantize_source(entries: list[Int8Model], dest: Path | None = None) -> list[Path]:
    """Quantize one source model into every form its manifest entries ask for; the files go
    to their manifest paths, or into the folder ``dest``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    first = entries[0]
    if any((e.source, e.seed, e.calibration, e.calibration_samples, e.activation_type, e.weight_type,
            e.per_channel) != (first.source, first.seed, first.calibration, first.calibration_samples,
                               first.activation_type, first.weight_type, first.per_channel) for e in entries):
        raise ValueError(f"{first.source}: the entries of one source must share their quantization settings")
    src = onnx.load_model(first.source_path, load_external_data=False)
    filled = fill_missing_weights(src, first.source_path.parent, first.seed)
    log.info("%s: %d initializers filled with seeded random data", first.source, filled)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        onnx.save_model(src, float_path)
        cache = Path(tmp) / "calibration.json"
        for e in entries:
            out = Path(tmp) / f"{e.name}.onnx"
            quantize_static(
                str(float_path), str(out), _reader(src, e.calibration_samples, e.seed),
                quant_format=QuantFormat.QOperator if e.form == "qop" else QuantFormat.QDQ,
                per_channel=e.per_channel,
                activation_type=getattr(QuantType, e.activation_type),
                weight_type=getattr(QuantType, e.weight_type),
                calibrate_method=getattr(CalibrationMethod, e.calibration),
                calibration_cache_path=str(cache),
            )
            q = onnx.load_model(out, load_external_data=True)
            q.graph.name = e.name
            q.producer_name = "stowage-models-quantize"
            del q.metadata_props[:]
            for k, v in (("source", e.source), ("form", e.form), ("activation_type", e.activation_type),
                         ("weight_type", e.weight_type), ("per_channel", str(e.per_channel)),
                         ("calibration", f"{e.calibration}, {e.calibration_samples} samples, seed {e.seed}")):
                q.metadata_props.add(key=k, value=v)
            _annotate_shapes(q, src)
            if e.graph_only:
                q = strip_weights(q, f"{Path(e.file).stem}.weights.bin")
            path = e.path if dest is None else dest / Path(e.file).name
            _save_atomic(q, path)
            log.info("%s: %d nodes, %.1f KiB", e.name, len(q.graph.node), path.stat().st_size / 1024)
            written.append(path)
    return written


def _annotate_shapes(q: onnx.ModelProto, src: onnx.ModelProto) -> None:
    """Run the quantized model (with its weights) in onnxruntime on a random input and write
    the dtype and shape of intermediate tensors into ``value_info``.

    Only the results of non-standard-domain ops are written; onnx's shape inference (which
    the importer runs) derives everything downstream from them.  Needed by the QOperator form:
    onnx has no schemas for the ``com.microsoft`` ops and onnxruntime's symbolic shape
    inference has no rule for ``QLinearGlobalAveragePool``, ``QLinearSigmoid``,
    ``QLinearConcat``, ``QGemm`` ..., so without it the importer cannot resolve their output
    shapes (it takes them from ``value_info``).  Also checks that the model runs and that its
    float outputs are finite."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(q)
    graph_outputs = [o.name for o in q.graph.output]
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in graph_outputs:
                probe.graph.output.add().name = name
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feed = {n: rng.standard_normal(s).astype(dt) for n, s, dt in _input_specs(src)}
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, feed)))
    if not all(np.isfinite(values[n]).all() for n in graph_outputs if values[n].dtype.kind == "f"):
        raise RuntimeError(f"{q.graph.name}: non-finite outputs")
    wanted = [o for n in q.graph.node if n.domain not in ("", "ai.onnx") for o in n.output
              if o and o not in graph_outputs]
    del q.graph.value_info[:]
    for name in wanted:
        a = values[name]
        q.graph.value_info.append(
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="*", help="source model names (default: all of int8.toml)")
    p.add_argument("--list", action="store_true", help="list the int8 models and exit")
    args = p.parse_args(argv)
    # onnxruntime's quantizer logs every bias copy on the root logger at INFO: keep it quiet.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    manifest = load_int8_manifest()
    if args.list:
        for m in manifest:
            print(f"{m.name:32} {m.form:4} {m.source:22} {m.file}")
        return 0
    by_source: dict[str, list[Int8Model]] = {}
    for m in manifest:
        by_source.setdefault(m.source, []).append(m)
    unknown = [s for s in args.sources if s not in by_source]
    if unknown:
        p.error(f"unknown source(s): {', '.join(unknown)}; known: {', '.join(by_source)}")
    for source in args.sources or list(by_source):
        for path in quantize_source(by_source[source]):
            print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
