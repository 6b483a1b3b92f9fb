"""Text from elsewhere made safe to print on a terminal: server error bodies and model output
(`remote`, several lines), and names that came from a user, a file or a server (`inline`)."""

from __future__ import annotations

import re

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 controls but tab and newline, DEL, and C1 controls (U+0080-U+009F, e.g. CSI U+009B)."""
_LINE_BREAK = re.compile(r"[\t\n\u2028\u2029]")
"""What `printable` keeps and a one-line name may not hold (U+2028/U+2029 break lines too)."""


def printable(text: str) -> str:
    r"""`text` with every control character but newline and tab shown as a \xNN escape.

    A raw ESC, OSC or C1 sequence would reach the terminal: clear the screen (ESC[2J), write the
    clipboard (OSC 52), set the window title, or overwrite what was printed (CR, backspace).
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def remote(text: str) -> str:
    """`printable`, and safe from Rich markup too: for any text that came from a server."""
    return escape(printable(text))


def inline(text: object) -> str:
    r"""A name from a user, a file or a server (model, run, scorer, annotator, transform, a
    path ...) as one line of console text: every control character, newline and tab included,
    shown as a \xNN escape, and Rich markup shown as written, never applied."""
    return escape(_LINE_BREAK.sub(lambda m: f"\\x{ord(m.group()):02x}", printable(str(text))))
