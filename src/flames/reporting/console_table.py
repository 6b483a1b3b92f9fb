"""Console tables that fit the console: numbers are never cut, text wraps.

A narrow console (80 columns, a CI log) first gets abbreviated headers, then loses the
secondary columns one by one, with a note saying which; a wide one shows everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flames.reporting.i18n import Lang, t

MAX_WORD = 20
"""A text column is kept as wide as its longest word, up to this many cells."""


@dataclass(frozen=True)
class Col:
    header: str
    short: str | None = None
    """Abbreviated header, used when the full one does not fit."""
    text: bool = False
    """Free text that may wrap (names); other columns hold numbers and never wrap."""
    drop: int = 0
    """Above 0: may be left out, with a note, when the console is too narrow (highest first)."""
    name: str | None = None
    """What the note calls the column when it is left out (default: its header)."""


def _width(col: Col, header: str, cells: list[str]) -> int:
    plain = [Text.from_markup(c).plain for c in cells]
    if col.text:
        words = [w for c in [header, *plain] for w in c.split()]
        return min(max((cell_len(w) for w in words), default=1), MAX_WORD)
    return max(cell_len(c) for c in [header, *plain])


def _needed(widths: list[int]) -> int:
    # Rich's default box: one rule left, right and between columns; one space of padding each side.
    return sum(widths) + 3 * len(widths) + 1


def print_table(
    console: Console,
    cols: Sequence[Col],
    rows: Sequence[Sequence[str]],
    title: str | None = None,
    caption: str | None = None,
    lang: Lang | str = Lang.en,
) -> list[str]:
    """Print rows (rich markup allowed) as a table that fits; return the headers left out."""
    keep = list(range(len(cols)))
    droppable = sorted((i for i, c in enumerate(cols) if c.drop), key=lambda i: -cols[i].drop)
    short = False
    while True:
        headers = [(cols[i].short if short and cols[i].short else cols[i].header) for i in keep]
        widths = [
            _width(cols[i], h, [r[i] for r in rows]) for i, h in zip(keep, headers, strict=True)
        ]
        if _needed(widths) <= console.width:
            break
        if not short and any(c.short for c in cols):
            short = True
        elif droppable:
            keep.remove(droppable.pop(0))
        else:
            break  # nothing left to drop: the text columns wrap as far as they can
    table = Table(title=title, caption=caption)
    for i, header, width in zip(keep, headers, widths, strict=True):
        col = cols[i]
        if col.text:
            table.add_column(header, overflow="fold", min_width=width)
        else:
            table.add_column(header, justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    dropped = [cols[i].name or cols[i].header for i in range(len(cols)) if i not in keep]
    if dropped:
        console.print(t("dropped", lang, n=console.width, cols=", ".join(dropped)))
    return dropped
