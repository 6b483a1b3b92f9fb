"""Where each table and key of a TOML document is, for errors that name the line."""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_BARE_OR_QUOTED = r"(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)"
_KEY = re.compile(rf"^\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")


def _dotted(key: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_\-]+)", key)
    return tuple(next(p for p in part if p) if any(part) else "" for part in parts)


def toml_positions(text: str) -> dict[tuple[str | int, ...], int]:
    """Line number of each table and key of a TOML document, by path (array tables indexed)."""
    positions: dict[tuple[str | int, ...], int] = {}
    arrays: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    in_string = False
    for number, line in enumerate(text.splitlines(), start=1):
        quotes = line.count('"""') + line.count("'''")
        if in_string:
            in_string = quotes % 2 == 0
            continue
        in_string = quotes % 2 == 1
        header = _HEADER.match(line)
        if header:
            keys = _dotted(header.group(2))
            path: tuple[str | int, ...] = ()
            for index, part in enumerate(keys):
                path = (*path, part)
                if index == len(keys) - 1 and header.group(1) == "[[":
                    arrays[path] = arrays.get(path, -1) + 1
                    path = (*path, arrays[path])
                elif path in arrays:  # [judges.x] after [[judges]]: the latest entry
                    path = (*path, arrays[path])
            table = path
            positions.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            positions.setdefault((*table, *_dotted(key.group(1))), number)
    return positions
