"""``stowage alloc`` and the MiniMalloc CSV reader under hostile input (issue 17).

Numbers that overflow, non-regular or oversized files and unwritable output paths are one-line
errors with exit 2 that leave no partial file; instances far beyond the exact search's memory
limit are packed in linear memory (a large group goes to the greedy packer); a seeded
Hypothesis fuzz shows that random mutations of a valid CSV give a parse or a PlanFormatError.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from stowage import cli
from stowage.commands.alloc import independent_check
from stowage.errors import PlanFormatError
from stowage.solvers.alloc import exact
from stowage.solvers.alloc.minimalloc_csv import MAX_CSV_BYTES, MAX_VALUE, parse_csv, read_csv

GOOD = "id,lower,upper,size\na,0,2,4\nb,1,3,4\nc,2,4,8\n"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = cli.main(["alloc", *argv])
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("value, fragment", [
    ("9" * 5000, "too large"),
    (str(MAX_VALUE), "too large"),
    (str(1 << 63), "too large"),
    ("1e400", "must be an integer"),
    ("inf", "must be an integer"),
    ("nan", "must be an integer"),
    ("1_000", "must be an integer"),
    ("+5", "must be an integer"),
    ("\u0661", "must be an integer"),  # ARABIC-INDIC DIGIT ONE: int() would take it
])
def test_numbers_are_checked(value: str, fragment: str) -> None:
    with pytest.raises(PlanFormatError) as exc:
        parse_csv(f"id,lower,upper,size\na,0,1,{value}\n", "f.csv")
    msg = str(exc.value)
    assert "\n" not in msg and "f.csv line 2" in msg and "'size'" in msg and fragment in msg
    assert len(msg) < 300


def test_csv_level_errors_are_one_line() -> None:
    with pytest.raises(PlanFormatError, match="line 2: "):
        parse_csv("id,lower,upper,size\na,0,1,\x00\n", "f.csv")
    with pytest.raises(PlanFormatError, match="not a CSV record"):
        parse_csv("id,lower,upper,size\n\"" + "x" * 200_000 + "\",0,1,2\n", "f.csv")
    with pytest.raises(PlanFormatError, match="negative step"):
        parse_csv("id,lower,upper,size\na,-3,1,2\n", "f.csv")


def test_non_regular_and_huge_files_are_refused_unread(tmp_path: Path) -> None:
    with pytest.raises(PlanFormatError, match="not a regular file"):
        read_csv("/dev/zero")
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(PlanFormatError, match="not a regular file"):
        read_csv(tmp_path / "fifo.csv")
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:
        fh.truncate(MAX_CSV_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(PlanFormatError, match="too large"):
        read_csv(big)


def test_cli_bad_capacity_and_bad_instance_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst = tmp_path / "i.csv"
    inst.write_text(GOOD)
    for cap in ("1e400", "inf", "nan", "9" * 5000, str(1 << 63)):
        rc, err = run_cli(capsys, str(inst), "--capacity", cap)
        assert rc == 2 and err.count("\n") == 1 and "--capacity" in err
    rc, err = run_cli(capsys, "/dev/zero", "--capacity", "1MiB")
    assert rc == 2 and "not a regular file" in err


def test_output_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst = tmp_path / "i.csv"
    inst.write_text(GOOD)
    (tmp_path / "out").mkdir()
    rc, err = run_cli(capsys, str(inst), "--capacity", "1MiB", "-o", str(tmp_path / "out"))
    assert rc == 2 and err.count("\n") == 1 and "is a directory" in err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC, errno.EROFS])
def test_output_write_failures_leave_no_partial_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """A read-only folder or a full disk (simulated: root may write anywhere, and no test
    fills a disk): one line, exit 2, and neither the output nor a temporary file remains."""
    inst = tmp_path / "i.csv"
    inst.write_text(GOOD)
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        real_fsync(fd)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    out = tmp_path / "sol" / "s.csv"
    rc, err = run_cli(capsys, str(inst), "--capacity", "1MiB", "-o", str(out))
    assert rc == 2 and err.count("\n") == 1 and os.strerror(code) in err
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_independent_check_matches_all_pairs() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 12)
        rows = []
        for _ in range(n):
            lo = rng.randint(0, 6)
            rows.append((lo, lo + rng.randint(1, 4), rng.randint(0, 5)))
        offsets = [rng.randint(0, 10) for _ in rows]
        pairwise = any(
            rows[i][0] < rows[j][1] and rows[j][0] < rows[i][1] and rows[i][2] and rows[j][2]
            and offsets[i] < offsets[j] + rows[j][2] and offsets[j] < offsets[i] + rows[i][2]
            for i in range(n) for j in range(i))
        outside = any(o + r[2] > 20 for o, r in zip(offsets, rows))
        verdict = independent_check(rows, offsets, 20)
        assert (verdict is None) == (not pairwise and not outside), (rows, offsets, verdict)


def test_large_group_is_packed_greedily(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above MAX_EXACT_GROUP buffers connected in time, the exact search (whose path lists
    grow with the square of the group) is not started; the greedy packer answers."""
    monkeypatch.setattr(exact, "MAX_EXACT_GROUP", 50)
    rng = random.Random(5)
    bufs = []
    for i in range(400):
        lo = rng.randrange(0, 400)
        bufs.append(exact.Interval(i, lo, lo + rng.randint(0, 20), rng.randint(1, 50)))
    res = exact.solve_allocation(bufs, 10**6, 5.0, engine="python")
    assert res.offsets is not None and res.status in ("feasible", "optimal")
    assert "greedy" in res.reason
    assert exact.check_packing(bufs, res.offsets, 10**6) is None
    # A capacity below the peak live bytes is still proven infeasible up front.
    assert exact.solve_allocation(bufs, 10, 5.0, engine="python").status == "infeasible"


def test_many_rows_parse_and_pack_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(7)
    lines = ["id,lower,upper,size"]
    for i in range(20_000):
        lo = rng.randrange(0, 20_000)
        lines.append(f"b{i},{lo},{lo + rng.randint(1, 30)},{rng.randint(1, 100)}")
    inst = tmp_path / "i.csv"
    inst.write_text("\n".join(lines) + "\n")
    out = tmp_path / "s.csv"
    rc = cli.main(["alloc", str(inst), "--capacity", "1GiB", "--time-limit", "20", "-o", str(out)])
    assert rc == 0 and len(read_csv(out)) == 20_000


# -- fuzz ---------------------------------------------------------------------------

NASTY = ["9" * 400, "1e400", "inf", "nan", "-1", "\x00", '"', '""', ",", "\n", "\r", "\u0661", "1_0", " ",
         "offset", "id", str(1 << 63), "\ufeff"]


@seed(17)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 6),
                          st.one_of(st.sampled_from(NASTY), st.text(max_size=5))), min_size=1, max_size=5))
def test_fuzz_csv_reader(edits: list[tuple[int, int, str]]) -> None:
    text = GOOD + "d,0,9,1\n"
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    try:
        rows = parse_csv(text, "fuzz.csv")
    except PlanFormatError as exc:
        assert "\n" not in str(exc)
        return
    for r in rows:
        assert 0 <= r.lower < r.upper < MAX_VALUE and 0 <= r.size < MAX_VALUE
        assert r.offset is None or 0 <= r.offset < MAX_VALUE
