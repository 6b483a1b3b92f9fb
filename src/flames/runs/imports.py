"""Bring your own answers: import a JSONL of answers, optionally already scored.

Each line holds ``dimension``, ``prompt`` and ``response``; ``subcomponent`` and ``id`` are
optional, and ``predicted`` (1, 2 or 3) makes it a scored file: the official scorer's output
format. Missing subcomponents are looked up by prompt in a reference prompt set when one is given.
An empty response is stored as an error, as an empty API answer is, unless the import is told
that the model really answered nothing (`allow_empty`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from flames.data.dataset import (
    Dataset,
    Item,
    content_id,
    item_record,
    iter_jsonl,
    row_id,
    sha256_file,
)
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


CHUNK = 50_000
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

    def item(self) -> Item:
        """The line's item (its fields were validated as the line was read)."""
        return Item.model_construct(
            id=self.id,
            dimension=self.dimension,
            subcomponent=self.subcomponent,
            prompt=self.prompt,
            meta=self.meta,
        )


def _lines(path: Path, reference: Dataset | None) -> Iterator[_Line]:
    """The file's lines, validated, one at a time: a file of a million lines is never held."""
    by_prompt = {item.prompt: item for item in reference} if reference else {}
    seen: dict[str, int] = {}
    scored: bool | None = None
    rows = 0
    for line_no, row in iter_jsonl(path):
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
    store: RunStore, path: Path, reference: Dataset | None, scored: bool, allow_empty: bool
) -> None:
    """Write the file's answers (and verdicts, if scored) into `store`, a chunk at a time; an
    empty response is an error answer, without a verdict, unless `allow_empty`."""
    answer = Answer(item_id="", status="ok").model_dump()
    failed = Answer(item_id="", status="error", error=EMPTY_RESPONSE).model_dump()
    verdict = Verdict(item_id="", status="ok").model_dump()
    if scored:
        store.register_scorer(ScorerManifest(name=IMPORTED_SCORER, kind="imported"))
    lines = _lines(path, reference)
    while chunk := list(islice(lines, CHUNK)):
        answers, verdicts = [], []
        for line in chunk:
            if line.response == "" and not allow_empty:
                failed.update(item_id=line.id)
                answers.append(tuple(failed[f] for f in ANSWER_FIELDS))
                continue
            answer.update(item_id=line.id, response=line.response)
            answers.append(tuple(answer[f] for f in ANSWER_FIELDS))
            if scored:
                verdict.update(
                    item_id=line.id, score=line.predicted, answer_sha=text_sha(line.response)
                )
                verdicts.append(tuple(verdict[f] for f in VERDICT_FIELDS))
        store.record_answer_rows(answers)
        store.record_verdict_rows(IMPORTED_SCORER, verdicts)


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

    The file is read as a stream, three times: to validate it and fingerprint its items (a bad
    line stops the import before anything is written), then to store its items, then its answers.
    With `require_scores`, a file without scores is refused before anything is written.
    An empty response is stored as an error (never scored), unless `allow_empty`.
    """
    path = Path(path)
    if not path.is_file():
        what = "not a regular file (it is read three times: save it to a file first)"
        raise DataError(what if path.exists() else "no such file", path)
    file_sha = sha256_file(path)
    fingerprint = hashlib.sha256()
    n_items, scored = 0, False
    for line in _lines(path, reference):
        fingerprint.update(item_record(line.id, line.dimension, line.subcomponent, line.prompt))
        n_items += 1
        scored = line.predicted is not None
    if require_scores and not scored:
        raise DataError("the rows have no 'predicted' field: nothing to report", path)
    manifest = RunManifest(
        dataset=DatasetInfo(
            name=path.stem,
            source_sha256=file_sha,
            items_sha256=fingerprint.hexdigest(),
            selection="all",
            n_items=n_items,
        ),
        generator=GeneratorInfo(
            backend="imported",
            model=model or path.stem,
            options={"file": path.name, "sha256": file_sha},
        ),
    )

    def fill(store: RunStore) -> None:
        _fill(store, path, reference, scored, allow_empty)
        if sha256_file(path) != file_sha:
            raise DataError("the file changed while it was being imported; import it again", path)

    # A new run appears with all its answers or not at all: a cut import leaves nothing behind.
    items = (line.item() for line in _lines(path, reference))
    return RunStore.create_or_resume(run_dir, manifest, items, fill, command="import", wait=wait)
