"""Target (memory hierarchy) files: loading, units, extends, and one-line errors that name the
file, the key and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stowage import cli
from stowage.errors import TargetError
from stowage.targets.hierarchy import list_presets, load_target, parse_size

BASIC = """
name = "mine"
compute_level = "sram"
[homes]
weights = "flash"
[[levels]]
name = "sram"
capacity = "256KiB"
alignment = 16
read_bandwidth = "4GB/s"
write_bandwidth = 4e9
[[levels]]
name = "dram"
capacity = "1.5MiB"
[[levels]]
name = "flash"
writable = false
"""


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, expected",
    [("256KiB", 262144), ("256K", 262144), ("2MB", 2_000_000), ("1.5MiB", 1572864),
     ("1GiB", 1 << 30), (4096, 4096), ("17", 17), ("3 KB", 3000)],
)
def test_parse_size_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-3KiB", "1.5B", True, -1, "12 parsecs"])
def test_parse_size_rejects(bad):
    with pytest.raises(TargetError):
        parse_size(bad)


def test_load_basic_file(tmp_path):
    h = load_target(write(tmp_path, BASIC))
    assert h.level_names == ("sram", "dram", "flash")
    assert h.compute.capacity == 262144 and h.compute.alignment == 16
    assert h.compute.read_bandwidth == 4e9 and h.compute.write_bandwidth == 4e9
    assert h.level("dram").capacity == 1572864 and h.level("flash").capacity is None
    # Homes default to the slowest level unless given; outputs must be writable, so a
    # read-only slowest level cannot be the default outputs home.
    assert h.weights_home == "flash"
    assert h.spill_levels()[0].name == "dram"
    assert h.hops("sram", "flash") == 2


def test_extends_a_preset_changes_one_capacity(tmp_path):
    p = write(tmp_path, 'extends = "ethos-u55-256"\nname = "u55-512"\n[[levels]]\nname = "sram"\ncapacity = "512KiB"\n')
    h = load_target(p)
    base = load_target("ethos-u55-256")
    assert h.name == "u55-512" and h.compute.capacity == 512 * 1024
    assert h.compute.alignment == base.compute.alignment
    assert h.level("dram") == base.level("dram") and h.weights_home == base.weights_home


def test_extends_a_relative_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, BASIC, "base.toml")
    p = write(tmp_path, 'extends = "../base.toml"\nname = "child"\n[[levels]]\nname = "l3"\ncapacity = 8\n',
              "sub/child.toml")
    h = load_target(p)
    assert h.level_names == ("sram", "dram", "flash", "l3") and h.level("l3").capacity == 8


def test_extends_cycle_is_refused(tmp_path):
    write(tmp_path, 'extends = "b.toml"\nname = "a"\n', "a.toml")
    write(tmp_path, 'extends = "./a.toml"\nname = "b"\n', "b.toml")
    with pytest.raises(TargetError, match=r"key 'extends': circular extends: .*a.toml -> .*b.toml -> .*a.toml"):
        load_target(tmp_path / "a.toml")


def test_extends_self_is_refused(tmp_path):
    write(tmp_path, 'extends = "t.toml"\nname = "a"\n')
    with pytest.raises(TargetError, match="circular extends"):
        load_target(tmp_path / "t.toml")


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda t: t.replace('name = "mine"', 'name = "mine"\ncolour = "red"'),
         ["key 'colour'",
          "unknown key; allowed: compute, compute_level, description, extends, homes, levels, name, source"]),
        (lambda t: t.replace('capacity = "256KiB"', 'capacity = "lots"'),
         ["key 'levels[0](sram).capacity'", "'lots' is not a size", "KiB"]),
        (lambda t: t.replace('capacity = "256KiB"', "capacity = 0"),
         ["key 'levels[0](sram).capacity'", "must be positive"]),
        (lambda t: t.replace("alignment = 16", "alignment = 12"),
         ["key 'levels[0](sram).alignment'", "positive power of two, got 12"]),
        (lambda t: t.replace('compute_level = "sram"', 'compute_level = "l1"'),
         ["key 'compute_level'", "'l1' is not a level; allowed: sram, dram, flash"]),
        (lambda t: t.replace('weights = "flash"', 'weights = "rom"'),
         ["key 'homes.weights'", "'rom' is not a level; allowed: sram, dram, flash"]),
        (lambda t: t.replace('weights = "flash"', 'weights = "flash"\nscratch = "sram"'),
         ["key 'homes.scratch'", "allowed: inputs, outputs, weights"]),
        (lambda t: t.replace('weights = "flash"', 'outputs = "flash"'),
         ["key 'homes.outputs'", "not writable"]),
        (lambda t: t.replace("alignment = 16", "alignment = 16\nspeed = 3"),
         ["key 'levels[0].speed'",
          "unknown key; allowed: alignment, burst_bytes, capacity, latency_cycles, latency_s, name"]),
        (lambda t: t.replace("write_bandwidth = 4e9", 'write_bandwidth = "fast"'),
         ["write_bandwidth", "'fast' is not a size"]),
        (lambda t: t + '[[levels]]\nname = "sram"\n',
         ["key 'levels'", "level name 'sram' appears twice"]),
    ],
)
def test_malformed_target_names_file_key_and_allowed(tmp_path, edit, fragments):
    p = write(tmp_path, edit(BASIC))
    with pytest.raises(TargetError) as exc:
        load_target(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg
    for f in fragments:
        assert f in msg, (f, msg)


def test_invalid_toml(tmp_path):
    p = write(tmp_path, "name = \n[[levels]\n")
    with pytest.raises(TargetError, match=f"{p}: not valid TOML"):
        load_target(p)


def test_missing_target_file(tmp_path):
    with pytest.raises(TargetError, match=r"target file not found: .*nope.toml"):
        load_target(tmp_path / "nope.toml")


def test_unknown_preset_lists_presets():
    with pytest.raises(TargetError, match=r"unknown target 'tpu9'.*ethos-u55-256"):
        load_target("tpu9")


def test_missing_extends_file_names_referrer(tmp_path):
    p = write(tmp_path, 'extends = "gone.toml"\nname = "x"\n')
    with pytest.raises(TargetError, match=f"{p}: key 'extends': target file not found: .*gone.toml"):
        load_target(p)


def test_presets_have_sources_and_expected_levels():
    presets = {h.name: h for h in list_presets()}
    assert set(presets) >= {"ethos-u55-256", "mcu-cortex-m7", "edgetpu", "sn40l"}
    for h in presets.values():
        assert h.source and h.description and h.compute.capacity
    assert presets["ethos-u55-256"].compute.capacity == 256 * 1024
    assert presets["sn40l"].level_names == ("sram", "hbm", "ddr")
    assert not presets["mcu-cortex-m7"].level("flash").writable
    assert presets["edgetpu"].compute.capacity == 8 << 20


def test_targets_command_lists_presets_with_levels(capsys):
    assert cli.main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "ethos-u55-256  (default)" in out
    assert re.search(r"- sram +256 KiB +align 16 +read 4 GB/s", out)
    for name in ("mcu-cortex-m7", "edgetpu", "sn40l", "- hbm", "- flash", "read-only"):
        assert name in out


def test_targets_command_shows_a_file_and_errors_cleanly(tmp_path, capsys):
    p = write(tmp_path, BASIC)
    assert cli.main(["targets", str(p)]) == 0
    assert "mine" in capsys.readouterr().out
    assert cli.main(["targets", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stowage: error: target file not found") and err.count("\n") == 1
