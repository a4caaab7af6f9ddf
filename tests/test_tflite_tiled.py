"""Tiled ``.tflite`` plans replayed against LiteRT (issue 12 on the TFLite side).

The tiny int8 CNN of ``tflite_writer`` (M_R 704 B) planned below M_R: its cascades hold
tensors in rings, whole, and streamed through DRAM (a cascade boundary stored row by row and
loaded back).  The replay (``stowage.simulate_tflite.Replay``) reads every operand row a
stripe's window needs from its holder, NHWC (a row is ``[:, r, :, :]``, ``W * C`` contiguous
bytes), and compares it with LiteRT's reference bytes; the mutants (a ring one row short, a
dropped load, a dropped store, two stripes swapped, a missing halo row) are caught by the
replay itself, not only by the validator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stowage
from stowage import cli
from stowage.ir.onnx_import import load_graph
from stowage.ir.tiling import row_axis
from stowage.plan import Cascade, Plan
from stowage.simulate import SimResult
from stowage.simulate_tflite import Replay, reference_run, simulate_tflite
from tflite_writer import tiny_int8_model

ROOT = Path(__file__).resolve().parent.parent
MNV2 = ROOT / "models" / "tflite" / "mobilenet_v2_int8.tflite"
#: Below the tiny model's M_R (704 B): two cascades, the tensor between them through DRAM
#: (at 392 B and above one cascade holds b whole, with no traffic).
CAPACITY = 384


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("tfl_tiled") / "tiny.tflite"
    p.write_bytes(tiny_int8_model())
    return p


@pytest.fixture(scope="module")
def ref(tiny: Path) -> dict[str, np.ndarray]:
    return reference_run(tiny)


@pytest.fixture(scope="module")
def tiled(tiny: Path) -> Plan:
    return stowage.compile(tiny, target="ethos-u55-256", capacity=CAPACITY)


def _with_cascade(plan: Plan, k: int, cascade: Cascade) -> Plan:
    cs = list(plan.cascades)
    cs[k] = cascade
    return dataclasses.replace(plan, cascades=tuple(cs))


def _replay(tiny: Path, plan: Plan, ref: dict[str, np.ndarray]) -> SimResult:
    return Replay(load_graph(tiny), plan, ref).run()


def test_tiled_plan_numbers(tiny: Path, tiled: Plan) -> None:
    """Worked out by hand.  Rows are axis 1 (NHWC).  Cascade 0 runs conv1 (3x3 s1, 8x8x3 ->
    8x8x8) and the depthwise conv (3x3 s2, -> 4x4x8) in 1-row bands of b: a 3-row window of a
    (3 rows of 8 * 8 = 64 B), x streamed in through a 4-row ring of 8 * 3 = 24 B rows, b
    stored to DRAM through a 1-row ring of 4 * 8 = 32 B.  Cascade 1 (conv2 1x1 + ADD, one
    4-row band) loads b back: 128 B out and 128 B in are the non-compulsory bytes; x (192 B)
    and y (10 B) the compulsory ones."""
    g = load_graph(tiny)
    assert row_axis(g) == 1
    c0, c1 = tiled.cascades
    assert (c0.ops, c0.end, c0.stripe_rows, c1.ops, c1.end) == ((0, 1), "b", 1, (2, 3), "d")
    assert {(t.tensor, t.mode, t.ring_rows, t.row_bytes, t.level) for t in c0.tensors} == {
        ("a", "ring", 3, 64, None), ("x", "streamed", 4, 24, "dram"), ("b", "streamed", 1, 32, "dram")}
    assert {(t.tensor, t.mode, t.ring_rows) for t in c1.tensors} == {
        ("d", "whole", 0), ("c", "ring", 4), ("b", "streamed", 4)}
    # conv1 makes its share of a band, two rows (two a rows per b row at stride 2): [0, 2)
    # from x rows [0, 3) plus a zero pad row on top, then [2, 3), the last row the depthwise
    # conv's first row needs, then b row 0; then [3, 5), b row 1, [5, 7), ...
    assert [(s.op, s.out_lo, s.out_hi, s.inputs, s.pad_top, s.pad_bottom) for s in c0.stripes[:4]] == [
        (0, 0, 2, (("x", 0, 3),), 1, 0), (0, 2, 3, (("x", 1, 4),), 0, 0), (1, 0, 1, (("a", 0, 3),), 0, 0),
        (0, 3, 5, (("x", 2, 6),), 0, 0)]
    assert (tiled.metrics.compulsory_bytes, tiled.metrics.noncompulsory_bytes) == (192 + 10, 128 + 128)
    assert tiled.metrics.peak_bytes["sram"] <= CAPACITY


def test_tiled_plan_replays_bit_exactly(tiny: Path, tiled: Plan, ref: dict[str, np.ndarray]) -> None:
    r = _replay(tiny, tiled, ref)
    assert r.ok and r.corruptions == () and r.steps == 3
    assert [(o.name, o.exact) for o in r.outputs] == [("y", True)]
    # Through the validator too, and through the command.
    assert simulate_tflite(tiny, load_graph(tiny), tiled).ok


def test_simulate_command_on_a_tiled_plan(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan"
    assert cli.main(["compile", str(tiny), "--capacity", str(CAPACITY), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    code = cli.main(["simulate", str(tiny), str(out / "plan.json")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "output y: bit-exact vs LiteRT" in text and "match:" in text


def test_ring_one_row_short_is_caught(tiny: Path, tiled: Plan, ref: dict[str, np.ndarray]) -> None:
    # a's ring of 3 rows as 2: conv1's first stripes write rows 0, 1, 2 into slots 0, 1, 0,
    # so the depthwise conv's first band (stripe 2) finds row 0 overwritten by row 2.
    c0 = tiled.cascades[0]
    tensors = tuple(dataclasses.replace(t, ring_rows=2) if t.tensor == "a" else t for t in c0.tensors)
    r = _replay(tiny, _with_cascade(tiled, 0, dataclasses.replace(c0, tensors=tensors)), ref)
    assert not r.ok
    assert r.corruptions[0].message.startswith(
        "step 0 (cascade0:CONV_2D_0), stripe 2 (DEPTHWISE_CONV_2D 'DEPTHWISE_CONV_2D_1', rows [0, 1)): "
        "read of row 0 of 'a' (ring, buffer")


def _without_transfers(plan: Plan, k: int, j: int) -> Plan:
    c = plan.cascades[k]
    stripes = tuple(dataclasses.replace(s, transfers=()) if i == j else s for i, s in enumerate(c.stripes))
    return _with_cascade(plan, k, dataclasses.replace(c, stripes=stripes))


def test_dropped_load_is_caught(tiny: Path, tiled: Plan, ref: dict[str, np.ndarray]) -> None:
    # Stripe 3 (conv1, rows [3, 5)) loads x rows [4, 6); without it the ring slots 0 and 1
    # still hold rows 0 and 1.
    assert [(t.direction, t.tensor, t.lo, t.hi) for t in tiled.cascades[0].stripes[3].transfers] == [
        ("load", "x", 4, 6)]
    r = _replay(tiny, _without_transfers(tiled, 0, 3), ref)
    assert not r.ok
    first = r.corruptions[0].message
    assert first.startswith("step 0 (cascade0:CONV_2D_0), stripe 3 (CONV_2D 'CONV_2D_0', rows [3, 5)): "
                            "read of row 4 of 'x' (streamed")
    assert "2 of 4 rows [2, 6) wrong" in first


def test_dropped_store_is_caught_where_the_rows_come_back(tiny: Path, tiled: Plan,
                                                          ref: dict[str, np.ndarray]) -> None:
    # Stripe 4 stores b row 1 to DRAM; cascade 1 loads rows [0, 4) and finds row 1 poisoned.
    assert [(t.direction, t.tensor, t.lo, t.hi) for t in tiled.cascades[0].stripes[4].transfers] == [
        ("store", "b", 1, 2)]
    r = _replay(tiny, _without_transfers(tiled, 0, 4), ref)
    assert not r.ok
    first = r.corruptions[0].message
    assert first.startswith("step 1 (cascade1:CONV_2D_2), stripe 0 (CONV_2D 'CONV_2D_2', rows [0, 4)): "
                            "read of row 1 of 'b' (streamed")
    assert first.endswith("(poison: never written or freed)")


def test_swapped_stripes_are_caught(tiny: Path, tiled: Plan, ref: dict[str, np.ndarray]) -> None:
    c0 = tiled.cascades[0]
    order = (3, 0, 1, 2, *range(4, len(c0.stripes)))   # conv1's rows [3, 5) before [0, 3)
    r = _replay(tiny, _with_cascade(tiled, 0, dataclasses.replace(
        c0, stripes=tuple(c0.stripes[i] for i in order))), ref)
    assert not r.ok
    assert r.corruptions[0].message.startswith("step 0 (cascade0:CONV_2D_0), stripe 0 (CONV_2D 'CONV_2D_0', "
                                               "rows [3, 5)): read of row 2 of 'x'")


def test_missing_halo_row_is_caught(tiny: Path, tiled: Plan, ref: dict[str, np.ndarray]) -> None:
    # The kernels do not run, so the replay checks what a stripe declares against the rows
    # its operator's window needs: b row 1 (3x3, stride 2) needs a rows [2, 5).
    c0 = tiled.cascades[0]
    assert c0.stripes[4].inputs == (("a", 2, 5),)
    stripes = tuple(dataclasses.replace(s, inputs=(("a", 2, 4),)) if i == 4 else s for i, s in enumerate(c0.stripes))
    r = _replay(tiny, _with_cascade(tiled, 0, dataclasses.replace(c0, stripes=stripes)), ref)
    assert not r.ok
    assert "stripe 4 " in r.corruptions[0].message
    assert "needs [('a', (2, 5))]" in r.corruptions[0].message


def test_a_dropped_stripe_leaves_rows_unmade(tiny: Path, tiled: Plan, ref: dict[str, np.ndarray]) -> None:
    c1 = tiled.cascades[1]
    r = _replay(tiny, _with_cascade(tiled, 1, dataclasses.replace(c1, stripes=c1.stripes[:1])), ref)
    assert not r.ok
    assert any("operator 'ADD_3' never made 4 row(s) of 'd'" in c.message for c in r.corruptions)


def test_plan_of_another_graph_is_not_replayed(tiny: Path, tiled: Plan) -> None:
    bad = _with_cascade(tiled, 0, dataclasses.replace(tiled.cascades[0], ops=(0, 5)))
    r = simulate_tflite(tiny, load_graph(tiny), bad)
    assert not r.ok and not r.executed


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.integers(224, 703), st.data())
def test_every_tiled_capacity_replays_and_every_dropped_row_transfer_is_caught(
        tiny: Path, ref: dict[str, np.ndarray], capacity: int, data: st.DataObject) -> None:
    """224 B is the least capacity (one 1-row stripe of the depthwise conv); every plan down
    to it replays, and dropping any one of its row transfers is found."""
    plan = stowage.compile(tiny, target="ethos-u55-256", capacity=capacity)
    assert plan.cascades
    assert _replay(tiny, plan, ref).ok
    spots = [(k, j, i) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
             for i in range(len(s.transfers))]
    k, j, i = data.draw(st.sampled_from(spots))
    c = plan.cascades[k]
    s = c.stripes[j]
    stripes = list(c.stripes)
    stripes[j] = dataclasses.replace(s, transfers=s.transfers[:i] + s.transfers[i + 1:])
    assert not _replay(tiny, _with_cascade(plan, k, dataclasses.replace(c, stripes=tuple(stripes))), ref).ok


@pytest.mark.slow
def test_tiled_mobilenet_v2_replays() -> None:
    """The default target (256 KiB): five cascades, nothing off-chip but the input and the
    logits (151,528 B = 224 * 224 * 3 + 1,000)."""
    plan = stowage.compile(MNV2, target="ethos-u55-256", capacity="256KiB")
    assert len(plan.cascades) >= 1 and plan.metrics.noncompulsory_bytes == 0
    assert plan.metrics.compulsory_bytes == 224 * 224 * 3 + 1000
    r = simulate_tflite(MNV2, load_graph(MNV2), plan)
    assert r.ok, r.first_problem
