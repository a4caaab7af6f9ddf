"""plan.h / schedule.json emission, name safety, and the C replay check (tests/c/replay.c).

Plans with spills and reuse come from ``spill_plan`` below: file order, each buffer kept in the
compute level only while its uses are at most ``gap`` steps apart, first-fit offsets over
those residency ranges (reuse), and a store/reload through a spill level when a gap is
longer.  Every such plan must pass the independent validator before the emitter sees it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import light_models
from helpers import chain_model, diamond_model
from stowage.backend.emit import (
    EmitError,
    build_schedule,
    c_comment,
    c_string,
    check_prefix,
    default_prefix,
    emit_all,
    emit_c,
    emit_header,
    emit_schedule,
)
from stowage.ir.graph import Graph, TensorKind
from stowage.ir.onnx_import import import_model, load_graph
from stowage.plan import Placement, Plan, Transfer, load_plan, save_plan
from stowage.plan.validate import validate
from stowage.solvers.alloc.interval import Interval, align_up
from stowage.solvers.assemble import assemble_plan
from stowage.solvers.costs import home_level
from stowage.solvers.problem import Problem
from stowage.solvers.registry import solve
from stowage.targets.hierarchy import Hierarchy, load_target

REPLAY_C = Path(__file__).parent / "c" / "replay.c"
GCC = shutil.which("gcc")
GXX = shutil.which("g++")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ is not installed")
#: -Wpadded: no row struct of the C output may have compiler padding.
C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wpadded"]
CXX_FLAGS = ["-x", "c++", "-Wall", "-Wextra", "-Werror", "-Wpadded"]


# ---------------------------------------------------------------------------------------
# A small planner with spills and reuse (test fixture)
# ---------------------------------------------------------------------------------------
def spill_plan(graph: Graph, target: Hierarchy, gap: int = 1, weights_in_compute_level: bool = True) -> Plan:
    """File order; a buffer stays in the compute level across uses at most ``gap`` steps
    apart, otherwise it is stored after its segment and reloaded before the next one.
    Spills alternate between the nearest and the farthest spill level (two hops on a
    three-level target).  The compute capacity of the plan is the resulting peak."""
    order = graph.file_order()
    compute = target.compute_level
    uses: dict[int, list[int]] = {}
    for s, idx in enumerate(order):
        op = graph.operators[idx]
        for b in (*graph.op_reads(op), *graph.op_writes(op)):
            if graph.buffers[b].kind is TensorKind.WEIGHT and not weights_in_compute_level:
                continue
            if not uses.get(b) or uses[b][-1] != s:
                uses.setdefault(b, []).append(s)
    spill_levels = [lv.name for lv in target.spill_levels()]
    segments: list[tuple[int, int, int]] = []  # (first, last, buffer)
    before: dict[int, list[Transfer]] = {}
    after: dict[int, list[Transfer]] = {}
    nspilled = 0
    for b, steps in sorted(uses.items()):
        buf = graph.buffers[b]
        home = home_level(graph, target, b)
        segs = [[steps[0], steps[0]]]
        for s in steps[1:]:
            if s - segs[-1][1] <= gap:
                segs[-1][1] = s
            else:
                segs.append([s, s])
        produced = buf.producer is not None
        if not produced:  # input or weight: load from home before every segment
            for f, _ in segs:
                before.setdefault(f, []).append(Transfer(b, home, compute, f, "before"))
        else:
            store_to = None
            if buf.is_output:
                store_to = target.outputs_home
                after.setdefault(segs[0][0], []).append(Transfer(b, compute, store_to, segs[0][0], "after"))
            elif len(segs) > 1:
                store_to = spill_levels[-1] if nspilled % 2 else spill_levels[0]
                nspilled += 1
                after.setdefault(segs[0][1], []).append(Transfer(b, compute, store_to, segs[0][1], "after"))
            for f, _ in segs[1:]:
                before.setdefault(f, []).append(Transfer(b, store_to, compute, f, "before"))
        segments += [(f, last, b) for f, last in segs]
    # First-fit offsets over residency ranges: ranges that share a step never share a byte.
    align = target.compute.alignment
    taken: list[tuple[int, int, int, int]] = []
    placements = []
    for f, last, b in sorted(segments):
        busy = sorted((o, e) for tf, tl, o, e in taken if not (tl < f or tf > last))
        off = 0
        for o, e in busy:
            if off + graph.buffers[b].bytes <= o:
                break
            off = max(off, align_up(e, align))
        taken.append((f, last, off, off + graph.buffers[b].bytes))
        placements.append(Interval(b, f, last, graph.buffers[b].bytes, off))
    peak = max((e for *_, e in taken), default=1)
    target = target.with_capacity(align_up(max(peak, 1), align))
    transfers = [t for s in range(len(order)) for t in (*before.get(s, []), *after.get(s, []))]
    problem = Problem(graph, target, weights_in_compute_level=weights_in_compute_level)
    return assemble_plan(problem, order, placements, transfers, "test-spill", "feasible", None, 0.0)


def checked(graph: Graph, plan: Plan) -> Plan:
    verdict = validate(graph, plan)
    assert verdict.ok, verdict.summary()
    return plan


def light(name: str) -> Path:
    return next(p for p in light_models() if p.stem == f"light_{name}")


# ---------------------------------------------------------------------------------------
# Compiling and replaying
# ---------------------------------------------------------------------------------------
def prefixes(header: str) -> tuple[str, str]:
    m = re.search(r"typedef uint(?:32|64)_t (\w+)_addr_t;", header)
    assert m, "no addr_t typedef"
    p = m.group(1)
    return p, p.upper()


def write_c(files: Mapping[str, str | bytes], tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (tmp / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return tmp


def replay(files: Mapping[str, str | bytes], tmp: Path, cxx: bool = False, blob: bool = False,
           array: bool = False) -> subprocess.CompletedProcess[str]:
    """Compile replay.c against plan.h, link plan.c (and weights.c with ``array``; warnings are
    errors) and run it (given weights.bin with ``blob``)."""
    write_c(files, tmp)
    p, P = prefixes(str(files["plan.h"]))
    exe = tmp / ("replay_cxx" if cxx else "replay_c")
    cmd = [GXX, *CXX_FLAGS] if cxx else [GCC, *C_FLAGS]
    cmd += [f"-DPLAN_PREFIX={p}", f"-DPLAN_MACRO_PREFIX={P}", "-include", str(tmp / "plan.h"), "-O1", str(REPLAY_C),
            str(tmp / "plan.c")]
    if array:
        cmd += ["-DPLAN_WEIGHTS_ARRAY", str(tmp / "weights.c")]
    cc = subprocess.run([*cmd, "-o", str(exe)], capture_output=True, text=True)
    assert cc.returncode == 0, f"compile failed:\n{cc.stderr[:4000]}"
    return subprocess.run([str(exe), *([str(tmp / "weights.bin")] if blob else [])], capture_output=True, text=True,
                          timeout=60)


def compile_only(files: Mapping[str, str | bytes], tmp: Path, body: str = "int main(void) { return 0; }\n") -> None:
    """use.c (``body`` after ``#include "plan.h"``) and plan.c compile and link, as C and C++."""
    write_c(files, tmp)
    src = tmp / "use.c"
    src.write_text('#include "plan.h"\n' + body)
    for cmd in ([GCC, *C_FLAGS], [GXX, *CXX_FLAGS]):
        r = subprocess.run([*cmd, str(src), str(tmp / "plan.c"), "-o", str(tmp / "use")], capture_output=True,
                           text=True)
        assert r.returncode == 0, f"{cmd[0]} failed:\n{r.stderr[:4000]}"


# ---------------------------------------------------------------------------------------
# Hand-checked: the diamond model on ethos-u55-256
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diamond() -> Graph:
    return import_model(diamond_model(), element_bytes=1)


def test_diamond_schedule_addresses(diamond: Graph) -> None:
    # x (8 B) -> relu a, sigmoid b; c = a + W; y = b * view(c).  Element bytes 1: every tensor 8 B.
    plan = checked(diamond, solve(Problem(diamond, load_target("ethos-u55-256"), weights_in_compute_level=True),
                                  "naive"))
    d = emit_schedule(plan, diamond, prefix="diamond")
    assert d["format"] == "stowage-schedule" and d["address_bits"] == 32
    assert d["c_prefix"] == "diamond"
    names = {b["id"]: b["name"] for b in d["buffers"]}
    by_name = {b["name"]: b for b in d["buffers"]}
    assert [s["op_type"] for s in d["steps"]] == ["Relu", "Sigmoid", "Add", "Mul"]
    # Naive: one offset per buffer in order of first use, aligned to 16:
    # x @0 (step 0), a @16 (step 0), b @32 (step 1), W @48 (step 2), c @64 (step 2), y @80 (step 3).
    sram = {names[o["buffer"]]: o["offset"] for s in d["steps"] for o in (*s["reads"], *s["writes"])}
    assert sram == {"x": 0, "a": 16, "b": 32, "W": 48, "c": 64, "y": 80}
    assert d["levels"][0] | {} == {"index": 0, "name": "sram", "capacity": None, "alignment": 16,
                                   "extent": 88, "peak": 88, "region": "memory", "region_buffer": None}
    # Transfers: x and W loaded before their first use, y stored after step 3.  dram offsets are
    # first fit by buffer id: W (id 0, 8 B) @0, the Reshape's shape constant (id 2, 2 B, a weight
    # no step reads) @16, x (id 3) @32, then y (stored at step 3) @48 (16-byte alignment).
    assert [(b["name"], b["home_offset"]) for b in d["buffers"] if b["home"]] == [
        ("W", 0), ("shape", 16), ("x", 32), ("y", 48)]
    xfers = [(t["step"], t["phase"], t["kind"], names[t["buffer"]], t["src"], t["src_offset"], t["dst"],
              t["dst_offset"]) for t in d["transfers"]]
    assert xfers == [(0, "before", "load", "x", "dram", 32, "sram", 0),
                     (2, "before", "load", "W", "dram", 0, "sram", 48),
                     (3, "after", "store", "y", "sram", 80, "dram", 48)]
    assert d["steps"][2]["transfers_before"] == [1, 2] and d["steps"][3]["transfers_after"] == [2, 3]
    assert d["weights"] == [{"buffer": by_name["W"]["id"], "level": "dram", "offset": 0, "bytes": 8},
                            {"buffer": by_name["shape"]["id"], "level": "dram", "offset": 16, "bytes": 2}]
    assert d["weight_blob_bytes"] == {"dram": 18}
    # x 8 B + W 8 B loaded, y 8 B stored: 24 compulsory bytes, one hop each.
    assert d["totals"] == {"compulsory_bytes": 24, "noncompulsory_bytes": 0, "traffic_bytes": 24,
                           "peak_bytes": {"sram": 88, "dram": 56}}
    assert [s["node"] for s in d["steps"]] == [0, 1, 2, 4]  # node 3 is the Reshape view


def test_diamond_header_text(diamond: Graph) -> None:
    plan = solve(Problem(diamond, load_target("ethos-u55-256"), weights_in_compute_level=True), "naive")
    c = emit_c(plan, diamond, prefix="diamond")
    h, src = str(c["plan.h"]), str(c["plan.c"])
    assert h == emit_header(plan, diamond, prefix="diamond")
    assert "#ifndef STOWAGE_PLAN_DIAMOND_H" in h and '#ifdef __cplusplus\nextern "C" {' in h
    assert "#define DIAMOND_ADDR_BITS 32\ntypedef uint32_t diamond_addr_t;" in h
    assert "#define DIAMOND_NUM_STEPS 4u" in h and "#define DIAMOND_NUM_TRANSFERS 3u" in h
    assert "#define DIAMOND_LEVEL_SRAM 0u" in h and "#define DIAMOND_COMPUTE_LEVEL DIAMOND_LEVEL_SRAM" in h
    assert "#define DIAMOND_OP_RELU 0u" in h and "#define DIAMOND_OP_MUL 3u" in h
    assert "#define DIAMOND_TRAFFIC_BYTES UINT64_C(24)" in h
    # Integer constants per level: extent 88 / 56 (x@32 and y@48 in dram, 8 B each), alignment 16.
    assert "#define DIAMOND_SRAM_EXTENT 88u\n#define DIAMOND_SRAM_ALIGNMENT 16u\n" in h
    assert "#define DIAMOND_DRAM_EXTENT 56u\n#define DIAMOND_DRAM_ALIGNMENT 16u\n" in h
    # The weight blob: W (8 B) @0 and shape (2 B) @16 of dram -> 18 bytes.
    assert "#define DIAMOND_WEIGHT_BLOB_BYTES 18u\n#define DIAMOND_WEIGHT_BLOB_LEVEL DIAMOND_LEVEL_DRAM\n" in h
    # The header declares, plan.c defines (once): no table is static, none is defined in the header.
    assert "extern const diamond_step_t diamond_steps[];" in h and "diamond_steps[] = {" not in h
    assert "static const" not in h + src and "\nconst diamond_step_t diamond_steps[] = {" in src
    assert src.count('#include "plan.h"') == 1 and "#define" not in src
    # sram: capacity 0 (unbounded), align 16, extent 88, peak 88, no weights, no region; fields
    # widest first, then two reserved bytes: 5 x 4 + 4 + 1 + 1 + 2 = 28 bytes.
    assert "    {0u, 16u, 88u, 88u, 0u, DIAMOND_NONE32, 0u, DIAMOND_REGION_MEMORY, 0u, 0u}, /* 0: sram */\n" in src
    assert "DIAMOND_STATIC_ASSERT(level_size, sizeof(diamond_level_t) == 28u);" in h
    # A transfer row: 3 offsets/sizes, step, buffer, then phase, kind, src, dst: 24 bytes, no padding.
    assert ("    {80u, 48u, 8u, 3u, 6u, DIAMOND_PHASE_AFTER, DIAMOND_TRANSFER_STORE, DIAMOND_LEVEL_SRAM, "
            "DIAMOND_LEVEL_DRAM}, /* 2: store y */\n") in src
    assert "DIAMOND_STATIC_ASSERT(transfer_size, sizeof(diamond_transfer_t) == 24u);" in h
    assert "#define DIAMOND_TRANSFER_LOAD 0u\n#define DIAMOND_TRANSFER_SPILL 1u\n" in h
    assert "#define DIAMOND_TRANSFER_RELOAD 2u\n#define DIAMOND_TRANSFER_STORE 3u\n" in h
    assert '#define DIAMOND_TARGET_NAME "ethos-u55-256"' in h  # no octal escape of '-'
    assert "#include" in h and re.findall(r"#include <(\w+)\.h>", h) == ["stdint"]


# ---------------------------------------------------------------------------------------
# Prefixes and names
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("resnet50", "resnet50"), ("ResNet-50 v1.5", "resnet_50_v1_5"), ("50layers", "m_50layers"),
    ("int", "model_int"), ("while", "model_while"), ("", "plan"), ("---", "plan"), ("ünïcødé", "ncd"),
    ("a" * 40, "a" * 24), ("__x__y__", "x_y"), ("class", "model_class"),
])
def test_default_prefix(name: str, expected: str) -> None:
    assert default_prefix(name) == expected


