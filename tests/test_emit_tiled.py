"""plan.h / plan.c of tiled plans: stripe, tile and row-transfer tables, replayed in C.

The plan is the int8 QOperator tiny CNN (models/int8) at 8 KiB, below its M_R of 15 KiB, so
`auto` tiles it; its fp32 input (3 x 32 x 32 x 4 B = 12,288 B) exceeds the capacity and must be
streamed row by row from DRAM.  Every plan here is first checked by the independent validator;
the C replay (tests/c/replay.c) then executes the stripe tables byte by byte: a row read must
hold the signature its producer (a stripe, a row load or a whole-tensor step) wrote.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stowage.backend.emit import EmitError, build_schedule, emit_c, ring_tile, weight_data
from stowage.ir.graph import Graph
from stowage.ir.inplace import fuse_in_place
from stowage.ir.onnx_import import load_graph
from stowage.plan import Plan
from stowage.plan.model import Cascade
from stowage.plan.validate import plan_graph, validate
from test_emit import needs_gcc, needs_gxx, replay, run_cli

MODEL = Path(__file__).resolve().parents[1] / "models" / "int8" / "tiny_cnn_int8_qop.onnx"


@pytest.fixture(scope="module")
def tiny() -> tuple[Graph, Plan]:
    from stowage.api import compile as compile_plan

    g = fuse_in_place(load_graph(str(MODEL)))
    plan = compile_plan(g, capacity="8KiB", time_limit=5.0, seed=0)
    assert plan.cascades, "8 KiB is below M_R: the plan must be tiled"
    verdict = validate(g, plan)
    assert verdict.ok, verdict.summary()
    return g, plan


# ---------------------------------------------------------------------------------------
# The ring wrap, split in two
# ---------------------------------------------------------------------------------------
def test_ring_tile_hand_checked() -> None:
    # A 6-row ring of 256-byte rows at 8192: rows [5, 9) are slot 5 (one row, at 8192 + 5 * 256)
    # and slots 0..2 (three rows, from the ring's start).
    assert ring_tile(8192, 6, 256, 5, 9) == (9472, 1, 8192)
    # No wrap: rows [16, 32) of a 16-row ring start at slot 0 and fill it; addr1 is 0.
    assert ring_tile(0, 16, 384, 16, 32) == (0, 16, 0)
    # 3 rows of 96 B at 4864: rows [2, 4) -> slot 2 at 5056, then slot 0.
    assert ring_tile(4864, 3, 96, 2, 4) == (5056, 1, 4864)
    # A band inside the ring: rows [7, 9) of a 4-row ring are slots 3 and 0.
    assert ring_tile(100, 4, 10, 7, 9) == (130, 1, 100)
    assert ring_tile(100, 4, 10, 5, 7) == (110, 2, 0)


@given(base=st.integers(0, 1 << 20), ring=st.integers(1, 12), stride=st.integers(1, 512),
       lo=st.integers(0, 200), n=st.integers(0, 12))
@settings(max_examples=300, deadline=None)
def test_ring_tile_addresses_every_row_in_its_slot(base: int, ring: int, stride: int, lo: int, n: int) -> None:
    n = min(n, ring)
    addr0, rows0, addr1 = ring_tile(base, ring, stride, lo, lo + n)
    assert 0 <= rows0 <= n
    for i in range(n):
        got = addr0 + i * stride if i < rows0 else addr1 + (i - rows0) * stride
        assert got == base + ((lo + i) % ring) * stride  # the modulo firmware no longer computes
    assert (addr1 == 0) == (rows0 == n) or base == 0


# ---------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------
def test_tiled_schedule_tables(tiny: tuple[Graph, Plan]) -> None:
    g, plan = tiny
    sch = build_schedule(plan, g)
    macro = plan_graph(g, plan)
    assert len(sch.steps) == len(plan.steps) and len(sch.buffers) == len(macro.buffers)
    assert [c.step for c in sch.cascades] == [c.step for c in plan.cascades]
    assert [s.cascade for s in sch.steps if s.cascade is not None] == list(range(len(plan.cascades)))
    assert all(sch.steps[c.step].op_type == "Cascade" for c in sch.cascades)
    # One stripe row per plan stripe, same operator, rows, pads and operand rows.
    flat = [(k, sp) for k, c in enumerate(plan.cascades) for sp in c.stripes]
    assert len(sch.stripes) == len(flat)
    for s, (k, sp) in zip(sch.stripes, flat):
        assert (s.cascade, s.op, s.out_lo, s.out_hi, s.pad_top, s.pad_bottom) == \
            (k, sp.op, sp.out_lo, sp.out_hi, sp.pad_top, sp.pad_bottom)
        assert [(sch.cascade_tensors[t.tensor].tensor, t.lo, t.hi) for t in s.inputs] == [tuple(x) for x in sp.inputs]
        assert s.op_type == g.operators[sp.op].op_type and s.op_type in sch.op_types
        assert s.row_transfers_end - s.row_transfers_before == len(sp.transfers)
    # The streamed input, from the model alone: 1 x 3 x 32 x 32 fp32.  A row of one channel
    # is 32 x 4 = 128 B; a ring row holds all three channels (384 B); the home copy is NCHW
    # (channel stride 32 x 128 = 4096 B).
    image = next(t for t in sch.cascade_tensors if t.tensor == "image")
    assert image.mode == "streamed" and image.home_level == 1  # dram
    assert (image.channels, image.rows, image.width_bytes) == (3, 32, 128)
    assert (image.row_stride, image.channel_stride, image.plane_bytes) == (384, 128, 4096)
    home = next(p for p in plan.placements if p.buffer == g.tensor_buffer["image"] and p.level == "dram")
    assert image.home_offset == home.offset and image.tensor_buffer == g.tensor_buffer["image"]
    loads = [r for r in sch.row_transfers if sch.cascade_tensors[r.tensor].tensor == "image"]
    assert sorted(r for x in loads for r in range(x.lo, x.hi)) == list(range(32))  # each row loaded once
    assert all(r.kind == "load" and r.home_addr == home.offset + r.lo * 128 for r in loads)
    # Every tile is where its holder puts the rows: whole NCHW, or a ring's slot (split at the wrap).
    tiles = [t for s in sch.stripes for t in (*s.inputs, s.output)] + [r.ring for r in sch.row_transfers]
    for t in tiles:
        ct = sch.cascade_tensors[t.tensor]
        if ct.mode == "whole":
            assert (t.addr0, t.rows0, t.addr1) == (ct.base + t.lo * ct.width_bytes, t.hi - t.lo, 0)
        else:
            assert (t.addr0, t.rows0, t.addr1) == ring_tile(ct.base, ct.ring_rows, ct.row_stride, t.lo, t.hi)
    assert any(t.rows0 < t.hi - t.lo for t in tiles), "no tile wraps: the test plan exercises no split"


def test_tiled_header_text(tiny: tuple[Graph, Plan]) -> None:
    g, plan = tiny
    c = emit_c(plan, g, prefix="tc")
    h, src = str(c["plan.h"]), str(c["plan.c"])
    sch = build_schedule(plan, g)
    assert f"#define TC_NUM_CASCADES {len(plan.cascades)}u\n" in h
    assert f"#define TC_NUM_STRIPES {sum(len(x.stripes) for x in plan.cascades)}u\n" in h
    assert "#define TC_HOLD_WHOLE 0u\n#define TC_HOLD_RING 1u\n#define TC_HOLD_STREAMED 2u\n" in h
    # Row structs without padding at 32-bit addresses: a tile is 2 addresses + 4 counts = 24 B,
    # a row transfer 3 + 5 + 3 one-byte fields + 1 reserved = 36 B, a stripe 13 x 4 = 52 B (the last: flags).
    assert "TC_STATIC_ASSERT(tile_size, sizeof(tc_tile_t) == 28u);" in h
    assert "TC_STATIC_ASSERT(row_transfer_size, sizeof(tc_row_transfer_t) == 40u);" in h
    assert "TC_STATIC_ASSERT(stripe_size, sizeof(tc_stripe_t) == 52u);" in h
    assert "extern const tc_stripe_t tc_stripes[];" in h and "\nconst tc_stripe_t tc_stripes[] = {" in src
    assert "/* 0: load image */" in src and sch.row_transfers[0].kind == "load"


@needs_gcc
@needs_gxx
def test_tiled_plan_replays_with_its_weights(tiny: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = tiny
    files = emit_c(plan, g, weights=True)
    nbytes = sum(plan.buffers[t.buffer].bytes for t in plan.transfers)
    row_bytes = sum((x.hi - x.lo) * (g.tensors[x.tensor].bytes // g.tensors[x.tensor].shape[2])
                    for c in plan.cascades for s in c.stripes for x in s.transfers)
    assert row_bytes >= 12288  # the whole input passes through its ring
    expected = (f"replay ok: {len(plan.steps)} steps, {len(plan.transfers)} transfers, {nbytes} bytes moved; "
                f"{sum(len(c.stripes) for c in plan.cascades)} stripes, "
                f"{sum(len(s.transfers) for c in plan.cascades for s in c.stripes)} row transfers, "
                f"{row_bytes} row bytes moved; weights checked")
    r = replay(files, tmp_path / "c", blob=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected
    r = replay(files, tmp_path / "cxx", cxx=True, array=True)  # weights.c linked instead of the file
    assert r.returncode == 0 and r.stdout.strip() == expected, r.stderr


def test_weights_bin_holds_the_model_bytes(tiny: tuple[Graph, Plan]) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    g, plan = tiny
    files = emit_c(plan, g, weights=True)
    blob = files["weights.bin"]
    sch = build_schedule(plan, g)
    assert isinstance(blob, bytes) and len(blob) == sch.weight_blob_bytes()[1] and sch.weight_level == 1
    model = onnx.load(str(MODEL))
    init = {t.name: np.ascontiguousarray(numpy_helper.to_array(t)).tobytes() for t in model.graph.initializer}
    for w in sch.weights:
        name = next(t for t in sch.buffers[w.buffer].tensors if t in init)
        assert blob[w.offset:w.offset + w.bytes] == init[name], name
    assert set(weight_data(g)) >= set(init)
    # weights.c holds the same bytes as a C array.
    c_bytes = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", str(files["weights.c"])))
    assert c_bytes == blob


# ---------------------------------------------------------------------------------------
# Mutants: the validator and the C replay both refuse them
# ---------------------------------------------------------------------------------------
def with_cascade(plan: Plan, k: int, c: Cascade) -> Plan:
    return replace(plan, cascades=plan.cascades[:k] + (c,) + plan.cascades[k + 1:])


def caught_by_replay(g: Graph, bad: Plan, tmp: Path) -> str:
    """'emit' when the emitter refuses the plan, else the replay's failure line."""
    assert not validate(g, bad).ok
    try:
        files = emit_c(bad, g)
    except EmitError:
        return "emit"
    r = replay(files, tmp)
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("replay: FAIL at step ")
    return r.stderr


