"""Memory hierarchies as data.

A target file (TOML) lists memory levels from fastest to slowest::

    name = "my-npu"
    compute_level = "sram"          # the level operators read and write
    extends = "ethos-u55-256"       # optional: a preset name or a path, relative to this file
    [homes]                         # where data lives before/after the run (default: slowest)
    weights = "flash"
    inputs = "dram"
    outputs = "dram"
    [[levels]]
    name = "sram"
    capacity = "256KiB"             # bytes or a size with unit; absent = unbounded
    alignment = 16                  # bytes, a power of two
    read_bandwidth = "4GB"          # bytes per second
    write_bandwidth = "4GB"
    writable = true                 # false for flash: nothing may be copied into it

With ``extends`` each listed level updates the parent's level of the same name (or is appended
if new), so a derived file can change one capacity without repeating the rest.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from stowage.errors import TargetError

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: Any, what: str = "size") -> int:
    """Bytes from an int or a string such as ``"256KiB"``, ``"1.5MiB"``, ``"2MB"``.

    ``KiB/MiB/GiB`` and bare ``K/M/G`` are powers of 1024, ``KB/MB/GB`` powers of 1000."""
    if isinstance(value, bool):
        raise TargetError(f"{what}: expected a size in bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise TargetError(f"{what}: must not be negative, got {value}")
        return value
    if isinstance(value, float):
        if value < 0 or value != int(value):
            raise TargetError(f"{what}: expected a whole number of bytes, got {value}")
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _UNITS:
            n = float(m.group(1)) * _UNITS[m.group(2).lower()]
            if n != int(n):
                raise TargetError(f"{what}: {value!r} is not a whole number of bytes")
            return int(n)
    raise TargetError(
        f"{what}: {value!r} is not a size; use bytes or a number with a unit "
        "(B, KiB, MiB, GiB, KB, MB, GB)"
    )


@dataclass(frozen=True)
class Level:
    name: str
    capacity: int | None  # None = unbounded
    alignment: int = 1
    read_bandwidth: float | None = None  # bytes/s; None = unknown
    write_bandwidth: float | None = None
    writable: bool = True


@dataclass(frozen=True)
class Hierarchy:
    name: str
    levels: tuple[Level, ...]
    compute_level: str
    weights_home: str
    inputs_home: str
    outputs_home: str
    description: str = ""
    source: str = ""
    path: str | None = None

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise TargetError(f"target '{self.name}' has no level '{name}' (levels: {', '.join(self.level_names)})")

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(lv.name for lv in self.levels)

    def index(self, name: str) -> int:
        return self.level_names.index(self.level(name).name)

    def hops(self, a: str, b: str) -> int:
        """Level distance: moving one byte from ``a`` to ``b`` costs this many byte-hops."""
        return abs(self.index(a) - self.index(b))

    @property
    def compute(self) -> Level:
        return self.level(self.compute_level)

    def with_capacity(self, capacity: int | None, level: str | None = None) -> Hierarchy:
        """A copy with one level's capacity replaced (default: the compute level)."""
        name = level or self.compute_level
        self.level(name)
        return replace(
            self,
            levels=tuple(replace(lv, capacity=capacity) if lv.name == name else lv for lv in self.levels),
        )

    def spill_levels(self) -> tuple[Level, ...]:
        """Writable levels slower than the compute level, nearest first."""
        ci = self.index(self.compute_level)
        return tuple(lv for lv in self.levels[ci + 1:] if lv.writable)


_LEVEL_KEYS = {"name", "capacity", "alignment", "read_bandwidth", "write_bandwidth", "writable"}
_TOP_KEYS = {"name", "description", "source", "compute_level", "extends", "homes", "levels"}
_HOME_KEYS = {"weights", "inputs", "outputs"}


def _err(where: str, key: str, msg: str) -> TargetError:
    return TargetError(f"{where}: key '{key}': {msg}")


