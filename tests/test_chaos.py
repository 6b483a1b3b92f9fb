"""Chaos: SIGKILL at random points of run creation, generate, judge, score, report and import.

After every kill the run is checked (``PRAGMA integrity_check``, nothing stored is lost or
changed), then the same command resumes it; the loopback server's request log shows that nothing
already received is asked again, and errors are never scored. Kills are seeded and bounded in
count; every wait is bounded in time.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import MockAPI, start_mock
from .helpers import run_cli, write_jsonl

pytestmark = pytest.mark.chaos

KILLS = 3
"""Kills per command."""
DEADLINE = 90.0
"""Seconds any one command may take before the test gives up on it."""


def flames(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "flames", *map(str, args)]


def kill_when(cmd: list[str], ready: Callable[[], bool]) -> bool:
    """Start `cmd` and SIGKILL it once `ready()`; True if it was still running then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + DEADLINE
    while proc.poll() is None and not ready() and time.monotonic() < end:
        time.sleep(0.002)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return running


def after(seconds: float) -> Callable[[], bool]:
    start = time.monotonic()
    return lambda: time.monotonic() - start >= seconds


def query(run_dir: Path, sql: str) -> list[tuple]:
    """Rows of a read-only query; [] while the run does not exist."""
    if not (run_dir / "run.db").exists():
        return []
    try:
        with sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the tables are not there yet
        return []


