"""Hand-checked sizes, buffers, lifetimes, peak and M_R on tiny graphs."""

from __future__ import annotations

from stowage.ir.graph import TensorKind
from stowage.ir.lifetimes import lifetimes, m_r, peak_live
from stowage.ir.onnx_import import import_model
from tests.helpers import chain_model, diamond_model


def test_chain_sizes_and_lifetimes():
    g = import_model(chain_model(3, 16))
    assert [op.name for op in g.computing_ops] == ["relu0", "relu1", "relu2"]
    assert all(b.bytes == 64 for b in g.buffers)  # 16 float32
    lt = lifetimes(g)
    # x live [0,0], t0 [0,1], t1 [1,2], y [2,2]: 128 B at every step.
    assert lt.live_bytes == (128, 128, 128)
    assert m_r(g) == 128


def test_diamond_view_shares_buffer_and_weights():
    g = import_model(diamond_model())
    assert g.tensor_buffer["c"] == g.tensor_buffer["r"]  # Reshape is a view
    assert [op.op_type for op in g.computing_ops] == ["Relu", "Sigmoid", "Add", "Mul"]
    assert g.buffers[g.tensor_buffer["W"]].kind is TensorKind.WEIGHT
    # Order relu, sig, add, mul.  Without weights: step0 x,a =64; step1 x,a,b =96 ...
    lt = lifetimes(g, weights_in_compute_level=False)
    assert lt.live_bytes == (64, 96, 96, 96)
    # With weights W (32 B) joins at step 2 (Add): a, b, W, c = 128.
    assert peak_live(g, weights_in_compute_level=True) == 128
    # M_R: Add reads a, W and writes c = 96 with weights, 64 without; Mul: b, r, y = 96.
    assert m_r(g, weights_in_compute_level=True) == 96
    assert m_r(g, weights_in_compute_level=False) == 96


def test_element_bytes_override():
    g = import_model(chain_model(2, 16), element_bytes=1)
    assert all(b.bytes == 16 for b in g.buffers)
