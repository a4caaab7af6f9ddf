"""Output paths and output sets of ``compile``, ``emit`` and ``compare`` (issue 17).

* a bad ``-o`` (a file, a missing parent, a read-only place, a folder where an output file
  goes, a file where a folder goes) is a one-line error before any work, with no output;
* write errors (ENOSPC, EACCES) are one-line errors that leave the previous set and no
  temporary file;
* plan.json, schedule.json and plan.h are replaced as one set, and an interrupted commit is
  completed by the next run (``stowage.plan.files``);
* plan.h's ``<P>_PLAN_SHA256`` is the sha256 of the plan.json beside it;
* Ctrl-C (also inside a CP-SAT search) ends with ``stowage: interrupted`` and exit code 130.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stowage.cli import main
from stowage.plan import files as files_mod
from stowage.plan.files import (
    COMMIT_PREFIX,
    STAGING_PREFIX,
    OutputError,
    check_output_dir,
    is_output_leftover,
    recover_output_dir,
    write_output_set,
)
from tests.helpers import diamond_model, save

REPO = Path(__file__).resolve().parents[1]
FAST = ["--element-bytes", "1", "--solver", "heuristic", "--time-limit", "2"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save(diamond_model(), tmp_path / "diamond.onnx")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["-q", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_one_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("stowage: error: "), err
    for n in needles:
        assert n in lines[0], err


def leftovers(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if is_output_leftover(p.name))


def old_set(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    content = {"plan.json": "old plan\n", "schedule.json": "old schedule\n", "plan.h": "/* old header */\n"}
    for name, text in content.items():
        (out / name).write_text(text)
    return content


def contents(out: Path, names: list[str]) -> dict[str, str]:
    return {n: (out / n).read_text() for n in names}


# ---------------------------------------------------------------------------------------
# Bad -o: one line, before any work, nothing written
# ---------------------------------------------------------------------------------------
def _bad_outputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with_dir = tmp_path / "with_dir"
    (with_dir / "plan.json").mkdir(parents=True)
    (with_dir / "plan.h").mkdir()
    (with_dir / "report.html").mkdir()
    plans_file = tmp_path / "plans_file"
    plans_file.mkdir()
    (plans_file / "plans").write_text("not a folder")
    return {
        "file": (a_file, "exists and is not a folder"),
        "missing parent": (tmp_path / "no" / "such" / "out", "parent folder"),
        "file parent": (a_file / "out", "is not a folder"),
        "dir where a file goes": (with_dir, "is a folder where the output file"),
        "file where a dir goes": (plans_file, "is a file where a folder is expected"),
    }


@pytest.mark.parametrize("case", ["file", "missing parent", "file parent", "dir where a file goes"])
def test_compile_and_emit_refuse_bad_output_before_work(case: str, tmp_path: Path, capsys) -> None:
    path, needle = _bad_outputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    # The model does not exist: a -o error proves -o is checked before the model is read.
    rc, out, err = run(capsys, "compile", str(tmp_path / "missing.onnx"), *FAST, "-o", str(path))
    assert rc == 2 and out == ""
    assert_one_line(err, needle)
    rc, out, err = run(capsys, "emit", str(tmp_path / "missing.json"), "-o", str(path))
    assert rc == 2 and out == ""
    assert_one_line(err, needle)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("case", ["file", "missing parent", "file parent", "dir where a file goes",
                                  "file where a dir goes"])
def test_compare_refuses_bad_output_before_work(case: str, tmp_path: Path, capsys) -> None:
    path, needle = _bad_outputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, out, err = run(capsys, "compare", str(tmp_path / "missing.onnx"), "--solvers", "naive", "-o", str(path))
    assert rc == 2 and out == ""
    assert_one_line(err, needle)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_read_only_output_is_refused(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Permission bits (os.access) and a read-only mount (the probe file fails with EROFS,
    which also stops root): both one line, nothing written."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real_access(p, mode, **kw))
    for argv in (["compile", str(model), *FAST], ["compare", str(model), "--solvers", "naive"]):
        rc, _, err = run(capsys, *argv, "-o", str(ro))
        assert rc == 2
        assert_one_line(err, "not writable")
        rc, _, err = run(capsys, *argv, "-o", str(ro / "new"))
        assert rc == 2
        assert_one_line(err, "not writable")
    monkeypatch.setattr(os, "access", real_access)

    real_open = os.open

    def erofs(path, flags, *a, **kw):
        if Path(path).name.startswith(files_mod.PROBE_PREFIX):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", erofs)
    rc, _, err = run(capsys, "compile", str(model), *FAST, "-o", str(ro))
    assert rc == 2
    assert_one_line(err, "Read-only file system")
    assert list(ro.iterdir()) == []


# ---------------------------------------------------------------------------------------
# Write errors: one line, old set intact, no temporary file
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
@pytest.mark.parametrize("fail_at", [1, 3])
def test_write_error_keeps_old_set(code: int, fail_at: int, model: Path, tmp_path: Path, capsys,
                                   monkeypatch) -> None:
    out = tmp_path / "out"
    old = old_set(out)
    calls = {"n": 0}
    real_write = os.write

    def failing_write(fd: int, data) -> int:
        calls["n"] += 1
        if calls["n"] >= fail_at:
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    rc, stdout, err = run(capsys, "compile", str(model), *FAST, "-o", str(out))
    monkeypatch.setattr(os, "write", real_write)
    assert rc == 2 and "wrote" not in stdout
    assert_one_line(err, os.strerror(code))
    assert contents(out, list(old)) == old
    assert sorted(p.name for p in out.iterdir()) == sorted(old)
    assert leftovers(out) == []


def test_write_error_in_emit_and_compare(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    plan_dir = tmp_path / "p"
    assert run(capsys, "compile", str(model), *FAST, "-o", str(plan_dir))[0] == 0
    real_write = os.write

    def enospc(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "e"
    old = old_set(out)
    monkeypatch.setattr(os, "write", enospc)
    rc, _, err = run(capsys, "emit", str(plan_dir / "plan.json"), "-o", str(out))
    assert rc == 2
    assert_one_line(err, "No space left on device")
    assert contents(out, list(old)) == old and leftovers(out) == []
    report = tmp_path / "r"
    rc, _, err = run(capsys, "compare", str(model), "--element-bytes", "1", "--capacity", "M_R",
                     "--solvers", "naive", "--time-limit", "2", "-o", str(report))
    monkeypatch.setattr(os, "write", real_write)
    assert rc == 2
    assert_one_line(err, "No space left on device")
    assert not report.exists() or list(report.iterdir()) == []


def test_open_failure_is_one_line(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    old = old_set(out)
    real_open = os.open

    def eacces(path, flags, *a, **kw):
        if flags & os.O_CREAT and STAGING_PREFIX in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", eacces)
    rc, _, err = run(capsys, "compile", str(model), *FAST, "-o", str(out))
    monkeypatch.setattr(os, "open", real_open)
    assert rc == 2
    assert_one_line(err, "Permission denied")
    assert contents(out, list(old)) == old and leftovers(out) == []


# ---------------------------------------------------------------------------------------
# One set, the hash macro, recovery
# ---------------------------------------------------------------------------------------
def _sha_macro(header: str) -> str:
    m = re.search(r'#define \w+_PLAN_SHA256 "([0-9a-f]{64})"\n', header)
    assert m, "no PLAN_SHA256 macro"
    return m.group(1)


def test_compile_and_emit_write_one_consistent_set(model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    old_set(out)
    (out / "notes.txt").write_text("the user's own file")
    rc, stdout, _ = run(capsys, "compile", str(model), *FAST, "-o", str(out))
    assert rc == 0
    assert f"wrote {out / 'plan.json'}, {out / 'schedule.json'}, {out / 'plan.h'}, {out / 'plan.c'}" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "plan.c", "plan.h", "plan.json", "schedule.json"]
    header = (out / "plan.h").read_text()
    assert _sha_macro(header) == hashlib.sha256((out / "plan.json").read_bytes()).hexdigest()
    assert "#define DIAMOND_PLAN_SHA256 " in header
    # emit regenerates the same set from the saved plan; the macro still matches its plan.json
    fw = tmp_path / "fw"
    rc, _, _ = run(capsys, "emit", str(out / "plan.json"), "--c-prefix", "net", "-o", str(fw))
    assert rc == 0
    assert sorted(p.name for p in fw.iterdir()) == ["plan.c", "plan.h", "plan.json", "schedule.json"]
    h = (fw / "plan.h").read_text()
    assert _sha_macro(h) == hashlib.sha256((fw / "plan.json").read_bytes()).hexdigest()
    assert "#define NET_PLAN_SHA256 " in h
    # --format header only: the macro names the plan.json emit would write for this plan
    hdr = tmp_path / "h"
    assert run(capsys, "emit", str(fw / "plan.json"), "--format", "header", "-o", str(hdr))[0] == 0
    assert sorted(p.name for p in hdr.iterdir()) == ["plan.c", "plan.h"]
    assert _sha_macro((hdr / "plan.h").read_text()) == _sha_macro(header)
    assert leftovers(out) == leftovers(fw) == leftovers(hdr) == []


def test_interrupt_while_staging_keeps_old_set(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    old = old_set(out)
    calls = {"n": 0}
    real_fsync = os.fsync

    def interrupted_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    rc, stdout, err = run(capsys, "compile", str(model), *FAST, "-o", str(out))
    assert rc == 130 and "wrote" not in stdout
    assert err.strip() == "stowage: interrupted"
    assert contents(out, list(old)) == old and leftovers(out) == []


def test_sigint_during_commit_is_delivered_after_it(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C between the renames of the commit waits for them: the new set is complete,
    then KeyboardInterrupt is raised."""
    out = tmp_path / "out"
    old_set(out)
    real_replace = os.replace

    def replace_then_sigint(src, dst) -> None:
        real_replace(src, dst)
        if Path(dst).name == "plan.json":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_sigint)
    new = {"plan.json": "new plan\n", "schedule.json": "new schedule\n", "plan.h": "/* new */\n"}
    with pytest.raises(KeyboardInterrupt):
        write_output_set(out, new)
    assert contents(out, list(new)) == new and leftovers(out) == []


