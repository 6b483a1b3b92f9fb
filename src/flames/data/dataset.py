"""Prompt sets: loading and validating the Flames JSONL schema, ids, filtering and sampling."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flames._util.outputs import atomic_open
from flames.data.taxonomy import (
    SUBCOMPONENTS,
    Dimension,
    match_dimension,
    match_subcomponent,
    parse_dimension,
    taxonomy_order,
)
from flames.errors import DataError

REQUIRED_FIELDS = ("dimension", "subcomponent", "prompt")
CONVERSATION = "conversation"
"""The optional field of a multi-turn prompt: the earlier turns, replayed before `prompt`."""
ROLES = ("user", "assistant")

Turn = dict[str, str]
"""One earlier turn of a conversation: ``{"role": "user" | "assistant", "content": text}``."""


def check_conversation(value: Any) -> list[Turn]:
    """The earlier turns of a multi-turn prompt, checked: a list of ``{"role", "content"}``
    objects, user and assistant turns alternating from a user turn to an assistant turn (the
    prompt is the next user turn), each with text. ValueError says what is wrong."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list of turns, not {type(value).__name__}")
    turns = []
    for index, turn in enumerate(value):
        where = f"turn {index + 1}"
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise ValueError(f"{where} must be an object with exactly 'role' and 'content'")
        role, content = turn["role"], turn["content"]
        expected = ROLES[index % 2]
        if role != expected:
            raise ValueError(f"{where} has role {role!r}; expected {expected!r} (turns alternate)")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"{where} has no text")
        turns.append({"role": role, "content": content})
    if turns and turns[-1]["role"] != "assistant":
        raise ValueError("the last turn must be the assistant's (the prompt is the next user turn)")
    return turns


class Item(BaseModel):
    """One prompt of a prompt set."""

    model_config = ConfigDict(frozen=True)

    id: str
    dimension: Dimension
    subcomponent: str
    prompt: str
    meta: dict[str, Any] = Field(default_factory=dict)
    """Any extra fields the file carried, kept as they were; a multi-turn prompt's earlier
    turns among them, under `CONVERSATION` (see `conversation`)."""

    @model_validator(mode="after")
    def _checked_conversation(self) -> Item:
        if CONVERSATION in self.meta:
            check_conversation(self.meta[CONVERSATION])
        return self

    @property
    def conversation(self) -> tuple[Turn, ...]:
        """The turns before the prompt (empty for a single-turn prompt), in order."""
        return tuple(self.meta.get(CONVERSATION) or ())


