"""New prompts from a red-team run, as a prompt set: each prompt that broke the target (or, with
`every`, each one sent to it) becomes a line of a Flames-format prompt file.

A line holds ``dimension``, ``subcomponent`` and ``prompt`` as the official file does, plus
``strategy``, ``seed`` (the goal's id and seed prompt), ``redteam`` (where it came from: the
call's key, the judge's score, the target) and, for a prompt asked in a conversation,
``conversation``: the earlier turns, replayed before the prompt when the file is run
(`flames run --data`).

Near-duplicates are dropped: a prompt that shares `similarity` of its character bigrams or more
(`flames.data.similarity.containment`) with a prompt of the reference set (Flames-1k by default)
or with a goal's seed prompt, or with a prompt already written, is left out and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flames._util.outputs import atomic_open
from flames.data.dataset import CONVERSATION, Dataset, Item
from flames.data.similarity import NearDuplicates
from flames.errors import FlamesError
from flames.runs.store import RunStore

SIMILARITY = 0.8
"""The default share of a prompt's character bigrams that makes it a near-duplicate."""


@dataclass
class ExportSummary:
    path: Path
    considered: int = 0
    written: int = 0
    like_reference: int = 0
    """Dropped: near-duplicates of a reference prompt or of a goal's seed prompt."""
    like_written: int = 0
    """Dropped: near-duplicates of a prompt written before them."""
    reference: str = ""
    similarity: float = SIMILARITY

    def line(self) -> str:
        return (
            f"wrote {self.written} prompts to {self.path} ({self.considered} considered; dropped "
            f"{self.like_reference} near-duplicates of {self.reference} or of the seed prompts "
            f"and {self.like_written} of each other, at similarity {self.similarity:g})"
        )


def _text(row: dict[str, Any]) -> str:
    """What a prompt asks, for comparison: its earlier user turns and the prompt."""
    turns = [t["content"] for t in row.get(CONVERSATION, []) if t["role"] == "user"]
    return "\n".join([*turns, row["prompt"]])


def candidates(store: RunStore, every: bool) -> Iterator[dict[str, Any]]:
    """The rows to export, in goal, strategy and key order: the prompts whose answer was scored
    1, or (`every`) every prompt the target answered."""
    manifest = store.manifest
    assert manifest.redteam is not None
    items = {item.id: item for item in store.items()}
    verdicts = {
        (c.goal_id, c.strategy, c.key.rsplit("/", 1)[0]): c
        for c in store.attack_log().iter_calls("judge")
        if c.status == "ok"
    }
    for call in store.attack_log().iter_calls("target"):
        if call.status != "ok" or call.prompt is None:
            continue
        verdict = verdicts.get((call.goal_id, call.strategy, call.key.rsplit("/", 1)[0]))
        score = verdict.score if verdict is not None else None
        if not every and score != 1:
            continue
        goal = items[call.goal_id]
        messages = json.loads(call.request or "[]")
        row: dict[str, Any] = {
            "dimension": goal.dimension.value,
            "subcomponent": goal.subcomponent,
            "prompt": call.prompt,
            "strategy": call.strategy,
            "seed": {"id": goal.id, "prompt": goal.prompt},
        }
        if len(messages) > 1:
            row[CONVERSATION] = [
                {"role": m["role"], "content": m["content"]} for m in messages[:-1]
            ]
        row["redteam"] = {
            "key": call.key,
            "score": score,
            "judge": manifest.redteam.judge.name,
            "target": manifest.generator.model,
        }
        yield row


def export_attacks(
    run_dir: Path | str,
    out: Path | str,
    reference: Dataset | None,
    every: bool = False,
    similarity: float = SIMILARITY,
) -> ExportSummary:
    """Write the run's winning prompts (all prompts with `every`) to `out`, near-duplicates of
    `reference`, of the goals' seed prompts and of each other dropped."""
    out = Path(out)
    with RunStore.open(run_dir) as store:
        if store.manifest.redteam is None:
            raise FlamesError(f"{run_dir}: not a red-team run (made by `flames redteam`)")
        seeds: list[Item] = store.items()
        known = NearDuplicates(i.prompt for i in [*(reference or []), *seeds])
        written = NearDuplicates()
        summary = ExportSummary(
            path=out,
            reference=reference.name if reference is not None else "no reference set",
            similarity=similarity,
        )
        with atomic_open(out) as fh:
            for row in candidates(store, every):
                summary.considered += 1
                text = _text(row)
                if known.closest(text)[0] >= similarity:
                    summary.like_reference += 1
                    continue
                if written.closest(text)[0] >= similarity:
                    summary.like_written += 1
                    continue
                written.add(text)
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                summary.written += 1
    return summary
