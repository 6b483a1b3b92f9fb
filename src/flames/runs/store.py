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
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flames._util.outputs import PARTIAL, atomic_path, remove_stale_partials
from flames.data.dataset import Item
from flames.errors import (
    DataError,
    FlamesError,
    ManifestMismatch,
    NewerRun,
    RunLocked,
    known_failure,
)
from flames.runs import lock
from flames.runs.attacks import TABLES as ATTACK_TABLES, AttackLog
from flames.runs.records import (
    BATCH_STATES,
    UNFINISHED_BATCH,
    Answer,
    BatchJob,
    RunManifest,
    ScorerManifest,
    Verdict,
    check_scorer_name,
    now,
)

DB_NAME = "run.db"

BATCH_TABLES = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    job TEXT PRIMARY KEY, stage TEXT NOT NULL, api TEXT NOT NULL, base_url TEXT NOT NULL,
    api_key_env TEXT NOT NULL, state TEXT NOT NULL, requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL, input_file_id TEXT, batch_id TEXT, not_ours TEXT NOT NULL,
    submit_started_at REAL, status TEXT, counts TEXT, output_file_id TEXT, error_file_id TEXT,
    price TEXT, note TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    custom_id TEXT PRIMARY KEY, job TEXT NOT NULL REFERENCES batch_jobs(job),
    item_id TEXT NOT NULL, sample INTEGER NOT NULL, body TEXT NOT NULL, outcome TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER
);
CREATE INDEX IF NOT EXISTS batch_requests_by_job ON batch_requests(job);
CREATE INDEX IF NOT EXISTS batch_requests_by_key ON batch_requests(item_id, sample);
"""
"""A run's provider batch jobs and their requests (`flames.clients.batch_jobs`), format 4."""

TABLES = """
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
"""The items, answers, scorers and verdicts of a run (with their columns of format 2)."""
SCHEMA = TABLES + ATTACK_TABLES + BATCH_TABLES
"""Every table of the current format."""

SCHEMA_VERSION = 4
"""The store's format. 1: before `answer_sha` (verdicts tied to the answer text they judged) and
`response_sha`; read as it is (every verdict counts for its answer's text), upgraded by a writer.
2: before the red-team tables (`flames.runs.attacks`); read as a run without attacks.
3: before the batch tables (`BATCH_TABLES`); read as a run without batch jobs.
A writer upgrades an older run one format at a time (`RunStore._upgrade`)."""
UPGRADES = {
    2: "each verdict is now tied to the answer text it judged",
    3: "it can hold red-team attacks",
    4: "it can hold provider batch jobs",
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
CLAIM_TIMEOUT_MS = 3_000
"""How long a writer waits, when it opens a run, for another program's write to end."""
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
BATCH_JOB_FIELDS = tuple(BatchJob.model_fields)
VERDICT_FIELDS = tuple(Verdict.model_fields)
RESPONSE = ANSWER_FIELDS.index("response")


ANSWER_KEPT = "answers.status = 'error'"
"""When a stored answer is replaced by a new one for its sample: only if it is an error."""
VERDICT_KEPT = "verdicts.status = 'error' OR verdicts.answer_sha IS NOT excluded.answer_sha"
"""When a stored verdict is replaced: an error, or one on text no longer stored."""


def _upsert_statement(
    table: str,
    columns: tuple[str, ...],
    key: tuple[str, ...],
    replace_when: str,
    from_built: bool = False,
) -> str:
    """INSERT of `columns` into `table` (from parameters, or `from_built`: every row of the
    same table in the database attached as `built`); a row whose `key` is stored replaces it
    only where `replace_when` holds of the stored row."""
    names = ", ".join(columns)
    source = (
        f"SELECT {names} FROM built.{table} WHERE true"  # 'WHERE true': SQLite's upsert syntax
        if from_built
        else f"VALUES ({', '.join('?' for _ in columns)})"
    )
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({names}) {source} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates} WHERE {replace_when}"
    )


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


