"""The run store: one SQLite database (WAL mode) per run directory.

Every answer and verdict is committed as it arrives, so a run killed at any moment resumes from
what is on disk. A run's manifest is fixed when the run is created; opening it again under a
different manifest is refused, and so is scoring it under a scorer name whose settings differ.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

from flames._util.outputs import PARTIAL, atomic_path
from flames.data.dataset import Item
from flames.errors import FlamesError, ManifestMismatch, UsageError
from flames.runs.records import Answer, RunManifest, ScorerManifest, Verdict, check_scorer_name

DB_NAME = "run.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    position INTEGER NOT NULL, item_id TEXT PRIMARY KEY, dimension TEXT NOT NULL,
    subcomponent TEXT NOT NULL, prompt TEXT NOT NULL, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    item_id TEXT NOT NULL REFERENCES items(item_id), sample INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')), response TEXT, error TEXT,
    finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL,
    attempts INTEGER NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (item_id, sample)
);
CREATE TABLE IF NOT EXISTS scorers (name TEXT PRIMARY KEY, manifest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    scorer TEXT NOT NULL REFERENCES scorers(name), item_id TEXT NOT NULL, sample INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')), score INTEGER, probabilities TEXT,
    truncated INTEGER NOT NULL, raw TEXT, error TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (scorer, item_id, sample)
);
CREATE INDEX IF NOT EXISTS items_by_position ON items(position);
"""

PAGE = 10_000
"""Items (or answers) read at a time when pending work is streamed."""

ANSWER_FIELDS = tuple(Answer.model_fields)
VERDICT_FIELDS = tuple(Verdict.model_fields)


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable list of the fields that differ between two manifests."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} (stored) != {b!r} (now)")
    return lines


