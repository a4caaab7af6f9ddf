"""Writing output files so that a failure never leaves a partial, corrupted or mixed set.

Two tools:

* ``write_text_atomic(path, text)``: one file, temp file + fsync + rename.
* ``write_output_set(outdir, files)``: several files that belong together (``plan.json``,
  ``schedule.json`` and ``plan.h``; a comparison report) replace the previous set in
  ``outdir`` as one unit, by a staging directory and a roll-forward rule:

  1. every file is written into a fresh hidden staging directory inside ``outdir``
     (``.stowage-new-<pid>-<token>``: same file system, so renames cannot fail with EXDEV)
     and fsynced; the writer holds an exclusive ``flock`` on that directory while it lives;
  2. under an exclusive ``flock`` on ``outdir`` itself (commits into one folder are
     serialised), the staging directory is renamed to ``.stowage-commit-<pid>-<token>``: this
     one atomic rename is the commit point;
  3. each file is renamed into place, the directory fsynced, the commit directory removed.

  Before the commit point a failure (ENOSPC, EACCES, an exception, Ctrl-C) removes the staging
  directory: the old set is untouched and no temporary file remains.  Steps 2-3 run with
  SIGINT deferred (Ctrl-C is delivered as ``KeyboardInterrupt`` right after them), so within
  a live process the switch from old set to new set completes.  Only a crash of the process
  or the machine during step 3 (milliseconds: renames only) can leave a mix on disk, and it
  is repaired by the recovery rule: every later ``write_output_set`` or
  ``check_output_dir`` on that folder first finishes the renames of any
  ``.stowage-commit-*`` directory (roll forward: the new set was complete before the commit
  point) and deletes any ``.stowage-new-*`` directory, in both cases only when its owner is
  gone (its ``flock`` is free).  Readers that must never observe the intermediate state can
  compare ``<PREFIX>_PLAN_SHA256`` in ``plan.h`` with the sha256 of ``plan.json``
  (``docs/c-header.md``).

A whole-folder swap (``renameat2(RENAME_EXCHANGE)``) would be atomic without a recovery rule,
but the output folder is named by the user and may hold other files (``-o .``): swapping it
would drop them, so the set is committed file by file as above.  Files of the folder that the
new set does not name are left alone.

``check_output_dir`` validates an output folder before any work is done, so a bad ``-o`` is a
one-line ``OutputError`` instead of a traceback after minutes of solving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType

from stowage.errors import StowageError

try:  # POSIX only; without it the owner check falls back to the pid in the name
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

STAGING_PREFIX = ".stowage-new-"
COMMIT_PREFIX = ".stowage-commit-"
PROBE_PREFIX = ".stowage-probe-"


class OutputError(StowageError):
    """An output location cannot be used or written (a file where a folder is expected, a
    missing parent, no permission, a full disk)."""


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


# ---------------------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------------------
def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a file so that a failure never leaves a partial one: temp file + rename.

    Raises ``OSError`` (callers turn it into their own error); the temp file is removed on
    any failure, ``KeyboardInterrupt`` included."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        _write_file(tmp, text.encode("utf-8"))
        os.replace(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(p.parent)


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist) with ``data``, fsynced.  ``os.open``/``os.write``
    rather than ``open`` so that a short write or ENOSPC surfaces as ``OSError`` here."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable; file systems that cannot fsync a folder are fine."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# Validation before any work
# ---------------------------------------------------------------------------------------
def check_output_dir(path: str | os.PathLike[str], *, files: Iterable[str] = (), dirs: Iterable[str] = (),
                     flag: str = "-o") -> Path:
    """Refuse an output folder that cannot take the files: ``path`` a file, a missing or
    non-folder parent, no write permission (checked by creating and removing a probe file,
    which also catches read-only mounts and root), one of ``files`` a folder, one of ``dirs``
    a file.  Completes an interrupted earlier set (the recovery rule) when the folder exists.
    Creates nothing that stays: a missing ``path`` is created only when the outputs are
    written."""
    out = Path(path)
    where = f"{flag} {out}"
    if out.is_symlink() and not out.exists():
        raise OutputError(f"{where}: is a dangling symbolic link")
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{where}: exists and is not a folder")
        _check_writable(out, where)
        for name in files:
            if (out / name).is_dir():
                raise OutputError(f"{where}: {out / name} is a folder where the output file {name} goes")
            parent = (out / name).parent
            if parent != out and parent.exists() and not parent.is_dir():
                raise OutputError(f"{where}: {parent} is a file where a folder is expected")
        for name in dirs:
            d = out / name
            if (d.exists() or d.is_symlink()) and not d.is_dir():
                raise OutputError(f"{where}: {d} is a file where a folder is expected")
        recover_output_dir(out)
        return out
    parent = out.parent
    if not parent.exists():
        raise OutputError(f"{where}: the parent folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{where}: {parent} is not a folder")
    _check_writable(parent, where)
    return out


def _check_writable(folder: Path, where: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: {folder} is not writable (permission denied)")
    probe = folder / f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise OutputError(f"{where}: cannot create files in {folder}: {_describe(exc)}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


# ---------------------------------------------------------------------------------------
# A set of files
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _flock(path: Path, blocking: bool) -> Iterator[bool]:
    """An exclusive ``flock`` on a folder for the duration; yields False when ``blocking`` is
    off and someone else holds it.  Without ``fcntl`` it yields True (no locking)."""
    if fcntl is None:  # pragma: no cover
        yield True
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _owner_gone(d: Path) -> bool:
    """True when the process that made staging/commit folder ``d`` no longer runs."""
    if fcntl is not None:
        try:
            with _flock(d, blocking=False) as got:
                return got
        except OSError:
            return False
    try:  # pragma: no cover - fallback without flock
        pid = int(d.name.split("-")[2])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return True
    except OSError:
        return False
    return pid != os.getpid()


def _files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _roll_forward(commit_dir: Path, outdir: Path) -> None:
    """Move every file still in ``commit_dir`` into ``outdir``, then remove ``commit_dir``."""
    touched = {outdir}
    for rel in _files_under(commit_dir):
        dst = outdir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(commit_dir / rel, dst)
        touched.add(dst.parent)
    for d in touched:
        _fsync_dir(d)
    shutil.rmtree(commit_dir)
    _fsync_dir(outdir)


def recover_output_dir(outdir: str | os.PathLike[str]) -> None:
    """The recovery rule: finish an interrupted commit (roll forward) and delete abandoned
    staging folders, in both cases only when their owner process is gone."""
    out = Path(outdir)
    try:
        leftovers = sorted(p for p in out.iterdir() if p.name.startswith((STAGING_PREFIX, COMMIT_PREFIX)))
    except OSError:
        return
    if not leftovers:
        return
    with _flock(out, blocking=True):
        for d in leftovers:
            if not d.is_dir() or not _owner_gone(d):
                continue
            try:
                if d.name.startswith(COMMIT_PREFIX):
                    log.warning("completing an interrupted output set in %s", out)
                    _roll_forward(d, out)
                else:
                    log.info("removing abandoned staging folder %s", d)
                    shutil.rmtree(d)
            except FileNotFoundError:
                continue  # a concurrent recovery got there first
            except OSError as exc:
                raise OutputError(f"cannot recover the interrupted output set in {out} ({d.name}): "
                                  f"{_describe(exc)}") from None


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while the commit renames run; deliver it as KeyboardInterrupt right
    after (only the main thread can change signal handlers; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # pragma: no cover - not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _remove_if_created(out: Path, created: bool) -> None:
    """A failed first write leaves no empty output folder behind either."""
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()  # only if empty: never anything a concurrent run put there


def write_output_set(outdir: str | os.PathLike[str], files: Mapping[str, str | bytes]) -> list[Path]:
    """Replace ``files`` (relative names -> text (UTF-8) or bytes) in ``outdir`` as one set:
    afterwards either all of them are the new content or, on failure, all are as before and
    no temporary file is left (see the module docstring for the protocol and the recovery
    rule).  ``outdir`` is created if needed (not its parents).  Returns the paths written, in
    the order given.  Failures are ``OutputError`` (one line)."""
    out = Path(outdir)
    rels = [Path(name) for name in files]
    for rel in rels:
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"output file name {rel} must be relative and inside the folder")
    created = not out.exists()
    try:
        out.mkdir(exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write into {out}: it exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: {_describe(exc)}") from None
    recover_output_dir(out)
    token = f"{os.getpid()}-{secrets.token_hex(6)}"
    staging = out / f"{STAGING_PREFIX}{token}"
    committed = out / f"{COMMIT_PREFIX}{token}"
    try:
        staging.mkdir()
    except OSError as exc:
        _remove_if_created(out, created)
        raise OutputError(f"cannot write into {out}: {_describe(exc)}") from None
    remove_staging = True  # until the commit point; after it the folder is the new set
    try:
        with _flock(staging, blocking=True):
            rel = rels[0] if rels else Path()
            try:
                for rel, content in zip(rels, files.values()):
                    target = staging / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
                    _write_file(target, data)
                for d in {staging / r.parent for r in rels}:
                    _fsync_dir(d)
            except OSError as exc:
                raise OutputError(f"cannot write {out / rel}: {_describe(exc)}") from None
            with _flock(out, blocking=True), _sigint_deferred():
                try:
                    os.rename(staging, committed)  # the commit point
                except OSError as exc:
                    raise OutputError(f"cannot write into {out}: {_describe(exc)}") from None
                remove_staging = False
                _fsync_dir(out)
                try:
                    _roll_forward(committed, out)
                except OSError as exc:
                    raise OutputError(
                        f"writing into {out} was interrupted ({_describe(exc)}); the new files are complete in "
                        f"{committed.name} and the next stowage run writing into {out} finishes moving them"
                    ) from None
    finally:
        if remove_staging:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_if_created(out, created)
    return [out / rel for rel in rels]


def is_output_leftover(name: str) -> bool:
    """True for the names of this module's temporary files and folders."""
    return name.startswith((STAGING_PREFIX, COMMIT_PREFIX, PROBE_PREFIX)) or ".tmp-" in name


__all__ = [
    "COMMIT_PREFIX", "STAGING_PREFIX", "OutputError", "check_output_dir", "is_output_leftover",
    "recover_output_dir", "write_output_set", "write_text_atomic",
]