@pytest.mark.parametrize("bad", ["9net", "int", "a-b", "a b", "_x", "x__y", "x_", "", "é", "a" * 33, "x;y"])
def test_bad_user_prefix_rejected(bad: str) -> None:
    with pytest.raises(EmitError):
        check_prefix(bad)


def test_c_string_escapes_only_what_c_requires() -> None:
    assert c_string("abc_09") == '"abc_09"'
    assert c_string("ethos-u55-256 v1.0 (a+b)/2 */") == '"ethos-u55-256 v1.0 (a+b)/2 */"'
    assert c_string('"\\\n\t??=#') == '"\\"\\\\\\n\\t\\?\\?=#"'
    assert c_string("é\x00\x7f") == '"\\303\\251\\000\\177"'
    assert c_string("x" * 600).endswith('x..."') and len(c_string("x" * 600)) == 2 + 512 + 3


#: A C string literal as c_string writes it: verbatim printable ASCII other than " \\ ?,
#: named escapes, three-digit octal escapes.
C_LITERAL = r'"(?:[ !#-/0-9:-<=>@-\[\]-~]|\\["\\?ntr]|\\[0-7]{3})*"'


def decode_c_literal(lit: str) -> bytes:
    named = {'"': b'"', "\\": b"\\", "?": b"?", "n": b"\n", "t": b"\t", "r": b"\r"}
    out = b""
    for tok in re.findall(r'\\[0-7]{3}|\\.|.', lit[1:-1], flags=re.S):
        if re.fullmatch(r"\\[0-7]{3}", tok):
            out += bytes([int(tok[1:], 8)])
        elif tok.startswith("\\"):
            out += named[tok[1]]
        else:
            out += tok.encode()
    return out


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_c_string_alphabet(text: str) -> None:
    lit = c_string(text)
    assert re.fullmatch(C_LITERAL, lit), lit
    assert "??" not in lit  # no trigraph
    # Decoding the escapes gives back the UTF-8 bytes.
    assert decode_c_literal(lit) == text.encode("utf-8", "surrogatepass")


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_c_comment_cannot_end_a_comment(text: str) -> None:
    cm = c_comment(text)
    assert cm.isascii() and not set(cm) & set("*/\\?\"'\n")


