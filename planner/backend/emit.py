"""Lowering a plan to firmware artifacts: ``plan.h`` + ``plan.c`` (C99), ``weights.bin``,
``schedule.json`` and ``plan.json``.

The plan says *which* placement holds a buffer at each step; firmware needs *addresses*.  This
module resolves every transfer and every operand of every step to a (level, offset) pair once,
into an immutable ``Schedule``, and renders that one value as C (through the jinja2 templates
``templates/plan.h.j2`` and ``plan.c.j2`` beside this module: the header declares, the source
defines each table once, so any number of translation units can include the header) and as
JSON for tools that do not read C.  A tiled plan's cascades become stripe tables with every
tile's address resolved and a ring's wrap split in two, so firmware never computes a modulo.

Resolution is by coverage, the same reading firmware does: an operand of step ``s`` lives in
the compute-level placement of that buffer whose ``[first, last]`` covers ``s`` (a weight read
in place when ``weights_in_compute_level`` is false: its home placement); a transfer copies
between the placements of its source and destination level that cover its step.  When several
placements cover, the one holding valid data is preferred as a source and an empty one as a
destination.  A plan in which nothing covers is an ``EmitError``; a plan that covers but is
otherwise wrong (overlaps, a missing reload) emits fine and is caught by the validator, or by
the C replay check in ``tests/c/replay.c``.

Names are untrusted (they come from ONNX files and plan files).  In C they appear only inside
string literals escaped where C requires it (quote, backslash, ``?`` against trigraphs,
controls and non-ASCII bytes as octal escapes), and in comments reduced to a harmless alphabet
(no ``*``, ``/``, backslash, ``?`` or quotes); identifiers derived from names (enum constants,
the default prefix) keep only ``[A-Za-z0-9_]`` behind a fixed prefix and are de-duplicated.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from stowage.errors import StowageError
from stowage.ir.columns import column_tensors, transposed_columns
from stowage.ir.graph import Graph
from stowage.ir.tiling import DILATED, accumulates, row_maps
from stowage.plan import Placement, Plan, plan_to_json
from stowage.plan.files import write_output_set
from stowage.plan.model import Cascade, CascadeTensor

SCHEDULE_FORMAT = "stowage-schedule"
#: 2: transfer kinds, cascades/stripes/tiles/row transfers, I/O regions, weight checksums.
SCHEDULE_VERSION = 2
#: Output formats: json (plan.json + schedule.json), header (plan.h + plan.c), weights
#: (weights.bin), weights-c (weights.bin + weights.c, the blob as a C array).
FORMATS = ("json", "header", "weights", "weights-c")
HEADER_FILE = "plan.h"
SOURCE_FILE = "plan.c"
WEIGHTS_FILE = "weights.bin"
WEIGHTS_C_FILE = "weights.c"
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
#: Bytes a C string literal may hold verbatim: printable ASCII except the quote, the backslash
#: and ``?`` (which could start a trigraph such as ``??/`` under -std=c99).
_VERBATIM = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\"), ord("?")}
_NAMED_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", ord("?"): "\\?", ord("\n"): "\\n",
                  ord("\t"): "\\t", ord("\r"): "\\r"}


def c_string(text: str, limit: int = MAX_C_NAME_BYTES) -> str:
    """A C string literal for arbitrary text, escaped only where C requires it, so names stay
    greppable (``"ethos-u55-256"``): printable ASCII verbatim; ``"``, ``\\``, ``?`` (no
    trigraph can form), newline, tab and carriage return as their named escapes; every other
    byte of the UTF-8 encoding (controls, NUL, non-ASCII) as a three-digit octal escape (never
    hex: a hex escape would swallow the hex digits after it).  Text longer than ``limit`` bytes
    is cut and marked with ``...``."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > limit:
        raw = raw[:limit] + b"..."
    out = []
    for b in raw:
        if b in _VERBATIM:
            out.append(chr(b))
        else:
            out.append(_NAMED_ESCAPES.get(b, f"\\{b:03o}"))
    return '"' + "".join(out) + '"'


#: Characters a comment may show of a name: nothing that can end the comment (``*/``), splice
#: a line (a backslash), form a trigraph (``?``) or look like a string (quotes).
_COMMENT_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-+=,;()[]<>#@!%&|~^ ")
MAX_COMMENT_NAME = 60


def c_comment(text: str) -> str:
    """A name as comment text: characters outside a harmless set become ``_``, cut to
    ``MAX_COMMENT_NAME`` characters.  Only for orientation; the exact name is in the string
    tables and schedule.json."""
    s = "".join(ch if ch in _COMMENT_SAFE else "_" for ch in text.replace("\n", " "))
    return s[:MAX_COMMENT_NAME] + ("..." if len(s) > MAX_COMMENT_NAME else "")


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
#: Transfer kinds: ``load`` brings an input or weight from its home to the compute level,
#: ``spill`` moves produced data away from the compute level (not to an output's home),
#: ``reload`` brings produced data back, ``store`` puts a graph output at its home.  Row
#: transfers of tiled plans are ``load`` (rows of a streamed input) or ``store``.
TRANSFER_KINDS = ("load", "spill", "reload", "store")
#: How a tensor a cascade touches is held (``stowage.plan.model.RING_MODES``).
HOLDER_MODES = ("whole", "ring", "streamed", "staged")
#: ``LevelInfo.region``: a memory level, or (``--separate-io``) one graph input's or output's
#: own region, whose bytes the application owns.
REGIONS = ("memory", "input", "output")
NONE32 = 0xFFFFFFFF


@dataclass(frozen=True)
class LevelInfo:
    name: str
    capacity: int | None
    alignment: int
    extent: int  # bytes used: max(offset + bytes) over the level's placements
    peak: int
    region: str = "memory"
    region_buffer: int | None = None  # the graph input's/output's buffer of an I/O region


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
    cascade: int | None = None  # index into Schedule.cascades of a tiled step


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
    kind: str = "load"


@dataclass(frozen=True)
class WeightLoadInfo:
    """One weight slice the engine streams (``stowage.plan.WeightLoad``), in issue order: the
    weights (and bias) of output channels ``[channels_lo, channels_hi)`` of ``buffer`` (at
    ``src_offset`` of level ``src``: the whole weight's home) copied as ``bytes`` bytes into
    ``dst_offset`` of ``dst`` on DMA ``channel``; step ``step`` reads it.  Times are
    nanoseconds from the start of the run; ``wait_read``: the load whose slice must have been
    read before this one may overwrite its bytes (``NONE32``: none)."""

    step: int
    buffer: int
    src: int
    src_offset: int
    dst: int
    dst_offset: int
    bytes: int
    channels_lo: int
    channels_hi: int
    channel: int
    start_ns: int
    end_ns: int
    read_start_ns: int
    read_end_ns: int
    wait_read: int | None


@dataclass(frozen=True)
class WeightInfo:
    buffer: int
    level: int
    offset: int
    bytes: int
    checksum: int | None = None  # CRC-32 of the weight's bytes, when the data is known


@dataclass(frozen=True)
class CascadeTensorInfo:
    """One tensor a cascade's stripes touch, with the layout firmware addresses it by: row
    ``r``, channel ``c``, byte ``x`` of a tile is at ``addr + i * row_stride + c * channel_stride
    + x`` (``i`` counts rows from the tile's first).  A ring holds ``ring_rows`` rows of the
    holder's row size (``row_stride``); a whole tensor is NCHW (``row_stride = width_bytes``,
    ``channel_stride = plane_bytes``).  A streamed tensor's home copy is NCHW at
    ``(home_level, home_offset)``."""

    tensor: str
    mode: str
    buffer: int         # plan buffer holding it in the compute level (the ring, or the whole buffer)
    tensor_buffer: int  # the tensor's own buffer (its home copy when streamed)
    level: int
    base: int
    channels: int
    rows: int
    width_bytes: int
    row_stride: int
    channel_stride: int
    ring_rows: int
    home_level: int | None
    home_offset: int
    #: A cascade addressing rows by slot (``CascadeTensor.slots``): row ``r`` at ``base +
    #: slots[r]`` (-1: never held); empty for ring modulo.
    slots: tuple[int, ...] = ()

    @property
    def plane_bytes(self) -> int:
        return self.rows * self.width_bytes


@dataclass(frozen=True)
class TileInfo:
    """Rows ``[lo, hi)`` of cascade tensor ``tensor``: ``rows0`` rows at ``addr0``, the rest at
    ``addr1`` (a ring's wrap, split here so firmware does no modular arithmetic).  A tile of a
    slot-addressed tensor lists every row's address instead (``row_addrs``, row ``lo`` first;
    ``addr0`` is row ``lo``'s, ``rows0`` the rows contiguous from it, ``addr1`` 0)."""

    tensor: int
    lo: int
    hi: int
    addr0: int
    rows0: int
    addr1: int
    row_addrs: tuple[int, ...] = ()


@dataclass(frozen=True)
class RowTransferInfo:
    stripe: int
    kind: str  # "load" | "store"
    tensor: int
    lo: int
    hi: int
    home_level: int
    home_addr: int  # row lo, channel 0 of the home copy
    ring: TileInfo


@dataclass(frozen=True)
class StripeInfo:
    cascade: int
    op: int  # operator index in the model (= ONNX node index)
    op_name: str
    op_type: str
    out_lo: int
    out_hi: int
    inputs: tuple[TileInfo, ...]
    output: TileInfo
    pad_top: int
    pad_bottom: int
    row_transfers_before: int
    row_transfers_after: int
    row_transfers_end: int
    #: ``STRIPE_FLAGS`` bits: an accumulating reduction's band (``ACCUMULATE``), its first
    #: (``FIRST``: reset the accumulators) and its last (``LAST``: write the result row).
    flags: int = 0


#: Stripe flag bits (``<P>_STRIPE_<NAME>``, ``docs/c-header.md``).
STRIPE_FLAGS = {"ACCUMULATE": 1, "FIRST": 2, "LAST": 4, "TAPS": 8}


