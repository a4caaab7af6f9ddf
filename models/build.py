"""Regenerate the model suite from code, with no network.

Every network in ``models/suite.toml`` is a real architecture (torchvision, pytorchcv, or a
small torch definition in this file) with seeded random weights: memory plans depend on the
graph and tensor shapes, never on weight values.  Each is exported to ONNX at batch 1 and
saved *graph only*: weights go to an external-data file that is then deleted, so the
committed ``.onnx`` stays small and imports through the importer's graph-only path.

``--tiny`` writes ``models/tiny_cnn.onnx``: a ~20-operator CNN built with ``onnx.helper``,
weights included, for fast tests and the README quick start (needs only onnx and numpy).

Usage::

    python models/build.py --tiny                 # tiny_cnn.onnx (no torch needed)
    python models/build.py                        # every suite model (needs `pip install .[models]`)
    python models/build.py resnet50 darts         # some of them
    python models/build.py --list

Installing the builder's dependencies (see README.md): ``pip install torch==2.13.0`` (local
CPU wheel), ``pip install --no-deps torchvision==0.28.0 pytorchcv``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

log = logging.getLogger("models.build")

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "suite.toml"
TINY_PATH = HERE / "tiny_cnn.onnx"
OPSET = 17
SEED = 0


# ---------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuiteModel:
    name: str
    file: str
    group: str
    input: tuple[int, ...]
    source: str
    notes: str

    @property
    def path(self) -> Path:
        return HERE / self.file


def load_manifest(path: Path = MANIFEST) -> list[SuiteModel]:
    """The suite as listed in ``suite.toml`` (also used by the benchmark and the tests)."""
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    models = []
    for entry in raw.get("model", []):
        models.append(SuiteModel(
            name=entry["name"], file=entry["file"], group=entry["group"],
            input=tuple(int(d) for d in entry["input"]), source=entry.get("source", ""),
            notes=entry.get("notes", ""),
        ))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate model names")
    return models


# ---------------------------------------------------------------------------------------
# The tiny CNN (onnx.helper, weights included)
# ---------------------------------------------------------------------------------------
def build_tiny_cnn(path: Path = TINY_PATH, seed: int = SEED) -> Path:
    """A 1x3x32x32 CNN (~26 operators) with a gating branch, a residual add with a 1x1
    projection and a two-branch concat: enough structure for orders and spills to matter,
    small enough to plan exactly in a test."""
    rng = np.random.default_rng(seed)
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, shape: tuple[int, ...]) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        arr = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def conv(name: str, x: str, cin: int, cout: int, k: int = 3, relu: bool = True, stride: int = 1) -> str:
        w = weight(f"{name}.weight", (cout, cin, k, k))
        b = weight(f"{name}.bias", (cout,))
        out = f"{name}_out"
        nodes.append(helper.make_node("Conv", [x, w, b], [out], name=name,
                                      kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride]))
        if not relu:
            return out
        nodes.append(helper.make_node("Relu", [out], [f"{name}_relu"], name=f"{name}_relu"))
        return f"{name}_relu"

    def op(op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op_type, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    stem = conv("stem", "image", 3, 4)                                  # 4x32x32
    # Squeeze-excitation-style gate computed at half resolution: the full-resolution stem
    # output stays live across the whole branch, so the peak (~3 x 4 KiB at 1-byte elements)
    # exceeds M_R (~8 KiB) and plans at M_R must spill.
    g1 = conv("gate_conv1", stem, 4, 16, stride=2)                      # 16x16x16
    g2 = conv("gate_conv2", g1, 16, 16)
    gp = op("GlobalAveragePool", [g2], "gate_gap")
    gf = conv("gate_fc", gp, 16, 4, k=1, relu=False)
    gs = op("Sigmoid", [gf], "gate_sigmoid")                            # 4x1x1
    sc = op("Mul", [stem, gs], "gate_scale")                            # 4x32x32
    p1 = op("MaxPool", [sc], "pool1", kernel_shape=[2, 2], strides=[2, 2])  # 4x16x16
    c3 = conv("block_conv1", p1, 4, 8)
    c4 = conv("block_conv2", c3, 8, 8, relu=False)
    proj = conv("block_proj", p1, 4, 8, k=1, relu=False)
    a2 = op("Add", [c4, proj], "block_add")
    r2 = op("Relu", [a2], "block_relu")                                 # 8x16x16
    p2 = op("MaxPool", [r2], "pool2", kernel_shape=[2, 2], strides=[2, 2])  # 8x8x8
    b1 = conv("head_branch1", p2, 8, 16, k=1)
    b2 = conv("head_branch3", p2, 8, 16, k=3)
    cat = op("Concat", [b1, b2], "head_concat", axis=1)                 # 32x8x8
    gap = op("GlobalAveragePool", [cat], "head_gap")
    flat = op("Flatten", [gap], "head_flatten", axis=1)
    fc_w = weight("fc.weight", (10, 32))
    fc_b = weight("fc.bias", (10,))
    nodes.append(helper.make_node("Gemm", [flat, fc_w, fc_b], ["logits"], name="fc", transB=1))

    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="stowage-models-build")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    _save_atomic(model, path)
    return path


def _save_atomic(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Torch definitions that no installed package provides
# ---------------------------------------------------------------------------------------
def _torch_defs() -> dict[str, Callable[[], Any]]:
    import torch
    from torch import nn

    class EncoderLayer(nn.Module):
        """Post-LN BERT layer written with explicit matmuls so the exported graph shows every
        activation (fused attention kernels would hide them)."""

        def __init__(self, hidden: int, heads: int, ffn: int, causal_len: int | None = None,
                     pre_ln: bool = False) -> None:
            super().__init__()
            self.heads, self.hd, self.pre_ln = heads, hidden // heads, pre_ln
            self.qkv = nn.Linear(hidden, 3 * hidden)
            self.proj = nn.Linear(hidden, hidden)
            self.ln1 = nn.LayerNorm(hidden)
            self.ln2 = nn.LayerNorm(hidden)
            self.fc1 = nn.Linear(hidden, ffn)
            self.fc2 = nn.Linear(ffn, hidden)
            self.act = nn.GELU()
            if causal_len is not None:
                mask = torch.full((causal_len, causal_len), float("-inf")).triu(1)
                self.register_buffer("mask", mask, persistent=False)
            else:
                self.mask = None

        def attention(self, x: torch.Tensor) -> torch.Tensor:
            b, s, h = x.shape
            q, k, v = self.qkv(x).split(h, dim=-1)
            q = q.reshape(b, s, self.heads, self.hd).transpose(1, 2)
            k = k.reshape(b, s, self.heads, self.hd).transpose(1, 2)
            v = v.reshape(b, s, self.heads, self.hd).transpose(1, 2)
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.hd)
            if self.mask is not None:
                scores = scores + self.mask
            ctx = scores.softmax(-1) @ v
            return self.proj(ctx.transpose(1, 2).reshape(b, s, h))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.pre_ln:
                x = x + self.attention(self.ln1(x))
                return x + self.fc2(self.act(self.fc1(self.ln2(x))))
            x = self.ln1(x + self.attention(x))
            return self.ln2(x + self.fc2(self.act(self.fc1(x))))

    class BertBase(nn.Module):
        def __init__(self, seq: int = 128, vocab: int = 30522, hidden: int = 768, layers: int = 12,
                     heads: int = 12, ffn: int = 3072) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab, hidden)
            self.pos = nn.Parameter(torch.randn(1, seq, hidden) * 0.02)
            self.ln = nn.LayerNorm(hidden)
            self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn) for _ in range(layers))
            self.pool = nn.Linear(hidden, hidden)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.ln(self.tok(ids) + self.pos)
            for layer in self.layers:
                x = layer(x)
            return torch.tanh(self.pool(x[:, 0]))

    class Gpt2Small(nn.Module):
        def __init__(self, seq: int = 128, vocab: int = 50257, hidden: int = 768, layers: int = 12,
                     heads: int = 12) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab, hidden)
            self.pos = nn.Parameter(torch.randn(1, seq, hidden) * 0.02)
            self.layers = nn.ModuleList(
                EncoderLayer(hidden, heads, 4 * hidden, causal_len=seq, pre_ln=True) for _ in range(layers))
            self.ln_f = nn.LayerNorm(hidden)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.tok(ids) + self.pos
            for layer in self.layers:
                x = layer(x)
            return self.ln_f(x) @ self.tok.weight.t()   # tied LM head

    class TransformerED(nn.Module):
        """torch.nn.Transformer, the 'Attention is all you need' base configuration."""

        def __init__(self) -> None:
            super().__init__()
            self.t = nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                                    dim_feedforward=2048, dropout=0.0, batch_first=True)

        def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            return self.t(src, tgt)

    class OutOnly(nn.Module):
        """Segmentation models return a dict; export only its 'out' entry."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)["out"]

    return {"BertBase": BertBase, "Gpt2Small": Gpt2Small, "TransformerED": TransformerED,
            "OutOnly": OutOnly}