HOSTILE = [
    "*/ int evil; /*", 'quote" injected', "back\\slash\\", "new\nline\r\n#define X 1", "#define main oops",
    "??=define TRI ??/", "ünï — 名前 \u0000 nul", "int", "while", "__asm__", "x*/#include <stdlib.h>",
    "a.b", "a-b", "a b", "A_B", "a__b", "9lives", "", "*/", "x" * 5000,
]


def rename_plan(plan: Plan, names: list[str], op_types: list[str], model: str) -> Plan:
    bufs = tuple(replace(b, tensors=(names[b.id % len(names)], names[(b.id + 3) % len(names)]))
                 for b in plan.buffers)
    steps = tuple(replace(s, op=names[(i + 5) % len(names)], op_type=op_types[i % len(op_types)])
                  for i, s in enumerate(plan.steps))
    tgt = replace(plan.target, name=model)
    return replace(plan, buffers=bufs, steps=steps, target=tgt, model=replace(plan.model, path=f"/x/{model}.onnx"))


def hostile_plan(tmp_path: Path) -> Plan:
    """A spilling chain plan with every tensor, operator, op type, the model and the target
    renamed to hostile names; several collide after sanitising (a.b, a-b, a b, A_B, a__b)."""
    g = import_model(chain_model(n=len(HOSTILE), size=4), element_bytes=1)
    plan = checked(g, spill_plan(g, load_target("ethos-u55-256"), gap=0))
    return rename_plan(plan, HOSTILE, HOSTILE, 'evil* "model" ??= \\\n#define')