@dataclass(frozen=True)
class CascadeInfo:
    step: int
    stripe_rows: int
    tensors_begin: int
    tensors_end: int
    stripes_begin: int
    stripes_end: int


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
    op_types: tuple[str, ...]  # distinct, in order of first use (steps, then stripes)
    compulsory_bytes: int
    noncompulsory_bytes: int
    #: sha256 (hex) of ``plan_to_json(plan)``: the exact bytes of the plan.json written beside
    #: the header, so firmware and tools can tell a header that belongs to another plan.json.
    plan_sha256: str = ""
    separate_io: bool = False
    cascades: tuple[CascadeInfo, ...] = ()
    cascade_tensors: tuple[CascadeTensorInfo, ...] = ()
    stripes: tuple[StripeInfo, ...] = ()
    row_transfers: tuple[RowTransferInfo, ...] = ()
    weight_loads: tuple[WeightLoadInfo, ...] = ()

    @property
    def weight_stream_extent(self) -> int:
        """Bytes of the compute level to allocate when the engine streams weights: its extent
        and every weight slice's landing bytes (the double buffers sit above the placements)."""
        ext = self.levels[self.compute_level].extent
        return max([ext, *(w.dst_offset + w.bytes for w in self.weight_loads)])

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
    def weight_level(self) -> int | None:
        """The one level weights live in (the blob's), or None without weights."""
        return min(self.weight_blob_bytes(), default=None)

    @property
    def address_bits(self) -> int:
        """32 when every offset, size, capacity and extent fits 32 bits, else 64."""
        values = [lv.capacity or 0 for lv in self.levels] + [lv.extent for lv in self.levels]
        values += [lv.peak for lv in self.levels] + [b.bytes for b in self.buffers]
        values += [b.home_offset or 0 for b in self.buffers]
        values += [p.offset for p in self.placements]
        values += [o.offset for s in self.steps for o in (*s.reads, *s.writes)]
        values += [max(t.src_offset, t.dst_offset) for t in self.transfers]
        values += [max(w.src_offset, w.dst_offset + w.bytes) for w in self.weight_loads]
        values += [max(t.base, t.home_offset, t.channel_stride, t.row_stride) + t.channels * t.plane_bytes
                   for t in self.cascade_tensors]
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


def transfer_kind(plan: Plan, buffer: int, src: str, dst: str) -> str:
    """``load``, ``spill``, ``reload`` or ``store`` (``TRANSFER_KINDS``) of one transfer."""
    pb = plan.buffers[buffer]
    compute = plan.target.compute_level
    produced = pb.kind not in ("input", "weight")
    if dst == compute or (src != compute and plan.target.index(dst) < plan.target.index(src)):
        return "reload" if produced else "load"
    if pb.kind == "output" and dst == pb.home:
        return "store"
    return "spill"


def _is_macro_graph(graph: Graph) -> bool:
    return any(op.op_type == "Cascade" and op.domain == "stowage" for op in graph.operators)


def _slice_offset(plan: Plan, graph: Graph | None, s: int, b: int) -> int:
    """Where step ``s`` writes into buffer ``b``: 0, or for a producer of a Concat run in place
    (``PlanBuffer.slices``) the byte offset of its slice, which only the graph can tell."""
    if not plan.buffers[b].slices:
        return 0
    if graph is None:
        raise EmitError(f"buffer {b} holds the slices of a Concat run in place: the step writing each slice "
                        "needs the model (stowage emit --model MODEL)")
    st = plan.steps[s]
    idx = st.index if st.index is not None else next(
        (op.index for op in graph.computing_ops if op.name == st.op), None)
    if idx is None:
        return 0
    offs = {graph.tensor_offset(n) for m in graph.step_members(graph.operators[idx]) for n in m.outputs
            if n in graph.tensor_offsets and graph.tensor_buffer.get(n) == b}
    return min(offs, default=0)


def build_schedule(plan: Plan, graph: Graph | None = None, separate_io: bool = False) -> Schedule:
    """Resolve every operand and transfer of ``plan`` to a level index and an offset.

    ``graph`` is the model's graph (as imported for the plan, in-place fusion included).  A
    tiled plan's steps and buffers are those of its macro graph
    (``stowage.plan.validate.plan_graph``), built here; the stripe tables need the model's
    graph for tensor shapes and operator types, so a tiled plan cannot be emitted without it.
    ``separate_io`` moves every graph input and output out of its home level into a region of
    its own (offset 0), for applications that own those buffers."""
    model_graph = graph
    if plan.cascades:
        if graph is None:
            raise EmitError("the plan is tiled (it has cascades): its stripe tables need the model; "
                            "pass the model (stowage emit --model MODEL)")
        if _is_macro_graph(graph):
            raise EmitError("build_schedule needs the model's graph, not the macro graph of the plan's cascades")
        from stowage.plan.validate import plan_graph

        graph = plan_graph(graph, plan)
    if graph is not None and len(graph.buffers) != len(plan.buffers):
        raise EmitError(f"plan has {len(plan.buffers)} buffers but the model has {len(graph.buffers)}: "
                        "not a plan of this model")
    nreal = len(plan.target.levels)
    io_buffers = [b for b in plan.buffers if separate_io and b.kind in ("input", "output") and b.home is not None]
    if nreal + len(io_buffers) >= LEVEL_NONE:
        raise EmitError(f"the target has {nreal} levels and {len(io_buffers)} I/O regions; the header supports "
                        "at most 254 in all")
    level_ix = {lv.name: i for i, lv in enumerate(plan.target.levels)}
    region_of = {b.id: nreal + k for k, b in enumerate(io_buffers)}
    compute = plan.target.compute_level
    pls = plan.placements
    nsteps = len(plan.steps)
    for k, t in enumerate(plan.transfers):
        if t.step >= nsteps:
            raise EmitError(f"transfer {k} of buffer {t.buffer} is at step {t.step}; the plan has {nsteps} steps")

    def loc(i: int) -> tuple[int, int]:
        """(level index, offset) of placement ``i``: an I/O buffer's home copy is its region."""
        p = pls[i]
        r = region_of.get(p.buffer)
        if r is not None and p.level == plan.buffers[p.buffer].home:
            return r, 0
        return level_ix[p.level], p.offset

    # Execution order: by step, 'before' then 'after', list order within a (step, phase).
    order = sorted(range(len(plan.transfers)),
                   key=lambda k: (plan.transfers[k].step, PHASES.index(plan.transfers[k].phase), k))
    by_phase: dict[tuple[int, str], list[int]] = {}
    for k in order:
        by_phase.setdefault((plan.transfers[k].step, plan.transfers[k].phase), []).append(k)
    nodes = _node_indices(plan, graph)
    cascade_at = {c.step: k for k, c in enumerate(plan.cascades)}

    res = _Resolver(plan)
    transfers: list[TransferInfo] = []
    steps: list[StepInfo] = []
    step_loc: dict[tuple[int, int], tuple[int, int]] = {}  # (step, buffer) -> compute-level operand

    def run_transfers(s: int, phase: str) -> None:
        for k in by_phase.get((s, phase), ()):
            t = plan.transfers[k]
            what = f"transfer {k} (step {s}, {phase})"
            sl, so = loc(res.source(t.buffer, t.src, s, what))
            dl, do = loc(res.destination(t.buffer, t.dst, s, what))
            transfers.append(TransferInfo(s, phase, t.buffer, sl, so, dl, do, plan.buffers[t.buffer].bytes,
                                          transfer_kind(plan, t.buffer, t.src, t.dst)))

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
            li, off = loc(res.source(b, level, s, f"step {s} ({st.op}) reads"))
            reads.append(Operand(b, li, off))
            step_loc[(s, b)] = (li, off)
        writes = []
        for b in st.writes:
            li, off = loc(res.destination(b, compute, s, f"step {s} ({st.op}) writes"))
            step_loc[(s, b)] = (li, off)
            writes.append(Operand(b, li, off + _slice_offset(plan, graph, s, b)))
        first_after = len(transfers)
        run_transfers(s, "after")
        steps.append(StepInfo(s, st.op, st.op_type, nodes[s], tuple(reads), tuple(writes),
                              first_before, first_after, len(transfers), cascade_at.get(s)))

    buffers: list[BufferInfo] = []
    for pb in plan.buffers:
        home_offset = None
        home: int | None = level_ix[pb.home] if pb.home is not None else None
        if pb.home is not None:
            homes = [i for i in res.by_key.get((pb.id, pb.home), ())]
            if not homes:
                raise EmitError(f"buffer {pb.id} ({pb.kind}) has no placement in its home level '{pb.home}'")
            # Inputs and weights start at home; outputs must end there.
            if pb.kind in ("input", "weight"):
                home_pl = min(homes, key=lambda i: pls[i].first)
            else:
                home_pl = max(homes, key=lambda i: pls[i].last)
            home, home_offset = loc(home_pl)
        buffers.append(BufferInfo(pb.id, pb.tensors[0] if pb.tensors else "", pb.tensors, pb.bytes, pb.kind,
                                  home, home_offset))
    weights = sorted(
        (WeightInfo(b.id, b.home, b.home_offset, b.bytes) for b in buffers
         if b.kind == "weight" and b.home is not None and b.home_offset is not None),
        key=lambda w: (w.level, w.offset, w.buffer),
    )
    if len({w.level for w in weights}) > 1:
        raise EmitError("the plan keeps weights in more than one level; the header has one weight blob")
    nlevels = nreal + len(io_buffers)
    extent = [0] * nlevels
    for i, p in enumerate(pls):
        li, off = loc(i)
        extent[li] = max(extent[li], off + plan.buffers[p.buffer].bytes)
    real = [LevelInfo(lv.name, lv.capacity, lv.alignment, extent[i], int(plan.metrics.peak_bytes.get(lv.name, 0)))
            for i, lv in enumerate(plan.target.levels)]
    regions = [LevelInfo(f"{b.kind}:{b.tensors[0] if b.tensors else b.id}", b.bytes,
                         plan.target.levels[level_ix[b.home]].alignment if b.home else 1,
                         extent[region_of[b.id]], b.bytes, b.kind, b.id) for b in io_buffers]
    sch = Schedule(
        model_name=model_name_of(plan, graph), target_name=plan.target.name, compute_level=level_ix[compute],
        weights_in_compute_level=plan.options.weights_in_compute_level, levels=(*real, *regions),
        buffers=tuple(buffers), steps=tuple(steps), transfers=tuple(transfers),
        placements=tuple(replace(p, level=_level_name(loc(i)[0], real, regions), offset=loc(i)[1])
                         for i, p in enumerate(pls)),
        weights=tuple(weights), op_types=tuple(dict.fromkeys(st.op_type for st in plan.steps)),
        compulsory_bytes=plan.metrics.compulsory_bytes, noncompulsory_bytes=plan.metrics.noncompulsory_bytes,
        plan_sha256=hashlib.sha256(plan_to_json(plan).encode("utf-8")).hexdigest(), separate_io=separate_io,
    )
    if plan.weight_loads:
        sch = replace(sch, weight_loads=_weight_loads(plan, buffers, level_ix))
    if plan.cascades:
        assert model_graph is not None
        sch = _add_stripes(sch, plan, model_graph, step_loc, res, loc)
    return sch


