"""Train, validation and test splits that hold out what they say they hold out.

- ``model``: whole models' answers held out, as the paper's earlier scorer was validated (MOSS
  and GPT-4 answers for validation, InternLM's for test). Prompts are shared across the sides
  (each model answered them all): the split measures how the scorer does on a new model.
- ``prompt``: whole prompts held out, with every answer to them: how it does on new prompts.
- ``random``: answers drawn at random.

Whatever the kind, the same prompt and response never lands on two sides: where two models gave
the same answer to a prompt and their models fall on different sides, every copy goes to the
held-out side (test before validation before train), and the move is counted. The split is
deterministic under its seed, and is stored with the scorer (`Split.describe`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flames.errors import UsageError
from flames.training.labels import Example, prompt_key

SIDES = ("train", "validation", "test")


class SplitSettings(BaseModel):
    """How the labels are split into train, validation and test."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["random", "prompt", "model"] = "random"
    validation: float = Field(default=0.1, ge=0, lt=1)
    """Share of the answers (random) or prompts (prompt) held out for validation."""
    test: float = Field(default=0.1, ge=0, lt=1)
    """Share held out for test."""
    validation_models: list[str] = Field(default_factory=list)
    """Models whose answers are the validation set (split by model)."""
    test_models: list[str] = Field(default_factory=list)
    """Models whose answers are the test set (split by model)."""
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SplitSettings:
        if self.kind == "model":
            if not self.test_models and not self.validation_models:
                raise ValueError("a split by model names its held-out models (test_models)")
            both = set(self.test_models) & set(self.validation_models)
            if both:
                raise ValueError(f"{', '.join(sorted(both))} in both validation and test models")
        elif self.validation + self.test >= 1:
            raise ValueError("validation and test leave nothing to train on")
        return self


@dataclass
class Split:
    settings: SplitSettings
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    moved: int = 0
    """Copies of a prompt and response moved to the held-out side so no pair is on two sides."""

    def side(self, name: str) -> list[Example]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def describe(self, with_keys: bool = True) -> dict[str, Any]:
        """The split as stored with the scorer: settings, counts, and each side's pair keys."""
        sides: dict[str, Any] = {}
        for name in SIDES:
            examples = self.side(name)
            sides[name] = {
                "n": len(examples),
                "dimensions": dict(Counter(e.dimension.value for e in examples)),
                "models": sorted({e.model for e in examples if e.model}),
            }
            if with_keys:
                sides[name]["keys"] = sorted({e.key for e in examples})
        return {"settings": self.settings.model_dump(), "moved": self.moved, "sides": sides}


def _group(example: Example, kind: str) -> str:
    if kind == "prompt":
        return prompt_key(example.prompt)
    return example.key


def split_labels(examples: list[Example], settings: SplitSettings) -> Split:
    """Split `examples` as `settings` say; no prompt and response on two sides."""
    side_of: list[int] = []
    if settings.kind == "model":
        unknown = sum(e.model is None for e in examples)
        if unknown:
            raise UsageError(
                f"{unknown} labels do not say which model answered; a split by model needs it "
                "(a 'model' field in JSONL labels; runs record it)"
            )
        models = {e.model for e in examples}
        absent = [
            m for m in (*settings.validation_models, *settings.test_models) if m not in models
        ]
        if absent:
            raise UsageError(
                f"held-out models {', '.join(absent)} have no labels (models: "
                f"{', '.join(sorted(m for m in models if m))})",
                param_hint="--test-models",
            )
        for e in examples:
            side = 2 if e.model in settings.test_models else 0
            side = 1 if e.model in settings.validation_models else side
            side_of.append(side)
    else:
        groups = sorted({_group(e, settings.kind) for e in examples})
        random.Random(settings.seed).shuffle(groups)
        n_test = round(settings.test * len(groups))
        n_validation = round(settings.validation * len(groups))
        assigned = {g: 2 for g in groups[:n_test]}
        assigned |= {g: 1 for g in groups[n_test : n_test + n_validation]}
        side_of = [assigned.get(_group(e, settings.kind), 0) for e in examples]
    # The same prompt and response on two sides: every copy goes to the most held-out one.
    furthest: dict[str, int] = {}
    for e, side in zip(examples, side_of, strict=True):
        furthest[e.key] = max(furthest.get(e.key, 0), side)
    moved = 0
    parts: list[list[Example]] = [[], [], []]
    for e, side in zip(examples, side_of, strict=True):
        moved += furthest[e.key] != side
        parts[furthest[e.key]].append(e)
    split = Split(settings, parts[0], parts[1], parts[2], moved)
    if not split.train:
        raise UsageError("the split leaves no labels to train on")
    return split
