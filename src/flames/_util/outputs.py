"""Writing output files safely: whole or not at all, and CSV cells no spreadsheet will run.

Every file flames writes for a reader (reports, scored answers, figures, exports) is written to a
temporary name in the same folder and renamed into place, so a killed process leaves either the
previous file or the complete new one, never a truncated one.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, Any

from flames._util.text import storable

PARTIAL = ".partial-"
"""Marks a temporary file that is not complete yet: ``.report.json.partial-PID-XXXX.json``, where
PID is the process writing it (so that a later process can tell a dead writer's leftovers)."""
STALE_PARTIAL = re.compile(r"^\..+" + re.escape(PARTIAL) + r"(?:(\d+)-)?")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path`; renamed onto `path` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}{PARTIAL}{os.getpid()}-", suffix=path.suffix
    )
    os.close(fd)
    _readable(Path(name))
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@cache
def _umask() -> int:
    """The process's umask, read where the system shows it (setting it to read it back would
    race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _readable(path: Path) -> None:
    """Give a temporary file the mode an ordinary new file would have (0644 under umask 022):
    mkstemp makes it 0600, which would leave reports unreadable to the user's colleagues."""
    os.chmod(path, 0o666 & ~_umask())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_partials(folder: Path | str) -> int:
    """Remove the temporary files that killed writers left in `folder` (those of live processes
    stay); return how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        found = STALE_PARTIAL.match(path.name)
        if found is None or not path.is_file():
            continue
        pid = found.group(1)  # None: written by an older flames, long gone
        if pid is not None and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed


@contextmanager
def atomic_open(
    path: Path | str, encoding: str = "utf-8", newline: str | None = None
) -> Iterator[IO[str]]:
    """Open a text file for writing that appears at `path` only once it is complete."""
    with atomic_path(path) as tmp, tmp.open("w", encoding=encoding, newline=newline) as fh:
        yield fh


def write_text(path: Path | str, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def write_with(path: Path | str, save: Callable[[Path], Any]) -> Path:
    """Let `save` write a file (a figure, ...) to a temporary name, then rename it to `path`."""
    with atomic_path(path) as tmp:
        save(tmp)
    return Path(path)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _formula(text: str) -> bool:
    return text.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(text)


def _neutralised(text: str) -> bool:
    """Whether `text` reads as `csv_cell`'s output for formula-like text: apostrophes, then it."""
    return text.startswith("'") and _formula(text.lstrip("'"))


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs as a formula.

    Text starting with = + - @ tab or carriage return gets a leading apostrophe, unless it is a
    plain number such as "-1.5"; so does text that would read as such a cell already ("'=x"),
    so that `csv_value` gives back exactly what was written. Other values are returned as they
    are. Text is written as UTF-8 can hold it (lone surrogates replaced).
    """
    if not isinstance(value, str):
        return value
    value = storable(value)
    return "'" + value if _formula(value) or _neutralised(value) else value


def csv_value(text: str) -> str:
    """The text `csv_cell` was given for the cell `text` (its apostrophe taken off); a cell a
    spreadsheet saved without the apostrophe reads as it is."""
    return text[1:] if _neutralised(text) else text


@contextmanager
def long_csv_fields() -> Iterator[None]:
    """Let the csv module read fields of any length (by default it stops at 131,072 characters,
    far shorter than a long answer), for the duration of the block."""
    previous = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def csv_row(values: Any) -> list[Any]:
    return [csv_cell(v) for v in values]