def test_crash_during_commit_is_completed_by_the_next_run(tmp_path: Path, monkeypatch) -> None:
    """A commit that stops half-way (here: the second rename fails, as after a kill) leaves
    the rest in the commit folder; the next check or write rolls it forward."""
    out = tmp_path / "out"
    old_set(out)
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(src, dst) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    new = {"plan.h": "/* new */\n", "plan.json": "new plan\n", "schedule.json": "new schedule\n"}
    with pytest.raises(OutputError, match="next stowage run"):
        write_output_set(out, new)
    monkeypatch.setattr(os, "replace", real_replace)
    assert [p.name.startswith(COMMIT_PREFIX) for p in out.iterdir() if p.name.startswith(".")] == [True]
    check_output_dir(out, files=list(new))  # the recovery rule, before any work
    assert contents(out, list(new)) == new and leftovers(out) == []


def test_recovery_rules(tmp_path: Path) -> None:
    """Commit folders of dead writers roll forward, staging folders of dead writers go, a
    folder whose owner still holds its lock is left alone."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    old_set(out)
    committed = out / f"{COMMIT_PREFIX}999999-dead"
    (committed / "plans").mkdir(parents=True)
    (committed / "plan.json").write_text("rolled forward\n")
    (committed / "plans" / "a.json").write_text("{}\n")
    abandoned = out / f"{STAGING_PREFIX}999999-dead"
    abandoned.mkdir()
    (abandoned / "plan.h").write_text("/* half */")
    live = out / f"{STAGING_PREFIX}1-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        recover_output_dir(out)
        assert live.exists()
    finally:
        os.close(fd)
    assert (out / "plan.json").read_text() == "rolled forward\n"
    assert (out / "plans" / "a.json").read_text() == "{}\n"
    assert (out / "plan.h").read_text() == "/* old header */\n"
    assert not committed.exists() and not abandoned.exists()
    recover_output_dir(out)  # the live writer is gone now
    assert leftovers(out) == []


def test_write_output_set_rejects_names_outside_the_folder(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/x", ""):
        with pytest.raises(ValueError):
            write_output_set(tmp_path, {bad: "x"})


# ---------------------------------------------------------------------------------------
# Ctrl-C during a real CP-SAT search
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # about 8 s: model import, the pipeline up to its CP-SAT chain bound, then Ctrl-C
def test_ctrl_c_during_cp_sat_solve(tmp_path: Path) -> None:
    model = REPO / "models" / "suite" / "nasnet_a.onnx"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "stowage", "-vv", "compile", str(model), "--element-bytes", "1",
           "--capacity", "M_R", "--solver", "exact", "--time-limit", "60", "-o", str(out)]
    # A background job of a non-interactive shell starts with SIGINT ignored, and Python then
    # installs no handler; a terminal's Ctrl-C reaches a foreground process with the default.
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        seen = []
        deadline = time.monotonic() + 90
        for line in proc.stderr:  # -vv logs each phase; the chain bound is a CP-SAT IP
            seen.append(line)
            if "exact[auto]: phase chain bound" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "compile ended before the CP-SAT phase:\n" + "".join(seen[-20:])
        time.sleep(2.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert took < 3.0, f"exit took {took:.1f}s after SIGINT"
    assert err.splitlines()[-1] == "stowage: interrupted"
    assert "Traceback" not in err
    assert not out.exists() or (leftovers(out) == [] and list(out.iterdir()) == [])
