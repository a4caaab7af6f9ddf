"""MiniMalloc's CSV problem/solution format: ``id,lower,upper,size[,offset]``.

One row per buffer; the lifetime is the half-open interval ``[lower, upper)`` (two buffers
whose intervals touch, ``a.upper == b.lower``, may share addresses).  These rows are the only
half-open step ranges in the project: ``CsvBuffer.first`` / ``last`` (and ``to_intervals``)
give the inclusive range of ``stowage.solvers.alloc.interval`` at this boundary, so the exact
allocator takes a row as it is.  A solution file is the
same table with an ``offset`` column.  Columns are matched by header name, so their order is
free, as in MiniMalloc's converter.

Parsing is strict, because a silently misread instance turns into a wrong benchmark figure:
unknown or repeated columns, missing columns, duplicate ids, non-integer numbers, negative
sizes or offsets and empty lifetimes (``lower >= upper``) are each a one-line
``PlanFormatError`` naming the physical line of the file (blank lines count).

Hostile input is bounded before it costs anything: numbers are plain ASCII decimal integers
(no ``1_000``, ``+5``, ``1e3`` or other scripts' digits) from 0 to below ``MAX_VALUE`` (2^48,
the size limit of ``stowage.targets``); an id is at most ``MAX_ID_CHARS`` characters; a file
must be a regular file of at most ``MAX_CSV_BYTES`` (``/dev/zero`` or a FIFO is refused unread)
with at most ``MAX_CSV_ROWS`` buffers.  Rows are parsed as they are read, so memory is linear
in the rows.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stowage.errors import PlanFormatError
from stowage.plan import write_text_atomic
from stowage.solvers.alloc.interval import Interval

__all__ = ["MAX_CSV_BYTES", "MAX_CSV_ROWS", "MAX_ID_CHARS", "MAX_VALUE", "CsvBuffer", "format_csv", "parse_csv",
           "read_csv", "to_intervals", "write_csv"]

REQUIRED = ("id", "lower", "upper", "size")
OPTIONAL = ("offset",)

#: Every number of a row (steps, sizes, offsets) is below this (2^48, ``targets.MAX_SIZE``).
MAX_VALUE = 1 << 48
#: Files larger than this are refused before reading (100,000 rows are about 2.5 MB).
MAX_CSV_BYTES = 64 << 20
#: At most this many buffers per instance (``stowage alloc`` packs 100,000 in well under 1 GB).
MAX_CSV_ROWS = 200_000
#: The longest id accepted.
MAX_ID_CHARS = 256
_INT_RE = re.compile(r"-?[0-9]{1,20}", re.ASCII)
_DIGITS_RE = re.compile(r"-?[0-9]+", re.ASCII)


@dataclass(frozen=True)
class CsvBuffer:
    """One row: a buffer live in ``[lower, upper)`` needing ``size`` bytes (``offset`` if solved)."""

    id: str
    lower: int
    upper: int
    size: int
    offset: int | None = None

    @property
    def first(self) -> int:
        """The first step live (inclusive convention)."""
        return self.lower

    @property
    def last(self) -> int:
        """The last step live (inclusive convention): ``upper - 1``."""
        return self.upper - 1


def to_intervals(buffers: Sequence[CsvBuffer]) -> list[Interval]:
    """The rows as ``Interval``s (ids are row positions; offsets kept when solved)."""
    return [Interval(i, b.first, b.last, b.size, b.offset) for i, b in enumerate(buffers)]


def _int(text: str, column: str, where: str) -> int:
    t = text.strip()
    shown = t if len(t) <= 40 else t[:37] + "..."
    if not _INT_RE.fullmatch(t):
        if _DIGITS_RE.fullmatch(t):
            raise PlanFormatError(f"{where}: column '{column}' has {len(t)} digits, too large; allowed: below 2^48")
        raise PlanFormatError(f"{where}: column '{column}' must be an integer, got '{shown}'")
    value = int(t, 10)
    if value >= MAX_VALUE:
        raise PlanFormatError(f"{where}: column '{column}' is {shown}, too large; allowed: below 2^48")
    return value


def _records(reader: Iterable[list[str]], source: str) -> Iterable[tuple[int, list[str]]]:
    """(physical line where the record starts, fields) of the non-blank records: an error
    names the line an editor shows, not the record's index among the non-blank ones."""
    line = 1
    it = iter(reader)
    while True:
        try:
            r = next(it)
        except StopIteration:
            return
        except csv.Error as e:
            raise PlanFormatError(f"{source} line {line}: not a CSV record: {e}") from None
        if any(c.strip() for c in r):
            yield line, r
        line = getattr(reader, "line_num", line) + 1


