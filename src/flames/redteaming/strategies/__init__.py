"""The attack strategies, by name: rewrite, pair, tap, crescendo."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from flames.redteaming.strategies.base import Strategy
from flames.redteaming.strategies.crescendo import Crescendo
from flames.redteaming.strategies.pair import Pair
from flames.redteaming.strategies.rewrite import Rewrite
from flames.redteaming.strategies.tap import Tap

STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Rewrite, Pair, Tap, Crescendo)}


def strategy(name: str, parameters: dict[str, Any] | None = None) -> Strategy:
    """The strategy called `name` with `parameters` (the others at their defaults); ValueError
    names what is wrong."""
    kind = STRATEGIES.get(name)
    if kind is None:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
    try:
        return kind.model_validate(parameters or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        raise ValueError(f"{name}: {where}: {message}" if where else f"{name}: {message}") from None


__all__ = ["STRATEGIES", "Crescendo", "Pair", "Rewrite", "Strategy", "Tap", "strategy"]