class RunStore:
    """Read and write one run directory."""

    def __init__(self, run_dir: Path, connection: sqlite3.Connection):
        self.run_dir = run_dir
        self._db = connection

    # -- opening -------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL survives a killed process (every commit is in the WAL file);
        # only an OS crash or power loss can take the last few commits.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        return db

    @classmethod
    def exists(cls, run_dir: Path | str) -> bool:
        return (Path(run_dir) / DB_NAME).is_file()

    @classmethod
    def open(cls, run_dir: Path | str) -> RunStore:
        """Open an existing run."""
        run_dir = Path(run_dir)
        if not cls.exists(run_dir):
            raise FlamesError(f"{run_dir}: not a flames run directory (no {DB_NAME})")
        return cls(run_dir, cls._connect(run_dir / DB_NAME))

    @classmethod
    def create_or_resume(
        cls,
        run_dir: Path | str,
        manifest: RunManifest,
        items: Iterable[Item],
        fill: Callable[[RunStore], None] | None = None,
    ) -> RunStore:
        """Create a run, or reopen it if its manifest is the same; refuse otherwise.

        A new run is built in a temporary file beside run.db and renamed into place, so a
        process killed at any moment leaves either no run or a complete, resumable one. `fill`
        writes the first contents (imported answers, ...) inside that creation; when the run
        already exists it is called on the reopened run.
        """
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"{run_dir}: not a directory; give a folder for the run")
        if cls.exists(run_dir):
            store = cls.open(run_dir)
            if store._stored_manifest() is None and store._is_empty():
                # created in place and cut before its manifest (older versions): start afresh
                store.close()
                for suffix in ("", "-wal", "-shm", "-journal"):
                    (run_dir / (DB_NAME + suffix)).unlink(missing_ok=True)
            else:
                try:
                    store.check_manifest(manifest)
                except ManifestMismatch:
                    store.close()
                    raise
                if fill is not None:
                    fill(store)
                return store
        made = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(f".{DB_NAME}{PARTIAL}*"):  # left by a creation that was cut
            stale.unlink(missing_ok=True)
        try:
            with atomic_path(run_dir / DB_NAME) as tmp:
                building = cls(run_dir, sqlite3.connect(tmp, isolation_level=None))
                try:
                    building._db.executescript(SCHEMA)
                    building._db.execute("PRAGMA foreign_keys=ON")
                    building._insert_run(manifest, items)
                    if fill is not None:
                        fill(building)
                finally:
                    building.close()
        except BaseException:  # a failed or interrupted creation leaves no empty folder
            if made and not any(run_dir.iterdir()):
                run_dir.rmdir()
            raise
        return cls.open(run_dir)

    def check_manifest(self, manifest: RunManifest) -> None:
        """ManifestMismatch when `manifest` would not resume this run (its identity differs)."""
        if self._stored_manifest() is None:  # cut before its manifest: created afresh
            return
        stored = self.manifest
        if stored.identity() != manifest.identity():
            changes = "\n  ".join(_diff(stored.identity(), manifest.identity()))
            raise ManifestMismatch(
                f"{self.run_dir} was created with other settings; refusing to mix results:\n  "
                f"{changes}\nUse a new run directory, or the original settings to resume."
            )

    def _insert_run(self, manifest: RunManifest, items: Iterable[Item]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (
                        i,
                        it.id,
                        it.dimension.value,
                        it.subcomponent,
                        it.prompt,
                        json.dumps(it.meta, ensure_ascii=False),
                    )
                    for i, it in enumerate(items)
                ),
            )
            self._db.execute(
                "INSERT INTO meta VALUES ('manifest', ?)", (manifest.model_dump_json(),)
            )

    def _stored_manifest(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        return None if row is None else str(row[0])

    def _is_empty(self) -> bool:
        return all(
            self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
            for table in ("items", "answers", "verdicts")
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- run level ---------------------------------------------------------------------------

    @property
    def manifest(self) -> RunManifest:
        stored = self._stored_manifest()
        if stored is None:
            raise FlamesError(f"{self.run_dir}: the run has no manifest (was its creation cut?)")
        return RunManifest.model_validate_json(stored)

    def count_items(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    def items(self) -> list[Item]:
        rows = self._db.execute(
            "SELECT item_id, dimension, subcomponent, prompt, meta FROM items ORDER BY position"
        )
        return [
            Item(id=i, dimension=d, subcomponent=s, prompt=p, meta=json.loads(m))
            for i, d, s, p, m in rows
        ]

    # -- answers -------------------------------------------------------------------------------

    def record_answers(self, answers: Iterable[Answer]) -> None:
        """Write answers durably; an answer replaces an earlier error for the same sample."""
        self.record_answer_rows(
            tuple(data[f] for f in ANSWER_FIELDS) for data in (a.model_dump() for a in answers)
        )

    def record_answer_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """record_answers for rows already in ANSWER_FIELDS order (bulk imports)."""
        self._upsert("answers", ANSWER_FIELDS, list(rows))

    def _upsert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Insert or replace rows in one transaction (durable once it returns)."""
        if not rows:
            return
        marks = ", ".join("?" for _ in columns)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )

    def answers(self) -> list[Answer]:
        rows = self._db.execute(
            f"SELECT {', '.join(ANSWER_FIELDS)} FROM answers ORDER BY item_id, sample"
        )
        return [Answer(**dict(zip(ANSWER_FIELDS, row, strict=True))) for row in rows]

    def count_answers(self, status: str | None = None) -> int:
        """How many answers the run holds (with this status, if given)."""
        row = self._db.execute(
            "SELECT count(*) FROM answers WHERE ? IS NULL OR status = ?", (status, status)
        ).fetchone()
        return int(row[0])

    def pending_answers(
        self, retry_errors: bool = False, page: int = PAGE
    ) -> Iterator[tuple[Item, int]]:
        """(item, sample) pairs still to generate, in dataset order, read `page` items at a time
        (nothing is held but one page, and no read stays open between pages)."""
        samples = self.manifest.generator.decoding.samples
        position = -1
        while True:
            rows = self._db.execute(
                "SELECT i.position, i.item_id, i.dimension, i.subcomponent, i.prompt, i.meta, "
                "a.sample, a.status FROM (SELECT * FROM items WHERE position > ? "
                "ORDER BY position LIMIT ?) i LEFT JOIN answers a ON a.item_id = i.item_id "
                "ORDER BY i.position",
                (position, page),
            ).fetchall()
            if not rows:
                return
            for _, group in groupby(rows, key=itemgetter(0)):
                answered = list(group)
                position, item_id, dim, sub, prompt, meta = answered[0][:6]
                done = {s: status for *_, s, status in answered if s is not None}
                todo = [
                    s
                    for s in range(samples)
                    if s not in done or (retry_errors and done[s] == "error")
                ]
                if todo:
                    extra = json.loads(meta)
                    item = Item(
                        id=item_id, dimension=dim, subcomponent=sub, prompt=prompt, meta=extra
                    )
                    for sample in todo:
                        yield item, sample

    def count_pending_answers(self, retry_errors: bool = False) -> int:
        """How many (item, sample) pairs pending_answers will yield."""
        samples = self.manifest.generator.decoding.samples
        done = self._db.execute(
            "SELECT count(*) FROM answers WHERE sample < ? AND (status = 'ok' OR NOT ?)",
            (samples, retry_errors),
        ).fetchone()[0]
        return self.count_items() * samples - int(done)

    # -- verdicts ------------------------------------------------------------------------------

    def check_scorer(self, manifest: ScorerManifest) -> ScorerManifest | None:
        """The scorer recorded under the manifest's name, if any; ManifestMismatch when its
        settings differ (nothing is written)."""
        check_scorer_name(manifest.name, manifest.kind)
        row = self._db.execute(
            "SELECT manifest FROM scorers WHERE name = ?", (manifest.name,)
        ).fetchone()
        if row is None:
            return None
        stored = ScorerManifest.model_validate_json(row[0])
        if stored.identity() != manifest.identity():
            changes = "\n  ".join(_diff(stored.identity(), manifest.identity()))
            raise ManifestMismatch(
                f"{self.run_dir}: scorer {manifest.name!r} was used with other settings; "
                f"refusing to mix verdicts:\n  {changes}\n"
                "Pass another --scorer-name to keep both sets of verdicts."
            )
        return stored

    def register_scorer(self, manifest: ScorerManifest) -> None:
        """Record a scorer for this run, or check it matches the one recorded under its name."""
        stored = self.check_scorer(manifest)
        if stored is None:
            with self._db:
                self._db.execute(
                    "INSERT INTO scorers VALUES (?, ?)", (manifest.name, manifest.model_dump_json())
                )
            return
        if manifest.check is not None and manifest.check != stored.check:  # the latest check
            updated = stored.model_copy(update={"check": manifest.check})
            with self._db:
                self._db.execute(
                    "UPDATE scorers SET manifest = ? WHERE name = ?",
                    (updated.model_dump_json(), manifest.name),
                )

    def scorers(self) -> dict[str, ScorerManifest]:
        rows = self._db.execute("SELECT name, manifest FROM scorers ORDER BY name")
        return {name: ScorerManifest.model_validate_json(m) for name, m in rows}

    def record_verdicts(self, scorer: str, verdicts: Iterable[Verdict]) -> None:
        rows = []
        for v in verdicts:
            data = v.model_dump()
            data["probabilities"] = json.dumps(v.probabilities) if v.probabilities else None
            rows.append(tuple(data[f] for f in VERDICT_FIELDS))
        self.record_verdict_rows(scorer, rows)

    def record_verdict_rows(self, scorer: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """record_verdicts for rows already in VERDICT_FIELDS order, probabilities as JSON."""
        self._upsert("verdicts", ("scorer", *VERDICT_FIELDS), [(scorer, *row) for row in rows])

    def verdicts(self, scorer: str) -> list[Verdict]:
        rows = self._db.execute(
            f"SELECT {', '.join(VERDICT_FIELDS)} FROM verdicts WHERE scorer = ? "
            "ORDER BY item_id, sample",
            (scorer,),
        )
        verdicts = []
        for row in rows:
            data = dict(zip(VERDICT_FIELDS, row, strict=True))
            data["probabilities"] = json.loads(data["probabilities"] or "null")
            verdicts.append(Verdict(**data))
        return verdicts

    def failed_verdicts(self, scorer: str) -> int:
        """How many of `scorer`'s verdicts are errors."""
        query = "SELECT count(*) FROM verdicts WHERE scorer = ? AND status = 'error'"
        return int(self._db.execute(query, (scorer,)).fetchone()[0])

    def joined(self, scorer: str) -> Iterator[tuple[Any, ...]]:
        """Every item in dataset order joined with its answers and `scorer`'s verdicts, streamed.

        One tuple per answer (item_id, dimension, subcomponent, prompt, meta, sample, answer
        status, response, prompt_tokens, completion_tokens, verdict status, score, truncated,
        probabilities as stored (JSON), the first probability, finish_reason, verdict error),
        answers in sample order; an item
        without answers comes once, with sample and everything after it None.
        """
        yield from self._db.execute(
            "SELECT i.item_id, i.dimension, i.subcomponent, i.prompt, i.meta, a.sample, a.status, "
            "a.response, a.prompt_tokens, a.completion_tokens, v.status, v.score, v.truncated, "
            "v.probabilities, json_extract(v.probabilities, '$[0]'), a.finish_reason, v.error "
            "FROM items i "
            "LEFT JOIN answers a ON a.item_id = i.item_id "
            "LEFT JOIN verdicts v "
            "ON v.scorer = ? AND v.item_id = a.item_id AND v.sample = a.sample "
            "ORDER BY i.position, a.sample",
            (scorer,),
        )

    def first_prompt_difference(self, other: RunStore) -> str | None:
        """The id of an item whose prompt differs in `other`, or None when all shared ids agree."""
        self._db.execute("ATTACH DATABASE ? AS other", (str(other.run_dir / DB_NAME),))
        try:
            row = self._db.execute(
                "SELECT i.item_id FROM items i JOIN other.items o ON o.item_id = i.item_id "
                "WHERE o.prompt != i.prompt LIMIT 1"
            ).fetchone()
        finally:
            self._db.execute("DETACH DATABASE other")
        return None if row is None else row[0]

    def texts(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, str]]:
        """(prompt, response) of the answers keyed (item_id, sample)."""
        found = {}
        for item_id, sample in keys:
            row = self._db.execute(
                "SELECT i.prompt, a.response FROM answers a JOIN items i USING (item_id) "
                "WHERE a.item_id = ? AND a.sample = ?",
                (item_id, sample),
            ).fetchone()
            if row is not None:
                found[(item_id, sample)] = (row[0], row[1] or "")
        return found

    def pending_verdicts(
        self, scorer: str, retry_errors: bool = False, page: int = PAGE
    ) -> Iterator[tuple[Item, Answer]]:
        """Successful answers that `scorer` has not judged yet (or failed on, with retry), with
        their items, in (item id, sample) order, read `page` answers at a time."""
        after: tuple[str, int] = ("", -1)
        columns = ", ".join(f"a.{f}" for f in ANSWER_FIELDS)
        while True:
            rows = self._db.execute(
                f"SELECT i.dimension, i.subcomponent, i.prompt, i.meta, {columns}, v.status "
                "FROM answers a JOIN items i ON i.item_id = a.item_id "
                "LEFT JOIN verdicts v "
                "ON v.scorer = ? AND v.item_id = a.item_id AND v.sample = a.sample "
                "WHERE (a.item_id, a.sample) > (?, ?) AND a.status = 'ok' "
                "ORDER BY a.item_id, a.sample LIMIT ?",
                (scorer, *after, page),
            ).fetchall()
            if not rows:
                return
            for dim, sub, prompt, meta, *fields, judged in rows:
                answer = Answer(**dict(zip(ANSWER_FIELDS, fields, strict=True)))
                after = (answer.item_id, answer.sample)
                if judged is None or (retry_errors and judged == "error"):
                    item = Item(
                        id=answer.item_id,
                        dimension=dim,
                        subcomponent=sub,
                        prompt=prompt,
                        meta=json.loads(meta),
                    )
                    yield item, answer

    def count_pending_verdicts(self, scorer: str, retry_errors: bool = False) -> int:
        """How many answers pending_verdicts will yield."""
        return int(
            self._db.execute(
                "SELECT count(*) FROM answers a LEFT JOIN verdicts v "
                "ON v.scorer = ? AND v.item_id = a.item_id AND v.sample = a.sample "
                "WHERE a.status = 'ok' AND (v.status IS NULL OR (? AND v.status = 'error'))",
                (scorer, retry_errors),
            ).fetchone()[0]
        )
