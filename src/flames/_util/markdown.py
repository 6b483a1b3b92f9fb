"""Names from a user, a file or a server (model, run, scorer, transform ...) as Markdown text.

A name is written so that every Markdown renderer shows it as the characters it holds, on one
line: it can add no raw HTML, heading, link, image, emphasis, code span, math or table cell.
CommonMark lets any ASCII punctuation be escaped with a backslash
(spec.commonmark.org/0.31.2/#backslash-escapes); GitHub's extensions also link bare
``www.`` and ``scheme:`` text and e-mail addresses (github.github.com/gfm/#autolinks-extension-),
which the escapes here break up. Inside a code span nothing is escaped, so a name shown as code
gets a fence longer than any run of backticks it holds (spec.commonmark.org/0.31.2/#code-spans).
"""

from __future__ import annotations

import re
import string
from typing import Any

from flames._util.terminal import printable

_LINE_BREAK = re.compile(r"[\r\n\t\v\f\x85\u2028\u2029]")
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&$!@^])")
"""Emphasis, code, links and images, raw HTML and entities, headings, table cells,
strikethrough, math, mentions and footnotes; the backslash itself first of all."""
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*):")
_WWW = re.compile(r"(?i)\b(www)\.")


def markdown_text(text: object) -> str:
    """`text` as one line of Markdown that renders as exactly these characters (control
    characters shown as \\xNN escapes, line breaks and tabs as spaces)."""
    one_line = _LINE_BREAK.sub(" ", str(text))
    escaped = _SPECIAL.sub(r"\\\1", printable(one_line))
    return _WWW.sub(r"\1\\.", _SCHEME.sub(r"\1\\:", escaped))


def markdown_code(text: object) -> str:
    """`text` as one Markdown code span that shows exactly its characters (control characters
    as \\xNN, line breaks and tabs as spaces). Not for tables: GFM splits a cell at "|" even in
    code."""
    shown = printable(_LINE_BREAK.sub(" ", str(text)))
    if not shown:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", shown)), default=0) + 1)
    # One space is taken off each end of a span that begins and ends with one: pad for it.
    pad = " " if shown[0] in " `" or shown[-1] in " `" else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def markdown_fill(template: str, **values: Any) -> str:
    """Fill a trusted Markdown `template` (``str.format`` fields; code spans between single
    backticks): a code span becomes one holding its filled text exactly (`markdown_code`), a
    field outside one escaped text (`markdown_text`)."""
    parts = template.split("`")
    if len(parts) % 2 == 0:
        raise ValueError(f"a backtick of this Markdown template is not closed: {template!r}")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(markdown_code(part.format(**values)))
            continue
        for literal, field, spec, conversion in string.Formatter().parse(part):
            out.append(literal)
            if field is not None:
                value = values[field]
                if conversion:
                    value = repr(value) if conversion == "r" else str(value)
                out.append(markdown_text(format(value, spec or "")))
    return "".join(out)
