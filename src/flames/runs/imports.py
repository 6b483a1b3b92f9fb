"""Bring your own answers: import a JSONL of answers, optionally already scored.

Each line holds ``dimension``, ``prompt`` and ``response``; ``subcomponent`` and ``id`` are
optional, and ``predicted`` (1, 2 or 3) makes it a scored file: the official scorer's output
format. Missing subcomponents are looked up by prompt in a reference prompt set when one is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flames.data.dataset import Dataset, Item, content_id, iter_jsonl, row_id, sha256_file
from flames.data.taxonomy import SUBCOMPONENTS, parse_dimension
from flames.errors import DataError
from flames.runs.records import (
    Answer,
    DatasetInfo,
    GeneratorInfo,
    RunManifest,
    ScorerManifest,
    Verdict,
)
from flames.runs.store import ANSWER_FIELDS, VERDICT_FIELDS, RunStore

UNKNOWN_SUBCOMPONENT = "(unknown)"
IMPORTED_SCORER = "imported"


Row = tuple[Any, ...]


def _read(path: Path, reference: Dataset | None) -> tuple[list[Item], list[Row], list[Row]]:
    """The file's items, and its answers and verdicts as store rows (ANSWER_FIELDS and
    VERDICT_FIELDS order): a file of a million lines holds no million objects but its items."""
    by_prompt = {item.prompt: item for item in reference} if reference else {}
    items: list[Item] = []
    answers: list[Row] = []
    verdicts: list[Row] = []
    answer = Answer(item_id="", status="ok").model_dump()
    verdict = Verdict(item_id="", status="ok").model_dump()
    seen: dict[str, int] = {}
    scored_lines: list[bool] = []
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
            raise DataError(
                f"subcomponent {subcomponent!r} does not belong to {dimension.value}", path, line_no
            )
        item_id = row_id(row, path, line_no)
        if item_id is None:
            item_id = known.id if known else content_id(row["prompt"])
        if item_id in seen:
            raise DataError(f"duplicate item: already on line {seen[item_id]}", path, line_no)
        seen[item_id] = line_no
        extra = {
            k: v
            for k, v in row.items()
            if k not in ("id", "dimension", "subcomponent", "prompt", "response", "predicted")
        }
        items.append(
            Item(
                id=item_id,
                dimension=dimension,
                subcomponent=subcomponent,
                prompt=row["prompt"],
                meta=extra,
            )
        )
        answer.update(item_id=item_id, response=row["response"])
        answers.append(tuple(answer[f] for f in ANSWER_FIELDS))
        predicted = row.get("predicted")
        scored_lines.append(predicted is not None)
        if predicted is not None:
            if isinstance(predicted, bool) or predicted not in dimension.scale:
                raise DataError(
                    f"predicted={predicted!r} is not on the {dimension.value} scale "
                    f"{dimension.scale}",
                    path,
                    line_no,
                )
            verdict.update(item_id=item_id, score=int(predicted))
            verdicts.append(tuple(verdict[f] for f in VERDICT_FIELDS))
    if not items:
        raise DataError("no rows", path)
    if any(scored_lines) and not all(scored_lines):
        first = next(i for i, s in enumerate(scored_lines) if s != scored_lines[0])
        raise DataError(
            "some rows have 'predicted' and some do not; a file is scored or not "
            f"(first differing row is row {first + 1})",
            path,
        )
    return items, answers, verdicts


def import_answers(
    path: Path | str,
    run_dir: Path | str,
    model: str | None = None,
    reference: Dataset | None = None,
) -> RunStore:
    """Create (or reopen) a run holding the file's answers, and its verdicts if it has them."""
    path = Path(path)
    items, answers, verdicts = _read(path, reference)
    file_sha = sha256_file(path)
    dataset = Dataset(name=path.stem, source_sha256=file_sha, items=items)
    manifest = RunManifest(
        dataset=DatasetInfo.of(dataset),
        generator=GeneratorInfo(
            backend="imported",
            model=model or path.stem,
            options={"file": path.name, "sha256": file_sha},
        ),
    )

    def fill(store: RunStore) -> None:
        store.record_answer_rows(answers)
        if verdicts:
            store.register_scorer(ScorerManifest(name=IMPORTED_SCORER, kind="imported"))
            store.record_verdict_rows(IMPORTED_SCORER, verdicts)

    # A new run appears with all its answers or not at all: a cut import leaves nothing behind.
    return RunStore.create_or_resume(run_dir, manifest, items, fill)
