"""Hostile target files and every valid target shape (issue 17).

Two halves: (1) numbers, nesting and file kinds that used to end in tracebacks or in reading
``/dev/zero`` until memory ran out are one-line ``TargetError``s naming the file and the key;
(2) targets that are valid but unusual -- one level only, a compute level that is the slowest
level, SRAM plus only read-only flash -- plan with every registered solver, and the plans pass
the validator (``solve`` validates every plan; the tests also call it).  A seeded Hypothesis
fuzz of the TOML reader closes the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from stowage.errors import CapacityError, StowageError, TargetError
from stowage.ir.onnx_import import import_model
from stowage.plan.validate import validate
from stowage.solvers.budgets import resolve_capacity
from stowage.solvers.problem import Problem
from stowage.solvers.registry import available, solve
from stowage.targets.hierarchy import (
    MAX_SIZE,
    MAX_TARGET_FILE_BYTES,
    MAX_TOML_DEPTH,
    Hierarchy,
    Level,
    load_target,
    parse_size,
)
from tests.helpers import diamond_model
from tests.spill_cases import fanout_graph

LEVEL = 'name = "x"\n[[levels]]\nname = "sram"\n'


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def one_line_error(spec: str | Path) -> str:
    with pytest.raises(TargetError) as exc:
        load_target(spec)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("key, value, fragment", [
    ("capacity", "1e400", "must be finite"),
    ("capacity", "inf", "must be finite"),
    ("capacity", "nan", "must be finite"),
    ("capacity", "9" * 5000, "thousands of digits"),
    ("capacity", str(1 << 63), "too large"),
    ("capacity", str(MAX_SIZE), "too large"),
    ("capacity", '"1e999999999KiB"', "too large"),
    ("capacity", '"' + "9" * 5000 + '"', "too long"),
    ("capacity", "true", "expected a size"),
    ("capacity", "-inf", "must be finite"),
    ("alignment", str(1 << 80), "power of two"),
    ("alignment", "true", "power of two"),
    ("alignment", "4.0", "power of two"),
    ("read_bandwidth", "inf", "positive and finite"),
    ("read_bandwidth", "nan", "positive and finite"),
    ("read_bandwidth", "1e400", "positive and finite"),
    ("read_bandwidth", "-1", "positive and finite"),
    ("write_bandwidth", "true", "bytes per second"),
    ("write_bandwidth", str(1 << 200), "too large"),
    ("write_bandwidth", '"1e999GB/s"', "too large"),
])
def test_numbers_are_checked(tmp_path: Path, key: str, value: str, fragment: str) -> None:
    p = write(tmp_path, LEVEL + f"{key} = {value}\n")
    msg = one_line_error(p)
    # tomllib itself refuses a 5,000-digit integer, before any key is known: the line is named.
    where = "line 4" if fragment == "thousands of digits" else f"levels[0](sram).{key}"
    assert str(p) in msg and where in msg and fragment in msg, msg
    assert len(msg) < 400


def test_largest_allowed_size_and_exact_units() -> None:
    assert parse_size(MAX_SIZE - 1) == MAX_SIZE - 1
    assert parse_size("1.1KB") == 1100  # exact decimal, not a float product
    assert parse_size("255TiB") == 255 << 40
    with pytest.raises(TargetError, match="too large"):
        parse_size("256TiB")


@pytest.mark.parametrize("spec", ["1e400", "inf", "nan", "9" * 5000, str(1 << 63), "-1", "0x10", "1_000"])
def test_capacity_flag_is_checked(spec: str) -> None:
    target = load_target("ethos-u55-256")
    with pytest.raises(TargetError) as exc:
        resolve_capacity(spec, fanout_graph(), target, False)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 300
    with pytest.raises(TargetError):
        resolve_capacity(1 << 63, fanout_graph(), target, False)
    with pytest.raises(TargetError):
        resolve_capacity(True, fanout_graph(), target, False)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000,
    "a = " + "{b = " * 3000 + "}" * 3000,
    "a = " + "[" * (MAX_TOML_DEPTH + 1) + "]" * (MAX_TOML_DEPTH + 1),
])
def test_deep_nesting_is_refused_unparsed(tmp_path: Path, text: str) -> None:
    assert "nested deeper" in one_line_error(write(tmp_path, text))


def test_brackets_in_strings_and_comments_do_not_count(tmp_path: Path) -> None:
    deep = "[" * 100
    p = write(tmp_path, f'name = "{deep}"\ndescription = \'\'\'{deep}\'\'\'\n# {deep}\n[[levels]]\nname = "sram"\n')
    assert load_target(p).name == deep


def test_non_regular_and_huge_files_are_refused_unread(tmp_path: Path) -> None:
    assert "not a regular file" in one_line_error("/dev/zero")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line_error(fifo)  # would block on open if read
    (tmp_path / "dir.toml").mkdir()
    assert "not a regular file" in one_line_error(tmp_path / "dir.toml")
    huge = write(tmp_path, LEVEL + "#" + "x" * MAX_TARGET_FILE_BYTES + "\n", "huge.toml")
    assert "too large" in one_line_error(huge)


@pytest.mark.parametrize("parent", ["/dev/zero", "fifo.toml", "dir.toml"])
def test_extends_is_checked_the_same_way(tmp_path: Path, parent: str) -> None:
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "dir.toml").mkdir()
    p = write(tmp_path, f'extends = "{parent}"\nname = "x"\n', "child.toml")
    msg = one_line_error(p)
    assert str(p) in msg and "'extends'" in msg and "not a regular file" in msg


def test_long_extends_chains_are_cut(tmp_path: Path) -> None:
    write(tmp_path, LEVEL, "f0.toml")
    for i in range(1, 40):
        write(tmp_path, f'extends = "f{i - 1}.toml"\n', f"f{i}.toml")
    assert "extends chain" in one_line_error(tmp_path / "f39.toml")


def test_read_only_homes_need_a_writable_outputs_home(tmp_path: Path) -> None:
    p = write(tmp_path, 'name = "x"\n[homes]\noutputs = "flash"\n[[levels]]\nname = "sram"\n'
                        '[[levels]]\nname = "flash"\nwritable = false\n')
    msg = one_line_error(p)
    assert "homes.outputs" in msg and "not writable" in msg
    # Without [homes], inputs and weights live in flash and outputs go to the compute level.
    h = load_target(write(tmp_path, 'name = "x"\n[[levels]]\nname = "sram"\n[[levels]]\nname = "flash"\n'
                                    'writable = false\n', "ok.toml"))
    assert (h.inputs_home, h.weights_home, h.outputs_home) == ("flash", "flash", "sram")


# -- every valid target shape plans, with every solver --------------------------------

def one_level(capacity: int | None) -> Hierarchy:
    return Hierarchy(name="mcu", levels=(Level("sram", capacity, 4),), compute_level="sram",
                     weights_home="sram", inputs_home="sram", outputs_home="sram")


def compute_slowest() -> Hierarchy:
    return Hierarchy(name="slow", levels=(Level("l1", 64, 1), Level("sram", None, 1)), compute_level="sram",
                     weights_home="sram", inputs_home="sram", outputs_home="sram")


def sram_flash(capacity: int | None) -> Hierarchy:
    return Hierarchy(name="rom", levels=(Level("sram", capacity, 1), Level("flash", None, 1, writable=False)),
                     compute_level="sram", weights_home="flash", inputs_home="flash", outputs_home="sram")


TARGETS = {"one-level": one_level(None), "one-level-400": one_level(400), "compute-slowest": compute_slowest(),
           "sram-flash": sram_flash(None), "sram-flash-100": sram_flash(100)}


@pytest.mark.parametrize("solver", sorted(available()))
@pytest.mark.parametrize("target_name", sorted(TARGETS))
def test_every_solver_plans_every_target_shape(solver: str, target_name: str) -> None:
    target = TARGETS[target_name]
    graphs = (fanout_graph(), import_model(diamond_model(), element_bytes=1))
    for graph in graphs:
        for weights in (False, True):
            plan = solve(Problem(graph, target, weights_in_compute_level=weights, time_limit=2.0), solver)
            assert validate(graph, plan, target).ok
            compute = target.compute_level
            no_off_chip = all(h == compute for h in (target.inputs_home, target.weights_home, target.outputs_home))
            if no_off_chip:
                assert plan.transfers == () and {p.level for p in plan.placements} == {compute}
            assert all(t.src != t.dst for t in plan.transfers)


def test_one_level_target_keeps_everything_resident() -> None:
    graph = import_model(diamond_model(), element_bytes=1)
    plan = solve(Problem(graph, one_level(None), time_limit=2.0), "heuristic")
    end = len(plan.steps) - 1
    by_buffer = {p.buffer: p for p in plan.placements}
    for b in plan.buffers:
        if b.kind in ("input", "weight") and b.id in by_buffer:
            assert by_buffer[b.id].first == 0
        if b.kind in ("weight", "output") and b.id in by_buffer:
            assert by_buffer[b.id].last == end
    assert plan.metrics.compulsory_bytes == 0 and plan.metrics.noncompulsory_bytes == 0


@pytest.mark.parametrize("solver", ["naive", "minpeak", "heuristic", "exact-alloc"])
def test_one_level_target_too_small_is_one_capacity_error(solver: str) -> None:
    with pytest.raises(StowageError) as exc:
        solve(Problem(fanout_graph(), one_level(48), time_limit=2.0), solver)
    assert "\n" not in str(exc.value)
    assert isinstance(exc.value, (CapacityError, StowageError))


# -- fuzz: random mutations of a valid file are a target or a TargetError -------------

BASE = """name = "fuzz"
compute_level = "sram"
[homes]
weights = "flash"
[[levels]]
name = "sram"
capacity = "256KiB"
alignment = 16
read_bandwidth = "4GB/s"
[[levels]]
name = "dram"
capacity = 1048576
write_bandwidth = 4e9
[[levels]]
name = "flash"
writable = false
"""

NASTY = ["1e400", "inf", "nan", "-inf", "9" * 400, str(1 << 63), "true", "[[[[", "{a={b={", '"', "'''",
         "\x00", "\ud7ff", "0x10", "1_0", "-0", "1.5", '"1.5MiB"', '"unbounded"', "[]", "{}", "\n[[levels]]\n"]


@seed(17)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(BASE)), st.integers(0, 8),
                          st.one_of(st.sampled_from(NASTY), st.text(max_size=6))), min_size=1, max_size=4))
def test_fuzz_target_reader(tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, int, str]]) -> None:
    text = BASE
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    p = tmp_path_factory.mktemp("fuzz") / "t.toml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        h = load_target(p)
    except TargetError as exc:
        assert "\n" not in str(exc)
        return
    assert h.levels and h.compute.writable
    for lv in h.levels:
        assert lv.capacity is None or 0 < lv.capacity < MAX_SIZE
        for bw in (lv.read_bandwidth, lv.write_bandwidth):
            assert bw is None or 0 < bw < float("inf")