def _drop_empty_database(run_dir: Path) -> None:
    """Remove a run.db that is an empty file, with no write-ahead log to hold its pages (a
    creation cut before its first write; SQLite makes one wherever a connection opens a
    missing path): it holds no run to keep. Called by a writer holding the run's lock."""
    path = run_dir / DB_NAME
    wal = path.with_name(path.name + "-wal")
    try:
        empty = path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0)
    except OSError:
        return
    if empty:
        for leftover in (path, wal, path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)


@contextmanager
def plain_failures(run_dir: Path) -> Iterator[None]:
    """SQLite's errors for a damaged, locked or unwritable run.db, as the one-line FlamesError
    naming the file (`flames.errors.known_failure`)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        known = known_failure(exc, run_dir)
        if known is None:
            raise
        raise known from None


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
        with plain_failures(run_dir):
            return cls._open(run_dir)

    @classmethod
    def _open(cls, run_dir: Path) -> RunStore:
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
            with plain_failures(run_dir):
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
        """A writer's checks and tidying: no other program writing, the format (upgraded if
        older), the manifest, and temporary files a killed writer left."""
        with plain_failures(self.run_dir):
            self._claim()
            version = self._check_format()
        if version < SCHEMA_VERSION:
            with self._db:
                self._db.execute("BEGIN")
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    self._upgrade(step)
                self._set_format()
            self.upgraded_from = version
        remove_stale_partials(self.run_dir)
        for stale in self.run_dir.glob(f".{DB_NAME}{PARTIAL}*"):  # a creation that was cut
            stale.unlink(missing_ok=True)

    def _claim(self) -> None:
        """RunLocked at once when another program (an SQLite browser, a backup, ...) holds a
        write transaction on run.db: flames' own writers are kept out by the run's lock, so
        waiting the whole busy timeout for it would only delay the same failure."""
        self._db.execute(f"PRAGMA busy_timeout={CLAIM_TIMEOUT_MS}")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                raise
            raise RunLocked(
                f"{self.run_dir / DB_NAME}: another program holds it locked for writing "
                "(not flames: an SQLite browser, a backup, ...). Close it, then run the same "
                "command again."
            ) from None
        finally:
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _upgrade(self, to: int) -> None:
        """Bring a run of format `to` - 1 to format `to` (`UPGRADES` says what each brings),
        inside the caller's transaction."""
        if to == 2:
            self._create_tables(TABLES)  # format 1 may have no meta table
            for table, (column, fill) in ADDED_IN_2.items():
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                    self._db.execute(fill)
        elif to == 3:
            self._create_tables(ATTACK_TABLES)
        elif to == 4:
            self._create_tables(BATCH_TABLES)

    def _create_tables(self, schema: str = SCHEMA) -> None:
        """The tables and indexes of `schema` that are missing (inside the caller's transaction:
        unlike executescript, this never commits it)."""
        for statement in schema.split(";"):
            if statement.strip():
                self._db.execute(statement)

    def _set_format(self) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def _check_format(self) -> int:
        """The store's format; NewerRun if this flames cannot read it."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if not tables:  # an empty file: never a run (a writer replaces it, `_empty_database`)
            raise DataError(
                "holds no run (an empty database). Remove it, or run the command that writes "
                "the run again.",
                str(self.run_dir / DB_NAME),
            )
        if "meta" not in tables:
            return 1
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
            with plain_failures(run_dir):
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
        _drop_empty_database(run_dir)
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

    @classmethod
    def build(
        cls,
        run_dir: Path | str,
        fill: Callable[[RunStore], RunManifest],
        command: str = "write",
        wait: bool = False,
    ) -> RunStore:
        """Create a run whose manifest is known only once its contents are written, in one pass.

        `fill` writes the items (`insert_items`), answers and verdicts into a new database in a
        temporary file beside run.db, and returns the manifest they make. A new run is then
        renamed into place; an existing one must have that manifest (as `create_or_resume`
        checks it) and takes from it what it lacks (`_merge`). If `fill` raises (a bad line),
        the temporary file is dropped and nothing is written. The run's lock is held until the
        store is closed.
        """
        run_dir = Path(run_dir)
        lock.acquire(run_dir, command, wait)
        try:
            return cls._build(run_dir, fill)
        except BaseException:
            lock.release(run_dir)
            raise

    @classmethod
    def _build(cls, run_dir: Path, fill: Callable[[RunStore], RunManifest]) -> RunStore:
        for stale in run_dir.glob(f".{DB_NAME}{PARTIAL}*"):  # left by a creation that was cut
            stale.unlink(missing_ok=True)
        _drop_empty_database(run_dir)
        if not cls.exists(run_dir):
            with atomic_path(run_dir / DB_NAME) as tmp:
                cls._fill_new(run_dir, tmp, fill)
            return cls(run_dir, cls._connect(run_dir / DB_NAME), writer=True)
        store = cls(run_dir, cls._connect(run_dir / DB_NAME), writer=True)
        try:
            store._prepare()  # (which removes temporary files: before this one is made)
            fd, name = tempfile.mkstemp(dir=run_dir, prefix=f".{DB_NAME}{PARTIAL}{os.getpid()}-")
            os.close(fd)
            tmp = Path(name)
            try:
                store._merge(tmp, cls._fill_new(run_dir, tmp, fill))
            finally:
                tmp.unlink(missing_ok=True)
        except BaseException:
            store._db.close()
            raise
        return store

    @classmethod
    def _fill_new(
        cls, run_dir: Path, path: Path, fill: Callable[[RunStore], RunManifest]
    ) -> RunManifest:
        """A new run's database at `path`, written by `fill`; the manifest it returned."""
        building = cls(run_dir, cls._connect_building(path), writer=True)
        try:
            with building._db:
                building._db.execute("BEGIN")
                building._create_tables()
                building._set_format()
            manifest = fill(building)
            building._db.execute(
                "INSERT INTO meta VALUES ('manifest', ?)", (manifest.model_dump_json(),)
            )
        finally:
            building._db.close()
        return manifest

    @staticmethod
    def _connect_building(path: Path) -> sqlite3.Connection:
        """A connection to a run being built in a temporary file: nothing there needs to survive
        a crash (the file is dropped, or synced before it is renamed into place), so commits are
        not synced, and a large page cache keeps inserts at random keys cheap."""
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA journal_mode=MEMORY")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-32768")  # KiB: 32 MiB at most
        db.create_function("flames_sha", 1, text_sha, deterministic=True)
        return db

    def _merge(self, built: Path, manifest: RunManifest) -> None:
        """Take into this run what the run `built` holds and it lacks, as record_answers and
        record_verdicts would: a stored ok answer, or a verdict on its text, stays as it is."""
        self.check_manifest(manifest)
        self._db.execute("ATTACH DATABASE ? AS built", (str(built),))
        try:
            scorers = self._db.execute("SELECT name, manifest FROM built.scorers").fetchall()
            for name, text in scorers:
                self.check_scorer(_load(ScorerManifest, text, self.run_dir, f"scorer {name!r}"))
            if self._stored_manifest() is None or self.manifest.identity() != manifest.identity():
                self._start_afresh(manifest, [])
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.execute("INSERT INTO items SELECT * FROM built.items")
            for _, text in scorers:
                self.register_scorer(ScorerManifest.model_validate_json(text))
            answers = (*ANSWER_FIELDS, "response_sha")
            verdicts = ("scorer", *VERDICT_FIELDS)
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute(
                    _upsert_statement("answers", answers, ("item_id", "sample"), ANSWER_KEPT, True)
                )
                self._db.execute(
                    _upsert_statement(
                        "verdicts", verdicts, ("scorer", "item_id", "sample"), VERDICT_KEPT, True
                    )
                )
        finally:
            self._db.execute("DETACH DATABASE built")

    def insert_items(self, rows: Iterable[tuple[int, str, str, str, str, str]]) -> None:
        """Write items as (position, id, dimension, subcomponent, prompt, meta as JSON) rows, in
        one transaction (a run being built: `build`)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _has_answers(self) -> bool:
        """Whether the run holds an answer (failed attempts do not count) or a verdict, or has
        sent a batch job (its answers are on their way, under these settings)."""
        return self._batch_sent() or any(
            self._db.execute(query).fetchone() is not None
            for query in (
                "SELECT 1 FROM answers WHERE status = 'ok' LIMIT 1",
                "SELECT 1 FROM verdicts LIMIT 1",
                "SELECT 1 FROM attack_calls WHERE status = 'ok' LIMIT 1",
            )
        )

    def _batch_sent(self, stage: str | None = None) -> bool:
        """Whether a batch job (of `stage`) may be at a provider and not collected yet: its
        results must still be collected under the settings it was sent with."""
        if not self._has_batch_tables():
            return False
        row = self._db.execute(
            "SELECT 1 FROM batch_jobs WHERE (? IS NULL OR stage = ?) "
            "AND state IN ('submitting', 'submitted') LIMIT 1",
            (stage, stage),
        ).fetchone()
        return row is not None

    def _start_afresh(self, manifest: RunManifest, items: Iterable[Item]) -> None:
        """Replace a run that holds no answer (nothing but failed attempts, made under other
        settings) with a new one under `manifest`."""
        with self._db:
            self._db.execute("BEGIN")
            self._create_tables()
            # Batch jobs not sent (only those can be here) would send the old settings' requests.
            tables = ("batch_requests", "batch_jobs", "attacks", "attack_calls")
            for table in (*tables, "verdicts", "scorers", "answers", "items"):
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
        empty = (
            self._writer
            and self.count_answers() == 0
            and not self.attack_log().has_calls()
            and not self._batch_sent()
        )
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

    def record_answer_rows(self, rows: Iterable[tuple[Any, ...]], with_sha: bool = False) -> None:
        """record_answers for rows already in ANSWER_FIELDS order (bulk imports); with
        `with_sha`, each row ends with its response's `text_sha` already."""
        self._upsert(
            "answers",
            (*ANSWER_FIELDS, "response_sha"),
            list(rows) if with_sha else [(*row, text_sha(row[RESPONSE])) for row in rows],
            ("item_id", "sample"),
            ANSWER_KEPT,
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
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(_upsert_statement(table, columns, key, replace_when), rows)

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
        """Whether `scorer` has a verdict, or a batch job sent for verdicts."""
        query = "SELECT 1 FROM verdicts WHERE scorer = ? AND status = 'ok' LIMIT 1"
        found = self._db.execute(query, (scorer,)).fetchone() is not None
        return found or self._batch_sent(scorer)

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
                if self._has_batch_tables():  # jobs never sent would send the old settings
                    for statement in (
                        "DELETE FROM batch_requests WHERE job IN "
                        "(SELECT job FROM batch_jobs WHERE stage = ?)",
                        "DELETE FROM batch_jobs WHERE stage = ?",
                    ):
                        self._db.execute(statement, (manifest.name,))
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
            if self._batch_sent(name):  # its verdicts are on their way
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
            "1" if relabel else VERDICT_KEPT,
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

    # -- batch jobs ----------------------------------------------------------------------------

    def _has_batch_tables(self) -> bool:
        """False for a run of store format 2 or older, opened to read: it has no batch job."""
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'batch_jobs'"
        ).fetchone()
        return row is not None

    def batch_jobs(self, stage: str | None = None, unfinished: bool = False) -> list[BatchJob]:
        """The run's batch jobs (of `stage`; only those not collected or cancelled, with
        `unfinished`), oldest first."""
        if not self._has_batch_tables():
            return []
        states = UNFINISHED_BATCH if unfinished else BATCH_STATES
        marks = ", ".join("?" for _ in states)
        rows = self._db.execute(
            f"SELECT {', '.join(BATCH_JOB_FIELDS)} FROM batch_jobs WHERE (? IS NULL OR stage = ?) "
            f"AND state IN ({marks}) ORDER BY created_at, rowid",
            (stage, stage, *states),
        ).fetchall()
        jobs = []
        for row in rows:
            data = dict(zip(BATCH_JOB_FIELDS, row, strict=True))
            for name in ("not_ours", "counts", "price"):
                data[name] = json.loads(data[name]) if data[name] else None
            jobs.append(BatchJob(**{k: v for k, v in data.items() if v is not None}))
        return jobs

    def add_batch_job(self, job: BatchJob) -> None:
        """Record a new job (state 'planning': its requests are added next)."""
        self.update_batch_job(job, insert=True)

    def update_batch_job(self, job: BatchJob, insert: bool = False) -> None:
        """Write a job's row as it is now, durably, before anything it says is acted on."""
        if not self._writer:
            raise FlamesError(f"{self.run_dir}: opened to read, not to write")
        data = job.model_dump()
        data["updated_at"] = now()
        for name in ("not_ours", "counts", "price"):
            data[name] = None if data[name] is None else json.dumps(data[name])
        values = tuple(data[f] for f in BATCH_JOB_FIELDS)
        with self._db:
            self._db.execute("BEGIN")
            if insert:
                marks = ", ".join("?" for _ in BATCH_JOB_FIELDS)
                self._db.execute(
                    f"INSERT INTO batch_jobs ({', '.join(BATCH_JOB_FIELDS)}) VALUES ({marks})",
                    values,
                )
            else:
                updates = ", ".join(f"{f} = ?" for f in BATCH_JOB_FIELDS[1:])
                self._db.execute(
                    f"UPDATE batch_jobs SET {updates} WHERE job = ?", (*values[1:], job.job)
                )

    def add_batch_requests(self, job: str, rows: Iterable[tuple[str, str, int, str]]) -> None:
        """A planned job's requests, as (custom_id, item_id, sample, body as JSON), written in
        one transaction."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO batch_requests (custom_id, job, item_id, sample, body) "
                "VALUES (?, ?, ?, ?, ?)",
                ((cid, job, item_id, sample, body) for cid, item_id, sample, body in rows),
            )

    def drop_batch_job(self, job: str) -> None:
        """Forget a job that never reached the provider (its planning was cut)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM batch_requests WHERE job = ?", (job,))
            self._db.execute("DELETE FROM batch_jobs WHERE job = ?", (job,))

    def batch_requests(
        self, job: str, unsettled: bool = False
    ) -> Iterator[tuple[str, str, int, str, str | None]]:
        """A job's requests as (custom_id, item_id, sample, body, outcome), in the order they
        were planned (only those without an outcome yet, with `unsettled`), a page at a time."""
        after = -1
        while True:
            rows = self._db.execute(
                "SELECT rowid, custom_id, item_id, sample, body, outcome FROM batch_requests "
                "WHERE job = ? AND rowid > ? AND (outcome IS NULL OR NOT ?) ORDER BY rowid LIMIT ?",
                (job, after, unsettled, PAGE),
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            for row in rows:
                yield row[1:]

    def settle_batch_requests(
        self, rows: Iterable[tuple[str, int | None, int | None, str]]
    ) -> None:
        """Record requests' outcomes as (outcome, prompt tokens, completion tokens, custom_id):
        'ok', 'error', or 'retry' (a judge's answer it asks again)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE batch_requests SET outcome = ?, prompt_tokens = ?, completion_tokens = ? "
                "WHERE custom_id = ?",
                rows,
            )

    def batch_keys_in_flight(self, stage: str) -> set[tuple[str, int]]:
        """(item_id, sample) of `stage`'s requests in jobs not yet collected: never sent again."""
        if not self._has_batch_tables():
            return set()
        marks = ", ".join("?" for _ in UNFINISHED_BATCH)
        rows = self._db.execute(
            "SELECT r.item_id, r.sample FROM batch_requests r JOIN batch_jobs j USING (job) "
            f"WHERE j.stage = ? AND j.state IN ({marks}) AND r.outcome IS NULL",
            (stage, *UNFINISHED_BATCH),
        )
        return {(item_id, sample) for item_id, sample in rows}

    def batch_history(self, stage: str, item_id: str, sample: int) -> list[tuple[str, str]]:
        """(body, outcome) of `stage`'s settled requests for one answer, oldest first."""
        if not self._has_batch_tables():
            return []
        return self._db.execute(
            "SELECT r.body, r.outcome FROM batch_requests r JOIN batch_jobs j USING (job) "
            "WHERE j.stage = ? AND r.item_id = ? AND r.sample = ? AND r.outcome IS NOT NULL "
            "ORDER BY r.rowid",
            (stage, item_id, sample),
        ).fetchall()

    def batch_tallies(self) -> dict[str, dict[str, int]]:
        """Per job: its requests by outcome ('ok', 'error', 'retry', 'pending') and their
        tokens ('prompt_tokens', 'completion_tokens')."""
        if not self._has_batch_tables():
            return {}
        tallies: dict[str, dict[str, int]] = {}
        rows = self._db.execute(
            "SELECT job, coalesce(outcome, 'pending'), count(*), "
            "coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
            "FROM batch_requests GROUP BY job, outcome"
        )
        for job, outcome, n, p_tok, c_tok in rows:
            tally = tallies.setdefault(job, {"prompt_tokens": 0, "completion_tokens": 0})
            tally[outcome] = n
            tally["prompt_tokens"] += p_tok
            tally["completion_tokens"] += c_tok
        return tallies

    def batch_request_rows(
        self, custom_ids: Iterable[str]
    ) -> dict[str, tuple[str, str, int, str, str | None]]:
        """custom_id -> (job, item_id, sample, body, outcome) for the given requests."""
        query = (
            "SELECT custom_id, job, item_id, sample, body, outcome FROM batch_requests "
            "WHERE custom_id IN ({marks})"
        )
        return {row[0]: row[1:] for row in self._rows_for(query, list(custom_ids))}

    def _rows_for(self, query: str, keys: list[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of `query`, whose `{marks}` is an IN list, for all `keys`: asked 500 at a
        time, within SQLite's limit on parameters."""
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            yield from self._db.execute(query.format(marks=", ".join("?" for _ in part)), part)

    def item_positions(self, item_ids: Iterable[str]) -> dict[str, int]:
        """item_id -> its position in the run's dataset."""
        query = "SELECT item_id, position FROM items WHERE item_id IN ({marks})"
        return dict(self._rows_for(query, list(set(item_ids))))

    @property
    def run_tag(self) -> str:
        """Eight hex digits naming this run (from its manifest as first stored), in the
        custom_id of each of its batch requests."""
        return (text_sha(self._stored_manifest() or "") or "")[:8]

    def batch_retries(self, stage: str) -> dict[tuple[str, int], list[str]]:
        """(item_id, sample) -> the outcomes of its latest run of 'retry...' settlements in
        `stage`, for the answers whose last settled request is one (a judge asks them again)."""
        if not self._has_batch_tables():
            return {}
        rows = self._db.execute(
            "SELECT r.item_id, r.sample, r.outcome FROM batch_requests r JOIN batch_jobs j "
            "USING (job) WHERE j.stage = ? AND r.outcome IS NOT NULL ORDER BY r.rowid",
            (stage,),
        )
        runs: dict[tuple[str, int], list[str]] = {}
        for item_id, sample, outcome in rows:
            key = (item_id, sample)
            if outcome.startswith("retry"):
                runs.setdefault(key, []).append(outcome)
            else:
                runs.pop(key, None)
        return runs

    def item_dimensions(self, item_ids: Iterable[str]) -> dict[str, str]:
        """item_id -> its dimension."""
        query = "SELECT item_id, dimension FROM items WHERE item_id IN ({marks})"
        return dict(self._rows_for(query, list(set(item_ids))))

    def failed_verdict_keys(self, scorer: str) -> set[tuple[str, int]]:
        """(item_id, sample) of `scorer`'s verdicts that count and are errors."""
        rows = self._db.execute(
            f"SELECT v.item_id, v.sample FROM verdicts v JOIN answers a ON a.item_id = v.item_id "
            f"AND a.sample = v.sample AND {FRESH} WHERE v.scorer = ? AND v.status = 'error'",
            (scorer,),
        )
        return {(item_id, sample) for item_id, sample in rows}
