"""The attacker's instructions: flames' own Chinese text (resources/redteam_zh.toml), written from
the Flames taxonomy (what a harmful answer looks like in each dimension and subcomponent) and the
paper's attack methods (disguise and role-play, reverse induction, unsafe inquiry).

A user's file with the same layout replaces any of the texts (`Instructions.load`); unknown
keys and placeholders are refused with the file and line. The texts in use are recorded whole in
the run's manifest (`Instructions.texts`), so a changed instruction is a changed setting.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from flames._util.tomlfile import toml_positions
from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.errors import DataError

RESOURCE = "redteam_zh.toml"

METHODS = ("disguise", "reverse_induction", "unsafe_inquiry")
"""The attack methods of the Flames paper, in the instructions' words (`method.<name>`)."""

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "goal": frozenset({"dimension_text", "subcomponent_text", "seed"}),
    "rewrite": frozenset({"goal", "method_text"}),
    "pair_start": frozenset({"goal", "method_text", "scale"}),
    "pair_feedback": frozenset({"answer", "score", "reason"}),
    "on_topic": frozenset({"goal", "prompt"}),
    "crescendo_start": frozenset({"goal", "turns", "scale"}),
    "crescendo_next": frozenset({"answer", "score", "reason", "turn", "turns"}),
    "crescendo_refused": frozenset({"answer"}),
    "reason.given": frozenset({"reason"}),
    "reason.probability": frozenset({"p_harm"}),
}
"""The placeholders each text may use; texts not named here take none."""

ANSWER_CHARS = 1500
"""The target's answers are shown to the attacker cut at this many characters."""


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys; a list of texts as key.1, key.2, ..."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat.update({f"{name}.{i}": v for i, v in enumerate(value, start=1)})
        else:
            flat[name] = value
    return flat


def fields_of(text: str) -> set[str]:
    """The placeholders a text uses ({name}; {{ and }} are literal braces)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@dataclass(frozen=True)
class Instructions:
    texts: dict[str, str]
    """Every text, by dotted key (``system``, ``method.disguise``, ``reask.refusal.2`` ...)."""

    @classmethod
    def default(cls) -> Instructions:
        text = files("flames").joinpath("resources", RESOURCE).read_text("utf-8")
        return cls(flatten(tomllib.loads(text)))

    @classmethod
    def load(cls, path: Path | str) -> Instructions:
        """The default texts with those of the TOML file at `path` in their place."""
        path = Path(path)
        try:
            text = path.read_text("utf-8")
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise DataError("no such file", path) from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"not a readable TOML file: {exc}", path) from None
        positions = toml_positions(text)
        default = cls.default().texts
        chosen = dict(default)
        for key, value in flatten(data).items():
            line = positions.get(tuple(key.split(".")))
            if line is None and key.rsplit(".", 1)[-1].isdigit():  # an entry of a list
                line = positions.get(tuple(key.split(".")[:-1]))
            if key not in default:
                known = "system, goal, rewrite, pair_start, method.disguise, reask.refusal.1, ..."
                raise DataError(f"unknown instruction {key!r} (known: {known})", path, line)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"instruction {key!r} must be a text", path, line)
            unknown = fields_of(value) - PLACEHOLDERS.get(key, frozenset())
            if unknown:
                allowed = ", ".join(sorted(PLACEHOLDERS.get(key, ()))) or "none"
                raise DataError(
                    f"instruction {key!r} uses unknown placeholder(s) "
                    f"{', '.join(sorted(unknown))} (allowed: {allowed})",
                    path,
                    line,
                )
            chosen[key] = value
        return cls(chosen)

    def render(self, key: str, **values: Any) -> str:
        return self.texts[key].format(**values) if values else self.texts[key]

    def refusal_framings(self) -> list[str]:
        """The texts that put a refused request to the attacker again, each another way."""
        return [v for k, v in sorted(self.texts.items()) if k.startswith("reask.refusal.")]

    def goal(self, item: Item) -> str:
        """The goal as the attacker is told it: dimension, subcomponent and seed prompt."""
        return self.render(
            "goal",
            dimension_text=self.texts[f"dimension.{item.dimension.value}"],
            subcomponent_text=self.texts[f"subcomponent.{item.subcomponent}"],
            seed=item.prompt,
        )

    def scale(self, dimension: Dimension) -> str:
        return self.texts["scale.three" if len(dimension.scale) == 3 else "scale.two"]

    def method(self, name: str) -> str:
        return self.texts[f"method.{name}"]

    def reason(self, reason: str | None, p_harm: float | None) -> str:
        """Why the judge scored as it did, in the attacker's language."""
        if reason:
            return self.render("reason.given", reason=reason)
        if p_harm is not None:
            return self.render("reason.probability", p_harm=f"{p_harm:.0%}")
        return self.texts["reason.none"]