def _import_torchvision() -> Any:
    """torchvision 0.28's wheel is a CUDA build whose C++ ops do not load against the CPU torch;
    its Python side registers fake kernels for ``nms``/``qnms``, which fails unless the
    operator schemas exist.  Defining them first makes the pure-Python models importable."""
    import torch

    for op in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{op}",
                                 "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # already defined (real C++ ops loaded, or defined earlier in this process)
    import torchvision

    return torchvision


def _factory(name: str) -> Callable[[], Any]:
    """The nn.Module constructor for a suite model name."""
    def tv(attr: str, **kw: Any) -> Callable[[], Any]:
        def make() -> Any:
            models = _import_torchvision().models
            obj: Any = models
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj(weights=None, **kw)
        return make

    def seg(attr: str, **kw: Any) -> Callable[[], Any]:
        def make() -> Any:
            return _torch_defs()["OutOnly"](tv(attr, weights_backbone=None, **kw)())
        return make

    def cv(module: str, fn: str, **kw: Any) -> Callable[[], Any]:
        def make() -> Any:
            import importlib

            return getattr(importlib.import_module(f"pytorchcv.models.{module}"), fn)(pretrained=False, **kw)
        return make

    def local(cls: str) -> Callable[[], Any]:
        return lambda: _torch_defs()[cls]()

    table: dict[str, Callable[[], Any]] = {
        "resnet50": tv("resnet50"),
        "densenet121": tv("densenet121"),
        "resnext50": tv("resnext50_32x4d"),
        "r2plus1d_18": tv("video.r2plus1d_18"),
        "s3d": tv("video.s3d"),
        "fcn_resnet50": seg("segmentation.fcn_resnet50", aux_loss=False),
        "lraspp_mobilenet_v3": seg("segmentation.lraspp_mobilenet_v3_large"),
        "deeplabv3_resnet50": seg("segmentation.deeplabv3_resnet50", aux_loss=False),
        "transformer": local("TransformerED"),
        "vit_b_16": tv("vit_b_16"),
        "pnasnet5": cv("pnasnet", "pnasnet5large"),
        "nasnet_a": cv("nasnet", "nasnet_4a1056"),
        "darts": cv("darts", "darts"),
        "mobilenet_v2": tv("mobilenet_v2"),
        "efficientnet_b0": tv("efficientnet_b0"),
        "bert_base": local("BertBase"),
        "gpt2_small": local("Gpt2Small"),
    }
    if name not in table:
        raise KeyError(f"no builder for suite model '{name}'")
    return table[name]