def _weight_loads(plan: Plan, buffers: Sequence[BufferInfo], level_ix: Mapping[str, int]
                  ) -> tuple[WeightLoadInfo, ...]:
    """The plan's weight loads in issue order (by start), each with the earlier load into
    bytes it shares whose slice must have been read first (the other half of a double buffer
    two slices back, or the buffer of an earlier operation)."""
    ws = sorted(plan.weight_loads, key=lambda w: (w.start, w.step, w.channels_lo))
    out: list[WeightLoadInfo] = []
    for k, w in enumerate(ws):
        b = buffers[w.buffer]
        if b.home is None or b.home_offset is None:
            raise EmitError(f"weight load {k} streams buffer {w.buffer}, which has no home")
        wait = next((j for j in range(k - 1, -1, -1) if ws[j].dst == w.dst
                     and ws[j].offset < w.offset + w.bytes and w.offset < ws[j].offset + ws[j].bytes), None)
        out.append(WeightLoadInfo(step=w.step, buffer=w.buffer, src=b.home, src_offset=b.home_offset,
                                  dst=level_ix[w.dst], dst_offset=w.offset, bytes=w.bytes,
                                  channels_lo=w.channels_lo, channels_hi=w.channels_hi, channel=w.channel,
                                  start_ns=round(w.start * 1e9), end_ns=round(w.end * 1e9),
                                  read_start_ns=round(w.read_start * 1e9), read_end_ns=round(w.read_end * 1e9),
                                  wait_read=wait))
    return tuple(out)


def _level_name(i: int, real: Sequence[LevelInfo], regions: Sequence[LevelInfo]) -> str:
    return real[i].name if i < len(real) else regions[i - len(real)].name


def _add_stripes(sch: Schedule, plan: Plan, g: Graph, step_loc: dict[tuple[int, int], tuple[int, int]],
                 res: _Resolver, loc: Callable[[int], tuple[int, int]]) -> Schedule:
    """The stripe program of every cascade, resolved to addresses: per cascade the tensors its
    stripes touch (holder, layout, base address), per stripe its input and output tiles (ring
    wrap pre-split), per row transfer its home address and ring tile."""
    cascades: list[CascadeInfo] = []
    tensors: list[CascadeTensorInfo] = []
    stripes: list[StripeInfo] = []
    rows: list[RowTransferInfo] = []
    op_types = list(sch.op_types)
    for k, c in enumerate(plan.cascades):
        s = c.step
        where = f"cascade {k} (step {s})"
        holders = {g.tensor_buffer[ct.tensor]: ct for ct in c.tensors if ct.tensor in g.tensor_buffer}
        index: dict[str, int] = {}
        t_begin = len(tensors)

        def tensor_ix(name: str, c: Cascade = c, s: int = s, where: str = where,
                      holders: dict[int, CascadeTensor] = holders, index: dict[str, int] = index) -> int:
            if name in index:
                return index[name]
            t = g.tensors.get(name)
            column = t is not None and name in column_tensors(g)
            flat = t is not None and g.layout == "NHWC" and len(t.shape) == 2 and t.shape[0] == 1   # MEAN's (1, C)
            # A position-major (1, N, C) tensor (``columns.transposed_columns``): a row is one
            # position's C contiguous values, as an NHWC row.
            swapped = t is not None and name in transposed_columns(g)
            if t is None or (not column and not flat and not swapped
                             and (len(t.shape) != 4 or t.shape[0] != 1 or t.shape[1] * t.shape[2] == 0)):
                raise EmitError(f"{where}: tensor '{name}' has no rows (shape {list(t.shape) if t else '?'})")
            own = g.tensor_buffer[name]
            ct = c.tensor(name) or holders.get(own)
            mode = ct.mode if ct is not None else "whole"
            holder = ct.buffer if ct is not None else own
            if mode not in HOLDER_MODES:
                raise EmitError(f"{where}: tensor '{name}' has holder mode '{mode}'")
            if (s, holder) not in step_loc:
                raise EmitError(f"{where}: tensor '{name}' is held in buffer {holder}, which the step does not "
                                "read or write")
            li, base = step_loc[(s, holder)]
            if column:
                # A column tensor (rows along its last axis, ``stowage.ir.columns``) is laid
                # out as ``(outer, N)``: its "channels" are the leading axes, a row one position.
                ch, h = math.prod(t.shape[:-1]), t.shape[-1]
            elif flat:
                ch, h = 1, 1
            elif swapped:
                ch, h = 1, t.shape[1]
            elif g.layout == "NHWC":
                # A TFLite tensor: a row ``[:, r]`` is ``W * C`` contiguous bytes (one "channel").
                ch, h = 1, t.shape[1]
            else:
                ch, h = t.shape[1], t.shape[2]
            if ch * h == 0:
                raise EmitError(f"{where}: tensor '{name}' has no rows (shape {list(t.shape)})")
            wb = t.bytes // (ch * h)
            home_level, home_offset = None, 0
            if mode == "whole":
                row_stride, chan_stride, ring_rows = wb, h * wb, 0
            else:
                assert ct is not None
                if (ct.ring_rows <= 0 and not ct.slots) or ct.row_bytes < ch * wb:
                    raise EmitError(f"{where}: ring of '{name}' has {ct.ring_rows} rows of {ct.row_bytes} bytes "
                                    f"(a row is {ch * wb} bytes)")
                row_stride, chan_stride, ring_rows = ct.row_bytes, wb, ct.ring_rows
                if mode in ("streamed", "staged"):
                    lvl = ct.level or plan.buffers[own].home
                    if lvl is None:
                        raise EmitError(f"{where}: streamed tensor '{name}' has no home level")
                    cands = res.covering(own, lvl, s)
                    if not cands:
                        raise EmitError(f"{where}: streamed tensor '{name}' (buffer {own}) has no placement in "
                                        f"'{lvl}' covering step {s}")
                    home_level, home_offset = loc(cands[0])
            index[name] = len(tensors)
            slots = ct.slots if ct is not None and mode != "whole" else ()
            if slots and len(slots) != h:
                raise EmitError(f"{where}: tensor '{name}' has {len(slots)} row slots for its {h} rows")
            tensors.append(CascadeTensorInfo(name, mode, holder, own, li, base, ch, h, wb, row_stride, chan_stride,
                                             ring_rows, home_level, home_offset, slots))
            return index[name]

        stage: dict[int, dict[int, int]] = {}   # staged holder buffer -> row -> slot, for the current stripe

        def tile(ti: int, lo: int, hi: int, what: str, where: str = where,
                 stage: dict[int, dict[int, int]] = stage) -> TileInfo:
            t = tensors[ti]
            if not 0 <= lo <= hi <= t.rows:
                raise EmitError(f"{where}: {what} rows [{lo}, {hi}) of '{t.tensor}', which has {t.rows} rows")
            if t.mode == "whole":
                return TileInfo(ti, lo, hi, t.base + lo * t.width_bytes, hi - lo, 0)
            if t.slots:
                # Rows by slot: each row's own address, resolved here (firmware does no
                # arithmetic on slots).
                bad = [r for r in range(lo, hi) if t.slots[r] < 0]
                if bad:
                    raise EmitError(f"{where}: {what} row {bad[0]} of '{t.tensor}', which has no slot")
                addrs = tuple(t.base + t.slots[r] for r in range(lo, hi))
                run = next((i for i in range(1, len(addrs)) if addrs[i] != addrs[0] + i * t.row_stride), len(addrs))
                return TileInfo(ti, lo, hi, addrs[0] if addrs else 0, run, 0, addrs)
            if hi - lo > t.ring_rows:
                raise EmitError(f"{where}: {what} {hi - lo} rows of '{t.tensor}' at once, its ring holds "
                                f"{t.ring_rows}")
            if t.mode == "staged":
                # The stripe's j-th loaded row is in slot j (loads assign the slots first).
                slots = stage.setdefault(t.buffer, {})   # in-place results share the staging
                if what == "loads":
                    for r in range(lo, hi):
                        slots[r] = len(slots)
                if any(slots.get(r) != slots.get(lo, -1) + r - lo for r in range(lo, hi)) or len(slots) > t.ring_rows:
                    raise EmitError(f"{where}: {what} rows [{lo}, {hi}) of '{t.tensor}', which its loads do not "
                                    f"stage in consecutive slots of its {t.ring_rows}")
                return TileInfo(ti, lo, hi, t.base + slots[lo] * t.row_stride, hi - lo, 0)
            return TileInfo(ti, lo, hi, *ring_tile(t.base, t.ring_rows, t.row_stride, lo, hi))

        content: dict[int, str] = {}  # holder buffer -> the tensor whose rows it holds now
        st_begin = len(stripes)
        for j, stp in enumerate(c.stripes):
            stage.clear()
            if not 0 <= stp.op < len(g.operators):
                raise EmitError(f"{where}: stripe {j} names operator index {stp.op}, not in the model")
            op = g.operators[stp.op]
            out = [o for o in op.outputs if o]
            from stowage.ir.tiling import row_units

            host = op if op.computing or op.fused_into is None else g.operators[op.fused_into]
            if stp.output:
                # One result of several (a Split): the output tile's tensor says which; for a
                # folded DQ -> Split -> Q group, one of the Qs' int8 results.
                int8 = {u.output for u in row_units(g, host) or () if u.op.index == stp.op}
                out = [stp.output] if stp.output in out or stp.output in int8 else []
            if len(out) == 1 and out[0] not in g.tensor_buffer:
                # The core of a folded QDQ group: the stripe writes the group's int8 result.
                unit = next((u for u in row_units(g, host) or () if u.op.index == stp.op), None)
                out = [unit.output] if unit is not None else out
            if len(out) != 1:
                raise EmitError(f"{where}: stripe {j} ({op.name}) has {len(out)} results, not one")
            sw = f"{where}, stripe {j} ({op.name})"
            before = len(rows)
            loads = [x for x in stp.transfers if x.direction == "load"]
            stores = [x for x in stp.transfers if x.direction == "store"]
            if len(loads) + len(stores) != len(stp.transfers):
                raise EmitError(f"{sw}: a row transfer is neither a load nor a store")
            for x in loads:
                ti = tensor_ix(x.tensor)
                rows.append(_row_transfer(len(stripes), "load", tensors[ti], tile(ti, x.lo, x.hi, "loads", sw)))
                content[tensors[ti].buffer] = x.tensor
            ins = tuple(tile(tensor_ix(name), lo, hi, "reads", sw) for name, lo, hi in stp.inputs)
            oi = tensor_ix(out[0])
            output = tile(oi, stp.out_lo, stp.out_hi, "writes", sw)
            content[tensors[oi].buffer] = out[0]
            after = len(rows)
            for x in stores:
                # The ring holds the rows of its last writer (an in-place result, maybe): the
                # store moves those, to the streamed tensor's home copy.
                si = tensor_ix(x.tensor)
                ti = tensor_ix(content.get(tensors[si].buffer, x.tensor))
                rows.append(_row_transfer(len(stripes), "store", tensors[ti], tile(ti, x.lo, x.hi, "stores", sw),
                                          home_of=tensors[si]))
            if op.op_type not in op_types:
                op_types.append(op.op_type)
            flags = 0
            if accumulates(row_maps(g, op)) and len(ins) == 1:
                # A reduction over H: every band adds to the accumulators, the first resets
                # them, the last (its band ends at the operand's last row) writes the result.
                flags = STRIPE_FLAGS["ACCUMULATE"]
                if ins[0].lo == 0:
                    flags |= STRIPE_FLAGS["FIRST"]
                if ins[0].hi == tensors[ins[0].tensor].rows:
                    flags |= STRIPE_FLAGS["LAST"]
            if any(rm.kind == DILATED for rm in (row_maps(g, op) or {}).values()):
                # A dilated convolution: its operand's tiles are the runs of its taps' rows.
                flags |= STRIPE_FLAGS["TAPS"]
            stripes.append(StripeInfo(k, stp.op, op.name, op.op_type, stp.out_lo, stp.out_hi, ins, output,
                                      stp.pad_top, stp.pad_bottom, before, after, len(rows), flags))
        cascades.append(CascadeInfo(s, c.stripe_rows, t_begin, len(tensors), st_begin, len(stripes)))
    return replace(sch, cascades=tuple(cascades), cascade_tensors=tuple(tensors), stripes=tuple(stripes),
                   row_transfers=tuple(rows), op_types=tuple(op_types))