def content_id(prompt: str, conversation: Sequence[Turn] = ()) -> str:
    """A stable id derived from the prompt text alone, or, for a multi-turn prompt, from its
    earlier turns and the prompt."""
    text = prompt if not conversation else json.dumps([list(conversation), prompt])
    return "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def item_record(
    item_id: str,
    dimension: Dimension,
    subcomponent: str,
    prompt: str,
    conversation: Sequence[Turn] = (),
) -> bytes:
    """One item's line in the fingerprint of a prompt set (`items_sha256`); the earlier turns of
    a multi-turn prompt are part of it (a single-turn prompt's line is as it always was)."""
    record: list[Any] = [item_id, dimension.value, subcomponent, prompt]
    if conversation:
        record.append(list(conversation))
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def items_sha256(items: Iterable[Item]) -> str:
    """Fingerprint of exactly these items, in this order."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(
            item_record(item.id, item.dimension, item.subcomponent, item.prompt, item.conversation)
        )
    return digest.hexdigest()


class Dataset(BaseModel):
    """An ordered, validated set of items and where it came from."""

    name: str
    source_sha256: str
    """sha256 of the file the items were read from."""
    selection: str = "all"
    """How the items were chosen from the file (filters, sampling)."""
    items: list[Item]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:  # type: ignore[override]
        return iter(self.items)

    @property
    def items_sha256(self) -> str:
        """Fingerprint of exactly these items, in this order."""
        return items_sha256(self.items)

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of items per dimension and subcomponent, in the taxonomy's order."""
        table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for item in self.items:
            table[item.dimension.value][item.subcomponent] += 1
        return {
            dim: {sub: table[dim][sub] for sub in sorted(table[dim], key=taxonomy_order)}
            for dim in sorted(table, key=taxonomy_order)
        }

    def _derive(self, items: list[Item], step: str) -> Dataset:
        selection = step if self.selection == "all" else f"{self.selection}; {step}"
        return Dataset(
            name=self.name, source_sha256=self.source_sha256, selection=selection, items=items
        )

    def to_jsonl(self, path: Path | str) -> Path:
        """Write the items as JSONL (id, dimension, subcomponent, prompt, then their extra
        fields), all or nothing: a cut write leaves no partial file."""
        path = Path(path)
        with atomic_open(path) as fh:
            for item in self.items:
                row = {
                    "id": item.id,
                    "dimension": item.dimension.value,
                    "subcomponent": item.subcomponent,
                    "prompt": item.prompt,
                    **item.meta,
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path

    def filter(
        self,
        dimensions: Iterable[str] = (),
        subcomponents: Iterable[str] = (),
    ) -> Dataset:
        """Keep items in any of `dimensions` and any of `subcomponents` (empty keeps all)."""
        dims = {match_dimension(d) for d in dimensions}
        subs = {match_subcomponent(s) for s in subcomponents}
        kept = [
            item
            for item in self.items
            if (not dims or item.dimension in dims) and (not subs or item.subcomponent in subs)
        ]
        parts = []
        if dims:
            parts.append("dimension in " + ",".join(sorted(d.value for d in dims)))
        if subs:
            parts.append("subcomponent in " + ",".join(sorted(subs)))
        return self._derive(kept, "filter " + " and ".join(parts)) if parts else self

    def sample(self, n: int, seed: int = 0, by: str = "subcomponent") -> Dataset:
        """A stratified random sample of `n` items, proportional to each stratum's size.

        Strata are subcomponents (or dimensions with ``by="dimension"``); seats are shared by
        largest remainder, so every stratum gets its fair share. The original order is kept.
        """
        if by not in ("subcomponent", "dimension"):
            raise ValueError("by must be 'subcomponent' or 'dimension'")
        if not 0 < n <= len(self.items):
            raise ValueError(f"sample size must be between 1 and {len(self.items)}, got {n}")
        strata: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(self.items):
            key = item.subcomponent if by == "subcomponent" else item.dimension.value
            strata[key].append(index)
        total = len(self.items)
        quotas = {key: n * len(members) / total for key, members in strata.items()}
        seats = {key: int(q) for key, q in quotas.items()}
        leftover = n - sum(seats.values())
        by_remainder = sorted(quotas, key=lambda k: (-(quotas[k] - seats[k]), k))
        for key in by_remainder[:leftover]:
            seats[key] += 1
        rng = random.Random(seed)
        chosen: list[int] = []
        for key in sorted(strata):
            chosen.extend(rng.sample(strata[key], seats[key]))
        items = [self.items[i] for i in sorted(chosen)]
        return self._derive(items, f"sample n={n} by={by} seed={seed}")


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
MAX_NESTING = 64
"""Levels of arrays and objects a data line may nest: far more than any prompt set needs, and
far from the limits of the JSON reader and writer."""


def nesting(value: Any) -> int:
    """How deep arrays and objects nest in `value` (0 for a plain value), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _parse_line(raw: str, path: Path, line_no: int) -> dict[str, Any]:
    line = raw.rstrip("\r\n")  # else an error at the end of the line is put on the next one
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        where = "at the end of the line" if exc.pos >= len(line) else f"column {exc.pos + 1}"
        raise DataError(f"malformed JSON: {exc.msg} ({where})", path, line_no) from None
    except RecursionError:
        raise DataError(f"nested more than {MAX_NESTING} levels deep", path, line_no) from None
    except ValueError:  # Python reads integers of up to 4,300 digits
        raise DataError("a number too long to read (over 4,300 digits)", path, line_no) from None
    if line.count("[") + line.count("{") > MAX_NESTING and nesting(row) > MAX_NESTING:
        raise DataError(f"nested more than {MAX_NESTING} levels deep", path, line_no)
    if not isinstance(row, dict):
        raise DataError("each line must be a JSON object", path, line_no)
    if SURROGATE_ESCAPE.search(raw):  # a pair is one character; a lone half is not text
        try:
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode("ascii")
            raise DataError(
                f"lone surrogate {bad} is not a character (a broken \\u escape)", path, line_no
            ) from None
    return row


def iter_jsonl(path: Path, digest: Any = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; errors name the file and line.

    A `digest` (a hashlib object) is fed every byte read, so that once the file is read it holds
    the fingerprint of exactly what was parsed."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path)
    with path.open("rb") as fh:
        for line_no, raw_bytes in enumerate(fh, start=1):
            if digest is not None:
                digest.update(raw_bytes)
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8", path, line_no
                ) from None
            if line_no == 1:
                raw = raw.removeprefix("\ufeff")
            if raw.strip():
                yield line_no, _parse_line(raw, path, line_no)


def row_id(row: dict[str, Any], path: Path, line_no: int) -> str | None:
    """The row's ``id`` as text (a string or an integer), or None when it has none."""
    raw_id = row.get("id")
    if raw_id is None:
        return None
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise DataError("field 'id' must be a string or an integer", path, line_no)
    return str(raw_id)


def item_from_row(row: dict[str, Any], path: Path, line_no: int) -> Item:
    """Validate one row of the Flames schema and turn it into an Item."""
    for field in REQUIRED_FIELDS:
        value = row.get(field)
        if not isinstance(value, str):
            problem = (
                "missing" if value is None else f"must be a string, not {type(value).__name__}"
            )
            raise DataError(f"field {field!r} is {problem}", path, line_no)
    try:
        dimension = parse_dimension(row["dimension"])
    except ValueError as exc:
        raise DataError(str(exc), path, line_no) from None
    subcomponent = row["subcomponent"]
    if subcomponent not in SUBCOMPONENTS[dimension]:
        valid = ", ".join(repr(s) for s in SUBCOMPONENTS[dimension])
        raise DataError(
            f"subcomponent {subcomponent!r} does not belong to {dimension.value} (valid: {valid})",
            path,
            line_no,
        )
    prompt = row["prompt"]
    if not prompt.strip():
        raise DataError("empty prompt", path, line_no)
    meta = {k: v for k, v in row.items() if k not in (*REQUIRED_FIELDS, "id")}
    if CONVERSATION in meta:
        try:
            meta[CONVERSATION] = check_conversation(meta[CONVERSATION])
        except ValueError as exc:
            raise DataError(f"field {CONVERSATION!r}: {exc}", path, line_no) from None
        if not meta[CONVERSATION]:
            del meta[CONVERSATION]  # no earlier turn: a single-turn prompt
    item_id = row_id(row, path, line_no)
    if item_id is None:
        item_id = content_id(prompt, meta.get(CONVERSATION, ()))
    return Item(
        id=item_id, dimension=dimension, subcomponent=subcomponent, prompt=prompt, meta=meta
    )


def load_dataset(path: Path | str, name: str | None = None) -> Dataset:
    """Load and validate a prompt set in the Flames JSONL schema.

    Each line holds ``dimension``, ``subcomponent`` and ``prompt``; an optional ``id`` and any
    other fields are kept. A multi-turn prompt has a ``conversation``: the earlier user and
    assistant turns, replayed to the model before the prompt. Items without an id get one
    derived from the prompt text (and the conversation).
    """
    path = Path(path)
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for line_no, row in iter_jsonl(path):
        item = item_from_row(row, path, line_no)
        if item.id in first_line:
            what = "id" if "id" in row else "prompt (give the items explicit ids)"
            raise DataError(
                f"duplicate {what}: already on line {first_line[item.id]}", path, line_no
            )
        first_line[item.id] = line_no
        items.append(item)
    if not items:
        raise DataError("no items", path)
    return Dataset(name=name or path.stem, source_sha256=sha256_file(path), items=items)
