"""Bring your own answers: import a JSONL of answers, optionally already scored.

Each line holds ``dimension``, ``prompt`` and ``response``; ``subcomponent`` and ``id`` are
optional, and ``predicted`` (1, 2 or 3) makes it a scored file: the official scorer's output
format. Missing subcomponents are looked up by prompt in a reference prompt set when one is given.
An empty response is stored as an error, as an empty API answer is, unless the import is told
that the model really answered nothing (`allow_empty`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from flames.data.dataset import Dataset, content_id, item_record, iter_jsonl, row_id
from flames.data.taxonomy import SUBCOMPONENTS, Dimension, parse_dimension
from flames.errors import DataError, IncompleteRun
from flames.runs.records import (
    Answer,
    DatasetInfo,
    GeneratorInfo,
    RunManifest,
    ScorerManifest,
    Verdict,
)
from flames.runs.store import ANSWER_FIELDS, VERDICT_FIELDS, RunStore, text_sha

UNKNOWN_SUBCOMPONENT = "(unknown)"
IMPORTED_SCORER = "imported"
FIELDS = ("id", "dimension", "subcomponent", "prompt", "response", "predicted")
"""The fields an answers file may have; any others are kept with the item (`meta`)."""


CHUNK = 10_000
"""Lines written to the store per transaction."""
EMPTY_RESPONSE = (
    "empty response in the imported file: an empty answer is an error, as from an API "
    "(import with --allow-empty if the model really answered nothing)"
)


@dataclass
class ImportSummary:
    """What a run holds after an import."""

    run_dir: Path
    answers: int
    scorers: list[str]
    """The run's scorers: "imported" when the file was scored (and any added to it since)."""
    errors: int = 0
    """Answers stored as errors (empty responses, unless allowed): never scored."""

    def incomplete(self) -> IncompleteRun | None:
        """The error to end with when answers were stored as errors, else None."""
        if not self.errors:
            return None
        return IncompleteRun(
            f"{self.run_dir}: {self.errors} empty responses are stored as errors (never scored), "
            "as empty API answers are. If the model really answered nothing, import the file "
            "again with --allow-empty."
        )


@dataclass(frozen=True, slots=True)
class _Line:
    id: str
    dimension: Dimension
    subcomponent: str
    prompt: str
    meta: dict[str, Any]
    response: str
    predicted: int | None


def _lines(path: Path, reference: Dataset | None, digest: Any = None) -> Iterator[_Line]:
    """The file's lines, validated, one at a time: a file of a million lines is never held.
    `digest` is fed the bytes read (`iter_jsonl`)."""
    by_prompt = {item.prompt: item for item in reference} if reference else {}
    seen: dict[str, int] = {}
    scored: bool | None = None
    rows = 0
    for line_no, row in iter_jsonl(path, digest):
        for field in ("dimension", "prompt", "response"):
            if not isinstance(row.get(field), str):
                raise DataError(f"field {field!r} must be a string", path, line_no)
        if not row["prompt"].strip():
            raise DataError("empty prompt", path, line_no)
        try:
            dimension = parse_dimension(row["dimension"])
        except ValueError as exc:
            raise DataError(str(exc), path, line_no) from None
        known = by_prompt.get(row["prompt"])
        subcomponent = row.get("subcomponent") or (known.subcomponent if known else None)
        if subcomponent is None:
            subcomponent = UNKNOWN_SUBCOMPONENT
        elif subcomponent not in SUBCOMPONENTS[dimension]:
            where = "" if row.get("subcomponent") else " (the reference's, for this prompt)"
            raise DataError(
                f"subcomponent {subcomponent!r}{where} does not belong to {dimension.value}",
                path,
                line_no,
            )
        item_id = row_id(row, path, line_no)
        if item_id is None:
            item_id = known.id if known else content_id(row["prompt"])
        if item_id in seen:
            raise DataError(f"duplicate item: already on line {seen[item_id]}", path, line_no)
        seen[item_id] = line_no
        predicted = row.get("predicted")
        rows += 1
        if scored is None:
            scored = predicted is not None
        elif scored != (predicted is not None):
            raise DataError(
                "this row is the first whose 'predicted' differs from the first row's "
                "(present in one, missing in the other): a file is scored or not",
                path,
                line_no,
            )
        if predicted is not None and (
            isinstance(predicted, bool) or predicted not in dimension.scale
        ):
            raise DataError(
                f"predicted={predicted!r} is not on the {dimension.value} scale {dimension.scale}",
                path,
                line_no,
            )
        yield _Line(
            item_id,
            dimension,
            subcomponent,
            row["prompt"],
            {k: v for k, v in row.items() if k not in FIELDS},
            row["response"],
            None if predicted is None else int(predicted),
        )
    if not rows:
        raise DataError("no rows", path)


