"""The run store: one SQLite database (WAL mode) per run directory.

Every answer and verdict is committed as it arrives, so a run killed at any moment resumes from
what is on disk. One process writes a run at a time (`flames.runs.lock`); readers never wait for
it. A run's manifest is fixed by its first stored answer: opening it again under a different
manifest is refused once an answer is stored, and so is scoring it under a scorer name whose
settings differ once that scorer has a verdict. An ok answer is never replaced, and a verdict
counts only for the exact answer text it judged (`answer_sha`).

The store's format has a version (`SCHEMA_VERSION`): a run written by a newer flames is refused,
an older one is read as it is and upgraded by the next writer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flames._util.outputs import PARTIAL, atomic_path, remove_stale_partials
from flames.data.dataset import Item
from flames.errors import FlamesError, ManifestMismatch, NewerRun
from flames.runs import lock
from flames.runs.attacks import TABLES as ATTACK_TABLES, AttackLog
from flames.runs.records import Answer, RunManifest, ScorerManifest, Verdict, check_scorer_name

DB_NAME = "run.db"

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    position INTEGER NOT NULL, item_id TEXT PRIMARY KEY, dimension TEXT NOT NULL,
    subcomponent TEXT NOT NULL, prompt TEXT NOT NULL, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    item_id TEXT NOT NULL REFERENCES items(item_id), sample INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')), response TEXT, error TEXT,
    finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL,
    attempts INTEGER NOT NULL, created_at TEXT NOT NULL, response_sha TEXT,
    PRIMARY KEY (item_id, sample)
);
CREATE TABLE IF NOT EXISTS scorers (name TEXT PRIMARY KEY, manifest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    scorer TEXT NOT NULL REFERENCES scorers(name), item_id TEXT NOT NULL, sample INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')), score INTEGER, probabilities TEXT,
    truncated INTEGER NOT NULL, raw TEXT, error TEXT, created_at TEXT NOT NULL, answer_sha TEXT,
    PRIMARY KEY (scorer, item_id, sample)
);
CREATE INDEX IF NOT EXISTS items_by_position ON items(position);
"""
    + ATTACK_TABLES
)

SCHEMA_VERSION = 3
"""The store's format. 1: before `answer_sha` (verdicts tied to the answer text they judged) and
`response_sha`; read as it is (every verdict counts for its answer's text), upgraded by a writer.
2: before the red-team tables (`flames.runs.attacks`); read as a run without attacks."""
UPGRADES = {
    2: "each verdict is now tied to the answer text it judged",
    3: "it can hold red-team attacks",
}
"""What each format brought, for the message a writer's upgrade prints."""
OLDER_VIEWS = """
CREATE TEMP VIEW answers AS SELECT *, NULL AS response_sha FROM main.answers;
CREATE TEMP VIEW verdicts AS SELECT *, NULL AS answer_sha FROM main.verdicts;
"""
"""A format-1 run as a reader sees it: the newer columns, empty (NULL IS NULL: every verdict counts
for its answer, as format 1 had it)."""
OLDER_THAN_3 = ATTACK_TABLES.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE")
"""A run before format 3 as a reader sees it: no attacks (empty tables, in the reader's own
temporary store: the run itself is not written)."""
ADDED_IN_2 = {
    "answers": ("response_sha", "UPDATE answers SET response_sha = flames_sha(response)"),
    "verdicts": (
        "answer_sha",
        "UPDATE verdicts SET answer_sha = (SELECT a.response_sha FROM answers a "
        "WHERE a.item_id = verdicts.item_id AND a.sample = verdicts.sample)",
    ),
}
"""The columns format 2 added, and how a format-1 run fills them: its verdicts are taken to have
judged the text stored now (format 1 had no way to say otherwise)."""
BUSY_TIMEOUT_MS = 30_000
"""How long a statement waits for the database to be free (a reader's checkpoint, ...)."""


def text_sha(text: str | None) -> str | None:
    """The fingerprint of an answer's text that a verdict is tied to (None for no text)."""
    if text is None:
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


FRESH = "v.answer_sha IS a.response_sha"
"""A verdict `v` counts for answer `a` only if it judged that very text."""

PAGE = 10_000
"""Items (or answers) read at a time when pending work is streamed."""

ANSWER_FIELDS = tuple(Answer.model_fields)
VERDICT_FIELDS = tuple(Verdict.model_fields)
RESPONSE = ANSWER_FIELDS.index("response")


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


M = TypeVar("M", bound=BaseModel)