def _parse_level(where: str, i: int, raw: Mapping[str, Any], base: Level | None) -> Level:
    if not isinstance(raw, Mapping):
        raise _err(where, f"levels[{i}]", "must be a table with name, capacity, alignment, ...")
    unknown = set(raw) - _LEVEL_KEYS
    if unknown:
        raise _err(where, f"levels[{i}].{sorted(unknown)[0]}",
                   f"unknown key; allowed: {', '.join(sorted(_LEVEL_KEYS))}")
    name = raw.get("name", base.name if base else None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name or ""):
        raise _err(where, f"levels[{i}].name", "required; letters, digits, '_' or '-', not starting with a digit")
    key = f"levels[{i}]({name})"
    cap: int | None = base.capacity if base else None
    if "capacity" in raw:
        cv = raw["capacity"]
        if isinstance(cv, str) and cv.strip().lower() in ("unbounded", "none", "inf"):
            cap = None
        else:
            try:
                cap = parse_size(cv, f"{where}: key '{key}.capacity'")
            except TargetError as exc:
                raise TargetError(str(exc) + "; or \"unbounded\"") from None
            if cap == 0:
                raise _err(where, f"{key}.capacity", "must be positive (omit it for unbounded)")
    align = raw.get("alignment", base.alignment if base else 1)
    if isinstance(align, bool) or not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise _err(where, f"{key}.alignment", f"must be a positive power of two, got {align!r}")
    bws: dict[str, float | None] = {}
    for bw_key in ("read_bandwidth", "write_bandwidth"):
        bw = raw.get(bw_key, getattr(base, bw_key) if base else None)
        if (bw is not None and not isinstance(bw, (int, float))) or isinstance(bw, bool):
            if isinstance(bw, str):
                text = bw.strip()
                text = text[:-2] if text.lower().endswith("/s") else text
                bw = float(parse_size(text, f"{where}: key '{key}.{bw_key}'"))
            else:
                raise _err(where, f"{key}.{bw_key}", f"must be bytes per second (a number or \"4GB\"), got {bw!r}")
        if bw is not None and bw <= 0:
            raise _err(where, f"{key}.{bw_key}", "must be positive")
        bws[bw_key] = float(bw) if bw is not None else None
    writable = raw.get("writable", base.writable if base else True)
    if not isinstance(writable, bool):
        raise _err(where, f"{key}.writable", f"must be true or false, got {writable!r}")
    return Level(name, cap, align, bws["read_bandwidth"], bws["write_bandwidth"], writable)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"target file not found: {path}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TargetError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise TargetError(f"{path}: cannot read target file: {exc.strerror}") from None