def ring_tile(base: int, ring_rows: int, row_stride: int, lo: int, hi: int) -> tuple[int, int, int]:
    """``(addr0, rows0, addr1)`` of rows ``[lo, hi)`` of a ring at ``base`` (row ``r`` in slot
    ``r mod ring_rows``): ``rows0`` rows from slot ``lo mod ring_rows`` up to the ring's end,
    the rest from its start (``addr1``, 0 when nothing wraps).  At most ``ring_rows`` rows."""
    slot = lo % ring_rows
    rows0 = min(hi - lo, ring_rows - slot)
    return base + slot * row_stride, rows0, base if hi - lo > rows0 else 0


def _row_transfer(stripe: int, kind: str, t: CascadeTensorInfo, ring: TileInfo,
                  home_of: CascadeTensorInfo | None = None) -> RowTransferInfo:
    h = home_of or t
    if h.home_level is None:
        raise EmitError(f"row {kind} of '{t.tensor}': the tensor is not streamed")
    return RowTransferInfo(stripe, kind, ring.tensor, ring.lo, ring.hi, h.home_level,
                           h.home_offset + ring.lo * t.width_bytes, ring)


# ---------------------------------------------------------------------------------------
# Weights: the blob firmware loads into the weights' home level
# ---------------------------------------------------------------------------------------
def crc32(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, as zlib and most firmware libraries compute it): the checksum of a
    weight's bytes in ``<p>_weights``, so firmware can check a blob it loaded (the C replay
    does, bit by bit, independently of zlib)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def weight_data(graph: Graph, computed: Iterable[str] = ()) -> dict[str, bytes]:
    """The bytes of every initializer and Constant node output of the model file ``graph``
    was imported from (little-endian, row-major, as ONNX stores them), plus the tensors named
    in ``computed`` that the importer folded into weights (a QDQ model's DequantizeLinear of a
    quantized initializer, a Transpose of a weight): those are evaluated from their constant
    inputs with ONNX Runtime (the runtime ``stowage simulate`` checks plans against).  A missing file or missing
    external data is an ``EmitError``: a blob of made-up bytes would be worse than none."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    if not graph.source_path:
        raise EmitError("the weight blob needs the model file: pass the model (stowage emit --model MODEL)")
    path = Path(graph.source_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise EmitError(f"cannot read the weights of {path}: {exc}") from None
    out: dict[str, bytes] = {}
    arrays: dict[str, Any] = {}

    def add(t: onnx.TensorProto) -> None:
        if uses_external_data(t):
            tt = onnx.TensorProto()
            tt.CopyFrom(t)
            try:
                load_external_data_for_tensor(tt, str(path.parent))
            except Exception as exc:  # noqa: BLE001 - onnx raises checker and OS errors here
                raise EmitError(f"cannot read the external data of weight '{t.name}' of {path}: {exc}") from None
            t = tt
        arr = numpy_helper.to_array(t)
        if arr.dtype.kind in "OSU":
            raise EmitError(f"weight '{t.name}' holds strings; the blob holds numbers only")
        out[t.name] = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        arrays[t.name] = arr

    for init in model.graph.initializer:
        add(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    t = onnx.TensorProto()
                    t.CopyFrom(a.t)
                    t.name = node.output[0]
                    add(t)
    # Weights cut from an initializer by a channel split (stowage.ir.channel_split).
    for name, (src, axis, lo, hi) in graph.derived_weights.items():
        if src in arrays:
            part = np.take(arrays[src], np.arange(lo, hi), axis=axis)
            out[name] = np.ascontiguousarray(part).astype(part.dtype.newbyteorder("<"), copy=False).tobytes()
    missing = [n for n in dict.fromkeys(computed) if n not in out]
    if missing:
        for name, arr in _fold_constants(model, path, missing).items():
            out[name] = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    return out


def _fold_constants(model: Any, path: Path, names: Sequence[str]) -> dict[str, Any]:
    """Evaluate ``names`` from the model's constants (the nodes that produce them, back to
    initializers and Constant nodes) with ONNX Runtime; a name that depends on
    a graph input, or a node the runtime cannot run, is an ``EmitError``."""
    import onnx
    from onnx import helper
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    producer = {o: n for n in model.graph.node for o in n.output if o}
    inits = {t.name: t for t in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input} - set(inits)
    needed: list[Any] = []
    seen: set[str] = set()
    leaves: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in inits:
            leaves.add(name)
            continue
        if name in graph_inputs or name not in producer:
            raise EmitError(f"weight '{names[0]}' of {path} depends on '{name}', which is not a constant of the "
                            "model file: no weight blob")
        node = producer[name]
        if node not in needed:
            needed.append(node)
        stack += list(node.input)
    order = [n for n in model.graph.node if n in needed]  # file order is topological
    initializers = []
    for leaf in sorted(leaves):
        t = onnx.TensorProto()
        t.CopyFrom(inits[leaf])
        if uses_external_data(t):
            load_external_data_for_tensor(t, str(path.parent))
        initializers.append(t)
    sub = helper.make_model(
        helper.make_graph(order, "weights", [], [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
                                                 for n in names], initializer=initializers),
        opset_imports=list(model.opset_import))
    try:
        import onnxruntime as ort

        typed = onnx.shape_inference.infer_shapes(sub)  # ONNX Runtime wants typed outputs
        sess = ort.InferenceSession(typed.SerializeToString(), providers=["CPUExecutionProvider"])
        values = sess.run(None, {})
    except Exception as exc:  # noqa: BLE001 - the runtime raises whatever the operator raises
        raise EmitError(f"cannot evaluate the folded weights of {path} ({names[0]}, ...): "
                        f"{str(exc).splitlines()[0][:160]}") from None
    return dict(zip(names, values))


def weight_blob(sch: Schedule, graph: Graph) -> tuple[bytes, Schedule]:
    """``weights.bin``: the weights laid out exactly as ``<p>_weights`` says (each at its
    offset in its home level; the blob starts at that level's offset 0, gaps are zero), and the
    schedule with each weight's checksum filled in."""
    if graph.element_bytes is not None:
        raise EmitError(f"the plan was made with --element-bytes {graph.element_bytes}: its weight sizes are not "
                        "the model's, so there is no weight blob to write")
    data = weight_data(graph, computed=[b.name for b in sch.buffers if b.kind == "weight"])
    blob = bytearray(sch.weight_blob_bytes().get(sch.weight_level, 0) if sch.weight_level is not None else 0)
    weights = []
    for w in sch.weights:
        b = sch.buffers[w.buffer]
        raw = next((data[t] for t in b.tensors if t in data), None)
        if raw is None:
            raise EmitError(f"weight buffer {w.buffer} ('{b.name}') is neither an initializer nor a Constant of "
                            "the model file")
        if len(raw) != w.bytes:
            raise EmitError(f"weight '{b.name}' has {len(raw)} bytes in the model file, {w.bytes} in the plan")
        blob[w.offset:w.offset + w.bytes] = raw
        weights.append(replace(w, checksum=crc32(raw)))
    return bytes(blob), replace(sch, weights=tuple(weights))


# ---------------------------------------------------------------------------------------
# schedule.json
# ---------------------------------------------------------------------------------------
def schedule_to_dict(sch: Schedule, prefix: str) -> dict[str, Any]:
    names = [lv.name for lv in sch.levels]

    def lvl(i: int | None) -> str | None:
        return None if i is None else names[i]

    def operand(o: Operand) -> dict[str, Any]:
        return {"buffer": o.buffer, "level": names[o.level], "offset": o.offset}

    def tile(t: TileInfo) -> dict[str, Any]:
        return {"tensor": t.tensor, "rows": [t.lo, t.hi], "addr0": t.addr0, "rows0": t.rows0, "addr1": t.addr1,
                **({"row_addrs": list(t.row_addrs)} if t.row_addrs else {})}

    out: dict[str, Any] = {
        "format": SCHEDULE_FORMAT,
        "version": SCHEDULE_VERSION,
        "model": sch.model_name,
        "target": sch.target_name,
        "c_prefix": prefix,
        "address_bits": sch.address_bits,
        "compute_level": names[sch.compute_level],
        "weights_in_compute_level": sch.weights_in_compute_level,
        "separate_io": sch.separate_io,
        "levels": [{"index": i, "name": lv.name, "capacity": lv.capacity, "alignment": lv.alignment,
                    "extent": lv.extent, "peak": lv.peak, "region": lv.region, "region_buffer": lv.region_buffer}
                   for i, lv in enumerate(sch.levels)],
        "buffers": [{"id": b.id, "name": b.name, "tensors": list(b.tensors), "bytes": b.bytes, "kind": b.kind,
                     "home": lvl(b.home), "home_offset": b.home_offset} for b in sch.buffers],
        "op_types": list(sch.op_types),
        "steps": [{"index": s.index, "op": s.op, "op_type": s.op_type, "node": s.node,
                   "reads": [operand(o) for o in s.reads], "writes": [operand(o) for o in s.writes],
                   "transfers_before": [s.transfers_before, s.transfers_after],
                   "transfers_after": [s.transfers_after, s.transfers_end], "cascade": s.cascade}
                  for s in sch.steps],
        "transfers": [{"index": k, "step": t.step, "phase": t.phase, "kind": t.kind, "buffer": t.buffer,
                       "src": names[t.src], "src_offset": t.src_offset, "dst": names[t.dst],
                       "dst_offset": t.dst_offset, "bytes": t.bytes} for k, t in enumerate(sch.transfers)],
        "placements": [{"buffer": p.buffer, "level": p.level, "offset": p.offset, "first": p.first,
                        "last": p.last} for p in sch.placements],
        "weights": [{"buffer": w.buffer, "level": names[w.level], "offset": w.offset, "bytes": w.bytes}
                    | ({"crc32": w.checksum} if w.checksum is not None else {}) for w in sch.weights],
        "weight_blob_bytes": {names[i]: n for i, n in sorted(sch.weight_blob_bytes().items())},
        "totals": {"compulsory_bytes": sch.compulsory_bytes, "noncompulsory_bytes": sch.noncompulsory_bytes,
                   "traffic_bytes": sch.traffic_bytes, "peak_bytes": {lv.name: lv.peak for lv in sch.levels}},
    }
    if sch.weight_loads:
        out["weight_stream_extent"] = sch.weight_stream_extent
        out["weight_loads"] = [
            {"index": k, "step": w.step, "buffer": w.buffer, "src": names[w.src], "src_offset": w.src_offset,
             "dst": names[w.dst], "dst_offset": w.dst_offset, "bytes": w.bytes,
             "channels": [w.channels_lo, w.channels_hi], "channel": w.channel, "start_ns": w.start_ns,
             "end_ns": w.end_ns, "read_ns": [w.read_start_ns, w.read_end_ns], "wait_read": w.wait_read}
            for k, w in enumerate(sch.weight_loads)]
    if sch.cascades:
        out["cascades"] = [{"step": c.step, "stripe_rows": c.stripe_rows, "tensors": [c.tensors_begin, c.tensors_end],
                            "stripes": [c.stripes_begin, c.stripes_end]} for c in sch.cascades]
        out["cascade_tensors"] = [
            {"index": i, "tensor": t.tensor, "mode": t.mode, "buffer": t.buffer, "tensor_buffer": t.tensor_buffer,
             "level": names[t.level], "base": t.base, "channels": t.channels, "rows": t.rows,
             "width_bytes": t.width_bytes, "row_stride": t.row_stride, "channel_stride": t.channel_stride,
             "ring_rows": t.ring_rows, "home_level": lvl(t.home_level), "home_offset": t.home_offset}
            for i, t in enumerate(sch.cascade_tensors)]
        out["stripes"] = [
            {"index": i, "cascade": s.cascade, "node": s.op, "op": s.op_name, "op_type": s.op_type,
             "out": [s.out_lo, s.out_hi], "inputs": [tile(t) for t in s.inputs], "output": tile(s.output),
             "pad": [s.pad_top, s.pad_bottom],
             "row_transfers_before": [s.row_transfers_before, s.row_transfers_after],
             "row_transfers_after": [s.row_transfers_after, s.row_transfers_end],
             "flags": [k.lower() for k, v in STRIPE_FLAGS.items() if s.flags & v]} for i, s in enumerate(sch.stripes)]
        out["row_transfers"] = [
            {"index": i, "stripe": r.stripe, "kind": r.kind, "tensor": r.tensor, "rows": [r.lo, r.hi],
             "home_level": names[r.home_level], "home_addr": r.home_addr, "ring": tile(r.ring)}
            for i, r in enumerate(sch.row_transfers)]
    return out


# ---------------------------------------------------------------------------------------
# plan.h and plan.c
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _template(name: str) -> jinja2.Template:
    text = resources.files("stowage.backend").joinpath("templates", name).read_text(encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.from_string(text)


_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}


@dataclass(frozen=True)
class _Struct:
    """A row struct with its fields ordered widest first and explicit ``reserved`` bytes at the
    end, so the compiler adds no padding anywhere (``sizeof`` is checked by a static assert)."""

    name: str
    comment: str
    fields: tuple[tuple[str, str, str], ...]  # (kind: addr|u32|u8, name, comment), in layout order
    size: int

    @staticmethod
    def make(name: str, comment: str, fields: Sequence[tuple[str, str, str]], addr_bytes: int) -> _Struct:
        def width(kind: str) -> int:
            return addr_bytes if kind == "addr" else _SIZES[kind]

        ordered = sorted(fields, key=lambda f: -width(f[0]))  # stable: same-width fields keep their order
        total = sum(width(f[0]) for f in ordered)
        align = max((width(f[0]) for f in ordered), default=1)
        pad = -total % align
        ordered += [("u8", f"reserved{i}", "always 0: keeps the row free of compiler padding") for i in range(pad)]
        return _Struct(name, comment, tuple(ordered), total + pad)

    def render(self, p: str, P: str) -> str:
        ctype = {"addr": f"{p}_addr_t", "u64": "uint64_t", "u32": "uint32_t", "u16": "uint16_t", "u8": "uint8_t"}
        lines = [f"/* {self.comment} */", f"typedef struct {p}_{self.name} {{"]
        for kind, name, comment in self.fields:
            lines.append(f"    {ctype[kind]} {name};" + (f" /* {comment} */" if comment else ""))
        lines.append(f"}} {p}_{self.name}_t;")
        lines.append(f"{P}_STATIC_ASSERT({self.name}_size, sizeof({p}_{self.name}_t) == {self.size}u);")
        return "\n".join(lines)

    def row(self, values: dict[str, str]) -> str:
        missing = {n for _, n, _ in self.fields if not n.startswith("reserved")} - values.keys()
        assert not missing and not values.keys() - {n for _, n, _ in self.fields}, (self.name, missing)
        return "{" + ", ".join(values.get(n, "0u") for _, n, _ in self.fields) + "}"


def _struct_specs(P: str) -> dict[str, tuple[str, list[tuple[str, str, str]]]]:
    return {
        "level": ("A memory level, or (--separate-io) the region of one graph input or output.", [
            ("addr", "capacity", "bytes; 0 when unbounded"),
            ("addr", "alignment", ""),
            ("addr", "extent", "bytes to allocate: max(offset + bytes) of its placements"),
            ("addr", "peak", "the plan's peak bytes in this level"),
            ("addr", "weight_blob_bytes", "bytes of weights.bin when the weights live here, else 0"),
            ("u32", "region_buffer", f"the I/O buffer of a region, {P}_NONE32 for a memory level"),
            ("u8", "bounded", "0: the level has no capacity limit"),
            ("u8", "region", f"{P}_REGION_*"),
        ]),
        "buffer": ("A buffer: one or more tensors sharing bytes (in-place aliases).", [
            ("addr", "bytes", ""),
            ("addr", "home_offset", "inputs and weights: where they start; outputs: where they end"),
            ("u8", "kind", f"{P}_KIND_*"),
            ("u8", "home_level", f"{P}_LEVEL_*, or {P}_LEVEL_NONE"),
        ]),
        "step": ("One step of the schedule, in execution order.", [
            ("u32", "node", f"ONNX node index, or {P}_NODE_UNKNOWN"),
            ("u32", "op_type", f"{P}_OP_*"),
            ("u32", "operands_begin", "index into _operands: num_reads reads, then num_writes writes"),
            ("u32", "num_reads", ""),
            ("u32", "num_writes", ""),
            ("u32", "transfers_before", "_transfers[transfers_before .. transfers_after) run before"),
            ("u32", "transfers_after", "_transfers[transfers_after .. transfers_end) run after"),
            ("u32", "transfers_end", ""),
            ("u32", "cascade", f"index into _cascades of a tiled step, else {P}_NONE32"),
        ]),
        "operand": ("Where a step finds a buffer it reads or writes.", [
            ("addr", "offset", ""),
            ("u32", "buffer", ""),
            ("u8", "level", f"{P}_LEVEL_*"),
        ]),
        "transfer": ("A whole-buffer copy between levels, in execution order.", [
            ("addr", "src_offset", ""),
            ("addr", "dst_offset", ""),
            ("addr", "bytes", ""),
            ("u32", "step", ""),
            ("u32", "buffer", ""),
            ("u8", "phase", f"{P}_PHASE_*"),
            ("u8", "kind", f"{P}_TRANSFER_LOAD, _SPILL, _RELOAD or _STORE"),
            ("u8", "src_level", ""),
            ("u8", "dst_level", ""),
        ]),
        "placement": ("[offset, offset + bytes) of level is reserved from before step first until after step last.", [
            ("addr", "offset", ""),
            ("u32", "buffer", ""),
            ("u32", "first", ""),
            ("u32", "last", ""),
            ("u8", "level", ""),
        ]),
        "weight": ("Where each weight sits inside its home level (and inside weights.bin).", [
            ("addr", "offset", ""),
            ("addr", "bytes", ""),
            ("u32", "buffer", ""),
            ("u32", "crc32", "CRC-32 (IEEE) of the weight's bytes (0 when emitted without the model's data)"),
            ("u8", "level", ""),
        ]),
        "cascade": ("A tiled step: its stripes run in order instead of one operator.", [
            ("u32", "step", ""),
            ("u32", "stripe_rows", "band height the cascade was planned with"),
            ("u32", "tensors_begin", "_cascade_tensors[tensors_begin .. tensors_end)"),
            ("u32", "tensors_end", ""),
            ("u32", "stripes_begin", "_stripes[stripes_begin .. stripes_end)"),
            ("u32", "stripes_end", ""),
        ]),
        "cascade_tensor": (("A tensor of a cascade. Byte x of channel c of row i of a tile at addr is at "
                            "addr + i * row_stride + c * channel_stride + x (x < width_bytes)."), [
            ("addr", "base", "address of its holder in level (the ring's start, or the whole tensor's)"),
            ("addr", "width_bytes", "bytes of one channel of one row (W x element size)"),
            ("addr", "row_stride", "ring: the ring's row size; whole: width_bytes"),
            ("addr", "channel_stride", "ring: width_bytes; whole: rows x width_bytes"),
            ("addr", "plane_bytes", "rows x width_bytes: the channel stride of the home copy"),
            ("addr", "home_offset", "streamed: the home copy (NCHW) in home_level"),
            ("u32", "buffer", "the holder's buffer"),
            ("u32", "tensor_buffer", "the tensor's own buffer (its home copy when streamed)"),
            ("u32", "channels", ""),
            ("u32", "rows", "H"),
            ("u32", "ring_rows", ("rows the ring holds (row r in slot r mod ring_rows); 0 for whole; rows by "
                                  "slot: the most held at once (tiles then list row addresses)")),
            ("u8", "mode", f"{P}_HOLD_WHOLE, _RING or _STREAMED"),
            ("u8", "level", "the compute level"),
            ("u8", "home_level", f"streamed: the home copy's level, else {P}_LEVEL_NONE"),
        ]),
        "stripe": ("One operator run on a band of output rows [out_lo, out_hi).", [
            ("u32", "node", "ONNX node index of the operator"),
            ("u32", "op_type", f"{P}_OP_*"),
            ("u32", "out_lo", ""),
            ("u32", "out_hi", ""),
            ("u32", "tiles_begin", "_tiles: num_inputs input tiles, then the output tile"),
            ("u32", "num_inputs", ""),
            ("u32", "pad_top", "rows of zero padding above (only at the tensor's border)"),
            ("u32", "pad_bottom", ""),
            ("u32", "row_transfers_before", "_row_transfers[before .. after) run before the operator"),
            ("u32", "row_transfers_after", "_row_transfers[after .. end) run after it"),
            ("u32", "row_transfers_end", ""),
            ("u32", "cascade", ""),
            ("u32", "flags", (f"{P}_STRIPE_ACCUMULATE | _FIRST | _LAST: a band of a reduction over H "
                              "(docs/c-header.md), else 0")),
        ]),
        "tile": ("Rows [lo, hi) of a cascade tensor: rows0 rows at addr0, the others (a ring's wrap) at addr1.", [
            ("addr", "addr0", ""),
            ("addr", "addr1", "0 when rows0 == hi - lo"),
            ("u32", "tensor", "index into _cascade_tensors"),
            ("u32", "lo", ""),
            ("u32", "hi", ""),
            ("u32", "rows0", ""),
            ("u32", "row_addrs", (f"rows by slot: row lo + i is at _row_addrs[row_addrs + i] (addr0, rows0, "
                                  f"addr1 then unused); {P}_NONE32 otherwise")),
        ]),
        "weight_load": (("A weight slice the engine streams into the compute level, in issue order "
                         "(docs/c-header.md, Weight streams)."), [
            ("u64", "start_ns", "the copy's start, ns from the start of the run (the plan's timeline)"),
            ("u64", "end_ns", "its end"),
            ("u64", "read_start_ns", "when step reads the slice"),
            ("u64", "read_end_ns", ""),
            ("addr", "src_offset", "the whole weight's offset in src_level (its home)"),
            ("addr", "dst_offset", "where the slice lands in dst_level"),
            ("addr", "bytes", "bytes of the slice: the weights and bias of its output channels"),
            ("u32", "step", "the step that reads it"),
            ("u32", "buffer", "the weight's buffer"),
            ("u32", "channels_lo", "output channels [channels_lo, channels_hi) of the weight"),
            ("u32", "channels_hi", ""),
            ("u32", "wait_read", (f"issue only after weight load wait_read has been read (its bytes), "
                                  f"{P}_NONE32: none")),
            ("u8", "channel", "DMA channel"),
            ("u8", "src_level", ""),
            ("u8", "dst_level", "the compute level"),
        ]),
        "row_transfer": ("Rows [lo, hi) of a streamed tensor between its home copy and its ring.", [
            ("addr", "home_addr", ("row lo, channel 0 of the home copy (row stride width_bytes, "
                                   "channel stride plane_bytes)")),
            ("addr", "addr0", "the ring side: rows0 rows at addr0, the others at addr1"),
            ("addr", "addr1", ""),
            ("u32", "stripe", ""),
            ("u32", "tensor", "index into _cascade_tensors"),
            ("u32", "lo", ""),
            ("u32", "hi", ""),
            ("u32", "rows0", ""),
            ("u32", "row_addrs", f"rows by slot: the ring side's row addresses in _row_addrs, else {P}_NONE32"),
            ("u8", "kind", f"{P}_TRANSFER_LOAD (home -> ring) or {P}_TRANSFER_STORE (ring -> home)"),
            ("u8", "home_level", ""),
            ("u8", "level", "the ring's level"),
        ]),
    }


@dataclass(frozen=True)
class _Table:
    ctype: str
    name: str
    comment: str
    rows: tuple[str, ...]  # rendered rows, each with its trailing comment if any


def _rows(rows: Sequence[str], zero: str) -> tuple[str, ...]:
    """The rows of a table definition, each ending in a comma (before its comment).  C99 has no
    empty arrays: an empty table gets one all-zero row (its count stays 0)."""
    rows = list(rows) or [f"{zero} /* placeholder: the table is empty */"]
    return tuple(r.replace(" /* ", ", /* ", 1) if r.endswith(" */") else r + "," for r in rows)


def _render_parts(sch: Schedule, prefix: str) -> dict[str, Any]:
    """The template context shared by plan.h and plan.c."""
    P = prefix.upper()
    p = prefix
    abytes = sch.address_bits // 8
    specs = _struct_specs(P)
    structs = {name: _Struct.make(name, c, f, abytes) for name, (c, f) in specs.items()}
    real_levels = [lv for lv in sch.levels if lv.region == "memory"]
    level_parts = unique_idents([lv.name for lv in real_levels], "L", reserved={"NONE"})
    # Graph inputs and outputs: IN_<tensor> / OUT_<tensor>, for <P>_IN_X_BUFFER and (regions)
    # <P>_LEVEL_IN_X, <P>_IN_X_EXTENT.
    io = [b for b in sch.buffers if b.kind in ("input", "output")]
    io_parts = dict(zip((b.id for b in io), unique_idents(
        [f"{'IN' if b.kind == 'input' else 'OUT'}_{b.name}" for b in io], "IO", reserved={"NONE", *level_parts})))
    region_parts = [io_parts[lv.region_buffer] for lv in sch.levels if lv.region_buffer is not None]
    parts = level_parts + region_parts
    level_ids = [f"{P}_LEVEL_{x}" for x in parts]
    op_ids = [f"{P}_OP_{x}" for x in unique_idents(sch.op_types, "UNNAMED")]
    op_ix = {t: i for i, t in enumerate(sch.op_types)}
    level_ix = {x.name: i for i, x in enumerate(sch.levels)}
    kind_ids = {k: f"{P}_KIND_{k.upper()}" for k in KINDS}
    xfer_ids = {k: f"{P}_TRANSFER_{k.upper()}" for k in TRANSFER_KINDS}
    hold_ids = {k: f"{P}_HOLD_{k.upper()}" for k in HOLDER_MODES}
    region_ids = {k: f"{P}_REGION_{k.upper()}" for k in REGIONS}
    blob = sch.weight_blob_bytes()

    def lv(i: int | None) -> str:
        return f"{P}_LEVEL_NONE" if i is None else level_ids[i]

    def u(v: int) -> str:
        return c_uint(v)

    def cm(text: str) -> str:
        return f" /* {text} */"

    S = structs
    names = [b.name for b in sch.buffers]
    levels = [S["level"].row({"capacity": u(x.capacity or 0), "alignment": u(x.alignment), "extent": u(x.extent),
                              "peak": u(x.peak), "weight_blob_bytes": u(blob.get(i, 0)),
                              "region_buffer": f"{P}_NONE32" if x.region_buffer is None else u(x.region_buffer),
                              "bounded": f"{int(x.capacity is not None)}u", "region": region_ids[x.region]})
              + cm(f"{i}: {c_comment(x.name)}") for i, x in enumerate(sch.levels)]
    buffers = [S["buffer"].row({"bytes": u(b.bytes), "home_offset": u(b.home_offset or 0), "kind": kind_ids[b.kind],
                                "home_level": lv(b.home)}) + cm(f"{b.id}: {c_comment(b.name)}") for b in sch.buffers]
    operands: list[str] = []
    steps = []
    for s in sch.steps:
        begin = len(operands)
        for o in (*s.reads, *s.writes):
            operands.append(S["operand"].row({"offset": u(o.offset), "buffer": u(o.buffer), "level": lv(o.level)})
                            + cm(c_comment(names[o.buffer])))
        steps.append(S["step"].row({
            "node": f"{P}_NODE_UNKNOWN" if s.node is None else u(s.node), "op_type": op_ids[op_ix[s.op_type]],
            "operands_begin": u(begin), "num_reads": u(len(s.reads)), "num_writes": u(len(s.writes)),
            "transfers_before": u(s.transfers_before), "transfers_after": u(s.transfers_after),
            "transfers_end": u(s.transfers_end), "cascade": f"{P}_NONE32" if s.cascade is None else u(s.cascade),
        }) + cm(f"{s.index}: {c_comment(s.op)}"))
    transfers = [S["transfer"].row({
        "src_offset": u(t.src_offset), "dst_offset": u(t.dst_offset), "bytes": u(t.bytes), "step": u(t.step),
        "buffer": u(t.buffer), "phase": f"{P}_PHASE_{t.phase.upper()}", "kind": xfer_ids[t.kind],
        "src_level": lv(t.src), "dst_level": lv(t.dst),
    }) + cm(f"{k}: {t.kind} {c_comment(names[t.buffer])}") for k, t in enumerate(sch.transfers)]
    placements = [S["placement"].row({"offset": u(x.offset), "buffer": u(x.buffer), "first": u(x.first),
                                      "last": u(x.last), "level": level_ids[level_ix[x.level]]})
                  for x in sch.placements]
    weights = [S["weight"].row({"offset": u(w.offset), "bytes": u(w.bytes), "buffer": u(w.buffer),
                                "crc32": u(w.checksum or 0), "level": lv(w.level)})
               + cm(c_comment(names[w.buffer])) for w in sch.weights]
    cascades = [S["cascade"].row({"step": u(c.step), "stripe_rows": u(c.stripe_rows),
                                  "tensors_begin": u(c.tensors_begin), "tensors_end": u(c.tensors_end),
                                  "stripes_begin": u(c.stripes_begin), "stripes_end": u(c.stripes_end)})
                + cm(f"{k}") for k, c in enumerate(sch.cascades)]
    ctensors = [S["cascade_tensor"].row({
        "base": u(t.base), "width_bytes": u(t.width_bytes), "row_stride": u(t.row_stride),
        "channel_stride": u(t.channel_stride), "plane_bytes": u(t.plane_bytes), "home_offset": u(t.home_offset),
        "buffer": u(t.buffer), "tensor_buffer": u(t.tensor_buffer), "channels": u(t.channels), "rows": u(t.rows),
        "ring_rows": u(t.ring_rows), "mode": hold_ids[t.mode], "level": lv(t.level), "home_level": lv(t.home_level),
    }) + cm(f"{i}: {t.mode} {c_comment(t.tensor)}") for i, t in enumerate(sch.cascade_tensors)]

    row_addrs: list[str] = []

    def addr_table(t: TileInfo) -> str:
        """The tile's row addresses appended to ``_row_addrs`` (rows by slot), or NONE32."""
        if not t.row_addrs:
            return f"{P}_NONE32"
        at = len(row_addrs)
        row_addrs.extend(u(a) for a in t.row_addrs)
        return u(at)

    def tile_row(t: TileInfo) -> str:
        return S["tile"].row({"addr0": u(t.addr0), "addr1": u(t.addr1), "tensor": u(t.tensor), "lo": u(t.lo),
                              "hi": u(t.hi), "rows0": u(t.rows0), "row_addrs": addr_table(t)}) \
            + cm(c_comment(sch.cascade_tensors[t.tensor].tensor))

    tiles: list[str] = []
    stripes = []
    for i, sp in enumerate(sch.stripes):
        begin = len(tiles)
        tiles += [tile_row(t) for t in (*sp.inputs, sp.output)]
        stripes.append(S["stripe"].row({
            "node": u(sp.op), "op_type": op_ids[op_ix[sp.op_type]], "out_lo": u(sp.out_lo), "out_hi": u(sp.out_hi),
            "tiles_begin": u(begin), "num_inputs": u(len(sp.inputs)), "pad_top": u(sp.pad_top),
            "pad_bottom": u(sp.pad_bottom), "row_transfers_before": u(sp.row_transfers_before),
            "row_transfers_after": u(sp.row_transfers_after), "row_transfers_end": u(sp.row_transfers_end),
            "cascade": u(sp.cascade), "flags": u(sp.flags),
        }) + cm(f"{i}: {c_comment(sp.op_name)} rows {sp.out_lo}..{sp.out_hi}"))
    row_transfers = [S["row_transfer"].row({
        "home_addr": u(r.home_addr), "addr0": u(r.ring.addr0), "addr1": u(r.ring.addr1), "stripe": u(r.stripe),
        "tensor": u(r.tensor), "lo": u(r.lo), "hi": u(r.hi), "rows0": u(r.ring.rows0),
        "row_addrs": addr_table(r.ring), "kind": xfer_ids[r.kind],
        "home_level": lv(r.home_level), "level": lv(sch.cascade_tensors[r.tensor].level),
    }) + cm(f"{i}: {r.kind} {c_comment(sch.cascade_tensors[r.tensor].tensor)}")
        for i, r in enumerate(sch.row_transfers)]

    weight_loads = [S["weight_load"].row({
        "start_ns": u(w.start_ns), "end_ns": u(w.end_ns), "read_start_ns": u(w.read_start_ns),
        "read_end_ns": u(w.read_end_ns), "src_offset": u(w.src_offset), "dst_offset": u(w.dst_offset),
        "bytes": u(w.bytes), "step": u(w.step), "buffer": u(w.buffer), "channels_lo": u(w.channels_lo),
        "channels_hi": u(w.channels_hi), "wait_read": f"{P}_NONE32" if w.wait_read is None else u(w.wait_read),
        "channel": u(w.channel), "src_level": lv(w.src), "dst_level": lv(w.dst),
    }) + cm(f"{i}: {c_comment(names[w.buffer])} channels {w.channels_lo}..{w.channels_hi}")
        for i, w in enumerate(sch.weight_loads)]

    def zero(name: str) -> str:
        return "{" + ", ".join("0u" for _ in structs[name].fields) + "}"

    def table(struct: str, name: str, comment: str, rows: Sequence[str]) -> _Table:
        return _Table(f"{p}_{struct}_t", f"{p}_{name}", comment, _rows(rows, zero(struct)))

    def strings(name: str, comment: str, rows: Sequence[str]) -> _Table:
        return _Table("char *const", f"{p}_{name}", comment, _rows(rows, '""'))

    tables = [
        table("level", "levels", f"Memory map, indexed by {P}_LEVEL_*.", levels),
        strings("level_names", "Level names (regions: input:<tensor>, output:<tensor>).",
                [c_string(x.name) for x in sch.levels]),
        strings("op_type_names", f"Operator type names, indexed by {P}_OP_*.", [c_string(t) for t in sch.op_types]),
        table("buffer", "buffers", "Buffers, indexed by buffer id.", buffers),
        strings("buffer_names", "First tensor name of each buffer (all names are in schedule.json).",
                [c_string(b.name) for b in sch.buffers]),
        table("step", "steps", "Steps in execution order.", steps),
        strings("step_names", "Operator name of each step.", [c_string(s.op) for s in sch.steps]),
        table("operand", "operands", "Operand addresses of every step: its reads, then its writes.", operands),
        table("transfer", "transfers", "Transfers in execution order.", transfers),
        table("placement", "placements", "Placements: buffer, level, offset, first step, last step.", placements),
        table("weight", "weights", "Weight blob layout (weights.bin), sorted by level and offset.", weights),
        table("cascade", "cascades", "Tiled steps (empty for a plan of whole tensors).", cascades),
        table("cascade_tensor", "cascade_tensors", "The tensors of each cascade, with their layout.", ctensors),
        table("stripe", "stripes", "Stripes of every cascade, in execution order.", stripes),
        table("tile", "tiles", "Input and output tiles of every stripe.", tiles),
        table("row_transfer", "row_transfers", "Row transfers of streamed tensors, in execution order.",
              row_transfers),
        table("weight_load", "weight_loads", "Weight slices streamed through the DMA, in issue order.",
              weight_loads),
        _Table(f"{p}_addr_t", f"{p}_row_addrs", ("Row addresses of the tiles of cascades that address rows by "
                                                  "slot (a tile's row_addrs indexes its first)."),
               _rows(row_addrs, "0u")),
    ]
    counts = {
        "LEVELS": len(sch.levels), "BUFFERS": len(sch.buffers), "STEPS": len(sch.steps), "OPERANDS": len(operands),
        "TRANSFERS": len(sch.transfers), "PLACEMENTS": len(sch.placements), "WEIGHTS": len(sch.weights),
        "OP_TYPES": len(sch.op_types), "CASCADES": len(sch.cascades), "CASCADE_TENSORS": len(sch.cascade_tensors),
        "STRIPES": len(sch.stripes), "TILES": len(tiles), "ROW_TRANSFERS": len(sch.row_transfers),
        "IO_REGIONS": len(sch.levels) - len(real_levels), "WEIGHT_LOADS": len(sch.weight_loads),
        "ROW_ADDRS": len(row_addrs),
    }
    wl = sch.weight_level
    return {
        "P": P,
        "p": p,
        "guard": f"STOWAGE_PLAN_{P}_H",
        "model_name": c_string(sch.model_name),
        "target_name": c_string(sch.target_name),
        "plan_sha256": sch.plan_sha256,
        "address_bits": sch.address_bits,
        "counts": counts,
        "compute_level": level_ids[sch.compute_level],
        "weights_in_compute_level": int(sch.weights_in_compute_level),
        "totals": {"COMPULSORY_BYTES": _u64(sch.compulsory_bytes),
                   "NONCOMPULSORY_BYTES": _u64(sch.noncompulsory_bytes),
                   "TRAFFIC_BYTES": _u64(sch.traffic_bytes)},
        "level_enum": [(i, name, c_comment(sch.levels[i].name)) for i, name in enumerate(level_ids)],
        "io_buffers": [(f"{P}_{io_parts[b.id]}_BUFFER", b.id, c_comment(b.name)) for b in io],
        "level_sizes": [(f"{P}_{part}", c_uint(x.extent), c_uint(x.alignment)) for part, x in zip(parts, sch.levels)],
        "weight_blob": (c_uint(blob.get(wl, 0)) if wl is not None else "0u", lv(wl)),
        "weight_stream_extent": c_uint(sch.weight_stream_extent),
        "op_enum": list(enumerate(op_ids)),
        "kinds": [(kind_ids[k], i) for i, k in enumerate(KINDS)],
        "transfer_kinds": [(xfer_ids[k], i) for i, k in enumerate(TRANSFER_KINDS)],
        "hold_modes": [(hold_ids[k], i) for i, k in enumerate(HOLDER_MODES)],
        "stripe_flags": [(f"{P}_STRIPE_{k}", v) for k, v in STRIPE_FLAGS.items()],
        "regions": [(region_ids[k], i) for i, k in enumerate(REGIONS)],
        "structs": [s.render(p, P) for s in structs.values()],
        "tables": tables,
    }


def render_header(sch: Schedule, prefix: str) -> str:
    """plan.h: macros, row types and ``extern`` declarations of the tables (plan.c defines them)."""
    return _template("plan.h.j2").render(**_render_parts(sch, prefix))


def render_source(sch: Schedule, prefix: str) -> str:
    """plan.c: the one definition of every table declared in plan.h."""
    return _template("plan.c.j2").render(**_render_parts(sch, prefix), header=HEADER_FILE)


def render_weights_c(blob: bytes, prefix: str) -> str:
    """weights.c: weights.bin as a C array ``<p>_weight_blob`` (declared in plan.h)."""
    P = prefix.upper()
    lines = ["/* Generated by stowage (stowage.backend.emit): weights.bin as a C array. Do not edit. */",
             f'#include "{HEADER_FILE}"', "",
             (f"/* {len(blob)} bytes, laid out as {prefix}_weights says; copy it to offset 0 of "
              f"{P}_WEIGHT_BLOB_LEVEL (or link it there). */"),
             f"const uint8_t {prefix}_weight_blob[{P}_WEIGHT_BLOB_BYTES > 0 ? {P}_WEIGHT_BLOB_BYTES : 1] = {{"]
    for i in range(0, len(blob), 16):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in blob[i:i + 16]) + ",")
    if not blob:
        lines.append("    0x00 /* placeholder: there are no weights */")
    lines.append("};")
    return "\n".join(lines) + "\n"


