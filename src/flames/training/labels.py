"""Labels to train and evaluate a scorer on: (dimension, prompt, response, score).

Sources:

- a JSONL file, one object a line: ``dimension``, ``prompt``, ``response`` and ``score`` (or
  ``label``, as `flames annotate export` writes it), optionally ``model`` (who answered, for a
  split by model), ``subcomponent`` and ``source`` (``human`` by default; anything else, e.g.
  ``scorer:flames-scorer``, marks the row as another scorer's verdict);
- a run directory: its human labels (the verdicts of the ``human:NAME`` scorers, their majority
  where several annotators labelled an answer), or, to distil a scorer or judge into a small one,
  the verdicts of one named scorer. The model is the run's.

Human labels and verdicts are never mixed unless asked (``mix``): a scorer trained on both would
learn the other scorer's mistakes as if people had made them. Every score must be on its
dimension's scale. The label set has a hash (over its content, in a fixed order), which the
trained scorer's card records.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flames.analysis.calibration import reference_labels
from flames.data.dataset import iter_jsonl
from flames.data.taxonomy import Dimension, match_dimension
from flames.errors import DataError, UsageError
from flames.runs.store import RunStore

HUMAN = "human"
HUMAN_PREFIX = "human:"


def pair_key(prompt: str, response: str) -> str:
    """Identifies a (prompt, response) pair, whatever its label or model."""
    digest = hashlib.sha256(prompt.encode("utf-8") + b"\0" + response.encode("utf-8"))
    return digest.hexdigest()[:32]


def prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:32]


def class_index(dimension: Dimension, score: int) -> int:
    """The head's class for a Flames score: the inverse of the official label mapping."""
    return {3: 0, 2: 1, 1: 2}[score] if len(dimension.scale) == 3 else {3: 0, 1: 1}[score]


@dataclass(frozen=True)
class Example:
    dimension: Dimension
    prompt: str
    response: str
    score: int
    model: str | None = None
    """Who answered (needed to split by model)."""
    source: str = HUMAN
    """``human`` (or ``human:NAME``) for people's labels; ``scorer:NAME`` for verdicts."""
    subcomponent: str | None = None

    @property
    def key(self) -> str:
        return pair_key(self.prompt, self.response)

    @property
    def human(self) -> bool:
        return self.source == HUMAN or self.source.startswith(HUMAN_PREFIX)

    def record(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension.value,
            "prompt": self.prompt,
            "response": self.response,
            "score": self.score,
            "model": self.model,
            "source": self.source,
        }


@dataclass
class LabelSet:
    examples: list[Example]
    sources: list[str] = field(default_factory=list)
    """Where the labels came from (files and runs, with what was read from each)."""
    ties: int = 0
    """Answers left out because their annotators had no majority."""

    @property
    def sha256(self) -> str:
        """Hash of the labels' content, independent of their order and of where they came from."""
        lines = sorted(json.dumps(e.record(), ensure_ascii=False, sort_keys=True) for e in self)
        return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()

    def counts(self) -> dict[str, dict[int, int]]:
        """Labels per dimension and score."""
        counts: dict[str, dict[int, int]] = {}
        for e in self.examples:
            per = counts.setdefault(e.dimension.value, {})
            per[e.score] = per.get(e.score, 0) + 1
        return counts

    def describe(self) -> dict[str, Any]:
        """What the scorer card records about its labels."""
        kinds = Counter("human" if e.human else e.source for e in self.examples)
        return {
            "sources": self.sources,
            "sha256": self.sha256,
            "n": len(self.examples),
            "kinds": dict(kinds),
            "counts": self.counts(),
            "models": sorted({e.model for e in self.examples if e.model}),
            "no_majority": self.ties,
        }

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.examples)

    def __len__(self) -> int:
        return len(self.examples)


def _dimension(value: Any, path: Path, line: int) -> Dimension:
    try:
        return match_dimension(str(value))
    except ValueError as exc:
        raise DataError(str(exc), path, line) from None


def _score(value: Any, dimension: Dimension, path: Path | str, line: int | None) -> int:
    if isinstance(value, bool) or value is None:
        raise DataError(f"score {value!r} must be an integer", path, line)
    try:
        score = int(str(value).strip())
    except ValueError:
        raise DataError(f"score {value!r} must be an integer", path, line) from None
    if score not in dimension.scale:
        raise DataError(
            f"score {score} is not on the {dimension.value} scale {dimension.scale}", path, line
        )
    return score


def _text(row: dict[str, Any], name: str, path: Path, line: int) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise DataError(f"{name!r} must be a string (found {type(value).__name__})", path, line)
    return value