def test_hostile_names_stay_inside_string_literals(tmp_path: Path) -> None:
    plan = hostile_plan(tmp_path)
    c = emit_c(plan)
    h = str(c["plan.h"])
    text = h + str(c["plan.c"])
    assert text.isascii()
    # Remove string literals and comments the emitter itself wrote: nothing hostile remains.
    code = re.sub(C_LITERAL, '""', text)
    assert '"' not in code.replace('""', "").replace('extern "C"', "")
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    for bad in ("injected", "oops", "stdlib", "??", "\\", "*/", "/*", "__asm__", "@"):
        assert bad not in code, bad
    # The hostile names are there, greppable: only quote, backslash, ? and controls escaped.
    assert c_string('quote" injected') in text and '"x*/#include <stdlib.h>"' in text
    # Every identifier left is C's, <stdint.h>'s, or behind the prefix (itself derived from the
    # hostile model name, reduced to [a-z0-9_]).
    def words(text: str) -> set[str]:
        text = re.sub(C_LITERAL, '""', text)
        return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"/\*.*?\*/", "", text, flags=re.S)))

    prefixed = re.compile(r"(evil_model_define_|EVIL_MODEL_DEFINE_|STOWAGE_PLAN_EVIL_MODEL_DEFINE_H$)")
    # The template's own words: from the files of a plan with harmless names.
    g = import_model(chain_model(n=2, size=4), element_bytes=1)
    harmless = emit_c(solve(Problem(g, load_target("ethos-u55-256")), "naive"), prefix="evil_model_define")
    fixed = {w for w in words("".join(map(str, harmless.values()))) if not prefixed.match(w)}
    assert {"typedef", "uint8_t", "transfers_end", "reserved0"} <= fixed and len(fixed) < 150
    assert {w for w in words(text) - fixed if not prefixed.match(w)} == set()
    # Colliding op types get distinct enum constants; keywords are harmless behind the prefix.
    ops = re.findall(r"#define (EVIL_MODEL_DEFINE_OP_\w+) (\d+)u", h)
    assert len({n for n, _ in ops}) == len(ops) == len(set(plan_op_types(plan)))
    assert {"EVIL_MODEL_DEFINE_OP_A_B", "EVIL_MODEL_DEFINE_OP_A_B_2", "EVIL_MODEL_DEFINE_OP_A_B_3",
            "EVIL_MODEL_DEFINE_OP_A_B_4", "EVIL_MODEL_DEFINE_OP_A_B_5"} <= {n for n, _ in ops}
    assert "#define EVIL_MODEL_DEFINE_OP_INT " in h and "#define EVIL_MODEL_DEFINE_OP_UNNAMED " in h


def plan_op_types(plan: Plan) -> list[str]:
    return [s.op_type for s in plan.steps]


@needs_gcc
@needs_gxx
def test_hostile_names_compile_and_replay(tmp_path: Path) -> None:
    plan = hostile_plan(tmp_path)
    c = emit_c(plan)
    # The string tables really hold the hostile names, byte for byte (truncated at 512).
    body = '#include <string.h>\nint main(void) { return strcmp(evil_model_define_buffer_names[0], ' \
           + c_string(plan.buffers[0].tensors[0]) + ') != 0; }\n'
    compile_only(c, tmp_path / "names", body)
    for cxx in (False, True):
        r = replay(c, tmp_path / "hostile", cxx=cxx)
        assert r.returncode == 0, r.stderr


@needs_gcc
def test_level_names_collide_and_nonascii(tmp_path: Path) -> None:
    g = import_model(chain_model(n=3, size=4), element_bytes=1)
    plan = checked(g, spill_plan(g, load_target("sn40l"), gap=0))
    ren = {"sram": "none", "hbm": "h-b-m", "ddr": "h b m"}
    lv = tuple(replace(x, name=ren[x.name]) for x in plan.target.levels)
    plan = replace(
        plan, target=replace(plan.target, levels=lv, compute_level="none"),
        buffers=tuple(replace(b, home=ren[b.home] if b.home else None) for b in plan.buffers),
        placements=tuple(replace(p, level=ren[p.level]) for p in plan.placements),
        transfers=tuple(replace(t, src=ren[t.src], dst=ren[t.dst]) for t in plan.transfers),
        metrics=replace(plan.metrics, peak_bytes={ren[k]: v for k, v in plan.metrics.peak_bytes.items()}),
    )
    c = emit_c(plan, prefix="lv")
    h = str(c["plan.h"])
    assert "#define LV_LEVEL_NONE_2 0u" in h and "#define LV_LEVEL_NONE 255u" in h
    assert "#define LV_LEVEL_H_B_M 1u" in h and "#define LV_LEVEL_H_B_M_2 2u" in h
    r = replay(c, tmp_path)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------
# Replay of real models, with spills, two- and three-level targets
# ---------------------------------------------------------------------------------------
REAL_CASES = [
    # model, target, gap, weights in compute level
    ("squeezenet", "ethos-u55-256", 0, True),
    ("shufflenet", "ethos-u55-256", 2, True),
    ("inception_v1", "sn40l", 1, True),
    ("resnet50", "sn40l", 3, False),
    ("squeezenet", "mcu-cortex-m7", 1, True),
]


@pytest.fixture(scope="module")
def graphs() -> dict[str, Graph]:
    return {}


def graph_of(cache: dict[str, Graph], name: str) -> Graph:
    if name not in cache:
        cache[name] = load_graph(str(light(name)), element_bytes=1)
    return cache[name]


