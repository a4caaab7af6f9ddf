"""MiniMalloc CSV reader/writer: round trip and one test per kind of malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from stowage.errors import PlanFormatError
from stowage.solvers.alloc.minimalloc_csv import CsvBuffer, format_csv, parse_csv, read_csv, write_csv

EXAMPLE = Path(__file__).resolve().parent / "data" / "minimalloc" / "examples" / "input.12.csv"


def test_parses_the_example_instance() -> None:
    bufs = read_csv(EXAMPLE)
    assert [b.id for b in bufs] == ["b1", "b2", "b3", "b4", "b5"]
    assert bufs[0] == CsvBuffer("b1", 0, 3, 4, None)
    assert bufs[4] == CsvBuffer("b5", 0, 21, 4, None)


def test_columns_in_any_order_and_offsets() -> None:
    bufs = parse_csv("size,id,offset,upper,lower\n4,a,8,3,0\n2,b,0,5,1\n")
    assert bufs == (CsvBuffer("a", 0, 3, 4, 8), CsvBuffer("b", 1, 5, 2, 0))


def test_round_trip_with_offsets(tmp_path: Path) -> None:
    bufs = parse_csv("id,lower,upper,size\nx,0,2,3\ny,1,4,5\n")
    out = tmp_path / "sol.csv"
    write_csv(out, bufs, [5, 0])
    assert out.read_text() == "id,lower,upper,size,offset\nx,0,2,3,5\ny,1,4,5,0\n"
    assert read_csv(out) == (CsvBuffer("x", 0, 2, 3, 5), CsvBuffer("y", 1, 4, 5, 0))
    assert [p.name for p in tmp_path.iterdir()] == ["sol.csv"]  # no temp file left behind
    assert format_csv(bufs) == "id,lower,upper,size\nx,0,2,3\ny,1,4,5\n"


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("id,lower,upper,size,bogus\na,0,1,2,3\n", "bogus column 'bogus'"),
    ("id,lower,upper,size,size\na,0,1,2,2\n", "column 'size' appears twice"),
    ("id,lower,size\na,0,2\n", "missing column 'upper'"),
    ("id,lower,upper,size\na,0,1,2\na,1,2,2\n", "line 3: duplicate id 'a'"),
    ("id,lower,upper,size\na,0,1,2.5\n", "column 'size' must be an integer, got '2.5'"),
    ("id,lower,upper,size\na,zero,1,2\n", "column 'lower' must be an integer"),
    ("id,lower,upper,size\na,0,1,-2\n", "negative size -2"),
    ("id,lower,upper,size\na,3,3,2\n", "empty lifetime [3, 3)"),
    ("id,lower,upper,size\na,4,3,2\n", "empty lifetime [4, 3)"),
    ("id,lower,upper,size\na,0,1\n", "line 2: 3 fields, the header has 4"),
    ("id,lower,upper,size,offset\na,0,1,2,-1\n", "negative offset -1"),
    ("id,lower,upper,size\n,0,1,2\n", "empty id"),
])
def test_malformed_inputs_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(PlanFormatError) as err:
        parse_csv(text, "t.csv")
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("t.csv")


def test_unreadable_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(PlanFormatError, match="cannot read"):
        read_csv(tmp_path / "missing.csv")


@pytest.mark.parametrize("text, message", [
    # Blank lines count: the bad value is on physical line 5 (it used to say "line 3").
    ("id,lower,upper,size\n\n\na,0,1,4\nb,0,x,4\n", "f.csv line 5: column 'upper' must be an integer, got 'x'"),
    # A quoted field spanning two lines: the record after it starts on line 5.
    ('\nid,lower,upper,size\n"a\nb",0,1,4\nc,0,y,4\n', "f.csv line 5: column 'upper' must be an integer, got 'y'"),
])
def test_errors_name_the_physical_line(text: str, message: str) -> None:
    with pytest.raises(PlanFormatError) as err:
        parse_csv(text, "f.csv")
    assert str(err.value) == message


def test_rows_convert_to_inclusive_intervals() -> None:
    from stowage.solvers.alloc.minimalloc_csv import to_intervals

    rows = parse_csv("id,lower,upper,size,offset\na,0,3,4,8\nb,3,5,2,0\n")
    assert [(r.first, r.last) for r in rows] == [(0, 2), (3, 4)]
    assert [(iv.id, iv.first, iv.last, iv.size, iv.offset) for iv in to_intervals(rows)] == [(0, 0, 2, 4, 8),
                                                                                              (1, 3, 4, 2, 0)]
