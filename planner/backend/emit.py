"""Lowering a plan to firmware artifacts: ``plan.h`` (C99), ``schedule.json`` and ``plan.json``.

The plan says *which* placement holds a buffer at each step; firmware needs *addresses*.  This
module resolves every transfer and every operand of every step to a (level, offset) pair once,
into an immutable ``Schedule``, and renders that one value twice: as a C header (through the
jinja2 template ``templates/plan.h.j2`` beside this module) and as JSON for tools that do not read C.

Resolution is by coverage, the same reading firmware does: an operand of step ``s`` lives in
the compute-level placement of that buffer whose ``[first, last]`` covers ``s`` (a weight read
in place when ``weights_in_compute_level`` is false: its home placement); a transfer copies
between the placements of its source and destination level that cover its step.  When several
placements cover, the one holding valid data is preferred as a source and an empty one as a
destination.  A plan in which nothing covers is an ``EmitError``; a plan that covers but is
otherwise wrong (overlaps, a missing reload) emits fine and is caught by the validator, or by
the C replay check in ``tests/c/replay.c``.

Names are untrusted (they come from ONNX files and plan files).  In the header they appear only
inside string literals in which every byte other than ``[A-Za-z0-9_]`` is an octal escape, so
no comment terminator, quote, backslash, newline, preprocessor directive or trigraph survives;
identifiers derived from names (enum constants, the default prefix) keep only ``[A-Za-z0-9_]``
behind a fixed prefix and are de-duplicated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from stowage.errors import StowageError
from stowage.ir.graph import Graph
from stowage.plan import Placement, Plan, plan_to_json, write_text_atomic

SCHEDULE_FORMAT = "stowage-schedule"
SCHEDULE_VERSION = 1
FORMATS = ("json", "header")
HEADER_FILE = "plan.h"
SCHEDULE_FILE = "schedule.json"
PLAN_FILE = "plan.json"

#: Longest name (in bytes) copied into a C string literal; C99 only guarantees 4095.
MAX_C_NAME_BYTES = 512
#: Longest identifier fragment derived from a name (C99 guarantees 63 significant characters).
MAX_IDENT_PART = 40
LEVEL_NONE = 255

KINDS = ("input", "output", "weight", "activation")
PHASES = ("before", "after")

#: C99/C11 and C++ keywords plus a few names a prefix must not take over.
C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn
_Static_assert _Thread_local alignas alignof and and_eq asm bitand bitor bool catch char8_t
char16_t char32_t class compl concept consteval constexpr constinit const_cast co_await co_return
co_yield decltype delete dynamic_cast explicit export false friend mutable namespace new noexcept
not not_eq nullptr operator or or_eq private protected public reinterpret_cast requires
static_assert static_cast template this thread_local throw true try typeid typename using virtual
wchar_t xor xor_eq NULL defined main errno assert offsetof
""".split())


class EmitError(StowageError):
    """A plan cannot be lowered to firmware artifacts (nothing covers an operand, a bad prefix,
    an unknown format)."""


# ---------------------------------------------------------------------------------------
# C text: string literals, identifiers, integers
# ---------------------------------------------------------------------------------------
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def c_string(text: str, limit: int = MAX_C_NAME_BYTES) -> str:
    """A C string literal for arbitrary text: ``[A-Za-z0-9_]`` verbatim, every other byte of
    the UTF-8 encoding as a three-digit octal escape (never hex: a hex escape would swallow
    following hex digits).  ``?`` is escaped too, so no trigraph can form.  Text longer than
    ``limit`` bytes is cut and marked with ``...``."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > limit:
        raw = raw[:limit] + b"..."
    return '"' + "".join(chr(b) if b in _SAFE else f"\\{b:03o}" for b in raw) + '"'


def ident_part(text: str, fallback: str) -> str:
    """Upper-case ``[A-Z0-9_]`` fragment of a name, for use *behind* a fixed prefix."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", text.encode("ascii", "ignore").decode()).strip("_").upper()
    return s[:MAX_IDENT_PART].rstrip("_") or fallback


