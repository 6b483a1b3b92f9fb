"""A trained scorer and others side by side on the same held-out labels.

The labels a trained scorer was trained on are left out (its folder stores the split by pair
key): a score on them would measure memory, not judgement. Every scorer (the trained one, the
official scorer, LLM judges, Python functions) then judges the same labelled answers; an answer
any of them fails on is left out of every scorer's statistics (and counted), so the table
compares like with like.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from flames.analysis.scorer_eval import ScorerComparison, evaluate_predictions
from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.errors import FlamesError, UsageError
from flames.runs.records import Answer
from flames.scoring.runner import Scorer
from flames.training.export import SPLIT_FILE
from flames.training.labels import Example, LabelSet

Selection = Literal["held-out", "test", "all"]


def held_out(
    scorer_dir: Path, labels: LabelSet, selection: Selection
) -> tuple[list[Example], dict[str, int]]:
    """The labels to evaluate on: those the scorer did not train on (``held-out``), only its
    stored test side (``test``), or all (``all``: says how many it trained on)."""
    path = scorer_dir / SPLIT_FILE
    sides: dict[str, set[str]] = {}
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        sides = {name: set(s.get("keys", [])) for name, s in stored["sides"].items()}
    elif selection == "test":
        raise UsageError(f"{scorer_dir}: no {SPLIT_FILE}; it has no stored test side", "--only")
    train = sides.get("train", set())
    counts = {"given": len(labels), "trained_on": sum(e.key in train for e in labels)}
    if selection == "held-out":
        kept = [e for e in labels if e.key not in train]
    elif selection == "test":
        kept = [e for e in labels if e.key in sides.get("test", set())]
    else:
        kept = list(labels)
    counts["used"] = len(kept)
    if not kept:
        raise UsageError(
            f"none of the {len(labels)} labels is held out from {scorer_dir} ({selection}); "
            "evaluate on labels it was not trained on"
        )
    return kept, counts


def scores_of(scorer: Scorer, examples: Sequence[Example]) -> list[int | None]:
    """Each labelled answer's score by `scorer` (None where its verdict failed)."""
    pairs = []
    for index, e in enumerate(examples):
        sub = e.subcomponent if e.subcomponent else e.dimension.subcomponents[0]
        item = Item(id=f"label-{index}", dimension=e.dimension, subcomponent=sub, prompt=e.prompt)
        pairs.append((item, Answer(item_id=item.id, status="ok", response=e.response)))
    found: dict[str, int | None] = {}
    for batch in scorer.score(pairs):
        for v in batch:
            found[v.item_id] = v.score if v.status == "ok" else None
    return [found.get(f"label-{i}") for i in range(len(examples))]


def compare_scorers(
    scorers: Sequence[Scorer],
    examples: Sequence[Example],
    labels: dict[str, Any],
    selection: str,
    bootstrap: int = 2000,
    seed: int = 0,
) -> ScorerComparison:
    """Every scorer's agreement with the labels, on the answers they all judged."""
    predicted = [scores_of(s, examples) for s in scorers]
    common = [i for i in range(len(examples)) if all(p[i] is not None for p in predicted)]
    if not common:
        raise FlamesError("no labelled answer was judged by every scorer; nothing to compare")
    dims = [examples[i].dimension.value for i in common]
    truth = [examples[i].score for i in common]
    scales = {d.value: d.scale for d in Dimension}
    results = []
    for scorer, found in zip(scorers, predicted, strict=True):
        manifest = scorer.manifest
        results.append(
            evaluate_predictions(
                manifest.name,
                manifest.kind,
                dims,
                scales,
                truth,
                [int(found[i]) for i in common],  # type: ignore[arg-type]
                errors=sum(p is None for p in found),
                bootstrap=bootstrap,
                seed=seed,
            )
        )
    return ScorerComparison(
        labels=labels,
        selection=selection,
        n=len(common),
        scorers=results,
        bootstrap_samples=bootstrap,
        seed=seed,
    )
