"""What `flames score-file` costs against the least any tool could do with the same file.

The file holds N scored answers in the official scorer's output format (bench/scale.py writes
it). The baseline is a bare streamed pass: read each line, parse its JSON, insert the fields into
one SQLite table, a chunk per transaction. Then `flames score-file` runs on the same file in its
own process, as a user runs it (import, metrics with bootstrap intervals, every report file),
and so does `flames import` alone. Each is timed in this one run, so the ratio holds on any
machine; peak resident memory is read with ``wait4`` (ru_maxrss).

    python bench/score_file.py                 # 300k answers
    python bench/score_file.py --answers 30000 # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import write_file  # the scale benchmark's answers files

CHUNK = 50_000
REPEATS = 3
"""Runs of the bare pass; the fastest counts (the machine may be busy)."""


def bare_pass(path: Path, db_path: Path) -> float:
    """Seconds to stream `path` into one SQLite table: parse each line, insert its fields."""
    start = time.perf_counter()
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE answers (dimension TEXT, subcomponent TEXT, prompt TEXT, response TEXT, "
        "predicted INTEGER)"
    )
    fields = ("dimension", "subcomponent", "prompt", "response", "predicted")
    with path.open("rb") as fh:
        rows = []
        for line in fh:
            row = json.loads(line)
            rows.append(tuple(row[f] for f in fields))
            if len(rows) == CHUNK:
                db.execute("BEGIN")
                db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
                rows = []
        if rows:
            db.execute("BEGIN")
            db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
    db.close()
    return time.perf_counter() - start


def flames(*args: str | Path, cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `python -m flames ARGS` in its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flames", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120"},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    assert proc.stderr is not None
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"flames {' '.join(map(str, args))} failed:\n{proc.stderr.read()!r}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=300_000)
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="flames-score-file-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        scored = work / f"scored-{args.answers}.jsonl"
        if not scored.exists():
            write_file(scored, args.answers, 3, scored=True)
        size = scored.stat().st_size / 1e6
        print(f"{args.answers:,} scored answers, {size:.0f} MB", flush=True)
        bare = []
        for k in range(REPEATS):
            db = work / f"bare-{k}.db"
            bare.append(bare_pass(scored, db))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        baseline = min(bare)
        print(f"bare JSON-to-SQLite pass   {baseline:7.2f} s  (best of {REPEATS})", flush=True)
        for name, command in (
            ("flames import", ("import", scored, work / "imported")),
            ("flames score-file", ("score-file", scored, "--run", work / "score-file")),
        ):
            shutil.rmtree(work / "imported", ignore_errors=True)
            shutil.rmtree(work / "score-file", ignore_errors=True)
            wall, peak = flames(*command, cwd=work)
            print(
                f"{name:<26} {wall:7.2f} s  {wall / baseline:5.1f}x the bare pass, "
                f"peak {peak:.0f} MB",
                flush=True,
            )
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(this script's own peak: {own:.0f} MB)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