def from_jsonl(path: Path) -> list[Example]:
    """Labels from a JSONL file; errors name the file and line. Rows without a label (an
    exported file not labelled yet) are skipped."""
    examples = []
    for line, row in iter_jsonl(path):
        raw = row.get("score", row.get("label"))
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if "score" in row or "label" in row:
                continue  # exported for labelling, not labelled
            raise DataError("no 'score' (or 'label')", path, line)
        dimension = _dimension(row.get("dimension"), path, line)
        source = str(row.get("source") or HUMAN)
        if not source.strip():
            source = HUMAN
        model = row.get("model")
        examples.append(
            Example(
                dimension=dimension,
                prompt=_text(row, "prompt", path, line),
                response=_text(row, "response", path, line),
                score=_score(raw, dimension, path, line),
                model=str(model) if model not in (None, "") else None,
                source=source,
                subcomponent=row.get("subcomponent") or None,
            )
        )
    return examples


def from_run(
    run_dir: Path, annotators: Sequence[str] = (), scorer: str | None = None
) -> tuple[list[Example], int]:
    """Human labels (majority of `annotators`, default all) or one scorer's verdicts from a run,
    and the number of answers left out for lack of a majority."""
    with RunStore.open(run_dir) as store:
        known = store.scorers()
        model = store.manifest.generator.model
        items = {item.id: item for item in store.items()}
        answers = {(a.item_id, a.sample): a for a in store.answers() if a.status == "ok"}
        if scorer is not None:
            if scorer not in known:
                raise UsageError(f"{run_dir}: no scorer named {scorer!r} (it has: {_names(known)})")
            source = scorer if scorer.startswith(HUMAN_PREFIX) else f"scorer:{scorer}"
            labels = {
                (v.item_id, v.sample): v.score
                for v in store.verdicts(scorer)
                if v.status == "ok" and v.score is not None
            }
            ties = 0
        else:
            humans = [HUMAN_PREFIX + a for a in annotators] or [
                n for n in known if n.startswith(HUMAN_PREFIX)
            ]
            missing = [n for n in humans if n not in known]
            if not humans or missing:
                raise UsageError(
                    f"{run_dir}: no human labels"
                    + (f" from {', '.join(missing)}" if missing else "")
                    + f" (scorers: {_names(known)}); label with `flames annotate`, or distil "
                    "another scorer's verdicts with --from-scorer NAME"
                )
            per_annotator = [
                {
                    (v.item_id, v.sample): v.score
                    for v in store.verdicts(name)
                    if v.status == "ok" and v.score is not None
                }
                for name in humans
            ]
            labels, ties = reference_labels(per_annotator)
            source = humans[0] if len(humans) == 1 else HUMAN
    examples = []
    for (item_id, sample), score in sorted(labels.items()):
        answer = answers.get((item_id, sample))
        if answer is None or item_id not in items:
            continue  # a label on an answer the run no longer holds as successful
        item = items[item_id]
        examples.append(
            Example(
                dimension=item.dimension,
                prompt=item.prompt,
                response=answer.response or "",
                score=_score(score, item.dimension, run_dir, None),
                model=model,
                source=source,
                subcomponent=item.subcomponent,
            )
        )
    return examples, ties


def _names(scorers: Iterable[str]) -> str:
    return ", ".join(sorted(scorers)) or "none"


def load_labels(
    sources: Sequence[str | Path],
    annotators: Sequence[str] = (),
    from_scorer: str | None = None,
    mix: bool = False,
) -> LabelSet:
    """Labels from JSONL files and run directories (human labels, or `from_scorer`'s verdicts;
    with `mix`, both: a human label wins over a verdict on the same answer)."""
    if not sources:
        raise UsageError("no labels: give a JSONL file or a run directory")
    if mix and from_scorer is None:
        raise UsageError("--mix adds a scorer's verdicts to human labels: name it (--from-scorer)")
    examples: list[Example] = []
    described, ties = [], 0
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found: list[Example] = []
            if from_scorer is None or mix:
                humans, ties_here = from_run(path, annotators)
                found += humans
                ties += ties_here
            if from_scorer is not None:
                labelled = {e.key for e in found}
                verdicts, _ = from_run(path, scorer=from_scorer)
                found += [e for e in verdicts if e.key not in labelled]
            what = "human labels" if from_scorer is None else f"verdicts of {from_scorer}"
            if mix:
                what = f"human labels and verdicts of {from_scorer}"
            described.append(f"run {path} ({what}, {len(found)})")
        elif path.suffix == ".jsonl":
            found = from_jsonl(path)
            described.append(f"file {path.name} ({len(found)})")
        else:
            raise DataError("labels are a .jsonl file or a run directory", path)
        examples += found
    kinds = {e.human for e in examples}
    if len(kinds) > 1 and not mix:
        verdicts = sorted({e.source for e in examples if not e.human})
        raise UsageError(
            f"the labels mix human labels with verdicts of {', '.join(verdicts)}; a scorer "
            "trained on both learns the verdicts' mistakes as people's. Train on one kind, "
            "or pass --mix to use both on purpose"
        )
    if not examples:
        raise UsageError("no labels found in " + ", ".join(map(str, sources)))
    return LabelSet(examples=examples, sources=described, ties=ties)