def unique_idents(names: Sequence[str], fallback: str, reserved: Iterable[str] = ()) -> list[str]:
    """Sanitised identifier fragments, one per name, distinct from each other and from
    ``reserved`` (names that collide after sanitising get ``_2``, ``_3``, ...)."""
    taken = set(reserved)
    out = []
    for name in names:
        base = ident_part(name, fallback)
        cand, n = base, 1
        while cand in taken:
            n += 1
            cand = f"{base}_{n}"
        taken.add(cand)
        out.append(cand)
    return out


def default_prefix(model_name: str) -> str:
    """A C identifier prefix from a model name: lower-case ``[a-z0-9_]``, single underscores,
    not starting with a digit, not a keyword, at most 24 characters."""
    s = re.sub(r"[^a-z0-9]+", "_", model_name.encode("ascii", "ignore").decode().lower()).strip("_")
    s = s[:24].rstrip("_") or "plan"
    if s[0].isdigit():
        s = "m_" + s
    if s in C_KEYWORDS or s.upper() in C_KEYWORDS:
        s = "model_" + s
    return s


_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_prefix(prefix: str) -> str:
    """A user-given ``--c-prefix``: refused (not repaired) unless it is a plain identifier."""
    if not _PREFIX_RE.fullmatch(prefix) or "__" in prefix or prefix.endswith("_") or len(prefix) > 32:
        raise EmitError(
            f"--c-prefix {prefix!r} is not usable: use letters, digits and single underscores, "
            "starting with a letter, at most 32 characters"
        )
    if prefix in C_KEYWORDS:
        raise EmitError(f"--c-prefix {prefix!r} is a C or C++ keyword")
    return prefix


def _u64(value: int) -> int:
    if value < 0 or value >= 1 << 64:
        raise EmitError(f"value {value} does not fit an unsigned 64-bit integer")
    return value


def c_uint(value: int) -> str:
    """An unsigned C constant: ``123u``, or ``UINT64_C(...)`` beyond 32 bits."""
    _u64(value)
    return f"{value}u" if value < 1 << 32 else f"UINT64_C({value})"


# ---------------------------------------------------------------------------------------
# The resolved schedule
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelInfo:
    name: str
    capacity: int | None
    alignment: int
    extent: int  # bytes used: max(offset + bytes) over the level's placements
    peak: int


@dataclass(frozen=True)
class BufferInfo:
    id: int
    name: str
    tensors: tuple[str, ...]
    bytes: int
    kind: str
    home: int | None  # level index
    home_offset: int | None


@dataclass(frozen=True)
class Operand:
    buffer: int
    level: int
    offset: int


@dataclass(frozen=True)
class StepInfo:
    index: int
    op: str
    op_type: str
    node: int | None  # ONNX node index when the graph is known
    reads: tuple[Operand, ...]
    writes: tuple[Operand, ...]
    transfers_before: int  # index of the first 'before' transfer of this step
    transfers_after: int  # index of the first 'after' transfer
    transfers_end: int


@dataclass(frozen=True)
class TransferInfo:
    step: int
    phase: str
    buffer: int
    src: int
    src_offset: int
    dst: int
    dst_offset: int
    bytes: int


@dataclass(frozen=True)
class WeightInfo:
    buffer: int
    level: int
    offset: int
    bytes: int