def _example_inputs(m: SuiteModel) -> tuple[Any, ...]:
    import torch

    g = torch.Generator().manual_seed(SEED)
    if m.name in ("bert_base", "gpt2_small"):
        return (torch.randint(0, 1000, m.input, generator=g),)
    if m.name == "transformer":
        return (torch.randn(m.input, generator=g), torch.randn(m.input, generator=g))
    return (torch.randn(m.input, generator=g),)


def _input_names(m: SuiteModel) -> list[str]:
    if m.name == "transformer":
        return ["src", "tgt"]
    if m.name in ("bert_base", "gpt2_small"):
        return ["input_ids"]
    return ["input"]


def strip_weights(model: onnx.ModelProto, data_name: str) -> onnx.ModelProto:
    """Move every initializer (> 1 KiB) to external data named ``data_name`` and return the
    graph-only proto; the caller never writes the data file.  Small tensors (shapes, scales)
    stay inline because shape inference needs their values."""
    from onnx.external_data_helper import convert_model_to_external_data

    with tempfile.TemporaryDirectory() as tmp:
        # convert_model_to_external_data only rewrites the protos; saving writes the data
        # file, which we save into a throwaway folder and drop.
        convert_model_to_external_data(model, all_tensors_to_one_file=True, location=data_name,
                                       size_threshold=1024)
        onnx.save_model(model, os.path.join(tmp, "graph.onnx"))
        return onnx.load_model(os.path.join(tmp, "graph.onnx"), load_external_data=False)


