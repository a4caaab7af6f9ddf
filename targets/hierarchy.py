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

Time (optional, ``docs/timing.md``): a ``[compute]`` table describes the compute engine --
``clock_hz``, ``macs_per_cycle``, ``dma_channels``, an ``[compute.efficiency]`` table per
operator class (``OP_CLASSES``), an ``[compute.op_types]`` table per ONNX op type, and for an
Ethos-U class NPU a ``[compute.blocks]`` table of block parameters (``stowage.targets.blocks``:
Vela's block-configuration cycle model replaces the efficiencies where it applies) -- and a
level may give ``latency_cycles`` (or ``latency_s``) and ``burst_bytes``.  A target without
``[compute]`` still plans; its estimated time is unknown (``None``), never invented.

Hostile files are refused before they can hurt: a target (and every file it ``extends``) must
be a regular file of at most ``MAX_TARGET_FILE_BYTES`` (``/dev/zero``, a FIFO or a directory is
never read), nested at most ``MAX_TOML_DEPTH`` brackets deep (``tomllib`` recurses once per
level), and every number is checked for type, finiteness and range before use: sizes are
whole bytes below ``MAX_SIZE`` (2^48), bandwidths positive, finite and at most
``MAX_BANDWIDTH``, alignments powers of two up to ``MAX_ALIGNMENT``; ``true`` is not a number.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from stowage.errors import TargetError
from stowage.targets.blocks import BlockArch, parse_blocks

#: Every size (capacity, ``--capacity``, MiniMalloc sizes and offsets) is below this: 256 TiB is
#: beyond any memory a planner targets, and int64 arithmetic (numpy, the numba search) has
#: room above it for sums of sizes.
MAX_SIZE = 1 << 48
#: The largest alignment a level may ask for (1 GiB).
MAX_ALIGNMENT = 1 << 30
#: The largest bandwidth a level may state, bytes per second (1 EB/s).
MAX_BANDWIDTH = 1e18
#: Target files larger than this are refused before reading (presets are about 1 KiB).
MAX_TARGET_FILE_BYTES = 1 << 20
#: Deepest nesting of arrays and inline tables in a target file (a real one needs 2:
#: ``[[levels]]``); ``tomllib`` recurses once per level, so deeper files are refused unparsed.
MAX_TOML_DEPTH = 16
#: At most this many levels (after ``extends``) and this many files in an ``extends`` chain.
MAX_LEVELS = 64
MAX_EXTENDS_DEPTH = 16
#: A size written as a string is at most this many characters ("1.5MiB" is 6).
_MAX_SIZE_TEXT = 64

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*$", re.ASCII)


def _limit_text(limit: int) -> str:
    return "2^48" if limit == MAX_SIZE else str(limit)


def parse_size(value: Any, what: str = "size", limit: int = MAX_SIZE) -> int:
    """Bytes from an int or a string such as ``"256KiB"``, ``"1.5MiB"``, ``"2MB"``.

    ``KiB/MiB/GiB`` and bare ``K/M/G`` are powers of 1024, ``KB/MB/GB`` powers of 1000.  The
    result is a whole number ``0 <= n < limit`` (default ``MAX_SIZE``); anything else -- a
    bool, ``inf``, ``nan``, ``1e400``, a 5,000-digit integer -- is a one-line ``TargetError``
    naming ``what``.  Strings are computed exactly (``Decimal``), not through floats, so
    ``"1.1KB"`` is 1100 and a huge exponent cannot overflow."""
    allowed = f"a whole number of bytes from 0 to below {_limit_text(limit)}"
    if isinstance(value, bool):
        raise TargetError(f"{what}: expected a size in bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise TargetError(f"{what}: must not be negative, got {value}")
        if value >= limit:
            raise TargetError(f"{what}: too large; allowed: {allowed}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TargetError(f"{what}: must be finite, got {value}; allowed: {allowed}")
        if value < 0 or value != int(value):
            raise TargetError(f"{what}: expected a whole number of bytes, got {value}")
        if value >= limit:
            raise TargetError(f"{what}: too large; allowed: {allowed}")
        return int(value)
    if isinstance(value, str):
        if len(value) > _MAX_SIZE_TEXT:
            raise TargetError(f"{what}: a size of {len(value)} characters is too long; allowed: {allowed}")
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _UNITS:
            try:
                number = Decimal(m.group(1))
            except InvalidOperation:  # pragma: no cover - the regex admits only decimal numbers
                number = Decimal(-1)
            # Compare before multiplying: an exponent like 1e999999999 never reaches arithmetic.
            if number >= limit:
                raise TargetError(f"{what}: {value!r} is too large; allowed: {allowed}")
            n = number * _UNITS[m.group(2).lower()]
            if n != n.to_integral_value():
                raise TargetError(f"{what}: {value!r} is not a whole number of bytes")
            if n >= limit:
                raise TargetError(f"{what}: {value!r} is too large; allowed: {allowed}")
            return int(n)
    raise TargetError(
        f"{what}: {value!r:.80} is not a size; use bytes or a number with a unit "
        "(B, KiB, MiB, GiB, KB, MB, GB)"
    )


def parse_bandwidth(value: Any, what: str) -> float:
    """Bytes per second from a number (``4e9``) or a size string (``"4GB"``, ``"4GB/s"``):
    positive, finite, at most ``MAX_BANDWIDTH``; a bool is not a number."""
    allowed = f"bytes per second, a positive finite number up to {MAX_BANDWIDTH:g} (4e9 or \"4GB/s\")"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TargetError(f"{what}: must be bytes per second (a number or \"4GB\"), got {value!r:.80}")
    if isinstance(value, str):
        text = value.strip()
        text = text[:-2] if text.lower().endswith("/s") else text
        bw = float(parse_size(text, what, limit=int(MAX_BANDWIDTH) + 1))
    elif isinstance(value, int):
        if abs(value) > MAX_BANDWIDTH:
            raise TargetError(f"{what}: too large; allowed: {allowed}")
        bw = float(value)
    else:
        bw = value
    if not math.isfinite(bw) or bw <= 0 or bw > MAX_BANDWIDTH:
        raise TargetError(f"{what}: must be positive and finite, got {value!r:.80}; allowed: {allowed}")
    return bw


@dataclass(frozen=True)
class Level:
    name: str
    capacity: int | None  # None = unbounded
    alignment: int = 1
    read_bandwidth: float | None = None  # bytes/s; None = unknown
    write_bandwidth: float | None = None
    writable: bool = True
    #: First-byte latency of an access, in compute-clock cycles or in seconds (at most one of
    #: the two; None = not stated, taken as 0 by the time model).
    latency_cycles: int | None = None
    latency_s: float | None = None
    #: Transfers move whole bursts: a copy of ``n`` bytes costs ``ceil(n / burst) * burst``.
    burst_bytes: int | None = None


#: Operator classes the ``[compute.efficiency]`` table may name (``stowage.solvers.timing``
#: classifies every operator into one of them).
OP_CLASSES = ("conv", "depthwise", "matmul", "elementwise", "pool", "other")
#: The largest clock a target may state (1 THz) and the most MACs per cycle (2^32).
MAX_CLOCK_HZ = 1e12
MAX_MACS_PER_CYCLE = 1 << 32
MAX_DMA_CHANNELS = 64
#: The longest latency a level may state: 2^32 cycles, or one second.
MAX_LATENCY_CYCLES = 1 << 32
MAX_LATENCY_S = 1.0


@dataclass(frozen=True)
class Compute:
    """The compute engine, for time estimates only (planning for bytes never reads it).

    A step's compute time is ``cost / (macs_per_cycle * efficiency * clock_hz)``, where the
    efficiency is the op type's entry in ``op_types`` if any, else its class's entry in
    ``efficiency``, else 1.0 (``stowage.solvers.timing``).  ``dma_channels`` copies run at
    once; copies on one channel run one after another.  With ``blocks`` (an Ethos-U class NPU)
    an operator the block model describes gets Vela's cycles instead
    (``stowage.solvers.block_model``)."""

    clock_hz: float
    macs_per_cycle: int
    dma_channels: int = 1
    efficiency: Mapping[str, float] = field(default_factory=dict)
    op_types: Mapping[str, float] = field(default_factory=dict)
    #: ``[compute.blocks]``: the NPU's block parameters (None: the efficiency model only).
    blocks: BlockArch | None = None

    def __post_init__(self) -> None:
        # Plain dicts (copies): a target is pickled to sweep workers and turned into JSON by
        # ``stowage targets --json``, and a mapping proxy survives neither.  Do not mutate them.
        object.__setattr__(self, "efficiency", dict(self.efficiency))
        object.__setattr__(self, "op_types", dict(self.op_types))

    def __hash__(self) -> int:
        # Targets are hashed as cache keys; a mapping proxy is not hashable, its items are.
        return hash((self.clock_hz, self.macs_per_cycle, self.dma_channels,
                     tuple(sorted(self.efficiency.items())), tuple(sorted(self.op_types.items())), self.blocks))

    def efficiency_of(self, op_type: str, op_class: str) -> float:
        """The fraction of ``macs_per_cycle`` an operator of this type and class achieves."""
        if op_type in self.op_types:
            return self.op_types[op_type]
        return self.efficiency.get(op_class, 1.0)


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
    #: The compute engine (``[compute]``); None: time is unknown.
    compute_engine: Compute | None = None

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise TargetError(f"target '{self.name}' has no level '{name}' (levels: {', '.join(self.level_names)})")

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(lv.name for lv in self.levels)

    def index(self, name: str) -> int:
        """The position of level ``name`` (nearest the compute engine first).  Solvers ask
        this once per transfer and per placement (``hops``; 30,000+ times on 10,000 operators),
        so the name -> position table is built once per target object and kept as an
        instance attribute (not a field: equality, hashing and ``replace`` ignore it)."""
        table: dict[str, int] | None = self.__dict__.get("_level_index")
        if table is None:
            table = {}
            for i, lv in enumerate(self.levels):
                table.setdefault(lv.name, i)
            object.__setattr__(self, "_level_index", table)
        found = table.get(name)
        if found is None:
            self.level(name)  # raises the one-line TargetError naming the level
            raise AssertionError(name)  # pragma: no cover - level() found no such level
        return found

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
        """Writable levels slower than the compute level, nearest first (computed once per
        target object: the spill engine asks at every eviction)."""
        levels: tuple[Level, ...] | None = self.__dict__.get("_spill_levels")
        if levels is None:
            ci = self.index(self.compute_level)
            levels = tuple(lv for lv in self.levels[ci + 1:] if lv.writable)
            object.__setattr__(self, "_spill_levels", levels)
        return levels


_LEVEL_KEYS = {"name", "capacity", "alignment", "read_bandwidth", "write_bandwidth", "writable",
               "latency_cycles", "latency_s", "burst_bytes"}
_TOP_KEYS = {"name", "description", "source", "compute_level", "extends", "homes", "levels", "compute"}
_COMPUTE_KEYS = {"clock_hz", "macs_per_cycle", "dma_channels", "efficiency", "op_types", "blocks"}
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
    if (isinstance(align, bool) or not isinstance(align, int) or align <= 0 or align & (align - 1)
            or align > MAX_ALIGNMENT):
        raise _err(where, f"{key}.alignment",
                   f"must be a positive power of two, got {align!r:.80}; allowed: 1, 2, 4, ... up to {MAX_ALIGNMENT}")
    bws: dict[str, float | None] = {}
    for bw_key in ("read_bandwidth", "write_bandwidth"):
        if bw_key in raw:
            bws[bw_key] = parse_bandwidth(raw[bw_key], f"{where}: key '{key}.{bw_key}'")
        else:
            bws[bw_key] = getattr(base, bw_key) if base else None
    writable = raw.get("writable", base.writable if base else True)
    if not isinstance(writable, bool):
        raise _err(where, f"{key}.writable", f"must be true or false, got {writable!r}")
    lat_cycles = base.latency_cycles if base else None
    lat_s = base.latency_s if base else None
    if "latency_cycles" in raw and "latency_s" in raw:
        raise _err(where, f"{key}.latency_s", "give latency_cycles or latency_s, not both")
    if "latency_cycles" in raw:
        lat_cycles = _whole(where, f"{key}.latency_cycles", raw["latency_cycles"], 0, MAX_LATENCY_CYCLES, "cycles")
        lat_s = None
    if "latency_s" in raw:
        lat_s = _real(where, f"{key}.latency_s", raw["latency_s"], MAX_LATENCY_S, allow_zero=True)
        lat_cycles = None
    burst = base.burst_bytes if base else None
    if "burst_bytes" in raw:
        burst = _whole(where, f"{key}.burst_bytes", raw["burst_bytes"], 1, MAX_ALIGNMENT, "bytes")
    return Level(name, cap, align, bws["read_bandwidth"], bws["write_bandwidth"], writable,
                 lat_cycles, lat_s, burst)


def _whole(where: str, key: str, value: Any, lo: int, hi: int, unit: str) -> int:
    """A whole number ``lo <= n <= hi`` (``true`` is not a number), or a one-line error naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(where, key, f"must be a whole number of {unit} from {lo} to {hi}, got {value!r:.80}")
    return value


def _real(where: str, key: str, value: Any, hi: float, allow_zero: bool = False) -> float:
    """A finite number in ``(0, hi]`` (``[0, hi]`` with ``allow_zero``), or a one-line error naming ``key``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0) and value <= hi
    if not ok:
        low = "from 0" if allow_zero else "above 0"
        raise _err(where, key, f"must be a finite number {low} up to {hi:g}, got {value!r:.80}")
    return float(value)


def _parse_compute(where: str, raw: Any, base: Compute | None) -> Compute:
    """``[compute]``, updating the parent's (``extends``) key by key; the efficiency tables
    merge entry by entry."""
    if not isinstance(raw, Mapping):
        raise _err(where, "compute", "must be a table with clock_hz, macs_per_cycle, ...")
    unknown = set(raw) - _COMPUTE_KEYS
    if unknown:
        raise _err(where, f"compute.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(_COMPUTE_KEYS))}")
    if "clock_hz" in raw:
        clock = _real(where, "compute.clock_hz", raw["clock_hz"], MAX_CLOCK_HZ)
    elif base is not None:
        clock = base.clock_hz
    else:
        raise _err(where, "compute.clock_hz", "required in [compute] (the compute clock, Hz)")
    if "macs_per_cycle" in raw:
        macs = _whole(where, "compute.macs_per_cycle", raw["macs_per_cycle"], 1, MAX_MACS_PER_CYCLE, "MACs")
    elif base is not None:
        macs = base.macs_per_cycle
    else:
        raise _err(where, "compute.macs_per_cycle", "required in [compute] (MACs per cycle at full use)")
    channels = base.dma_channels if base else 1
    if "dma_channels" in raw:
        channels = _whole(where, "compute.dma_channels", raw["dma_channels"], 1, MAX_DMA_CHANNELS, "channels")
    eff: dict[str, float] = dict(base.efficiency) if base else {}
    table = raw.get("efficiency", {})
    if not isinstance(table, Mapping):
        raise _err(where, "compute.efficiency", f"must be a table of operator classes ({', '.join(OP_CLASSES)})")
    for cls, v in table.items():
        if cls not in OP_CLASSES:
            raise _err(where, f"compute.efficiency.{cls}",
                       f"unknown operator class; allowed: {', '.join(OP_CLASSES)}")
        eff[cls] = _real(where, f"compute.efficiency.{cls}", v, 1.0)
    per_type: dict[str, float] = dict(base.op_types) if base else {}
    table = raw.get("op_types", {})
    if not isinstance(table, Mapping):
        raise _err(where, "compute.op_types", "must be a table of ONNX op types (Conv = 0.3)")
    for op_type, v in table.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", op_type):
            raise _err(where, f"compute.op_types.{op_type:.40}", "not an ONNX op type name")
        per_type[op_type] = _real(where, f"compute.op_types.{op_type}", v, 1.0)
    blocks = base.blocks if base else None
    if "blocks" in raw:
        blocks = parse_blocks(raw["blocks"], lambda key, msg: _err(where, key, msg))
    return Compute(clock, macs, channels, eff, per_type, blocks)


def _toml_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` outside strings and comments (a table header
    ``[[levels]]`` counts 2).  A small lexer, so that a file nested thousands deep is refused
    before ``tomllib`` recurses into it."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "\'\'\'") else c
            j = i + len(quote)
            while j < n:
                if quote[0] == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j):
                    break
                if len(quote) == 1 and text[j] == "\n":
                    break  # unterminated: tomllib reports it
                j += 1
            i = j + len(quote)
            continue
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse one target file, refusing (before reading a byte) anything that is not a regular
    file of at most ``MAX_TARGET_FILE_BYTES``, and (before parsing) files nested deeper than
    ``MAX_TOML_DEPTH``.  The file is opened non-blocking, so a FIFO cannot hang the open, and
    checked with ``fstat`` on the open descriptor, so it cannot be swapped after the check."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise TargetError(f"target file not found: {path}") from None
    except OSError as exc:
        raise TargetError(f"{path}: cannot read target file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TargetError(f"{path}: not a regular file; a target must be a TOML file")
        if info.st_size > MAX_TARGET_FILE_BYTES:
            raise TargetError(f"{path}: {info.st_size} bytes is too large for a target file; "
                              f"allowed: at most {MAX_TARGET_FILE_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_TARGET_FILE_BYTES + 1)
    except OSError as exc:
        raise TargetError(f"{path}: cannot read target file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_TARGET_FILE_BYTES:
        raise TargetError(f"{path}: too large for a target file; allowed: at most {MAX_TARGET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TargetError(f"{path}: not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return _parse_toml(text, str(path))


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads`` with the depth check first and every parser failure as one line
    (``ValueError`` covers integers beyond Python's digit limit)."""
    if _toml_depth(text) > MAX_TOML_DEPTH:
        raise TargetError(f"{where}: not valid TOML for a target: arrays or inline tables nested deeper "
                          f"than {MAX_TOML_DEPTH}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{where}: not valid TOML: {exc}") from None
    except ValueError:
        # Python refuses int() of more than 4300 digits; no size needs more than 15.
        m = re.search(r"[0-9_]{1000,}", text)
        line = f" (line {text.count(chr(10), 0, m.start()) + 1})" if m else ""
        raise TargetError(f"{where}: not valid TOML for a target: a number has thousands of digits{line}; "
                          "sizes must be below 2^48 bytes") from None
    except RecursionError:  # pragma: no cover - the depth check refuses such files first
        raise TargetError(f"{where}: not valid TOML for a target: nested too deeply") from None


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
    if len(raw_levels) > MAX_LEVELS:
        raise _err(where, "levels", f"{len(raw_levels)} levels; allowed: at most {MAX_LEVELS}")
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
    if len(levels) > MAX_LEVELS:
        raise _err(where, "levels", f"{len(levels)} levels; allowed: at most {MAX_LEVELS}")
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _err(where, "levels", f"level name '{dup}' appears twice")
    compute = raw.get("compute_level", parent.compute_level if parent else levels[0].name)
    if not isinstance(compute, str) or compute not in names:
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
        if not isinstance(v, str) or v not in names:
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
    engine = parent.compute_engine if parent else None
    if "compute" in raw:
        engine = _parse_compute(where, raw["compute"], engine)
    return Hierarchy(
        name=name, levels=tuple(levels), compute_level=compute,
        weights_home=homes["weights"], inputs_home=homes["inputs"], outputs_home=homes["outputs"],
        description=desc, source=src, path=path, compute_engine=engine,
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
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise _err(referrer or key, "extends", f"more than {MAX_EXTENDS_DEPTH} files in the extends chain")
    seen = (*seen, key)
    if path is not None:
        if not path.exists() and referrer is not None:
            raise _err(referrer, "extends", f"target file not found: {path}")
        try:
            raw = _read_toml(path)
        except TargetError as exc:
            if referrer is None:
                raise
            raise _err(referrer, "extends", str(exc)) from None
        return _build(raw, str(path), path.parent, seen, str(path))
    name = key.removeprefix("preset ")
    raw = _parse_toml(_preset_files()[name].read_text(encoding="utf-8"), key)
    return _build(raw, key, None, seen, None)


def load_target(spec: str | Path) -> Hierarchy:
    """Load a preset by name or a TOML file by path; raises ``TargetError`` naming the file,
    the key and what is allowed."""
    return _load(str(spec), None, ())


DEFAULT_TARGET = "ethos-u55-256"

__all__ = ["DEFAULT_TARGET", "MAX_ALIGNMENT", "MAX_BANDWIDTH", "MAX_EXTENDS_DEPTH", "MAX_LEVELS", "MAX_SIZE",
           "MAX_TARGET_FILE_BYTES", "MAX_TOML_DEPTH", "OP_CLASSES", "Compute", "Hierarchy", "Level", "list_presets",
           "load_target", "parse_bandwidth", "parse_size"]
