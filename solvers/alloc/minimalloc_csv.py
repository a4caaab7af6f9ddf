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
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stowage.errors import PlanFormatError
from stowage.plan import write_text_atomic
from stowage.solvers.alloc.interval import Interval

__all__ = ["CsvBuffer", "format_csv", "parse_csv", "read_csv", "to_intervals", "write_csv"]

REQUIRED = ("id", "lower", "upper", "size")
OPTIONAL = ("offset",)


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
    try:
        return int(t, 10)
    except ValueError:
        raise PlanFormatError(f"{where}: column '{column}' must be an integer, got '{text}'") from None


def parse_csv(text: str, source: str = "<csv>") -> tuple[CsvBuffer, ...]:
    """Parse a MiniMalloc CSV document.  ``source`` names it in error messages."""
    reader = csv.reader(io.StringIO(text))
    # (physical line where the record starts, fields), blank records dropped: an error
    # names the line an editor shows, not the record's index among the non-blank ones.
    rows: list[tuple[int, list[str]]] = []
    line = 1
    for r in reader:
        if any(c.strip() for c in r):
            rows.append((line, r))
        line = reader.line_num + 1
    if not rows:
        raise PlanFormatError(f"{source}: empty file (expected a header 'id,lower,upper,size[,offset]')")
    header = [c.strip().lower() for c in rows[0][1]]
    for name in header:
        if name not in REQUIRED + OPTIONAL:
            raise PlanFormatError(
                f"{source}: bogus column '{name}' (columns: id, lower, upper, size and optional offset)")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise PlanFormatError(f"{source}: column '{dup}' appears twice in the header")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise PlanFormatError(f"{source}: missing column '{missing[0]}' (header: {','.join(header)})")
    col = {name: i for i, name in enumerate(header)}
    seen: set[str] = set()
    out: list[CsvBuffer] = []
    for lineno, row in rows[1:]:
        where = f"{source} line {lineno}"
        if len(row) != len(header):
            raise PlanFormatError(f"{where}: {len(row)} fields, the header has {len(header)}")
        bid = row[col["id"]].strip()
        if not bid:
            raise PlanFormatError(f"{where}: empty id")
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
        offset = None
        if "offset" in col:
            offset = _int(row[col["offset"]], "offset", where)
            if offset < 0:
                raise PlanFormatError(f"{where}: buffer '{bid}' has negative offset {offset}")
        out.append(CsvBuffer(bid, lower, upper, size, offset))
    return tuple(out)


def read_csv(path: str | os.PathLike[str]) -> tuple[CsvBuffer, ...]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanFormatError(f"cannot read {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise PlanFormatError(f"{p}: not a UTF-8 text file") from None
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