def integrity_ok(run_dir: Path) -> None:
    if (run_dir / "run.db").exists():
        with sqlite3.connect(run_dir / "run.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            manifests = "SELECT count(*) FROM meta WHERE key = 'manifest'"
            assert db.execute(manifests).fetchone()[0] == 1


ANSWERS = "SELECT item_id, sample, status, response, created_at FROM answers"
VERDICTS = "SELECT scorer, item_id, sample, status, score, raw, created_at FROM verdicts"


def still_there(before: list[tuple], now: list[tuple]) -> None:
    """Every row stored before is still stored, unchanged (not lost, not asked again)."""
    assert set(before) <= set(now)


def asked_again(api: MockAPI, since: int, stored: list[str]) -> list[str]:
    """Requests logged after `since` that quote a prompt whose result was already stored."""
    return [r["prompt"] for r in api.requests()[since:] if any(s in r["prompt"] for s in stored)]


ROWS = 60
BAD = "q007"
"""The prompt whose generation always fails: it must never be judged or scored."""


def prompt_rows(n: int = ROWS, suffix: str = "") -> list[dict]:
    rows = []
    for i in range(n):
        prompt = f"问题{i:03d}{suffix}" if f"q{i:03d}" != BAD else "坏问题[[fail:500x999]]"
        rows.append({"id": f"q{i:03d}", "dimension": "Safety", "subcomponent": "Mental harm"})
        rows[-1]["prompt"] = prompt
    return rows


@pytest.fixture
def api(tmp_path):
    server = start_mock(tmp_path, latency=0.03)
    yield server
    server.proc.kill()
    server.proc.wait()


def generate_cmd(run_dir: Path, api: MockAPI, data: Path) -> list[str]:
    return flames(
        "generate", run_dir, "--model", "m", "--base-url", api.base_url, "--data", data,
        "--concurrency", "4", "--max-attempts", "2", "--max-errors", "50", "--no-progress",
    )  # fmt: skip


def kill_and_check(
    cmd: list[str],
    run_dir: Path,
    rows_sql: str,
    target: int,
    api: MockAPI | None = None,
    asked: Callable[[tuple], str] | None = None,
) -> bool:
    """Kill `cmd` once `target` rows are stored; check nothing stored was lost or asked again."""
    before = query(run_dir, rows_sql)
    since = len(api.requests()) if api else 0
    running = kill_when(cmd, lambda: len(query(run_dir, rows_sql)) >= target)
    integrity_ok(run_dir)
    still_there(before, query(run_dir, rows_sql))
    if api and asked:
        stored = [asked(row) for row in before]
        again = [
            r["prompt"] for r in api.requests()[since:] if any(s in r["prompt"] for s in stored)
        ]
        assert again == []
    return running


def test_kills_during_run_creation_and_generate(tmp_path, api):
    rng = random.Random(1301)
    rows = prompt_rows()
    prompts = {r["id"]: r["prompt"] for r in rows}
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    run_dir = tmp_path / "run"
    cmd = generate_cmd(run_dir, api, data)

    # While the run is being created: kill the moment its temporary database appears.
    assert kill_when(cmd, lambda: any(run_dir.glob(".run.db*")) or (run_dir / "run.db").exists())
    integrity_ok(run_dir)  # no run, or a complete one
    kills = 0
    for _ in range(KILLS):
        low = len(query(run_dir, ANSWERS)) + 1
        target = rng.randint(low, max(low, ROWS - 10))
        kills += kill_and_check(cmd, run_dir, ANSWERS, target, api, lambda r: prompts[r[0]])
    assert kills == KILLS  # every kill found the command running, part-way through
    kill_and_check(cmd, run_dir, ANSWERS, ROWS + 1, api, lambda r: prompts[r[0]])  # to the end
    stored = query(run_dir, ANSWERS)
    assert len(stored) == ROWS and [r[0] for r in stored if r[2] == "error"] == [BAD]
    for item_id, _, status, response, _ in stored:  # 0 wrong answers
        assert status == "error" or json.loads(response)["echo"] == prompts[item_id]


def test_kills_during_judge(tmp_path, api):
    rng = random.Random(1302)
    # Generation succeeds (after one retry for q011); the judge fails q011 for good.
    rows = prompt_rows(suffix='[[verdict:{"score": 3}]]')
    rows[11]["prompt"] = "问题011[[fail:500x1]]"
    prompts = {r["id"]: r["prompt"] for r in rows}
    run_dir = tmp_path / "run"
    made = subprocess.run(
        generate_cmd(run_dir, api, write_jsonl(tmp_path / "d.jsonl", rows)), capture_output=True
    )
    assert made.returncode == 5  # q007 failed, as planned
    cmd = flames(
        "judge", run_dir, "--model", "j", "--base-url", api.base_url, "--concurrency", "4",
        "--max-attempts", "1", "--skip-judge-check", "--no-progress",
    )  # fmt: skip
    kills = 0
    for _ in range(KILLS):
        low = len(query(run_dir, VERDICTS)) + 1
        target = rng.randint(low, max(low, ROWS - 10))
        # the judge's prompt quotes the item's prompt: find it in the request log
        kills += kill_and_check(cmd, run_dir, VERDICTS, target, api, lambda r: prompts[r[1]])
    assert kills == KILLS
    kill_and_check(cmd, run_dir, VERDICTS, ROWS + 1, api, lambda r: prompts[r[1]])
    verdicts = query(run_dir, VERDICTS)
    assert len(verdicts) == ROWS - 1 and BAD not in {v[1] for v in verdicts}  # 0 errors scored
    assert [v[1] for v in verdicts if v[3] == "error"] == ["q011"]
    assert all(v[4] == 3 for v in verdicts if v[3] == "ok")


def test_kills_during_official_scoring(tmp_path, api):
    pytest.importorskip("torch")
    from flames.scoring.scorer.synthetic import build_checkpoint

    rng = random.Random(1303)
    scorer = build_checkpoint(tmp_path / "scorer")
    run_dir = tmp_path / "run"
    n = 20  # loading torch dominates: fewer answers, batches of two
    made = subprocess.run(
        generate_cmd(run_dir, api, write_jsonl(tmp_path / "d.jsonl", prompt_rows(n))),
        capture_output=True,
    )
    assert made.returncode == 5
    cmd = flames("score", run_dir, "--scorer-model", scorer, "--max-batch", "2", "--no-progress")
    low = len(query(run_dir, VERDICTS)) + 1  # one kill: each start loads torch and the model
    target = rng.randint(low, max(low, n - 4))
    assert kill_and_check(cmd, run_dir, VERDICTS, target)  # stored verdicts unchanged
    kill_and_check(cmd, run_dir, VERDICTS, n + 1)
    verdicts = query(run_dir, VERDICTS)
    assert len(verdicts) == n - 1 and BAD not in {v[1] for v in verdicts}  # 0 errors scored
    assert all(v[3] == "ok" for v in verdicts)


def scored_rows(n: int) -> list[dict]:
    return [
        {"id": f"s{i}", "dimension": "Safety", "subcomponent": "Mental harm"}
        | {"prompt": f"问题{i}", "response": f"回答{i}", "predicted": 1 + i % 3}
        for i in range(n)
    ]


def test_kills_during_report(tmp_path):
    rng = random.Random(1304)
    run_dir = tmp_path / "run"
    assert (
        run_cli("import", write_jsonl(tmp_path / "a.jsonl", scored_rows(300)), run_dir).returncode
        == 0
    )
    args = ("report", run_dir, "--bootstrap", "300")
    start = time.monotonic()
    ref = run_cli(*args, "--out", tmp_path / "ref")
    took = time.monotonic() - start
    assert ref.returncode == 0, ref.stderr
    expected = {p.name: p.read_bytes() for p in (tmp_path / "ref").iterdir()}
    assert {"report.json", "report.csv", "report.md", "report.html", "scored.jsonl"} <= set(
        expected
    )
    out = run_dir / "report"
    for _ in range(KILLS):
        kill_when(flames(*args), after(rng.uniform(0.3, took)))
        for path in out.glob("*") if out.exists() else []:
            if not path.name.startswith("."):  # a temporary name: not a report file yet
                assert path.read_bytes() == expected[path.name], path  # absent or complete
    assert run_cli(*args).returncode == 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")} == expected


def test_kills_during_import(tmp_path):
    rng = random.Random(1305)
    rows = scored_rows(8000)
    file = write_jsonl(tmp_path / "big.jsonl", rows)
    start = time.monotonic()
    assert run_cli("import", file, tmp_path / "ref").returncode == 0
    took = time.monotonic() - start
    run_dir = tmp_path / "run"
    for _ in range(KILLS):
        kill_when(flames("import", file, run_dir), after(rng.uniform(0.3, took)))
        integrity_ok(run_dir)
        answers = query(run_dir, "SELECT count(*) FROM answers")
        verdicts = query(run_dir, "SELECT count(*) FROM verdicts")
        assert answers in ([], [(8000,)]) and verdicts == answers  # no run, or all of it
    again = run_cli("import", file, run_dir)
    assert again.returncode == 0, again.stderr
    assert query(run_dir, "SELECT count(*) FROM verdicts WHERE status = 'ok'") == [(8000,)]