def render_c(sch: Schedule, prefix: str) -> dict[str, str]:
    """``{"plan.h": ..., "plan.c": ...}``."""
    return {HEADER_FILE: render_header(sch, prefix), SOURCE_FILE: render_source(sch, prefix)}


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
def _prefix(sch: Schedule, prefix: str | None) -> str:
    return check_prefix(prefix) if prefix is not None else default_prefix(sch.model_name)


def emit_header(plan: Plan, graph: Graph | None = None, prefix: str | None = None, separate_io: bool = False) -> str:
    """The C99 header for ``plan`` (see docs/c-header.md); its tables are defined in plan.c
    (``emit_c``)."""
    sch = build_schedule(plan, graph, separate_io)
    return render_header(sch, _prefix(sch, prefix))


def emit_c(plan: Plan, graph: Graph | None = None, prefix: str | None = None, separate_io: bool = False,
           weights: bool = False) -> dict[str, str | bytes]:
    """plan.h and plan.c, plus weights.bin and weights.c when ``weights`` (which needs the
    model file ``graph`` was imported from); the weight table then carries checksums."""
    sch = build_schedule(plan, graph, separate_io)
    pfx = _prefix(sch, prefix)
    out: dict[str, str | bytes] = {}
    blob = None
    if weights:
        if graph is None:
            raise EmitError("the weight blob needs the model: pass the model (stowage emit --model MODEL)")
        blob, sch = weight_blob(sch, graph)
    out.update(render_c(sch, pfx))
    if blob is not None:
        out[WEIGHTS_FILE] = blob
        out[WEIGHTS_C_FILE] = render_weights_c(blob, pfx)
    return out