@dataclass(frozen=True)
class Schedule:
    """Everything the header and schedule.json hold, with levels as indices."""

    model_name: str
    target_name: str
    compute_level: int
    weights_in_compute_level: bool
    levels: tuple[LevelInfo, ...]
    buffers: tuple[BufferInfo, ...]
    steps: tuple[StepInfo, ...]
    transfers: tuple[TransferInfo, ...]
    placements: tuple[Placement, ...]
    weights: tuple[WeightInfo, ...]
    op_types: tuple[str, ...]  # distinct, in order of first use
    compulsory_bytes: int
    noncompulsory_bytes: int
    #: sha256 (hex) of ``plan_to_json(plan)``: the exact bytes of the plan.json written beside
    #: the header, so firmware and tools can tell a header that belongs to another plan.json.
    plan_sha256: str = ""

    @property
    def traffic_bytes(self) -> int:
        return self.compulsory_bytes + self.noncompulsory_bytes

    def weight_blob_bytes(self) -> dict[int, int]:
        """Per home level: bytes spanned by the weights stored there (the blob to pack)."""
        out: dict[int, int] = {}
        for w in self.weights:
            out[w.level] = max(out.get(w.level, 0), w.offset + w.bytes)
        return out

    @property
    def address_bits(self) -> int:
        """32 when every offset, size, capacity and extent fits 32 bits, else 64."""
        values = [lv.capacity or 0 for lv in self.levels] + [lv.extent for lv in self.levels]
        values += [lv.peak for lv in self.levels] + [b.bytes for b in self.buffers]
        values += [b.home_offset or 0 for b in self.buffers]
        values += [p.offset for p in self.placements]
        values += [o.offset for s in self.steps for o in (*s.reads, *s.writes)]
        values += [max(t.src_offset, t.dst_offset) for t in self.transfers]
        return 32 if max(values, default=0) < 1 << 32 else 64


def model_name_of(plan: Plan, graph: Graph | None) -> str:
    """The model's name: the ONNX file's stem if known, else the graph name, else "plan"."""
    path = (graph.source_path if graph is not None else None) or plan.model.path
    if path:
        return Path(path).stem
    return graph.name if graph is not None and graph.name else "plan"


