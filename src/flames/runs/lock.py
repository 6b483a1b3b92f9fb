"""One writer per run: an exclusive lock on the run directory, held for a command's lifetime.

Every command that writes a run (generate, import, score, judge, run, annotate, redteam, batch)
holds the lock of its run directory for as long as it runs; readers (report, compare, ...) never
take it. The lock is an advisory ``flock`` on ``run.lock`` in the run directory, so the kernel
releases it the moment its process ends, however it ends: a lock left by a killed process is
simply free, and the next writer takes it over. The file holds who has it (process id, host,
command, since when), only to say so to a second writer.

Within one process the lock is re-entrant: a command that opens the run's store several times
(generate, then score) holds it throughout.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flames.errors import RunLocked, UsageError

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


LOCK_NAME = "run.lock"
POLL_S = 0.2
"""How often a waiting writer tries again."""


@dataclass
class _Held:
    fd: int
    count: int
    made_dir: bool
    """Whether taking the lock created the run directory (removed again if left empty)."""


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def _key(run_dir: Path) -> Path:
    return run_dir.resolve()


def holder(run_dir: Path | str) -> str:
    """Who holds (or last held) the run's lock, in words, from its lock file."""
    try:
        info = json.loads((Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8"))
        return (
            f"process {int(info['pid'])} on {info['host']} ({info['command']}, since "
            f"{info['since']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _open_locked(path: Path) -> int | None:
    """The lock file's descriptor, locked, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                os.close(fd)
                return None
            # The file may have been removed (the directory too) while this process waited: a
            # lock on a file no longer at `path` locks nothing, so try again.
            if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if not path.parent.is_dir():
            return None


def _record(fd: int, command: str) -> None:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": since}
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def acquire(run_dir: Path | str, command: str, wait: bool = False) -> None:
    """Take the run's lock (creating the directory if needed), or raise `RunLocked` naming its
    holder; with `wait`, wait until it is free. Re-entrant within a process."""
    run_dir = Path(run_dir)
    key = _key(run_dir)
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.count += 1
            return
    while True:
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"{run_dir}: not a directory; give a folder for the run")
        made_dir = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(run_dir / LOCK_NAME)
        if fd is not None:
            break
        if run_dir.is_dir() and not wait:
            raise RunLocked(
                f"{run_dir} is being written by {holder(run_dir)}. One process writes a run at a "
                "time: wait for it to finish, or add --wait to wait for it."
            )
        time.sleep(POLL_S)
    _record(fd, command)
    with _guard:
        _held[key] = _Held(fd, 1, made_dir)


def release(run_dir: Path | str) -> None:
    """Give the lock back once every `acquire` of this process has been matched. A directory
    the first `acquire` created is removed again if nothing but the lock file is in it."""
    run_dir = Path(run_dir)
    key = _key(run_dir)
    with _guard:
        held = _held[key]
        held.count -= 1
        if held.count:
            return
        del _held[key]
    lock_file = run_dir / LOCK_NAME
    try:
        if held.made_dir and {p.name for p in run_dir.iterdir()} == {LOCK_NAME}:
            lock_file.unlink()  # still locked: a writer waiting on it sees it gone and retries
            run_dir.rmdir()
    except OSError:
        pass
    finally:
        os.close(held.fd)


def holds(run_dir: Path | str) -> bool:
    """Whether this process holds the run's lock."""
    with _guard:
        return _key(Path(run_dir)) in _held


@contextmanager
def writing(run_dir: Path | str, command: str, wait: bool = False) -> Iterator[None]:
    """Hold the run's lock for the block (see `acquire`)."""
    acquire(run_dir, command, wait)
    try:
        yield
    finally:
        release(run_dir)