def emit_schedule(plan: Plan, graph: Graph | None = None, prefix: str | None = None,
                  separate_io: bool = False) -> dict[str, Any]:
    """schedule.json's content: the header's content as plain JSON."""
    sch = build_schedule(plan, graph, separate_io)
    return schedule_to_dict(sch, _prefix(sch, prefix))


def parse_formats(formats: Iterable[str], element_bytes: int | None = None) -> tuple[str, ...]:
    """``("json", "header")`` from ``["all"]``, ``"json,header"`` pieces etc.; unknown -> error.
    ``all`` is json and header (the weight formats need the model's data: ask for them).
    ``element_bytes`` (an ``--element-bytes`` override) refuses the weight formats up front:
    the plan's weight sizes would not be the model's."""
    out: list[str] = []
    for f in formats:
        for part in str(f).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part == "all":
                out.extend(FORMATS[:2])
            elif part in FORMATS:
                out.append(part)
            else:
                raise EmitError(f"unknown output format '{part}'; choose from {', '.join(FORMATS)}, all")
    if not out:
        raise EmitError(f"no output format selected; choose from {', '.join(FORMATS)}, all")
    if element_bytes is not None and {"weights", "weights-c"} & set(out):
        raise EmitError(f"--emit weights/weights-c cannot be used with --element-bytes {element_bytes}: the plan's "
                        "weight sizes are not the model's, so there is no weight blob to write")
    return tuple(dict.fromkeys(out))