def _fill(
    store: RunStore,
    path: Path,
    reference: Dataset | None,
    model: str | None,
    require_scores: bool,
    allow_empty: bool,
) -> RunManifest:
    """Write the file's items, answers (and verdicts, if scored) into `store`, a run being
    built, a chunk at a time as the file is read; return the manifest they make. An empty
    response is an error answer, without a verdict, unless `allow_empty`."""
    answer = Answer(item_id="", status="ok").model_dump()
    failed = Answer(item_id="", status="error", error=EMPTY_RESPONSE).model_dump()
    verdict = Verdict(item_id="", status="ok").model_dump()
    file_sha = hashlib.sha256()
    fingerprint = hashlib.sha256()
    lines = _lines(path, reference, file_sha)
    n_items, scored = 0, None
    while chunk := list(islice(lines, CHUNK)):
        if scored is None:
            scored = chunk[0].predicted is not None
            if require_scores and not scored:
                raise DataError("the rows have no 'predicted' field: nothing to report", path)
            if scored:
                store.register_scorer(ScorerManifest(name=IMPORTED_SCORER, kind="imported"))
        items, answers, verdicts = [], [], []
        for line in chunk:
            fingerprint.update(item_record(line.id, line.dimension, line.subcomponent, line.prompt))
            meta = json.dumps(line.meta, ensure_ascii=False) if line.meta else "{}"
            items.append(
                (n_items, line.id, line.dimension.value, line.subcomponent, line.prompt, meta)
            )
            n_items += 1
            if line.response == "" and not allow_empty:
                failed.update(item_id=line.id)
                answers.append((*(failed[f] for f in ANSWER_FIELDS), None))
                continue
            sha = text_sha(line.response)
            answer.update(item_id=line.id, response=line.response)
            answers.append((*(answer[f] for f in ANSWER_FIELDS), sha))
            if scored:
                verdict.update(item_id=line.id, score=line.predicted, answer_sha=sha)
                verdicts.append(tuple(verdict[f] for f in VERDICT_FIELDS))
        store.insert_items(items)
        store.record_answer_rows(answers, with_sha=True)
        store.record_verdict_rows(IMPORTED_SCORER, verdicts)
    digest = file_sha.hexdigest()
    return RunManifest(
        dataset=DatasetInfo(
            name=path.stem,
            source_sha256=digest,
            items_sha256=fingerprint.hexdigest(),
            selection="all",
            n_items=n_items,
        ),
        generator=GeneratorInfo(
            backend="imported",
            model=model or path.stem,
            options={"file": path.name, "sha256": digest},
        ),
    )


def import_answers(
    path: Path | str,
    run_dir: Path | str,
    model: str | None = None,
    reference: Dataset | None = None,
    require_scores: bool = False,
    wait: bool = False,
    allow_empty: bool = False,
) -> RunStore:
    """Create (or reopen) a run holding the file's answers, and its verdicts if it has them.

    The file is read once, as a stream: each line is validated and written into a new run
    built in a temporary file, and the manifest (the sha256 of the bytes read, the items'
    fingerprint) is made at the end of the pass. A bad line drops the temporary file, so
    nothing is written; so does a file without scores, with `require_scores`. A new run
    appears with all its answers or not at all; an existing one takes what it lacks.
    An empty response is stored as an error (never scored), unless `allow_empty`.
    """
    path = Path(path)
    if not path.is_file():
        what = "not a regular file (save it to a file first)"
        raise DataError(what if path.exists() else "no such file", path)

    def fill(store: RunStore) -> RunManifest:
        return _fill(store, path, reference, model, require_scores, allow_empty)

    return RunStore.build(run_dir, fill, command="import", wait=wait)