class _Resolver:
    """Maps (buffer, level, step) to the placement in use, tracking which hold valid data."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.by_key: dict[tuple[int, str], list[int]] = {}
        for i, p in enumerate(plan.placements):
            self.by_key.setdefault((p.buffer, p.level), []).append(i)
        self.valid: set[int] = set()
        for b in plan.buffers:
            if b.home is not None and b.kind in ("input", "weight"):
                self.valid.update(i for i in self.by_key.get((b.id, b.home), ())
                                  if plan.placements[i].first == 0)

    def covering(self, buffer: int, level: str, step: int) -> list[int]:
        pls = self.plan.placements
        return [i for i in self.by_key.get((buffer, level), ()) if pls[i].first <= step <= pls[i].last]

    def source(self, buffer: int, level: str, step: int, what: str) -> int:
        cands = self.covering(buffer, level, step)
        if not cands:
            raise EmitError(f"{what}: buffer {buffer} has no placement in '{level}' covering step {step}")
        return next((i for i in cands if i in self.valid), cands[0])

    def destination(self, buffer: int, level: str, step: int, what: str) -> int:
        cands = self.covering(buffer, level, step)
        if not cands:
            raise EmitError(f"{what}: buffer {buffer} has no placement in '{level}' covering step {step}")
        i = next((i for i in cands if i not in self.valid), cands[0])
        self.valid.add(i)
        return i


def _node_indices(plan: Plan, graph: Graph | None) -> list[int | None]:
    """The ONNX node index of each step.  Node names need not be unique, so each step takes
    the first unused computing operator of its name whose operands match."""
    if graph is None:
        return [None] * len(plan.steps)
    by_name: dict[str, list[int]] = {}
    for op in graph.computing_ops:
        by_name.setdefault(op.name, []).append(op.index)
    used: set[int] = set()
    out: list[int | None] = []
    for st in plan.steps:
        cands = [i for i in by_name.get(st.op, ()) if i not in used]
        same = [i for i in cands if set(graph.op_reads(graph.operators[i])) == set(st.reads)
                and set(graph.op_writes(graph.operators[i])) == set(st.writes)]
        pick = next(iter(same or cands), None)
        if pick is not None:
            used.add(pick)
        out.append(pick)
    return out


def build_schedule(plan: Plan, graph: Graph | None = None) -> Schedule:
    """Resolve every operand and transfer of ``plan`` to a level index and an offset."""
    if graph is not None and len(graph.buffers) != len(plan.buffers):
        raise EmitError(f"plan has {len(plan.buffers)} buffers but the model has {len(graph.buffers)}: "
                        "not a plan of this model")
    if len(plan.target.levels) >= LEVEL_NONE:
        raise EmitError(f"the target has {len(plan.target.levels)} levels; the header supports at most 254")
    level_ix = {lv.name: i for i, lv in enumerate(plan.target.levels)}
    compute = plan.target.compute_level
    pls = plan.placements
    nsteps = len(plan.steps)
    for k, t in enumerate(plan.transfers):
        if t.step >= nsteps:
            raise EmitError(f"transfer {k} of buffer {t.buffer} is at step {t.step}; the plan has {nsteps} steps")
    # Execution order: by step, 'before' then 'after', list order within a (step, phase).
    order = sorted(range(len(plan.transfers)),
                   key=lambda k: (plan.transfers[k].step, PHASES.index(plan.transfers[k].phase), k))
    by_phase: dict[tuple[int, str], list[int]] = {}
    for k in order:
        by_phase.setdefault((plan.transfers[k].step, plan.transfers[k].phase), []).append(k)
    nodes = _node_indices(plan, graph)

    res = _Resolver(plan)
    transfers: list[TransferInfo] = []
    steps: list[StepInfo] = []

    def run_transfers(s: int, phase: str) -> None:
        for k in by_phase.get((s, phase), ()):
            t = plan.transfers[k]
            what = f"transfer {k} (step {s}, {phase})"
            src = res.source(t.buffer, t.src, s, what)
            dst = res.destination(t.buffer, t.dst, s, what)
            transfers.append(TransferInfo(s, phase, t.buffer, level_ix[t.src], pls[src].offset,
                                          level_ix[t.dst], pls[dst].offset, plan.buffers[t.buffer].bytes))

    for s, st in enumerate(plan.steps):
        first_before = len(transfers)
        run_transfers(s, "before")
        reads = []
        for b in st.reads:
            level = compute
            if not res.covering(b, compute, s):
                rb = plan.buffers[b]
                if rb.kind == "weight" and not plan.options.weights_in_compute_level and rb.home is not None:
                    level = rb.home  # read in place
            i = res.source(b, level, s, f"step {s} ({st.op}) reads")
            reads.append(Operand(b, level_ix[level], pls[i].offset))
        writes = []
        for b in st.writes:
            i = res.destination(b, compute, s, f"step {s} ({st.op}) writes")
            writes.append(Operand(b, level_ix[compute], pls[i].offset))
        first_after = len(transfers)
        run_transfers(s, "after")
        steps.append(StepInfo(s, st.op, st.op_type, nodes[s], tuple(reads), tuple(writes),
                              first_before, first_after, len(transfers)))

    buffers: list[BufferInfo] = []
    for pb in plan.buffers:
        home_offset = None
        if pb.home is not None:
            homes = [pls[i] for i in res.by_key.get((pb.id, pb.home), ())]
            if not homes:
                raise EmitError(f"buffer {pb.id} ({pb.kind}) has no placement in its home level '{pb.home}'")
            # Inputs and weights start at home; outputs must end there.
            if pb.kind in ("input", "weight"):
                home_pl = min(homes, key=lambda p: p.first)
            else:
                home_pl = max(homes, key=lambda p: p.last)
            home_offset = home_pl.offset
        buffers.append(BufferInfo(pb.id, pb.tensors[0] if pb.tensors else "", pb.tensors, pb.bytes, pb.kind,
                                  level_ix[pb.home] if pb.home is not None else None, home_offset))
    weights = sorted(
        (WeightInfo(b.id, b.home, b.home_offset, b.bytes) for b in buffers
         if b.kind == "weight" and b.home is not None and b.home_offset is not None),
        key=lambda w: (w.level, w.offset, w.buffer),
    )
    extent = [0] * len(plan.target.levels)
    for p in pls:
        li = level_ix[p.level]
        extent[li] = max(extent[li], p.offset + plan.buffers[p.buffer].bytes)
    levels = tuple(
        LevelInfo(lv.name, lv.capacity, lv.alignment, extent[i], int(plan.metrics.peak_bytes.get(lv.name, 0)))
        for i, lv in enumerate(plan.target.levels)
    )
    op_types = tuple(dict.fromkeys(st.op_type for st in plan.steps))
    return Schedule(
        model_name=model_name_of(plan, graph), target_name=plan.target.name, compute_level=level_ix[compute],
        weights_in_compute_level=plan.options.weights_in_compute_level, levels=levels, buffers=tuple(buffers),
        steps=tuple(steps), transfers=tuple(transfers), placements=pls, weights=tuple(weights), op_types=op_types,
        compulsory_bytes=plan.metrics.compulsory_bytes, noncompulsory_bytes=plan.metrics.noncompulsory_bytes,
        plan_sha256=hashlib.sha256(plan_to_json(plan).encode("utf-8")).hexdigest(),
    )


# ---------------------------------------------------------------------------------------
# schedule.json
# ---------------------------------------------------------------------------------------
def schedule_to_dict(sch: Schedule, prefix: str) -> dict[str, Any]:
    names = [lv.name for lv in sch.levels]

    def lvl(i: int | None) -> str | None:
        return None if i is None else names[i]

    def operand(o: Operand) -> dict[str, Any]:
        return {"buffer": o.buffer, "level": names[o.level], "offset": o.offset}

    return {
        "format": SCHEDULE_FORMAT,
        "version": SCHEDULE_VERSION,
        "model": sch.model_name,
        "target": sch.target_name,
        "c_prefix": prefix,
        "address_bits": sch.address_bits,
        "compute_level": names[sch.compute_level],
        "weights_in_compute_level": sch.weights_in_compute_level,
        "levels": [{"index": i, "name": lv.name, "capacity": lv.capacity, "alignment": lv.alignment,
                    "extent": lv.extent, "peak": lv.peak} for i, lv in enumerate(sch.levels)],
        "buffers": [{"id": b.id, "name": b.name, "tensors": list(b.tensors), "bytes": b.bytes, "kind": b.kind,
                     "home": lvl(b.home), "home_offset": b.home_offset} for b in sch.buffers],
        "op_types": list(sch.op_types),
        "steps": [{"index": s.index, "op": s.op, "op_type": s.op_type, "node": s.node,
                   "reads": [operand(o) for o in s.reads], "writes": [operand(o) for o in s.writes],
                   "transfers_before": [s.transfers_before, s.transfers_after],
                   "transfers_after": [s.transfers_after, s.transfers_end]} for s in sch.steps],
        "transfers": [{"index": k, "step": t.step, "phase": t.phase, "buffer": t.buffer, "src": names[t.src],
                       "src_offset": t.src_offset, "dst": names[t.dst], "dst_offset": t.dst_offset,
                       "bytes": t.bytes} for k, t in enumerate(sch.transfers)],
        "placements": [{"buffer": p.buffer, "level": p.level, "offset": p.offset, "first": p.first,
                        "last": p.last} for p in sch.placements],
        "weights": [{"buffer": w.buffer, "level": names[w.level], "offset": w.offset, "bytes": w.bytes}
                    for w in sch.weights],
        "weight_blob_bytes": {names[i]: n for i, n in sorted(sch.weight_blob_bytes().items())},
        "totals": {"compulsory_bytes": sch.compulsory_bytes, "noncompulsory_bytes": sch.noncompulsory_bytes,
                   "traffic_bytes": sch.traffic_bytes, "peak_bytes": {lv.name: lv.peak for lv in sch.levels}},
    }


# ---------------------------------------------------------------------------------------
# plan.h
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    text = resources.files("stowage.backend").joinpath("templates", "plan.h.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.from_string(text)


def _rows(rows: list[str], zero: str) -> list[str]:
    """C99 has no empty arrays: an empty table gets one all-zero row (its count stays 0)."""
    return rows or [f"{zero} /* placeholder: the table is empty */"]


def render_header(sch: Schedule, prefix: str) -> str:
    P = prefix.upper()
    level_ids = [f"{P}_LEVEL_{x}" for x in unique_idents([lv.name for lv in sch.levels], "L", reserved={"NONE"})]
    op_ids = [f"{P}_OP_{x}" for x in unique_idents(sch.op_types, "UNNAMED")]
    op_ix = {t: i for i, t in enumerate(sch.op_types)}
    level_ix = {x.name: i for i, x in enumerate(sch.levels)}

    def lv(i: int | None) -> str:
        return f"{P}_LEVEL_NONE" if i is None else level_ids[i]

    operands: list[str] = []
    step_rows = []
    for s in sch.steps:
        begin = len(operands)
        for o in (*s.reads, *s.writes):
            operands.append(f"{{{o.buffer}u, {lv(o.level)}, {c_uint(o.offset)}}}")
        node = f"{P}_NODE_UNKNOWN" if s.node is None else c_uint(s.node)
        step_rows.append(f"{{{node}, {op_ids[op_ix[s.op_type]]}, {begin}u, {len(s.reads)}u, {len(s.writes)}u, "
                         f"{s.transfers_before}u, {s.transfers_after}u, {s.transfers_end}u}}")
    kind_ids = {k: f"{P}_KIND_{k.upper()}" for k in KINDS}
    blob = sch.weight_blob_bytes()
    ctx = {
        "P": P,
        "p": prefix,
        "guard": f"STOWAGE_PLAN_{P}_H",
        "model_name": c_string(sch.model_name),
        "target_name": c_string(sch.target_name),
        "address_bits": sch.address_bits,
        "counts": {
            "LEVELS": len(sch.levels), "BUFFERS": len(sch.buffers), "STEPS": len(sch.steps),
            "OPERANDS": len(operands), "TRANSFERS": len(sch.transfers), "PLACEMENTS": len(sch.placements),
            "WEIGHTS": len(sch.weights), "OP_TYPES": len(sch.op_types),
        },
        "compute_level": level_ids[sch.compute_level],
        "weights_in_compute_level": int(sch.weights_in_compute_level),
        "totals": {"COMPULSORY_BYTES": _u64(sch.compulsory_bytes),
                   "NONCOMPULSORY_BYTES": _u64(sch.noncompulsory_bytes),
                   "TRAFFIC_BYTES": _u64(sch.traffic_bytes)},
        "level_enum": list(enumerate(level_ids)),
        "op_enum": list(enumerate(op_ids)),
        "kinds": [(kind_ids[k], i) for i, k in enumerate(KINDS)],
        "levels": _rows([f"{{{c_uint(x.capacity or 0)}, {int(x.capacity is not None)}u, {c_uint(x.alignment)}, "
                         f"{c_uint(x.extent)}, {c_uint(x.peak)}, {c_uint(blob.get(i, 0))}}}"
                         for i, x in enumerate(sch.levels)], "{0u, 0u, 0u, 0u, 0u, 0u}"),
        "level_names": [c_string(x.name) for x in sch.levels],
        "op_type_names": _rows([c_string(t) for t in sch.op_types], '""'),
        "buffers": _rows([f"{{{c_uint(b.bytes)}, {kind_ids[b.kind]}, {lv(b.home)}, {c_uint(b.home_offset or 0)}}}"
                          for b in sch.buffers], "{0u, 0u, 0u, 0u}"),
        "buffer_names": _rows([c_string(b.name) for b in sch.buffers], '""'),
        "steps": _rows(step_rows, "{0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u}"),
        "step_names": _rows([c_string(s.op) for s in sch.steps], '""'),
        "operands": _rows(operands, "{0u, 0u, 0u}"),
        "transfers": _rows([f"{{{t.step}u, {P}_PHASE_{t.phase.upper()}, {t.buffer}u, {lv(t.src)}, {lv(t.dst)}, "
                            f"{c_uint(t.src_offset)}, {c_uint(t.dst_offset)}, {c_uint(t.bytes)}}}"
                            for t in sch.transfers], "{0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u}"),
        "placements": _rows([f"{{{p.buffer}u, {level_ids[level_ix[p.level]]}, "
                             f"{c_uint(p.offset)}, {p.first}u, {p.last}u}}" for p in sch.placements],
                            "{0u, 0u, 0u, 0u, 0u}"),
        "weights": _rows([f"{{{w.buffer}u, {lv(w.level)}, {c_uint(w.offset)}, {c_uint(w.bytes)}}}"
                          for w in sch.weights], "{0u, 0u, 0u, 0u}"),
    }
    text = _template().render(**ctx)
    if sch.plan_sha256:  # after the name macros; the hex digest needs no escaping
        anchor = f"#define {P}_TARGET_NAME {ctx['target_name']}\n"
        text = text.replace(anchor, f'{anchor}#define {P}_PLAN_SHA256 "{sch.plan_sha256}"\n', 1)
    return text


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
def _prefix(sch: Schedule, prefix: str | None) -> str:
    return check_prefix(prefix) if prefix is not None else default_prefix(sch.model_name)


def emit_header(plan: Plan, graph: Graph | None = None, prefix: str | None = None) -> str:
    """The C99 header for ``plan`` (see docs/c-header.md)."""
    sch = build_schedule(plan, graph)
    return render_header(sch, _prefix(sch, prefix))


def emit_schedule(plan: Plan, graph: Graph | None = None, prefix: str | None = None) -> dict[str, Any]:
    """schedule.json's content: the header's content as plain JSON."""
    sch = build_schedule(plan, graph)
    return schedule_to_dict(sch, _prefix(sch, prefix))


def parse_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """``("json", "header")`` from ``["all"]``, ``"json,header"`` pieces etc.; unknown -> error."""
    out: list[str] = []
    for f in formats:
        for part in str(f).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part == "all":
                out.extend(FORMATS)
            elif part in FORMATS:
                out.append(part)
            else:
                raise EmitError(f"unknown output format '{part}'; choose from {', '.join(FORMATS)}, all")
    if not out:
        raise EmitError(f"no output format selected; choose from {', '.join(FORMATS)}, all")
    return tuple(dict.fromkeys(out))


def emit_all(plan: Plan, graph: Graph | None, outdir: str | Path,
             formats: Iterable[str] = FORMATS, prefix: str | None = None) -> list[Path]:
    """Write the selected artifacts into ``outdir``: "json" -> plan.json and schedule.json,
    "header" -> plan.h.  Everything is rendered in memory first, then each file is written
    atomically, so an error (bad prefix, unresolvable plan) leaves no file behind."""
    fmts = parse_formats(formats)
    sch = build_schedule(plan, graph)
    pfx = _prefix(sch, prefix)
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise EmitError(f"output directory {out} exists and is not a directory")
    texts: dict[str, str] = {}
    if "json" in fmts:
        texts[PLAN_FILE] = plan_to_json(plan)
        texts[SCHEDULE_FILE] = json.dumps(schedule_to_dict(sch, pfx), indent=1) + "\n"
    if "header" in fmts:
        texts[HEADER_FILE] = render_header(sch, pfx)
    written = []
    for name, text in texts.items():
        try:
            write_text_atomic(out / name, text)
        except OSError as exc:
            raise EmitError(f"cannot write {out / name}: {exc.strerror or exc}") from None
        written.append(out / name)
    return written


__all__ = [
    "EmitError", "Schedule", "build_schedule", "c_string", "check_prefix", "default_prefix", "emit_all",
    "emit_header", "emit_schedule", "parse_formats", "render_header", "schedule_to_dict",
]