def _build(
    raw: Mapping[str, Any], where: str, base_dir: Path | None, seen: tuple[str, ...], path: str | None
) -> Hierarchy:
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise _err(where, sorted(unknown)[0], f"unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
    parent: Hierarchy | None = None
    if "extends" in raw:
        ext = raw["extends"]
        if not isinstance(ext, str) or not ext:
            raise _err(where, "extends", "must be a preset name or a path to a target file")
        parent = _load(ext, base_dir, seen, where)
    name = raw.get("name", parent.name if parent else None)
    if not isinstance(name, str) or not name:
        raise _err(where, "name", "required, a non-empty string")
    levels: list[Level] = list(parent.levels) if parent else []
    raw_levels = raw.get("levels", [])
    if not isinstance(raw_levels, list):
        raise _err(where, "levels", "must be an array of tables ([[levels]])")
    own_names: set[str] = set()
    for i, rl in enumerate(raw_levels):
        rname = rl.get("name") if isinstance(rl, Mapping) else None
        if isinstance(rname, str):
            if rname in own_names:
                raise _err(where, "levels", f"level name '{rname}' appears twice")
            own_names.add(rname)
        match = next((j for j, lv in enumerate(levels) if lv.name == rname), None)
        lv = _parse_level(where, i, rl, levels[match] if match is not None else None)
        if match is not None:
            levels[match] = lv
        else:
            levels.append(lv)
    if not levels:
        raise _err(where, "levels", "at least one level is required")
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _err(where, "levels", f"level name '{dup}' appears twice")
    compute = raw.get("compute_level", parent.compute_level if parent else levels[0].name)
    if compute not in names:
        raise _err(where, "compute_level", f"'{compute}' is not a level; allowed: {', '.join(names)}")
    homes_raw = raw.get("homes", {})
    if not isinstance(homes_raw, Mapping):
        raise _err(where, "homes", "must be a table with weights, inputs, outputs")
    bad = set(homes_raw) - _HOME_KEYS
    if bad:
        raise _err(where, f"homes.{sorted(bad)[0]}", "unknown key; allowed: inputs, outputs, weights")
    slowest = levels[-1].name
    # Outputs are written to their home, so by default they go to the slowest writable level.
    slowest_writable = next((lv.name for lv in reversed(levels) if lv.writable), slowest)
    homes: dict[str, str] = {}
    for k in ("weights", "inputs", "outputs"):
        fallback = slowest_writable if k == "outputs" else slowest
        default = getattr(parent, f"{k}_home") if parent and getattr(parent, f"{k}_home") in names else fallback
        v = homes_raw.get(k, default)
        if v not in names:
            raise _err(where, f"homes.{k}", f"'{v}' is not a level; allowed: {', '.join(names)}")
        homes[k] = v
    by_name = {lv.name: lv for lv in levels}
    if not by_name[compute].writable:
        raise _err(where, "compute_level", f"'{compute}' is not writable")
    for k in ("inputs", "outputs"):
        if k == "outputs" and not by_name[homes[k]].writable:
            raise _err(where, f"homes.{k}", f"'{homes[k]}' is not writable; outputs must be stored there")
    desc = raw.get("description", parent.description if parent else "")
    src = raw.get("source", parent.source if parent else "")
    for k, v in (("description", desc), ("source", src)):
        if not isinstance(v, str):
            raise _err(where, k, "must be a string")
    return Hierarchy(
        name=name, levels=tuple(levels), compute_level=compute,
        weights_home=homes["weights"], inputs_home=homes["inputs"], outputs_home=homes["outputs"],
        description=desc, source=src, path=path,
    )


def _preset_files() -> dict[str, Any]:
    root = resources.files("stowage.targets.presets")
    return {p.name[:-5]: p for p in root.iterdir() if p.name.endswith(".toml")}


def list_presets() -> list[Hierarchy]:
    return [load_target(name) for name in sorted(_preset_files())]


def _resolve(spec: str, base_dir: Path | None) -> tuple[str, Path | None]:
    """``(key, path)``: a preset is ``("preset NAME", None)``; a file is keyed by its resolved
    path so that one file reached by two spellings is recognised in an ``extends`` cycle."""
    presets = _preset_files()
    candidate = Path(spec) if base_dir is None or Path(spec).is_absolute() else base_dir / spec
    looks_like_path = spec.endswith(".toml") or "/" in spec or "\\" in spec
    if looks_like_path or (candidate.exists() and spec not in presets):
        return str(candidate.resolve()), candidate
    if spec in presets:
        return f"preset {spec}", None
    raise TargetError(
        f"unknown target '{spec}': not a file and not a preset (presets: {', '.join(sorted(presets))})"
    )


def _load(spec: str, base_dir: Path | None, seen: tuple[str, ...], referrer: str | None = None) -> Hierarchy:
    try:
        key, path = _resolve(spec, base_dir)
    except TargetError as exc:
        if referrer is None:
            raise
        raise _err(referrer, "extends", str(exc)) from None
    if key in seen:
        chain = " -> ".join((*seen, key))
        raise _err(referrer or key, "extends", f"circular extends: {chain}")
    seen = (*seen, key)
    if path is not None:
        if not path.exists() and referrer is not None:
            raise _err(referrer, "extends", f"target file not found: {path}")
        raw = _read_toml(path)
        return _build(raw, str(path), path.parent, seen, str(path))
    name = key.removeprefix("preset ")
    raw = tomllib.loads(_preset_files()[name].read_text(encoding="utf-8"))
    return _build(raw, key, None, seen, None)


def load_target(spec: str | Path) -> Hierarchy:
    """Load a preset by name or a TOML file by path; raises ``TargetError`` naming the file,
    the key and what is allowed."""
    return _load(str(spec), None, ())


DEFAULT_TARGET = "ethos-u55-256"

__all__ = ["DEFAULT_TARGET", "Hierarchy", "Level", "list_presets", "load_target", "parse_size"]