@needs_gcc
@pytest.mark.parametrize("model, target, gap, wcl", REAL_CASES)
def test_replay_spill_plans_of_real_models(model: str, target: str, gap: int, wcl: bool, graphs: dict[str, Graph],
                                           tmp_path: Path) -> None:
    g = graph_of(graphs, model)
    plan = checked(g, spill_plan(g, load_target(target), gap=gap, weights_in_compute_level=wcl))
    assert plan.metrics.noncompulsory_bytes > 0  # the plan really spills
    assert plan.target.levels[0].capacity is not None
    reused = {p.offset for p in plan.placements if p.level == plan.target.compute_level}
    assert len(reused) < sum(1 for p in plan.placements if p.level == plan.target.compute_level)  # reuse
    c = emit_c(plan, g)
    h = str(c["plan.h"])
    r = replay(c, tmp_path)
    assert r.returncode == 0, r.stderr
    nbytes = sum(plan.buffers[t.buffer].bytes for t in plan.transfers)
    expected = f"replay ok: {len(plan.steps)} steps, {len(plan.transfers)} transfers, {nbytes} bytes moved"
    assert r.stdout.strip() == expected
    if target == "sn40l":
        assert "_ADDR_BITS 64" in h  # 1536 GiB of DDR needs 64-bit addresses
        hops = {(t.src, t.dst) for t in plan.transfers}
        assert ("sram", "ddr") in hops and ("sram", "hbm") in hops and ("hbm", "sram") in hops


@needs_gcc
@needs_gxx
def test_replay_naive_plan_cxx(graphs: dict[str, Graph], tmp_path: Path) -> None:
    g = graph_of(graphs, "squeezenet")
    plan = checked(g, solve(Problem(g, load_target("ethos-u55-256")), "naive"))
    c = emit_c(plan, g, prefix="sq")
    for cxx in (False, True):
        r = replay(c, tmp_path / str(cxx), cxx=cxx)
        assert r.returncode == 0, r.stderr


@needs_gcc
@needs_gxx
def test_replay_spill_plan_cxx(graphs: dict[str, Graph], tmp_path: Path) -> None:
    g = graph_of(graphs, "inception_v1")
    plan = checked(g, spill_plan(g, load_target("sn40l"), gap=2))
    r = replay(emit_c(plan, g), tmp_path, cxx=True)
    assert r.returncode == 0, r.stderr


