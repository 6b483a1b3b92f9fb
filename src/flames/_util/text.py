"""Text from elsewhere (a server's reply, a file) made fit to store and write.

A lone surrogate (U+D800-U+DFFF not in a pair: JSON can carry one as ``"\\ud800"``) is not a
character: UTF-8, and so SQLite and every file flames writes, cannot hold it. It is replaced by
U+FFFD, the replacement character, and counted, never fatal.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> tuple[str, int]:
    """`text` with every lone surrogate replaced by U+FFFD, and how many were replaced."""
    if text.isascii():
        return text, 0
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.subn(REPLACEMENT, text)
    return text, 0


def storable(text: str) -> str:
    """`text` as UTF-8 can hold it (lone surrogates replaced by U+FFFD)."""
    return without_surrogates(text)[0]
