"""Python functions as models and judges: their names, finding them by name, calling them."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from flames._util.aio import in_thread


def qualified_name(function: Callable[..., Any]) -> str:
    """'module:qualname' of a function, or of a callable object's class."""
    target = function if inspect.isroutine(function) else None
    if target is None:
        target = getattr(function, "func", None) or type(function)  # functools.partial, objects
    module = getattr(target, "__module__", None) or "?"
    return f"{module}:{getattr(target, '__qualname__', repr(target))}"


def resolve_callable(reference: str) -> Callable[..., Any]:
    """The object a 'module:qualname' reference names; ValueError when there is none."""
    module_name, sep, path = reference.partition(":")
    if not sep or not module_name or not path:
        raise ValueError(f"expected 'module:function', got {reference!r}")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    for part in path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no {path!r}") from None
    if not callable(found):
        raise ValueError(f"{reference} is not callable")
    return found


async def call(function: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function without blocking the event loop (sync ones in a thread)."""
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004  (async callable objects)
    ):
        return await function(*args)
    result = await in_thread(function, *args)  # never waited on after Ctrl-C
    if inspect.isawaitable(result):  # a sync wrapper that returns a coroutine
        return await result
    return result