def test_solver_plans_replay(graphs: dict[str, Graph], tmp_path: Path) -> None:
    """A real solver's plan at a capacity that forces spills (whatever solver is registered)."""
    g = graph_of(graphs, "squeezenet")
    from stowage.ir.lifetimes import m_r
    tgt = load_target("ethos-u55-256").with_capacity(align_up(m_r(g, True) * 3 // 2, 16))
    plan = checked(g, solve(Problem(g, tgt, weights_in_compute_level=True, time_limit=5.0), "heuristic"))
    r = replay(emit_c(plan, g), tmp_path)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------
# Corrupted plans fail the replay
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain_spill() -> tuple[Graph, Plan]:
    g = import_model(chain_model(n=8, size=16), element_bytes=1)
    return g, checked(g, spill_plan(g, load_target("ethos-u55-256"), gap=0))


@needs_gcc
def test_corrupt_shifted_offset_fails_replay(graphs: dict[str, Graph], tmp_path: Path) -> None:
    g = graph_of(graphs, "squeezenet")
    plan = checked(g, spill_plan(g, load_target("ethos-u55-256"), gap=1))
    # Move a compute placement onto a neighbour that is live at the same time.
    pls = list(plan.placements)
    comp = [i for i, p in enumerate(pls) if p.level == "sram"]
    victim = next(i for i in comp for j in comp
                  if i != j and pls[j].offset != pls[i].offset and pls[i].first <= pls[j].last
                  and pls[j].first <= pls[i].last and plan.buffers[pls[j].buffer].kind == "activation"
                  and plan.buffers[pls[i].buffer].kind == "activation"
                  and pls[j].first <= pls[i].first)
    other = next(j for j in comp if j != victim and pls[j].offset != pls[victim].offset
                 and pls[victim].first <= pls[j].last and pls[j].first <= pls[victim].last
                 and plan.buffers[pls[j].buffer].kind == "activation" and pls[j].first <= pls[victim].first)
    pls[victim] = replace(pls[victim], offset=pls[other].offset)
    bad = replace(plan, placements=tuple(pls))
    assert not validate(g, bad).ok
    r = replay(emit_c(bad, g), tmp_path)
    assert r.returncode == 1
    assert re.search(r"replay: FAIL at step \d+: .* buffer \d+ \(", r.stderr)


@needs_gcc
def test_corrupt_dropped_reload_fails_replay(chain_spill: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = chain_spill
    # gap=0 on a chain: every activation is produced at s, spilled after s... unless consumed at s+1.
    # Drop the first reload: the consumer then reads bytes nobody wrote.
    k = next(k for k, t in enumerate(plan.transfers) if t.phase == "before" and t.src == "dram"
             and plan.buffers[t.buffer].kind == "activation")
    t = plan.transfers[k]
    bad = replace(plan, transfers=plan.transfers[:k] + plan.transfers[k + 1:])
    assert not validate(g, bad).ok
    r = replay(emit_c(bad, g), tmp_path)
    assert r.returncode == 1
    assert f"FAIL at step {t.step}: operator reads buffer {t.buffer} " in r.stderr


@needs_gcc
def test_corrupt_dropped_output_store_fails_replay(chain_spill: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = chain_spill
    k = next(k for k, t in enumerate(plan.transfers) if plan.buffers[t.buffer].kind == "output")
    bad = replace(plan, transfers=plan.transfers[:k] + plan.transfers[k + 1:])
    r = replay(emit_c(bad, g), tmp_path)
    assert r.returncode == 1 and "graph output at home:" in r.stderr


@needs_gcc
def test_corrupt_early_free_fails_replay(tmp_path: Path) -> None:
    # x -> relu0 -> t0; t0 read at steps 1 and 3 (gap 2 keeps it resident).  Ending t0's
    # placement after step 1 frees its bytes; the replay poisons them and step 3 fails.
    g = import_model(chain_model(n=4, size=16), element_bytes=1)
    plan = checked(g, spill_plan(g, load_target("ethos-u55-256"), gap=2))
    i = next(i for i, p in enumerate(plan.placements) if p.level == "sram" and p.last - p.first >= 1
             and plan.buffers[p.buffer].kind == "activation")
    p = plan.placements[i]
    pls = list(plan.placements)
    pls[i] = replace(p, last=p.first)  # ends early; a placement starting later may not cover reads
    # Keep the emitter able to resolve the later read: add a placement of the same bytes that
    # starts after the gap (a "reservation" with no data in it).
    pls.append(Placement(p.buffer, p.level, p.offset, p.first + 1, p.last))
    bad = replace(plan, placements=tuple(pls))
    assert not validate(g, bad).ok
    r = replay(emit_c(bad, g), tmp_path)
    assert r.returncode == 1 and f"buffer {p.buffer} " in r.stderr


def test_uncovered_operand_is_an_emit_error(chain_spill: tuple[Graph, Plan]) -> None:
    g, plan = chain_spill
    p0 = next(p for p in plan.placements if p.level == "sram")
    bad = replace(plan, placements=tuple(p for p in plan.placements if p is not p0))
    with pytest.raises(EmitError, match=rf"buffer {p0.buffer} has no placement in 'sram' covering step {p0.first}"):
        build_schedule(bad, g)


# ---------------------------------------------------------------------------------------
# Including the header in several translation units; 64-bit offsets
# ---------------------------------------------------------------------------------------
@needs_gcc
def test_header_in_two_translation_units_links(chain_spill: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = chain_spill
    write_c(emit_c(plan, g, prefix="net"), tmp_path)
    (tmp_path / "a.c").write_text('#include "plan.h"\n#include "plan.h"\n'
                                  'unsigned a(void) { return net_steps[0].num_reads; }\n')
    (tmp_path / "b.c").write_text('#include "plan.h"\nunsigned a(void);\n'
                                  'int main(void) { return (int)(a() + NET_NUM_STEPS) - 9; }\n')
    r = subprocess.run([GCC, *C_FLAGS, "-Wunused-const-variable", str(tmp_path / "a.c"), str(tmp_path / "b.c"),
                        str(tmp_path / "plan.c"), "-o", str(tmp_path / "ab")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(tmp_path / "ab")]).returncode == 0  # 1 read + 8 steps - 9


@needs_gcc
def test_offsets_beyond_32_bits(chain_spill: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = chain_spill
    big = 5 << 32
    pls = tuple(replace(p, offset=p.offset + big) if p.level == "dram" else p for p in plan.placements)
    lv = tuple(replace(x, capacity=None) if x.name == "dram" else x for x in plan.target.levels)
    wide = replace(plan, placements=pls, target=replace(plan.target, levels=lv))
    c = emit_c(wide, g, prefix="wide")
    h = str(c["plan.h"])
    assert "#define WIDE_ADDR_BITS 64\ntypedef uint64_t wide_addr_t;" in h
    assert f"UINT64_C({big})" in c["plan.c"]
    assert build_schedule(wide, g).address_bits == 64 and build_schedule(plan, g).address_bits == 32
    body = f"int main(void) {{ return wide_buffers[0].home_offset >= UINT64_C({big}) ? 0 : 1; }}\n"
    compile_only(c, tmp_path, body)


def test_empty_tables_compile(tmp_path: Path) -> None:
    # A plan with weights read in place and no weights at all: the weight table is empty.
    g = import_model(chain_model(n=2, size=4), element_bytes=1)
    plan = checked(g, solve(Problem(g, load_target("ethos-u55-256")), "naive"))
    c = emit_c(plan, g, prefix="chain")
    assert "#define CHAIN_NUM_WEIGHTS 0u" in c["plan.h"] and "placeholder: the table is empty" in str(c["plan.c"])
    if GCC and GXX:
        compile_only(c, tmp_path)


# ---------------------------------------------------------------------------------------
# emit_all and the CLI
# ---------------------------------------------------------------------------------------
def test_emit_all_writes_three_files(chain_spill: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = chain_spill
    out = emit_all(plan, g, tmp_path / "out")
    assert [p.name for p in out] == ["plan.json", "schedule.json", "plan.h", "plan.c"]
    assert load_plan(tmp_path / "out" / "plan.json") == plan
    sched = json.loads((tmp_path / "out" / "schedule.json").read_text())
    assert sched == json.loads(json.dumps(emit_schedule(plan, g)))
    assert emit_all(plan, g, tmp_path / "h", formats=("header",)) == [tmp_path / "h" / n for n in ("plan.h", "plan.c")]
    assert sorted(p.name for p in emit_all(plan, g, tmp_path / "j", formats=["json"])) == ["plan.json", "schedule.json"]


def test_emit_all_failure_leaves_no_file(chain_spill: tuple[Graph, Plan], tmp_path: Path) -> None:
    g, plan = chain_spill
    with pytest.raises(EmitError):
        emit_all(plan, g, tmp_path / "o", prefix="int")
    with pytest.raises(EmitError):
        emit_all(plan, g, tmp_path / "o", formats=("json", "yaml"))
    bad = replace(plan, placements=plan.placements[1:])
    with pytest.raises(EmitError):
        emit_all(bad, g, tmp_path / "o")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stowage", *argv], capture_output=True, text=True)


def test_cli_emit(tmp_path: Path) -> None:
    model = light("squeezenet")
    g = load_graph(str(model), element_bytes=1)
    plan = checked(g, spill_plan(g, load_target("ethos-u55-256"), gap=1))
    save_plan(plan, tmp_path / "p.json")
    r = run_cli("emit", str(tmp_path / "p.json"), "--format", "header", "-o", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in (tmp_path / "h").iterdir()) == ["plan.c", "plan.h"]
    h = (tmp_path / "h" / "plan.h").read_text()
    assert "#define LIGHT_SQUEEZENET_NUM_STEPS 65u" in h
    assert "{LIGHT_SQUEEZENET_NODE_UNKNOWN, " in (tmp_path / "h" / "plan.c").read_text()
    r = run_cli("emit", str(tmp_path / "p.json"), "--format", "all", "--model", str(model), "--c-prefix", "sq",
                "-o", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in (tmp_path / "a").iterdir()) == ["plan.c", "plan.h", "plan.json", "schedule.json"]
    h2 = (tmp_path / "a" / "plan.h").read_text()
    assert "#define SQ_NUM_STEPS 65u" in h2 and "SQ_NODE_UNKNOWN, " not in (tmp_path / "a" / "plan.c").read_text()
    assert json.loads((tmp_path / "a" / "schedule.json").read_text())["c_prefix"] == "sq"


def test_cli_emit_errors(chain_spill: tuple[Graph, Plan], tmp_path: Path) -> None:
    _, plan = chain_spill
    save_plan(plan, tmp_path / "p.json")
    r = run_cli("emit", str(tmp_path / "p.json"), "--c-prefix", "int", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.startswith("stowage: error: --c-prefix 'int' is a C or C++ keyword")
    assert not (tmp_path / "o").exists()
    r = run_cli("emit", str(tmp_path / "p.json"), "--format", "header,weights", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.startswith("stowage: error: --format weights/weights-c needs --model")
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "o").exists()
    r = run_cli("emit", str(tmp_path / "p.json"), "--format", "header,yaml", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown output format 'yaml'" in r.stderr and not (tmp_path / "o").exists()
    r = run_cli("emit", str(tmp_path / "missing.json"), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "plan file not found" in r.stderr
    # A plan that fails validation against its model is refused when --model is given.
    model = light("squeezenet")
    r = run_cli("emit", str(tmp_path / "p.json"), "--model", str(model), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "stowage: error:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # > 1.5 s warm
@needs_gcc
def test_cli_compile_emits_header_that_replays(tmp_path: Path) -> None:
    from helpers import save

    model = save(diamond_model(), tmp_path / "dia mond.onnx")
    out = tmp_path / "out"
    r = run_cli("compile", str(model), "--element-bytes", "1", "--capacity", "48", "--weights-in-sram",
                "--time-limit", "2", "--emit", "header", "--c-prefix", "dia", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in out.iterdir()) == ["plan.c", "plan.h", "plan.json"]
    assert f"wrote {out / 'plan.json'}, {out / 'plan.h'}, {out / 'plan.c'}" in r.stdout
    h = (out / "plan.h").read_text()
    assert "typedef uint32_t dia_addr_t;" in h
    rr = replay({n: (out / n).read_text() for n in ("plan.h", "plan.c")}, tmp_path / "replay")
    assert rr.returncode == 0, rr.stderr
    r = run_cli("compile", str(model), "--element-bytes", "1", "--in-place", "off", "-o", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in (tmp_path / "d").iterdir()) == ["plan.c", "plan.h", "plan.json", "schedule.json"]
    assert "#define DIA_MOND_NUM_STEPS 4u" in (tmp_path / "d" / "plan.h").read_text()
    r = run_cli("compile", str(model), "--emit", "yaml", "-o", str(tmp_path / "e"))
    assert r.returncode == 2 and "unknown output format 'yaml'" in r.stderr and not (tmp_path / "e").exists()
    r = run_cli("compile", str(model), "--element-bytes", "1", "--emit", "header,weights", "-o", str(tmp_path / "e"))
    assert r.returncode == 2 and "cannot be used with --element-bytes 1" in r.stderr and not (tmp_path / "e").exists()


# ---------------------------------------------------------------------------------------
# Property: random DAGs, random spill plans, validator-checked, replayed in C
# ---------------------------------------------------------------------------------------
def random_dag(draw: st.DrawFn) -> Graph:
    """x[1,k] and two weights feed n Relu/Add/Mul nodes over earlier tensors; the last tensor
    and sometimes one more are outputs."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    k = draw(st.integers(1, 24))
    n = draw(st.integers(1, 10))
    avail = ["x", "W0", "W1"]
    nodes = []
    for i in range(n):
        op = draw(st.sampled_from(["Relu", "Add", "Mul"]))
        ins = [draw(st.sampled_from(avail))] if op == "Relu" else [draw(st.sampled_from(avail)) for _ in range(2)]
        if i == 0 and all(x.startswith("W") for x in ins):
            ins[0] = "x"
        nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"n{i}"))
        avail.append(f"t{i}")
    outs = [f"t{n - 1}"]
    if n > 2 and draw(st.booleans()):
        outs.insert(0, f"t{draw(st.integers(0, n - 2))}")
    inits = [numpy_helper.from_array(np.ones((1, k), np.float32), f"W{j}") for j in range(2)]
    g = helper.make_graph(nodes, "rnd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, k]) for o in outs],
                          initializer=inits)
    return import_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                        element_bytes=draw(st.sampled_from([1, 3, 4])))


@needs_gcc
@given(data=st.data())
@settings(max_examples=12, deadline=None)
def test_random_spill_plans_replay(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    g = random_dag(data.draw)
    target = load_target(data.draw(st.sampled_from(["ethos-u55-256", "sn40l", "mcu-cortex-m7"])))
    plan = spill_plan(g, target, gap=data.draw(st.integers(0, 3)), weights_in_compute_level=data.draw(st.booleans()))
    checked(g, plan)
    sch = build_schedule(plan, g)
    # Execution order: transfers sorted by (step, phase), each step's slices partition the table.
    assert [(t.step, t.phase == "after") for t in sch.transfers] == sorted((t.step, t.phase == "after")
                                                                          for t in sch.transfers)
    assert sch.steps[0].transfers_before == 0 and sch.steps[-1].transfers_end == len(plan.transfers)
    r = replay(emit_c(plan, g, prefix="rnd"), tmp_path_factory.mktemp("rnd"))
    assert r.returncode == 0, r.stderr
    # Every dropped reload of a produced buffer is caught by the replay at its reader.
    reloads = [k for k, t in enumerate(plan.transfers)
               if t.phase == "before" and plan.buffers[t.buffer].kind in ("activation", "output")]
    if reloads:
        k = data.draw(st.sampled_from(reloads))
        bad = replace(plan, transfers=plan.transfers[:k] + plan.transfers[k + 1:])
        r = replay(emit_c(bad, g, prefix="rnd"), tmp_path_factory.mktemp("rnd"))
        assert r.returncode == 1 and f"buffer {plan.transfers[k].buffer} " in r.stderr


def test_duplicate_node_names_get_their_own_node_index() -> None:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="dup"), helper.make_node("Relu", ["a"], ["y"], name="dup")]
    g = import_model(helper.make_model(helper.make_graph(
        nodes, "dups", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]), opset_imports=[helper.make_opsetid("", 17)]),
        element_bytes=1)
    plan = checked(g, solve(Problem(g, load_target("ethos-u55-256")), "naive"))
    assert [s["node"] for s in emit_schedule(plan, g)["steps"]] == [0, 1]
    assert [s["node"] for s in emit_schedule(plan)["steps"]] == [None, None]


# ---------------------------------------------------------------------------------------
# Transfer kinds, --separate-io, the weight blob (whole-tensor plans; tiled: test_emit_tiled.py)
# ---------------------------------------------------------------------------------------
def test_transfer_kinds_of_a_spill_plan() -> None:
    # chain x -> t0 -> t1 -> t2 -> y with gap 0: every activation is spilled after its step and
    # reloaded before the next; x is loaded, y stored.
    g = import_model(chain_model(n=4, size=16), element_bytes=1)
    plan = checked(g, spill_plan(g, load_target("ethos-u55-256"), gap=0))
    d = emit_schedule(plan, g)
    names = {b["id"]: b["name"] for b in d["buffers"]}
    assert [(t["step"], t["kind"], names[t["buffer"]]) for t in d["transfers"]] == [
        (0, "load", "x"), (0, "spill", "t0"), (1, "reload", "t0"), (1, "spill", "t1"), (2, "reload", "t1"),
        (2, "spill", "t2"), (3, "reload", "t2"), (3, "store", "y")]
    src = str(emit_c(plan, g, prefix="ch")["plan.c"])
    assert "CH_TRANSFER_RELOAD, CH_LEVEL_DRAM, CH_LEVEL_SRAM}, /* 2: reload t0 */\n" in src


def test_separate_io_diamond(diamond: Graph, tmp_path: Path) -> None:
    plan = solve(Problem(diamond, load_target("ethos-u55-256"), weights_in_compute_level=True), "naive")
    d = emit_schedule(plan, diamond, separate_io=True)
    assert d["separate_io"] is True
    # x (dram @32) and y (dram @48) leave dram: it keeps the weights W @0 (8 B) and shape @16
    # (2 B), extent 18; each gets a region of its own 8 bytes, at offset 0.
    assert [(x["name"], x["extent"], x["region"], x["region_buffer"]) for x in d["levels"]] == [
        ("sram", 88, "memory", None), ("dram", 18, "memory", None), ("input:x", 8, "input", 3),
        ("output:y", 8, "output", 6)]
    assert [(t["kind"], t["src"], t["src_offset"], t["dst"], t["dst_offset"]) for t in d["transfers"]] == [
        ("load", "input:x", 0, "sram", 0), ("load", "dram", 0, "sram", 48), ("store", "sram", 80, "output:y", 0)]
    c = emit_c(plan, diamond, prefix="dia", separate_io=True)
    h = str(c["plan.h"])
    assert "#define DIA_LEVEL_IN_X 2u" in h and "#define DIA_LEVEL_OUT_Y 3u" in h
    assert "#define DIA_DRAM_EXTENT 18u\n" in h and "#define DIA_IN_X_EXTENT 8u\n" in h
    assert "#define DIA_NUM_IO_REGIONS 2u\n" in h
    if GCC and GXX:
        # The firmware idiom: arrays sized by the macros, one per level and region.
        compile_only(c, tmp_path / "arena", "static uint8_t sram[DIA_SRAM_EXTENT], dram[DIA_DRAM_EXTENT];\n"
                     "int main(void) { return (int)(sizeof sram + sizeof dram) - 106 + "
                     "(int)dia_levels[DIA_LEVEL_IN_X].extent - 8; }\n")
        r = replay(c, tmp_path / "replay")
        assert r.returncode == 0, r.stderr


def test_weight_blob_needs_the_models_bytes(diamond: Graph, tmp_path: Path) -> None:
    plan = solve(Problem(diamond, load_target("ethos-u55-256"), weights_in_compute_level=True), "naive")
    with pytest.raises(EmitError, match="element-bytes 1"):
        emit_c(plan, diamond, weights=True)  # sizes of an 8-bit override are not the model's
    with pytest.raises(EmitError, match="needs the model"):
        emit_c(plan, None, weights=True)


@needs_gcc
def test_weight_blob_layout_and_checksums(tmp_path: Path) -> None:
    import numpy as np

    from helpers import save

    model = save(diamond_model(), tmp_path / "dia.onnx")
    g = load_graph(str(model))  # natural sizes: fp32 W is 1 x 8 x 4 B = 32 B, the shape 2 x 8 B = 16 B
    plan = checked(g, solve(Problem(g, load_target("ethos-u55-256"), weights_in_compute_level=True), "naive"))
    files = emit_c(plan, g, prefix="dia", weights=True)
    d = emit_schedule(plan, g)
    assert [(w["offset"], w["bytes"]) for w in d["weights"]] == [(0, 32), (32, 16)]
    blob = files["weights.bin"]
    assert isinstance(blob, bytes) and len(blob) == 48
    assert blob[:32] == np.arange(8, dtype="<f4").tobytes()  # W, as helpers.diamond_model makes it
    assert blob[32:48] == np.array([1, 8], "<i8").tobytes()  # the Reshape's shape constant, little-endian
    from stowage.backend.emit import crc32

    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
    assert f"{crc32(blob[32:48])}u, DIA_LEVEL_DRAM" in str(files["plan.c"])
    r = replay(files, tmp_path / "ok", blob=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("; weights checked"), r.stderr
    # A blob whose bytes moved is refused by the checksums.
    files["weights.bin"] = blob[1:] + blob[:1]
    r = replay(files, tmp_path / "bad", blob=True)
    assert r.returncode == 1 and "do not match the table's CRC-32" in r.stderr
