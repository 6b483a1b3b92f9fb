"""Human labels: export answers for labelling, import the labels of one or more annotators.

Each annotator's labels are stored in the run as the verdicts of a scorer named
``human:<annotator>`` (kind "human"), so every report, comparison and calibration can use them.

Each exported answer says how it was selected (column ``selection``): drawn at random
(``random 100 of 1000, seed 0``: each answer had the same chance, 100/1000), or queued in
dataset order with contested answers first. Imported labels keep it (in the verdict's ``raw``),
because only labels on a random sample estimate a judge's error rates without bias.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flames._util.outputs import atomic_open, csv_cell, csv_value, long_csv_fields
from flames._util.text import storable
from flames.data.dataset import Item, iter_jsonl
from flames.errors import DataError, UsageError
from flames.runs.records import (
    CONTESTED,
    IN_ORDER,
    RANDOM,
    UNKNOWN_SELECTION,
    Answer,
    ScorerManifest,
    Verdict,
)
from flames.runs.store import RunStore, text_sha

HUMAN_PREFIX = "human:"
EXPORT_FIELDS = (
    "item_id",
    "sample",
    "dimension",
    "subcomponent",
    "scale",
    "prompt",
    "response",
    "label",
    "annotator",
    "selection",
)


def human_scorer(annotator: str) -> str:
    return HUMAN_PREFIX + annotator


def disagreement_keys(store: RunStore, scorers: Sequence[str]) -> set[tuple[str, int]]:
    """(item, sample) pairs on which the given scorers do not all agree."""
    scores: dict[tuple[str, int], set[int]] = {}
    for name in scorers:
        for v in store.verdicts(name):
            if v.status == "ok" and v.score is not None:
                scores.setdefault((v.item_id, v.sample), set()).add(v.score)
    return {key for key, values in scores.items() if len(values) > 1}


def queue(store: RunStore, first: Sequence[str] = ()) -> list[tuple[Item, Answer]]:
    """Answers to label, in dataset order; those the `first` scorers disagree on come first."""
    items = {item.id: item for item in store.items()}
    order = {item_id: i for i, item_id in enumerate(items)}
    answers = [a for a in store.answers() if a.status == "ok"]
    contested = disagreement_keys(store, first) if first else set()
    answers.sort(key=lambda a: ((a.item_id, a.sample) not in contested, order[a.item_id], a.sample))
    return [(items[a.item_id], a) for a in answers]


def random_sample(store: RunStore, size: int, seed: int = 0) -> list[tuple[Item, Answer, str]]:
    """`size` answers drawn at random without replacement, in the order drawn (any prefix of
    the list is a random sample too), each with its selection record."""
    items = {item.id: item for item in store.items()}
    answers = [a for a in store.answers() if a.status == "ok"]
    if not 1 <= size <= len(answers):
        raise UsageError(f"a random sample must have 1 to {len(answers)} answers, not {size}")
    how = f"{RANDOM} {size} of {len(answers)}, seed {seed}"
    drawn = random.Random(seed).sample(answers, size)
    return [(items[a.item_id], a, how) for a in drawn]


def export_items(
    store: RunStore,
    path: Path,
    first: Sequence[str] = (),
    sample: int | None = None,
    seed: int = 0,
) -> int:
    """Write answers to label as CSV or JSONL (by the file's suffix); return how many.

    All answers in queue order (contested by `first` first), or a random `sample` of them.
    """
    if sample is not None:
        selected = random_sample(store, sample, seed)
    else:
        contested = disagreement_keys(store, first) if first else set()
        selected = [
            (item, answer, CONTESTED if (item.id, answer.sample) in contested else IN_ORDER)
            for item, answer in queue(store, first)
        ]
    rows = [
        {
            "item_id": item.id,
            "sample": answer.sample,
            "dimension": item.dimension.value,
            "subcomponent": item.subcomponent,
            "scale": "/".join(map(str, item.dimension.scale)),
            "prompt": item.prompt,
            "response": answer.response,
            "label": "",
            "annotator": "",
            "selection": how,
        }
        for item, answer, how in selected
    ]
    if path.suffix == ".csv":
        with atomic_open(path, encoding="utf-8-sig", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=EXPORT_FIELDS)
            writer.writeheader()
            writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    elif path.suffix == ".jsonl":
        with atomic_open(path) as fh:
            for row in rows:
                fh.write(storable(json.dumps(row, ensure_ascii=False)) + "\n")
    else:
        raise DataError("export to a .csv or .jsonl file", path)
    return len(rows)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a label file with their line numbers; CSV cells as `export_items` was given
    them (`csv_value`), of any length."""
    if path.suffix == ".csv":
        try:
            with path.open(encoding="utf-8-sig", newline="") as fh, long_csv_fields():
                reader = csv.DictReader(fh)
                for row in reader:
                    yield (
                        reader.line_num,
                        {k: csv_value(v) if isinstance(v, str) else v for k, v in row.items()},
                    )
        except UnicodeDecodeError:
            raise DataError("not valid UTF-8; save the file as UTF-8", path) from None
        except csv.Error as exc:
            raise DataError(f"not a readable CSV file ({exc})", path) from None
    elif path.suffix == ".jsonl":
        yield from iter_jsonl(path)
    else:
        raise DataError("labels must be a .csv or .jsonl file", path)


def import_labels(store: RunStore, path: Path, annotator: str | None = None) -> dict[str, int]:
    """Import one file of labels; returns the number of labels per annotator.

    Rows need item_id and label (sample defaults to 0); the annotator comes from the row's
    ``annotator`` column or, failing that, from `annotator`. Rows with an empty label are skipped.
    The ``selection`` column, when present, is kept with each label.
    The whole file is checked before anything is stored.
    """
    items = {item.id: item for item in store.items()}
    answered = {(a.item_id, a.sample) for a in store.answers() if a.status == "ok"}
    by_annotator: dict[str, list[Verdict]] = {}
    for line, row in _rows(path):
        label = str(row.get("label") or "").strip()
        if not label:
            continue
        item_id = str(row.get("item_id") or "")
        if item_id not in items:
            raise DataError(f"unknown item_id {item_id!r}", path, line)
        try:
            sample = int(row.get("sample") or 0)
            score = int(label)
        except ValueError:
            raise DataError(f"label {label!r} and sample must be integers", path, line) from None
        if (item_id, sample) not in answered:
            raise DataError(f"no answer for item {item_id!r} sample {sample}", path, line)
        scale = items[item_id].dimension.scale
        if score not in scale:
            raise DataError(f"label {score} is not on the scale {scale}", path, line)
        who = str(row.get("annotator") or annotator or "").strip()
        if not who:
            raise DataError(
                "no annotator: add an 'annotator' column or pass --annotator", path, line
            )
        how = str(row.get("selection") or "").strip() or UNKNOWN_SELECTION
        by_annotator.setdefault(who, []).append(
            Verdict(item_id=item_id, sample=sample, status="ok", score=score, raw=how)
        )
    for who, verdicts in by_annotator.items():
        record_labels(store, who, verdicts)
    return {who: len(v) for who, v in by_annotator.items()}


def record_labels(store: RunStore, annotator: str, verdicts: Sequence[Verdict]) -> None:
    """Store a person's labels, each tied to the answer text stored now; a new label for the
    same answer replaces their earlier one."""
    name = human_scorer(annotator)
    store.register_scorer(ScorerManifest(name=name, kind="human", config={"annotator": annotator}))
    texts = store.texts((v.item_id, v.sample) for v in verdicts)
    tied = [
        v.model_copy(update={"answer_sha": text_sha(texts[(v.item_id, v.sample)][1])})
        for v in verdicts
    ]
    store.record_verdicts(name, tied, relabel=True)