def output_files(formats: Iterable[str]) -> list[str]:
    """The files the formats write, in the order they are reported: json -> schedule.json,
    header -> plan.h and plan.c, weights -> weights.bin, weights-c -> weights.bin and weights.c
    (plan.json is the caller's)."""
    fmts = set(formats)
    names = []
    if "json" in fmts:
        names.append(SCHEDULE_FILE)
    if "header" in fmts:
        names += [HEADER_FILE, SOURCE_FILE]
    if "weights" in fmts or "weights-c" in fmts:
        names.append(WEIGHTS_FILE)
    if "weights-c" in fmts:
        names.append(WEIGHTS_C_FILE)
    return names


def render_outputs(plan: Plan, graph: Graph | None, formats: Iterable[str], prefix: str | None = None,
                   separate_io: bool = False) -> dict[str, str | bytes]:
    """Every file of ``formats`` (``output_files``) rendered in memory, keyed by file name."""
    fmts = set(parse_formats(formats))
    sch = build_schedule(plan, graph, separate_io)
    pfx = _prefix(sch, prefix)
    blob: bytes | None = None
    if "weights" in fmts or "weights-c" in fmts:
        if graph is None:
            raise EmitError("the weight blob needs the model: pass the model (stowage emit --model MODEL)")
        blob, sch = weight_blob(sch, graph)
    texts: dict[str, str | bytes] = {}
    for name in output_files(fmts):
        if name == SCHEDULE_FILE:
            texts[name] = json.dumps(schedule_to_dict(sch, pfx), indent=1) + "\n"
        elif name == HEADER_FILE:
            texts[name] = render_header(sch, pfx)
        elif name == SOURCE_FILE:
            texts[name] = render_source(sch, pfx)
        elif name == WEIGHTS_FILE:
            assert blob is not None
            texts[name] = blob
        elif name == WEIGHTS_C_FILE:
            assert blob is not None
            texts[name] = render_weights_c(blob, pfx)
    return texts


