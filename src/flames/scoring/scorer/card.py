"""The model card of a scorer trained by flames, in machine form (``flames_scorer.json``).

The released checkpoint has no such file, and a folder without it is loaded exactly as the
official scorer. A trained scorer's card says how to load it (which layout its config.json is
in, which tokenizer and pooling it uses) and how it was made (the backbone, the labels and their
hash, the split, the hyperparameters, the held-out metrics, the flames version); every way it
differs from the official scorer is listed by name in `differences`. The scorer manifest of a
run scored by it records the whole card. Needs no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flames.errors import FlamesError

CARD_FILE = "flames_scorer.json"
CARD_FORMAT = 1
TRAINED_PREFIX = "trained:"
"""Scorer names of trained scorers start with this, so none passes for the official scorer."""


class CardError(FlamesError):
    pass


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = CARD_FORMAT
    name: str
    """The scorer's own name; runs store its verdicts as ``trained:NAME``."""
    layout: Literal["internlm", "transformers"]
    """internlm: config.json and weights exactly in the official scorer's layout, which the
    official infer.py loads; transformers: config.json is the backbone's own transformers
    config, weights under the same key names (``model.*``, ``classifiers.N.weight``)."""
    backbone: dict[str, Any]
    """base (what training started from), model_type, kind (causal-lm or encoder)."""
    pooling: str = "last-non-pad"
    tokenizer: Literal["official", "transformers"] = "official"
    """official: the exact slow sentencepiece reproduction of transformers 4.33.2; transformers:
    the folder's own tokenizer through transformers (a named difference)."""
    trust_remote_code: bool = False
    template: str
    max_length: int
    truncation: str
    differences: list[str] = Field(default_factory=list)
    """Every way this scorer differs from the official one, by name."""
    training: dict[str, Any] = Field(default_factory=dict)
    """labels (source, sha256, counts), split, hyperparameters, metrics, versions."""

    def write(self, directory: Path) -> Path:
        path = directory / CARD_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def read_card(directory: Path) -> Card | None:
    """The card of a trained scorer folder; None for a folder without one (the official)."""
    path = directory / CARD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        card = Card.model_validate(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"{path}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CardError(f"{path}: {where}: {first['msg']}") from None
    if card.format > CARD_FORMAT:
        raise CardError(f"{path}: card format {card.format} is newer than this flames reads")
    return card
