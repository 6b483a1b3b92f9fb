"""JSON objects inside free text, as models write them (in prose, in code fences, ...)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Each complete JSON object in `text`, in order: a JSON decoder is tried from every '{'
    (an object nested in another comes after it)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except RecursionError:  # nested past anything a model means: nothing further in is either
            return
        except ValueError:  # not JSON there (or a number too long to read)
            value = None
        if isinstance(value, dict):
            yield value
        start = text.find("{", start + 1)