def _fold_constants(path: str, tmp: str) -> str:
    """Fold shape arithmetic into constants with onnxruntime's *basic* optimisations (standard
    ONNX ops only: constant folding, redundant-node elimination).  The legacy exporter writes
    attention reshapes as Shape -> Mod -> Slice chains that onnx's data propagation cannot
    resolve; once the weights are stripped nobody could fold them any more."""
    import onnxruntime as ort

    out = os.path.join(tmp, "folded.onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = out
    opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", "folded.data")
    opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return out


def export_model(m: SuiteModel) -> Path:
    """Export one suite model to ``m.path`` graph-only and return the path."""
    import torch

    torch.manual_seed(SEED)
    module = _factory(m.name)()
    module.eval()
    args = _example_inputs(m)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "full.onnx")
        # Grad stays enabled on purpose: nn.MultiheadAttention's fused inference fast path
        # (taken under no_grad) would export as one opaque node hiding the attention tensors.
        torch.onnx.export(module, args, raw, dynamo=False, opset_version=OPSET,
                          input_names=_input_names(m), output_names=["output"],
                          do_constant_folding=True)
        model = onnx.load_model(_fold_constants(raw, tmp), load_external_data=True)
    model.graph.name = m.name
    model.producer_name = "stowage-models-build"
    graph_only = strip_weights(model, f"{Path(m.file).stem}.weights.bin")
    _save_atomic(graph_only, m.path)
    log.info("%s: %d nodes, %.1f KiB", m.name, len(graph_only.graph.node), m.path.stat().st_size / 1024)
    return m.path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="suite model names (default: all)")
    p.add_argument("--tiny", action="store_true", help="write models/tiny_cnn.onnx only")
    p.add_argument("--list", action="store_true", help="list the suite and exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.tiny:
        path = build_tiny_cnn()
        print(f"wrote {path} ({path.stat().st_size} bytes)")
        return 0
    suite = load_manifest()
    if args.list:
        for m in suite:
            print(f"{m.name:22} {m.group:6} {'x'.join(map(str, m.input)):16} {m.source}")
        return 0
    known = {m.name: m for m in suite}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        p.error(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(known)}")
    failed = []
    for m in [known[n] for n in args.names] if args.names else suite:
        try:
            path = export_model(m)
            print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size / 1024:.0f} KiB)")
        except Exception as exc:  # noqa: BLE001 - report every failing model, keep building the others
            log.error("%s: export failed: %s", m.name, exc)
            failed.append(m.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
