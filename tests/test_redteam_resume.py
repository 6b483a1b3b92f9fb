"""Kill and resume: `flames redteam` SIGKILLed at seeded random points, then run again, ends with
the very calls and outcomes of a run never killed, having asked again only what was in flight
when it was killed (no stored call asked twice, no turn repeated)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import redteam_roles as roles
from .helpers import write_jsonl
from .test_chaos import DEADLINE

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[1]
KILLS = 3
CONCURRENCY = 2
IN_FLIGHT = 3
"""Calls one attack has in flight at most: pair's 3 streams go at once."""


def config(folder: Path, run: Path) -> Path:
    goals = write_jsonl(folder / "goals.jsonl", roles.GOALS)
    path = folder / "rt.toml"
    path.write_text(
        f"""run_dir = "{run}"
[target]
model = "tests.redteam_roles:target"
backend = "callable"
input = "messages"
[attacker]
model = "tests.redteam_roles:attacker"
backend = "callable"
[judge]
model = "tests.redteam_roles:judge"
kind = "callable"
[data]
source = "{goals}"
[attack]
strategies = ["pair", "crescendo", "rewrite"]
budget = 12
concurrency = {CONCURRENCY}
""",
        "utf-8",
    )
    return path


def start(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, roles.LOG: str(log), roles.LATENCY: "0.01"}
    command = [sys.executable, "-m", "flames", "redteam", "--config", str(config_path)]
    return subprocess.Popen(
        [*command, "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stored(run: Path, sql: str = "SELECT count(*) FROM attack_calls") -> list[tuple]:
    if not (run / "run.db").exists():
        return [(0,)]
    try:
        with sqlite3.connect(f"file:{run / 'run.db'}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the run is being created
        return [(0,)]


CALLS = (
    "SELECT goal_id, strategy, key, role, status, request, content, prompt, kind, score "
    "FROM attack_calls ORDER BY goal_id, strategy, key"
)
RESULTS = (
    "SELECT goal_id, strategy, outcome, queries, first_success, harmful_at, best_score, winner, "
    "detail FROM attacks ORDER BY goal_id, strategy"
)


def test_a_killed_red_team_run_resumes_to_the_same_calls_asking_again_only_what_was_in_flight(
    tmp_path,
):
    reference = tmp_path / "reference"
    reference.mkdir()
    ref_run, ref_log = reference / "run", reference / "calls.log"
    done = start(config(reference, ref_run), ref_log)
    assert done.wait(DEADLINE) == 0, done.stderr.read().decode()  # type: ignore[union-attr]
    expected_calls = stored(ref_run, CALLS)
    total = len(expected_calls)
    assert total == len(ref_log.read_text("utf-8").splitlines())  # one request per stored call

    killed = tmp_path / "killed"
    killed.mkdir()
    run, log = killed / "run", killed / "calls.log"
    rt = config(killed, run)
    rng = random.Random(25)
    points = [rng.randrange(1 + k * total // KILLS, (k + 1) * total // KILLS) for k in range(KILLS)]
    kills = 0
    for point in points:
        proc = start(rt, log)
        end = time.monotonic() + DEADLINE
        while proc.poll() is None and stored(run)[0][0] < point and time.monotonic() < end:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        with sqlite3.connect(run / "run.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert kills >= 2, "the run ended before it could be killed: slow the roles down"
    last = start(rt, log)
    assert last.wait(DEADLINE) == 0, last.stderr.read().decode()  # type: ignore[union-attr]

    assert stored(run, CALLS) == expected_calls  # the same calls, keys and replies
    assert stored(run, RESULTS) == stored(ref_run, RESULTS)  # the same outcomes
    asked = len(log.read_text("utf-8").splitlines())
    # Every call stored before a kill was taken from the store afterwards; only calls in flight
    # at a kill (sent, not yet stored) were asked again.
    assert total <= asked <= total + kills * CONCURRENCY * IN_FLIGHT
    requests = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    assert {role for role, _ in requests} == {"target", "attacker", "judge"}
