"""The design notes' MobileNetV2 row model (``benchmarks/mbv2_row_model.py``): its reference
accounting reproduces issue 12's goal figures, the corrected one pays what the same plan
really moves, and its own least plan at 64 KiB pays the goal's figure in full.  The sums are
hand-checked from tensor sizes (8-bit): 56x56x24 = 75,264 B, 28x28x32 = 25,088 B, 14x14x64 =
12,544 B, 14x14x96 = 18,816 B."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mbv2_row_model", ROOT / "benchmarks" / "mbv2_row_model.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mbv2_row_model"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_reference_reproduces_the_goals_and_the_corrected_accounting_pays_every_byte() -> None:
    mod = _script()
    m = mod.RowModel(ROOT / "models" / "suite" / "mobilenet_v2.onnx")
    assert m.n == 64
    ref128 = m.reference(128 * 1024)
    assert ref128.traffic == 150_528 == 2 * 75_264
    ref = m.reference(64 * 1024)
    # 56x56x24 after block 3, 14x14x64 after block 7, and block 12's 14x14x96 (twice each).
    assert ref.traffic == 213_248 == 2 * (75_264 + 12_544 + 18_816)
    # Its last DRAM cut also crosses block 11's 14x14x96 result (made before the segment,
    # read by block 12's Add after the cut): written and read once more when paid.
    big = [c for c in ref.cuts if len(c.sent) == 2]
    assert len(big) == 1 and {m.shape(t) for t in big[0].sent} == {(1, 96, 14, 14)}
    paid, parts = m.corrected_cost(ref.cuts)
    assert paid == 250_880 == 213_248 + 2 * 18_816
    assert all(pk <= 64 * 1024 for pk, _ in parts)
    cor = m.corrected(64 * 1024)
    # Paid in full, another plan reaches the same figure: one tensor per DRAM cut (56x56x24
    # after block 3, 14x14x64 after block 7, block 12's 14x14x96 result), each written once
    # and read once by the one segment reading it.
    assert cor.traffic == 213_248 == 2 * (75_264 + 12_544 + 18_816)
    assert [sorted(m.shape(t) for t in c.sent) for c in cor.cuts if c.sent] == [
        [(1, 24, 56, 56)], [(1, 64, 14, 14)], [(1, 96, 14, 14)]]
    paid, parts = m.corrected_cost(cor.cuts)
    assert paid == cor.traffic and all(pk <= 64 * 1024 for pk, _ in parts)
    assert m.corrected(128 * 1024).traffic == 150_528

@pytest.mark.slow
def test_a_bystander_crossing_a_dram_cut_is_written_once_and_read_by_each_later_segment() -> None:
    """Hand-made on the real graph: blocks 3 and 4 (fused ops 6..12) as one segment with
    block 2's result (75,264 B) off-chip before it and block 4's (25,088 B) sent at its end.
    The corrected traffic is one read of the first and one write of the second; the
    reference's for the same cut is twice the second (it does not charge the read)."""
    mod = _script()
    m = mod.RowModel(ROOT / "models" / "suite" / "mobilenet_v2.onnx")
    b2 = m.core[5].output
    b4 = m.core[12].output
    assert m.crossing(6) == {b2} and m.nbytes(b2) == 75_264
    assert m.crossing(13) == {b4} and m.nbytes(b4) == 25_088
    assert m.corrected_traffic(6, 12, frozenset({b2}), frozenset({b4})) == 75_264 + 25_088
    assert m.reference_segment(6, 12, True, True)[1] == 2 * 25_088
