"""Writing output files safely: whole or not at all, and CSV cells no spreadsheet will run.

Every file flames writes for a reader (reports, scored answers, figures, exports) is written to a
temporary name in the same folder and renamed into place, so a killed process leaves either the
previous file or the complete new one, never a truncated one.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL = ".partial-"
"""Marks a temporary file that is not complete yet (``.report.json.partial-XXXX.json``)."""


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path`; renamed onto `path` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}{PARTIAL}", suffix=path.suffix
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs as a formula.

    Text starting with = + - @ tab or carriage return gets a leading apostrophe, unless it is a
    plain number such as "-1.5"; numbers and other values are returned as they are.
    """
    dangerous = isinstance(value, str) and value.startswith(FORMULA_START)
    return "'" + value if dangerous and not PLAIN_NUMBER.fullmatch(value) else value


def csv_row(values: Any) -> list[Any]:
    return [csv_cell(v) for v in values]