def _load(model: type[M], text: str, run_dir: Path, what: str) -> M:
    """A stored manifest; NewerRun, in one line, if it holds a setting this flames does not know
    (a newer flames wrote it: reading on would mix results made without that setting)."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        unknown = [
            ".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "extra_forbidden"
        ]
        if not unknown:
            raise FlamesError(f"{run_dir}: the manifest of {what} cannot be read: {exc}") from None
        try:
            written_by = json.loads(text).get("versions", {}).get("flames", "?")
        except (ValueError, AttributeError):
            written_by = "?"
        raise NewerRun(
            f"{run_dir}: {what} was made with settings this flames does not know "
            f"({', '.join(unknown)}; written by flames {written_by}). Upgrade flames to read or "
            "resume it."
        ) from None


class RunStore:
    """Read and write one run directory.

    `open` reads (it never writes and never waits for a writer); `open_writer` and
    `create_or_resume` write, holding the run's lock (`flames.runs.lock`) until `close`.
    """

    def __init__(self, run_dir: Path, connection: sqlite3.Connection, writer: bool = False):
        self.run_dir = run_dir
        self._db = connection
        self._writer = writer
        self.upgraded_from: int | None = None
        """The store format this writer upgraded the run from, if it did."""
        self._copy: Path | None = None
        """A private copy a reader opened (a read-only folder left with a write-ahead log)."""

    # -- opening -------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL survives a killed process (every commit is in the WAL file);
        # only an OS crash or power loss can take the last few commits.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.create_function("flames_sha", 1, text_sha, deterministic=True)
        return db

    @classmethod
    def exists(cls, run_dir: Path | str) -> bool:
        return (Path(run_dir) / DB_NAME).is_file()

    @classmethod
    def _require(cls, run_dir: Path) -> None:
        if not cls.exists(run_dir):
            raise FlamesError(f"{run_dir}: not a flames run directory (no {DB_NAME})")

    @classmethod
    def open(cls, run_dir: Path | str) -> RunStore:
        """Open an existing run to read it: also in a read-only folder, and while a writer works."""
        run_dir = Path(run_dir)
        cls._require(run_dir)
        path = run_dir / DB_NAME
        copy = None
        try:
            db = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:  # a read-only folder: no -shm can be made there
            wal = run_dir / (DB_NAME + "-wal")
            if not wal.is_file() or wal.stat().st_size == 0:  # nothing beside the database
                db = sqlite3.connect(
                    f"{path.absolute().as_uri()}?immutable=1", uri=True, check_same_thread=False
                )
            else:  # a writer was cut: read a private copy, with its log, where -shm can be made
                copy = Path(tempfile.mkdtemp(prefix="flames-run-"))
                shutil.copyfile(path, copy / DB_NAME)
                shutil.copyfile(wal, copy / wal.name)
                db = sqlite3.connect(copy / DB_NAME, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        store = cls(run_dir, db)
        store._copy = copy
        try:
            version = store._check_format()
            if version < 2:
                db.executescript(OLDER_VIEWS)
            if version < 3:
                db.executescript(OLDER_THAN_3)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_writer(cls, run_dir: Path | str, command: str, wait: bool = False) -> RunStore:
        """Open an existing run to write it, holding its lock; RunLocked if another process
        writes it (with `wait`, wait for it). An older store format is upgraded."""
        run_dir = Path(run_dir)
        cls._require(run_dir)
        lock.acquire(run_dir, command, wait)
        try:
            cls._require(run_dir)
            store = cls(run_dir, cls._connect(run_dir / DB_NAME), writer=True)
        except BaseException:
            lock.release(run_dir)
            raise
        try:
            store._prepare()
        except BaseException:
            store.close()
            raise
        return store

    def _prepare(self) -> None:
        """A writer's checks and tidying: the format (upgraded if older), the manifest, and
        temporary files a killed writer left."""
        version = self._check_format()
        if version < SCHEMA_VERSION:
            with self._db:
                self._db.execute("BEGIN")
                self._create_tables()
                for table, (column, fill) in ADDED_IN_2.items():
                    columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                    if column not in columns:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                        self._db.execute(fill)
                self._set_format()
            self.upgraded_from = version
        remove_stale_partials(self.run_dir)
        for stale in self.run_dir.glob(f".{DB_NAME}{PARTIAL}*"):  # a creation that was cut
            stale.unlink(missing_ok=True)

    def _create_tables(self) -> None:
        """The tables and index of `SCHEMA` that are missing (inside the caller's transaction:
        unlike executescript, this never commits it)."""
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)

    def _set_format(self) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def _check_format(self) -> int:
        """The store's format; NewerRun if this flames cannot read it."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if "meta" not in tables:
            return SCHEMA_VERSION if not tables else 1
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = 1 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise NewerRun(
                f"{self.run_dir}: written by a newer flames (store format {version}; this one "
                f"reads up to {SCHEMA_VERSION}). Upgrade flames to read or resume it."
            )
        return version

    @classmethod
    def create_or_resume(
        cls,
        run_dir: Path | str,
        manifest: RunManifest,
        items: Iterable[Item],
        fill: Callable[[RunStore], None] | None = None,
        command: str = "write",
        wait: bool = False,
    ) -> RunStore:
        """Create a run, or reopen it if its manifest is the same; refuse otherwise, unless the
        run holds no answer yet (a failed first attempt): then it starts afresh with these
        settings. The run's lock is held until the store is closed.

        A new run is built in a temporary file beside run.db and renamed into place, so a
        process killed at any moment leaves either no run or a complete, resumable one. `fill`
        writes the first contents (imported answers, ...) inside that creation; when the run
        already exists it is called on the reopened run.
        """
        run_dir = Path(run_dir)
        lock.acquire(run_dir, command, wait)
        try:
            store = cls._create_or_resume(run_dir, manifest, items, fill)
        except BaseException:
            lock.release(run_dir)
            raise
        return store

    @classmethod
    def _create_or_resume(
        cls,
        run_dir: Path,
        manifest: RunManifest,
        items: Iterable[Item],
        fill: Callable[[RunStore], None] | None,
    ) -> RunStore:
        if cls.exists(run_dir):
            store = cls(run_dir, cls._connect(run_dir / DB_NAME), writer=True)
            try:
                store._prepare()
                if store._stored_manifest() is not None and store._has_answers():
                    store.check_manifest(manifest)
                elif (
                    store._stored_manifest() is None
                    or store.manifest.identity() != manifest.identity()
                ):
                    store._start_afresh(manifest, items)
                if fill is not None:
                    fill(store)
            except BaseException:
                store._db.close()
                raise
            return store
        for stale in run_dir.glob(f".{DB_NAME}{PARTIAL}*"):  # left by a creation that was cut
            stale.unlink(missing_ok=True)
        with atomic_path(run_dir / DB_NAME) as tmp:
            building = cls(run_dir, sqlite3.connect(tmp, isolation_level=None), writer=True)
            try:
                building._db.execute("PRAGMA foreign_keys=ON")
                with building._db:
                    building._db.execute("BEGIN")
                    building._create_tables()
                    building._set_format()
                    building._insert_run(manifest, items)
                if fill is not None:
                    fill(building)
            finally:
                building._db.close()
        store = cls(run_dir, cls._connect(run_dir / DB_NAME), writer=True)
        return store

    def _has_answers(self) -> bool:
        """Whether the run holds an answer (failed attempts do not count) or a verdict."""
        return any(
            self._db.execute(query).fetchone() is not None
            for query in (
                "SELECT 1 FROM answers WHERE status = 'ok' LIMIT 1",
                "SELECT 1 FROM verdicts LIMIT 1",
                "SELECT 1 FROM attack_calls WHERE status = 'ok' LIMIT 1",
            )
        )

    def _start_afresh(self, manifest: RunManifest, items: Iterable[Item]) -> None:
        """Replace a run that holds no answer (nothing but failed attempts, made under other
        settings) with a new one under `manifest`."""
        with self._db:
            self._db.execute("BEGIN")
            self._create_tables()
            for table in ("attacks", "attack_calls", "verdicts", "scorers", "answers", "items"):
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("DELETE FROM meta WHERE key = 'manifest'")
            self._set_format()
            self._insert_run(manifest, items)

    def check_manifest(self, manifest: RunManifest) -> None:
        """ManifestMismatch when `manifest` would not resume this run (its identity differs)
        and the run already holds answers made under its own."""
        if self._stored_manifest() is None or not self._has_answers():
            return  # nothing stored yet: the run starts afresh under `manifest`
        stored = self.manifest
        if stored.identity() != manifest.identity():
            changes = "\n  ".join(_diff(stored.identity(), manifest.identity()))
            raise ManifestMismatch(
                f"{self.run_dir} was created with other settings; refusing to mix results:\n  "
                f"{changes}\nUse a new run directory, or the original settings to resume."
            )

    def update_information(self, manifest: RunManifest) -> None:
        """Record what `manifest` says for information (a red-team run's prices, its judge's
        latest sanity check, ...) when it is the run's own (same identity); the creation time
        stays."""
        stored = self.manifest
        if stored.identity() != manifest.identity():
            raise ManifestMismatch(f"{self.run_dir}: another run's manifest")
        updated = manifest.model_copy(update={"created_at": stored.created_at})
        if updated != stored:
            with self._db:
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'manifest'",
                    (updated.model_dump_json(),),
                )

    def _insert_run(self, manifest: RunManifest, items: Iterable[Item]) -> None:
        """Write the items and the manifest (inside the caller's transaction)."""
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
        self._db.execute("INSERT INTO meta VALUES ('manifest', ?)", (manifest.model_dump_json(),))

    def _stored_manifest(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        return None if row is None else str(row[0])

    def discard_if_empty(self) -> bool:
        """Delete the run if it holds no answer at all (a writer that created it, then failed
        before storing anything, leaves nothing behind); return whether it did. Closes."""
        empty = self._writer and self.count_answers() == 0 and not self.attack_log().has_calls()
        self._db.close()
        if empty:
            for suffix in ("", "-wal", "-shm", "-journal"):
                (self.run_dir / (DB_NAME + suffix)).unlink(missing_ok=True)
        self.close()
        return empty

    def close(self) -> None:
        self._db.close()
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None
        if self._writer:
            self._writer = False
            lock.release(self.run_dir)

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
        return _load(RunManifest, stored, self.run_dir, "the run")

    def attack_log(self) -> AttackLog:
        """The red-team tables: attack calls and outcomes (`flames.runs.attacks`)."""
        return AttackLog(self)

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
        """Write answers durably. An answer replaces an earlier error for the same sample, never
        an ok answer: that one stays as it is."""
        self.record_answer_rows(
            tuple(data[f] for f in ANSWER_FIELDS) for data in (a.model_dump() for a in answers)
        )

    def record_answer_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """record_answers for rows already in ANSWER_FIELDS order (bulk imports)."""
        self._upsert(
            "answers",
            (*ANSWER_FIELDS, "response_sha"),
            [(*row, text_sha(row[RESPONSE])) for row in rows],
            ("item_id", "sample"),
            "answers.status = 'error'",
        )

    def _upsert(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        key: tuple[str, ...],
        replace_when: str,
    ) -> None:
        """Insert rows in one transaction (durable once it returns); a row whose `key` is
        already stored replaces it only where `replace_when` holds of the stored row."""
        if not self._writer:
            raise FlamesError(f"{self.run_dir}: opened to read, not to write")
        if not rows:
            return
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates} WHERE {replace_when}",
                rows,
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

    def _has_verdicts(self, scorer: str) -> bool:
        query = "SELECT 1 FROM verdicts WHERE scorer = ? AND status = 'ok' LIMIT 1"
        return self._db.execute(query, (scorer,)).fetchone() is not None

    def check_scorer(self, manifest: ScorerManifest) -> ScorerManifest | None:
        """The scorer recorded under the manifest's name, if any; ManifestMismatch when its
        settings differ and it has verdicts (nothing is written). A scorer with no verdict yet
        (only failed attempts) is not held to its first settings."""
        check_scorer_name(manifest.name, manifest.kind)
        row = self._db.execute(
            "SELECT manifest FROM scorers WHERE name = ?", (manifest.name,)
        ).fetchone()
        if row is None:
            return None
        stored = _load(ScorerManifest, row[0], self.run_dir, f"scorer {manifest.name!r}")
        if stored.identity() != manifest.identity():
            if not self._has_verdicts(manifest.name):
                return None
            changes = "\n  ".join(_diff(stored.identity(), manifest.identity()))
            raise ManifestMismatch(
                f"{self.run_dir}: scorer {manifest.name!r} was used with other settings; "
                f"refusing to mix verdicts:\n  {changes}\n"
                "Pass another --scorer-name to keep both sets of verdicts."
            )
        return stored

    def register_scorer(self, manifest: ScorerManifest) -> None:
        """Record a scorer for this run, or check it matches the one recorded under its name;
        a scorer with no verdict yet takes these settings (its failed attempts are dropped)."""
        stored = self.check_scorer(manifest)
        if stored is None:
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM verdicts WHERE scorer = ?", (manifest.name,))
                self._db.execute(
                    "INSERT OR REPLACE INTO scorers VALUES (?, ?)",
                    (manifest.name, manifest.model_dump_json()),
                )
            return
        if manifest.check is not None and manifest.check != stored.check:  # the latest check
            updated = stored.model_copy(update={"check": manifest.check})
            with self._db:
                self._db.execute(
                    "UPDATE scorers SET manifest = ? WHERE name = ?",
                    (updated.model_dump_json(), manifest.name),
                )

    def forget_scorer_if_unused(self, name: str) -> None:
        """Drop a scorer that has no verdict at all (a first attempt that failed before any), so
        it leaves no trace behind."""
        with self._db:
            self._db.execute("BEGIN")
            if self._db.execute("SELECT 1 FROM verdicts WHERE scorer = ?", (name,)).fetchone():
                return
            self._db.execute("DELETE FROM scorers WHERE name = ?", (name,))

    def scorers(self) -> dict[str, ScorerManifest]:
        rows = self._db.execute("SELECT name, manifest FROM scorers ORDER BY name")
        return {
            name: _load(ScorerManifest, m, self.run_dir, f"scorer {name!r}") for name, m in rows
        }

    def record_verdicts(
        self, scorer: str, verdicts: Iterable[Verdict], relabel: bool = False
    ) -> None:
        """Write verdicts durably, each tied to the answer text it judged (`answer_sha`). A
        verdict replaces the scorer's earlier error, or its verdict on text no longer stored;
        with `relabel` (a person changing their label) it replaces any."""
        rows = []
        for v in verdicts:
            if v.answer_sha is None:
                raise ValueError(f"verdict on {v.item_id}/{v.sample} names no answer text")
            data = v.model_dump()
            data["probabilities"] = json.dumps(v.probabilities) if v.probabilities else None
            rows.append(tuple(data[f] for f in VERDICT_FIELDS))
        self.record_verdict_rows(scorer, rows, relabel)

    def record_verdict_rows(
        self, scorer: str, rows: Iterable[tuple[Any, ...]], relabel: bool = False
    ) -> None:
        """record_verdicts for rows already in VERDICT_FIELDS order, probabilities as JSON."""
        self._upsert(
            "verdicts",
            ("scorer", *VERDICT_FIELDS),
            [(scorer, *row) for row in rows],
            ("scorer", "item_id", "sample"),
            "1"
            if relabel
            else "verdicts.status = 'error' OR verdicts.answer_sha IS NOT excluded.answer_sha",
        )

    def verdicts(self, scorer: str) -> list[Verdict]:
        """`scorer`'s verdicts that count: on the answer text stored now."""
        columns = ", ".join(f"v.{f}" for f in VERDICT_FIELDS)
        rows = self._db.execute(
            f"SELECT {columns} FROM verdicts v JOIN answers a "
            f"ON a.item_id = v.item_id AND a.sample = v.sample AND {FRESH} "
            "WHERE v.scorer = ? ORDER BY v.item_id, v.sample",
            (scorer,),
        )
        verdicts = []
        for row in rows:
            data = dict(zip(VERDICT_FIELDS, row, strict=True))
            data["probabilities"] = json.loads(data["probabilities"] or "null")
            verdicts.append(Verdict(**data))
        return verdicts

    def failed_verdicts(self, scorer: str) -> int:
        """How many of `scorer`'s verdicts that count are errors."""
        query = (
            f"SELECT count(*) FROM verdicts v JOIN answers a ON a.item_id = v.item_id "
            f"AND a.sample = v.sample AND {FRESH} WHERE v.scorer = ? AND v.status = 'error'"
        )
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
            f"ON v.scorer = ? AND v.item_id = a.item_id AND v.sample = a.sample AND {FRESH} "
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
        """Successful answers that `scorer` has not judged yet (or failed on, with retry; or
        judged in another text than the one stored), with their items, in (item id, sample)
        order, read `page` answers at a time."""
        after: tuple[str, int] = ("", -1)
        columns = ", ".join(f"a.{f}" for f in ANSWER_FIELDS)
        while True:
            rows = self._db.execute(
                f"SELECT i.dimension, i.subcomponent, i.prompt, i.meta, {columns}, v.status "
                "FROM answers a JOIN items i ON i.item_id = a.item_id "
                "LEFT JOIN verdicts v "
                f"ON v.scorer = ? AND v.item_id = a.item_id AND v.sample = a.sample AND {FRESH} "
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
                f"ON v.scorer = ? AND v.item_id = a.item_id AND v.sample = a.sample AND {FRESH} "
                "WHERE a.status = 'ok' AND (v.status IS NULL OR (? AND v.status = 'error'))",
                (scorer, retry_errors),
            ).fetchone()[0]
        )