@needs_gcc
def test_dropped_row_load_fails_replay(tiny: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = tiny
    k, j = next((k, j) for k, c in enumerate(plan.cascades) for j, s in enumerate(c.stripes)
                if any(x.direction == "load" for x in s.transfers))
    c = plan.cascades[k]
    st = c.stripes[j]
    cut = replace(st, transfers=tuple(x for x in st.transfers if x.direction != "load"))
    bad = with_cascade(plan, k, replace(c, stripes=c.stripes[:j] + (cut,) + c.stripes[j + 1:]))
    err = caught_by_replay(g, bad, tmp_path)
    assert f"FAIL at step {c.step}: stripe reads buffer {g.tensor_buffer['image']} (image)" in err


@needs_gcc
def test_swapped_stripes_fail_replay(tiny: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = tiny
    # Swap a stripe with the next one when the next reads what the first writes.
    for k, c in enumerate(plan.cascades):
        for j in range(len(c.stripes) - 1):
            a, b = c.stripes[j], c.stripes[j + 1]
            out = next(o for o in g.operators[a.op].outputs if o)
            if any(name == out for name, _, _ in b.inputs) and a.op != b.op:
                stripes = list(c.stripes)
                stripes[j], stripes[j + 1] = b, a
                bad = with_cascade(plan, k, replace(c, stripes=tuple(stripes)))
                err = caught_by_replay(g, bad, tmp_path)
                assert err == "emit" or f"FAIL at step {c.step}: " in err
                return
    pytest.fail("no dependent neighbouring stripes in the test plan")


@needs_gcc
def test_ring_placed_over_a_live_buffer_fails_replay(tiny: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = tiny
    sch = build_schedule(plan, g)
    ring = next(t for t in sch.cascade_tensors if t.mode == "ring")
    whole = next(t for t in sch.cascade_tensors if t.mode == "whole" and t.buffer != ring.buffer
                 and any(s.cascade == next(k for k, c in enumerate(sch.cascades)
                                            if c.tensors_begin <= sch.cascade_tensors.index(ring) < c.tensors_end)
                         and s.output.tensor == sch.cascade_tensors.index(t) for s in sch.stripes))
    # The ring's compute placement moved onto a result of the same cascade.
    pls = tuple(replace(p, offset=whole.base) if p.buffer == ring.buffer and p.level == "sram" else p
                for p in plan.placements)
    bad = replace(plan, placements=pls)
    err = caught_by_replay(g, bad, tmp_path)
    assert err == "emit" or "FAIL at step" in err


# ---------------------------------------------------------------------------------------
# --separate-io, errors
# ---------------------------------------------------------------------------------------
@needs_gcc
def test_separate_io_regions_replay(tiny: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = tiny
    sch = build_schedule(plan, g, separate_io=True)
    assert [(lv.name, lv.region, lv.extent) for lv in sch.levels[2:]] == [
        ("input:image", "input", 12288), ("output:logits", "output", 40)]
    image = next(t for t in sch.cascade_tensors if t.tensor == "image")
    assert (image.home_level, image.home_offset) == (2, 0)  # the application's input buffer
    plain = build_schedule(plan, g)
    assert sch.levels[1].extent <= plain.levels[1].extent  # DRAM no longer holds the I/O
    h = str(emit_c(plan, g, prefix="io", separate_io=True)["plan.h"])
    assert "#define IO_LEVEL_IN_IMAGE 2u" in h and "#define IO_IN_IMAGE_EXTENT 12288u\n" in h
    assert "#define IO_OUT_LOGITS_EXTENT 40u\n" in h and "#define IO_NUM_IO_REGIONS 2u\n" in h
    assert f"#define IO_IN_IMAGE_BUFFER {g.tensor_buffer['image']}u /* image */" in h
    r = replay(emit_c(plan, g, separate_io=True, weights=True), tmp_path, blob=True)
    assert r.returncode == 0, r.stderr


@needs_gcc
def test_the_documented_firmware_loop_compiles_and_runs(tiny: tuple[Graph, Plan], tmp_path: Path) -> None:
    """docs/c-header.md's loop, as written, against this plan (prefix net), with kernels that do
    nothing: it compiles warning-free as C99 and every copy it makes stays inside its arrays."""
    import subprocess

    from test_emit import C_FLAGS, GCC, write_c

    g, plan = tiny
    doc = (Path(__file__).resolve().parents[1] / "docs" / "c-header.md").read_text()
    loop = doc.split("### A complete firmware loop", 1)[1].split("```c\n", 1)[1].split("```", 1)[0]
    stubs = ("static void run_kernel(uint32_t op, const net_operand_t *o, uint32_t r, uint32_t w)\n"
             "{ (void)op; (void)o; (void)r; (void)w; }\n"
             "static void run_stripe(uint32_t op, const net_tile_t *t, uint32_t n, uint32_t pt, uint32_t pb,\n"
             "                       const net_operand_t *o, uint32_t r)\n"
             "{ (void)op; (void)t; (void)n; (void)pt; (void)pb; (void)o; (void)r; }\n")
    src = loop.replace('#include "plan.h"', '#include "plan.h"\n' + stubs, 1)
    src += "int main(void) { static uint8_t in[12288], out[40]; run_network(in, out); return 0; }\n"
    write_c(emit_c(plan, g, prefix="net", weights=True), tmp_path)
    (tmp_path / "fw.c").write_text(src)
    files = [str(tmp_path / "fw.c"), str(tmp_path / "plan.c"), str(tmp_path / "weights.c"), "-o", str(tmp_path / "fw")]
    cc = subprocess.run([GCC, *C_FLAGS, "-fsanitize=address", *files], capture_output=True, text=True)
    if cc.returncode != 0 and "asan" in cc.stderr:  # no AddressSanitizer runtime: compile plainly
        cc = subprocess.run([GCC, *C_FLAGS, *files], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr[:3000]
    assert subprocess.run([str(tmp_path / "fw")], capture_output=True, text=True).returncode == 0


def test_tiled_plan_needs_the_model_graph(tiny: tuple[Graph, Plan]) -> None:
    g, plan = tiny
    with pytest.raises(EmitError, match="plan is tiled"):
        build_schedule(plan)
    with pytest.raises(EmitError, match="not the macro graph"):
        build_schedule(plan, plan_graph(g, plan))


@pytest.mark.slow  # a CLI compile: > 1.5 s
@needs_gcc
def test_cli_compile_tiled_separate_io_weights(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    r = run_cli("compile", str(MODEL), "--capacity", "8KiB", "--time-limit", "5", "--separate-io",
                "--emit", "header,weights-c", "--c-prefix", "fw", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in out.iterdir()) == ["plan.c", "plan.h", "plan.json", "weights.bin", "weights.c"]
    files = {n: (out / n).read_bytes() for n in ("plan.h", "plan.c", "weights.bin", "weights.c")}
    rr = replay({n: v.decode() if n != "weights.bin" else v for n, v in files.items()}, tmp_path / "r", blob=True)
    assert rr.returncode == 0 and "stripes" in rr.stdout and rr.stdout.strip().endswith("weights checked"), rr.stderr
    # emit without --model cannot write a tiled plan's tables, nor weights: one line, no files.
    r = run_cli("emit", str(out / "plan.json"), "-o", str(tmp_path / "e"))
    assert r.returncode == 2 and "tiled plan" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "e").exists()
    r = run_cli("emit", str(out / "plan.json"), "--format", "header,weights", "--model", str(MODEL),
                "--separate-io", "-o", str(tmp_path / "e2"))
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in (tmp_path / "e2").iterdir()) == ["plan.c", "plan.h", "weights.bin"]
    assert (tmp_path / "e2" / "weights.bin").read_bytes() == files["weights.bin"]


def test_weights_folded_by_the_importer_are_evaluated() -> None:
    """A QDQ model's fp32 bias is DequantizeLinear(int32 initializer): the importer makes the
    result a weight, so the blob holds (q - zero_point) * scale, computed here with numpy."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from stowage.solvers.problem import Problem
    from stowage.solvers.registry import solve
    from stowage.targets.hierarchy import load_target

    path = MODEL.with_name("tiny_cnn_int8_qdq.onnx")
    g = load_graph(str(path))
    plan = solve(Problem(g, load_target("ethos-u55-256")), "naive")
    blob = emit_c(plan, g, weights=True)["weights.bin"]
    sch = build_schedule(plan, g)
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    w = next(w for w in sch.weights if sch.buffers[w.buffer].name == "block_conv1.bias")
    q = init["block_conv1.bias_quantized"].astype(np.int64)
    zp = init["block_conv1.bias_quantized_zero_point"].astype(np.int64)
    want = ((q - zp) * init["block_conv1.bias_quantized_scale"]).astype("<f4")
    assert w.bytes == want.nbytes and blob[w.offset:w.offset + w.bytes] == want.tobytes()