def parse_csv(text: str, source: str = "<csv>") -> tuple[CsvBuffer, ...]:
    """Parse a MiniMalloc CSV document.  ``source`` names it in error messages."""
    reader = csv.reader(io.StringIO(text))
    records = _records(reader, source)
    first = next(iter(records), None)
    if first is None:
        raise PlanFormatError(f"{source}: empty file (expected a header 'id,lower,upper,size[,offset]')")
    header = [c.strip().lower() for c in first[1]]
    for name in header:
        if name not in REQUIRED + OPTIONAL:
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise PlanFormatError(
                f"{source}: bogus column '{shown}' (columns: id, lower, upper, size and optional offset)")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise PlanFormatError(f"{source}: column '{dup}' appears twice in the header")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise PlanFormatError(f"{source}: missing column '{missing[0]}' (header: {','.join(header)})")
    col = {name: i for i, name in enumerate(header)}
    seen: set[str] = set()
    out: list[CsvBuffer] = []
    for lineno, row in records:
        where = f"{source} line {lineno}"
        if len(out) >= MAX_CSV_ROWS:
            raise PlanFormatError(f"{where}: more than {MAX_CSV_ROWS} buffers; allowed: at most {MAX_CSV_ROWS}")
        if len(row) != len(header):
            raise PlanFormatError(f"{where}: {len(row)} fields, the header has {len(header)}")
        bid = row[col["id"]].strip()
        if not bid:
            raise PlanFormatError(f"{where}: empty id")
        if len(bid) > MAX_ID_CHARS:
            raise PlanFormatError(f"{where}: an id of {len(bid)} characters; allowed: at most {MAX_ID_CHARS}")
        if bid in seen:
            raise PlanFormatError(f"{where}: duplicate id '{bid}'")
        seen.add(bid)
        lower = _int(row[col["lower"]], "lower", where)
        upper = _int(row[col["upper"]], "upper", where)
        size = _int(row[col["size"]], "size", where)
        if size < 0:
            raise PlanFormatError(f"{where}: buffer '{bid}' has negative size {size}")
        if lower >= upper:
            raise PlanFormatError(
                f"{where}: buffer '{bid}' has an empty lifetime [{lower}, {upper}) (needs lower < upper)")
        if lower < 0:
            raise PlanFormatError(f"{where}: buffer '{bid}' starts at a negative step {lower}; allowed: 0 and up")
        offset = None
        if "offset" in col:
            offset = _int(row[col["offset"]], "offset", where)
            if offset < 0:
                raise PlanFormatError(f"{where}: buffer '{bid}' has negative offset {offset}")
        out.append(CsvBuffer(bid, lower, upper, size, offset))
    return tuple(out)


def read_csv(path: str | os.PathLike[str]) -> tuple[CsvBuffer, ...]:
    """Read and parse one instance, refusing before reading anything that is not a regular
    file of at most ``MAX_CSV_BYTES`` (opened non-blocking, checked on the open descriptor)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise PlanFormatError(f"cannot read {p}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PlanFormatError(f"{p}: not a regular file; an instance must be a CSV file")
        if info.st_size > MAX_CSV_BYTES:
            raise PlanFormatError(f"{p}: {info.st_size} bytes is too large; allowed: at most {MAX_CSV_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_CSV_BYTES + 1)
    except OSError as e:
        raise PlanFormatError(f"cannot read {p}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CSV_BYTES:
        raise PlanFormatError(f"{p}: too large; allowed: at most {MAX_CSV_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PlanFormatError(f"{p}: not a UTF-8 text file") from None
    del data
    return parse_csv(text, str(p))


def format_csv(buffers: Sequence[CsvBuffer], offsets: Sequence[int] | None = None) -> str:
    """The CSV text; with ``offsets`` (one per buffer, in order) an ``offset`` column is written."""
    if offsets is not None and len(offsets) != len(buffers):
        raise ValueError(f"{len(offsets)} offsets for {len(buffers)} buffers")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REQUIRED + (("offset",) if offsets is not None else ()))
    for i, b in enumerate(buffers):
        row: list[object] = [b.id, b.lower, b.upper, b.size]
        if offsets is not None:
            row.append(offsets[i])
        w.writerow(row)
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], buffers: Sequence[CsvBuffer],
              offsets: Sequence[int] | None = None) -> None:
    """Write atomically (temp file + rename), so a failed run never leaves half a solution."""
    write_text_atomic(path, format_csv(buffers, offsets))