def emit_all(plan: Plan, graph: Graph | None, outdir: str | Path,
             formats: Iterable[str] = FORMATS[:2], prefix: str | None = None, separate_io: bool = False) -> list[Path]:
    """Write the selected artifacts into ``outdir``: "json" -> plan.json and schedule.json,
    "header" -> plan.h and plan.c, "weights" -> weights.bin, "weights-c" -> weights.bin and
    weights.c.  Everything is rendered in memory first, then each file is written atomically,
    and the files replace the previous ones as one set (``write_output_set``): an error (bad
prefix, unresolvable plan) leaves no file behind."""
    fmts = parse_formats(formats)
    texts = render_outputs(plan, graph, fmts, prefix, separate_io)
    if "json" in fmts:
        texts = {PLAN_FILE: plan_to_json(plan), **texts}
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise EmitError(f"output directory {out} exists and is not a directory")
    return write_output_set(out, texts)


__all__ = [
    "FORMATS",
    "TRANSFER_KINDS",
    "EmitError",
    "Schedule",
    "build_schedule",
    "c_comment",
    "c_string",
    "check_prefix",
    "crc32",
    "default_prefix",
    "emit_all",
    "emit_c",
    "emit_header",
    "emit_schedule",
    "output_files",
    "parse_formats",
    "render_c",
    "render_header",
    "render_outputs",
    "render_source",
    "render_weights_c",
    "ring_tile",
    "schedule_to_dict",
    "transfer_kind",
    "weight_blob",
]
