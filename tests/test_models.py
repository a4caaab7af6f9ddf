"""The committed model suite and the tiny CNN: every graph imports, the manifest matches the
files, suite files are graph-only, and tiny_cnn carries its weights and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from models.build import HERE, TINY_PATH, build_tiny_cnn, load_manifest
from stowage.ir.lifetimes import m_r, peak_live
from stowage.ir.onnx_import import load_graph

SUITE = load_manifest()
GROUPS = {"cosma", "nas", "extra"}


def test_manifest_lists_the_cosma_networks_and_files_exist():
    names = {m.name for m in SUITE}
    assert {"resnet50", "densenet121", "resnext50", "r2plus1d_18", "s3d", "fcn_resnet50", "lraspp_mobilenet_v3",
            "deeplabv3_resnet50", "transformer", "vit_b_16"} <= {m.name for m in SUITE if m.group == "cosma"}
    assert {"pnasnet5", "nasnet_a", "darts"} <= {m.name for m in SUITE if m.group == "nas"}
    assert {m.group for m in SUITE} <= GROUPS
    assert len(names) == len(SUITE)
    for m in SUITE:
        assert m.path.exists(), f"{m.file} missing: run python models/build.py {m.name}"
        assert m.input[0] == 1, "batch 1"
    committed = {p.name for p in (HERE / "suite").glob("*.onnx")}
    assert committed == {Path(m.file).name for m in SUITE}


@pytest.mark.parametrize("m", SUITE, ids=lambda m: m.name)
def test_suite_model_is_graph_only_and_imports(m):
    proto = onnx.load_model(m.path, load_external_data=False)
    external = [t for t in proto.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert external, "weights are stored as external data"
    assert not list(m.path.parent.glob("*.weights.bin")), "weight data is never committed"
    assert m.path.stat().st_size < 1_000_000
    graph = load_graph(m.path, element_bytes=1)
    assert len(graph.computing_ops) > 20
    first_input = graph.tensors[graph.inputs[0]]
    assert first_input.shape == m.input
    # M_R never exceeds the peak live bytes of any order (here: file order).
    assert 0 < m_r(graph, False) <= peak_live(graph, None, False)


def test_tiny_cnn_has_weights_and_runs_in_onnxruntime():
    proto = onnx.load_model(TINY_PATH)
    assert all(t.data_location != TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert TINY_PATH.stat().st_size < 100_000
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (logits,) = ort.InferenceSession(str(TINY_PATH)).run(None, {"image": x})
    assert logits.shape == (1, 10) and np.isfinite(logits).all() and np.abs(logits).sum() > 0


def test_tiny_cnn_memory_figures():
    """Hand-checked at 1-byte elements: the gate_scale Mul reads the 4x32x32 stem output (4096 B)
    and the 4-byte gate and writes 4096 B -> M_R = 8196; during the gate branch the stem output,
    gate_conv1's and gate_conv2's 16x16x16 outputs (4096 B each) are live -> peak 12288 > M_R,
    so plans at M_R must spill."""
    g = load_graph(TINY_PATH, element_bytes=1)
    assert len(g.computing_ops) == 25
    assert m_r(g, False) == 8196
    assert peak_live(g, None, False) == 12288


def test_tiny_cnn_build_is_deterministic(tmp_path):
    out = build_tiny_cnn(tmp_path / "tiny.onnx")
    assert out.read_bytes() == TINY_PATH.read_bytes()
