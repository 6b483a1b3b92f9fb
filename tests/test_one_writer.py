"""One writer per run: racing processes, dead writers, writes that never replace what counts,
verdicts tied to the answer text they judged, and store formats old and new."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from flames.errors import NewerRun, RunLocked
from flames.runs import lock
from flames.runs.records import (
    Answer,
    DatasetInfo,
    GeneratorInfo,
    RunManifest,
    ScorerManifest,
    Verdict,
)
from flames.runs.store import SCHEMA_VERSION, RunStore, text_sha

from .conftest import start_mock
from .helpers import run_cli, tied, write_jsonl

RACES = 6
"""Times each race is run (each is a fresh pair of real processes)."""


def prompts(tmp_path: Path, n: int) -> Path:
    rows = [
        {"dimension": "Safety", "subcomponent": "Mental harm", "prompt": f"第{i}个问题"}
        for i in range(n)
    ]
    return write_jsonl(tmp_path / "prompts.jsonl", rows)


def flames(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flames", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def asked(api) -> Counter[str]:
    """How many times each prompt reached the server."""
    return Counter(r["prompt"] for r in api.requests())


@pytest.fixture
def slow_api(tmp_path):
    api = start_mock(tmp_path, 0.02)
    yield api
    api.proc.kill()
    api.proc.wait()


def test_two_generates_racing_on_a_new_run_ask_every_prompt_once(tmp_path, slow_api):
    data = prompts(tmp_path, 30)
    for race in range(RACES):
        run_dir = tmp_path / f"race{race}"
        before = len(slow_api.requests())
        generate = ("generate", run_dir, "--model", "m", "--base-url", slow_api.base_url)
        both = [flames(*generate, "--data", data, "--no-progress") for _ in range(2)]
        outcomes = [(p.wait(60), p.stderr.read()) for p in both]
        codes = sorted(code for code, _ in outcomes)
        assert codes in ([0, 0], [0, 4]), outcomes
        refused = [err for code, err in outcomes if code == 4]
        for err in refused:  # one line naming who holds the run
            assert "is being written by process" in err and "--wait" in err
            assert "Traceback" not in err and err.count("error:") == 1
        new = slow_api.requests()[before:]
        assert len(new) == 30 and len({r["prompt"] for r in new}) == 30  # each asked once
        with RunStore.open(run_dir) as store:
            assert store.count_answers("ok") == 30


def test_a_waiting_writer_resumes_after_the_first_and_asks_nothing_twice(tmp_path, slow_api):
    data = prompts(tmp_path, 40)
    run_dir = tmp_path / "run"
    generate = ("generate", run_dir, "--model", "m", "--base-url", slow_api.base_url)
    first = flames(*generate, "--data", data, "--no-progress")
    while not (run_dir / "run.db").exists():  # the first holds the run
        time.sleep(0.02)
    second = flames(*generate, "--data", data, "--no-progress", "--wait")
    assert first.wait(60) == 0, first.stderr.read()
    assert second.wait(60) == 0, second.stderr.read()
    assert "generated 0 answers" in second.stdout.read()
    assert set(asked(slow_api).values()) == {1} and len(asked(slow_api)) == 40


def test_two_judges_at_once_send_each_request_once(tmp_path):
    rows = [
        {"dimension": "Safety", "subcomponent": "Mental harm"}
        | {"prompt": f"问题{i}", "response": f'回答{i}[[verdict:{{"score": 3}}]]'}
        for i in range(40)
    ]
    api = start_mock(tmp_path, 0.02)
    try:
        for race in range(RACES):
            run_dir = tmp_path / f"run{race}"
            assert (
                run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), run_dir).returncode == 0
            )
            before = len(api.requests())
            judge = ("judge", run_dir, "--model", "j", "--base-url", api.base_url)
            both = [flames(*judge, "--skip-judge-check", "--no-progress") for _ in range(2)]
            codes = sorted(p.wait(60) for p in both)
            assert codes in ([0, 0], [0, 4])
            assert len(api.requests()) - before == 40
            with RunStore.open(run_dir) as store:
                assert len(store.verdicts("judge:j")) == 40
    finally:
        api.proc.kill()
        api.proc.wait()


def test_a_killed_writers_lock_is_taken_over(tmp_path, slow_api):
    data = prompts(tmp_path, 200)
    run_dir = tmp_path / "run"
    generate = ("generate", run_dir, "--model", "m", "--base-url", slow_api.base_url)
    first = flames(*generate, "--data", data, "--no-progress", "--concurrency", "2")
    deadline = time.monotonic() + 60  # a bound on a hang, not a timed assertion
    while len(slow_api.requests()) < 10:
        if first.poll() is not None:
            pytest.fail(f"the first writer ended before 10 requests: {first.communicate()[1]}")
        if time.monotonic() > deadline:
            first.kill()
            first.wait()
            pytest.fail(f"the first writer sent {len(slow_api.requests())} requests in 60 s")
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (run_dir / lock.LOCK_NAME).exists()  # left behind, held by no one
    assert str(first.pid) in lock.holder(run_dir)
    done = run_cli(*generate, "--data", data, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert max(asked(slow_api).values()) <= 2  # at most the one in flight when killed, again
    with RunStore.open(run_dir) as store:
        assert store.count_answers("ok") == 200


def test_the_lock_is_reentrant_in_a_process_and_refuses_another(tmp_path):
    run_dir = tmp_path / "run"
    with lock.writing(run_dir, "first"):
        with lock.writing(run_dir, "again"):  # the same process, again: fine
            assert lock.holds(run_dir)
        assert lock.holds(run_dir)
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from flames.runs import lock; from flames.errors import RunLocked\n"
                "try:\n lock.acquire(sys.argv[1], 'x')\nexcept RunLocked as e:\n print(e)",
                str(run_dir),
            ],
            capture_output=True,
            text=True,
        )
        assert f"process {os.getpid()}" in other.stdout and "(first, since" in other.stdout
    assert not lock.holds(run_dir)
    assert not run_dir.exists()  # made for the lock and left empty: removed again


def test_a_lock_file_removed_while_waiting_is_not_trusted(tmp_path):
    run_dir = tmp_path / "run"
    lock.acquire(run_dir, "first")
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from flames.runs import lock\n"
            "lock.acquire(sys.argv[1], 'second', wait=True); print('got it'); time.sleep(1)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    lock.release(run_dir)  # removes the lock file and the folder the waiter is waiting on
    assert waiter.stdout.readline().strip() == "got it"
    with pytest.raises(RunLocked):  # the waiter's lock is on the file now at the path
        lock.acquire(run_dir, "third")
    waiter.wait()


# -- what a write may replace -------------------------------------------------------------------


def small_run(tmp_path: Path) -> RunStore:
    from flames.data.dataset import Dataset, Item

    items = [
        Item(id=f"i{k}", dimension="Safety", subcomponent="Mental harm", prompt=f"问{k}")
        for k in range(3)
    ]
    manifest = RunManifest(
        dataset=DatasetInfo.of(Dataset(name="d", source_sha256="0", items=items)),
        generator=GeneratorInfo(backend="test", model="m"),
    )
    return RunStore.create_or_resume(tmp_path / "run", manifest, items, command="test")


def test_an_ok_answer_is_never_replaced_and_an_error_is(tmp_path):
    with small_run(tmp_path) as store:
        store.record_answers([Answer(item_id="i0", status="ok", response="好")])
        store.record_answers([Answer(item_id="i0", status="error", error="late failure")])
        store.record_answers([Answer(item_id="i0", status="ok", response="另一个")])
        store.record_answers([Answer(item_id="i1", status="error", error="e")])
        store.record_answers([Answer(item_id="i1", status="ok", response="重试成功")])
        got = {a.item_id: (a.status, a.response) for a in store.answers()}
    assert got == {"i0": ("ok", "好"), "i1": ("ok", "重试成功")}


def test_a_verdict_counts_only_for_the_text_it_judged(tmp_path):
    with small_run(tmp_path) as store:
        store.record_answers(
            [Answer(item_id=f"i{k}", status="ok", response=f"答{k}") for k in range(3)]
        )
        store.register_scorer(ScorerManifest(name="s", kind="test"))
        store.record_verdicts(
            "s", tied(store, [Verdict(item_id=f"i{k}", status="ok", score=3) for k in range(3)])
        )
        # A verdict of a scorer that saw other text than the stored one never counts ...
        store.register_scorer(ScorerManifest(name="t", kind="test"))
        store.record_verdicts(
            "t",
            [Verdict(item_id="i0", status="ok", score=1, answer_sha=text_sha("别的回答"))],
        )
        assert store.verdicts("t") == [] and store.count_pending_verdicts("t") == 3
        # ... and if the stored text changes under a verdict, the verdict stops counting.
        store._db.execute(
            "UPDATE answers SET response = '改过', response_sha = ? WHERE item_id = 'i1'",
            (text_sha("改过"),),
        )
        assert [v.item_id for v in store.verdicts("s")] == ["i0", "i2"]
        assert [a.item_id for _, a in store.pending_verdicts("s")] == ["i1"]
        # The redone verdict replaces the stale one; an ok verdict on the same text is kept.
        store.record_verdicts("s", tied(store, [Verdict(item_id="i1", status="ok", score=1)]))
        store.record_verdicts("s", tied(store, [Verdict(item_id="i0", status="ok", score=1)]))
        scores = {v.item_id: v.score for v in store.verdicts("s")}
    assert scores == {"i0": 3, "i1": 1, "i2": 3}


def test_a_verdict_without_the_text_it_judged_is_refused(tmp_path):
    with small_run(tmp_path) as store:
        store.record_answers([Answer(item_id="i0", status="ok", response="好")])
        with pytest.raises(ValueError, match="names no answer text"):
            store.record_verdicts("s", [Verdict(item_id="i0", status="ok", score=3)])


def test_a_reader_cannot_write(tmp_path):
    small_run(tmp_path).close()
    with RunStore.open(tmp_path / "run") as store, pytest.raises(Exception, match="to read"):
        store.record_answers([Answer(item_id="i0", status="ok", response="好")])


# -- a failed first attempt does not fix a run ----------------------------------------------------


def test_a_failed_first_attempt_leaves_nothing_and_the_corrected_command_runs(tmp_path, mock_api):
    data = prompts(tmp_path, 2)
    run_dir = tmp_path / "port"
    wrong = run_cli(
        "generate", run_dir, "--model", "m", "--base-url", "http://127.0.0.1:1/v1", "--data", data
    )
    assert wrong.returncode == 1 and "cannot reach" in wrong.stderr
    assert not run_dir.exists()
    right = run_cli(
        "generate", run_dir, "--model", "m", "--base-url", mock_api.base_url, "--data", data
    )
    assert right.returncode == 0, right.stderr


def test_a_run_holding_only_failed_attempts_starts_afresh_under_new_settings(tmp_path, mock_api):
    rows = [{"dimension": "Safety", "subcomponent": "Mental harm", "prompt": "问[[fail:400x9]]"}]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    run_dir = tmp_path / "run"
    base = ("generate", run_dir, "--base-url", mock_api.base_url, "--data", data, "--no-progress")
    failed = run_cli(*base, "--model", "typo")
    assert failed.returncode == 5  # the answer is stored as an error
    with RunStore.open(run_dir) as store:
        assert store.count_answers("error") == 1
    fixed = run_cli(*base, "--model", "right", "--max-tokens", "7")
    assert fixed.returncode == 5, fixed.stderr  # started afresh (the prompt still fails)
    with RunStore.open(run_dir) as store:
        assert store.manifest.generator.model == "right"
    ok = write_jsonl(tmp_path / "ok.jsonl", [rows[0] | {"prompt": "问"}])
    answered = tmp_path / "answered"
    assert run_cli("generate", answered, *base[2:4], "--data", ok, "--model", "a").returncode == 0
    again = run_cli("generate", answered, *base[2:4], "--data", ok, "--model", "b")
    assert again.returncode == 4 and "created with other settings" in again.stderr


# -- store formats ----------------------------------------------------------------------------


def imported(tmp_path: Path) -> Path:
    rows = [
        {"dimension": "Safety", "subcomponent": "Mental harm"}
        | {"prompt": f"问{i}", "response": f"答{i}", "predicted": 3 if i % 2 else 1}
        for i in range(6)
    ]
    run_dir = tmp_path / "run"
    assert run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), run_dir).returncode == 0
    return run_dir


def as_format_1(run_dir: Path) -> None:
    """Make the run what an older flames wrote: no format number, no text fingerprints."""
    with sqlite3.connect(run_dir / "run.db") as db:
        db.execute("DELETE FROM meta WHERE key = 'schema_version'")
        db.execute("ALTER TABLE answers DROP COLUMN response_sha")
        db.execute("ALTER TABLE verdicts DROP COLUMN answer_sha")


def test_an_older_run_is_read_as_it_is_and_upgraded_by_the_next_writer(tmp_path):
    run_dir = imported(tmp_path)
    expected = json.loads(run_cli("report", run_dir, "--json", "--bootstrap", "0").stdout)
    as_format_1(run_dir)
    old = run_cli("report", run_dir, "--json", "--bootstrap", "0")
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["metrics"] == expected["metrics"]
    with sqlite3.connect(run_dir / "run.db") as db:  # reading changed nothing
        assert db.execute("SELECT count(*) FROM meta").fetchone()[0] == 1
    judged = run_cli(
        "judge",
        run_dir,
        "--model",
        "j",
        "--base-url",
        "http://127.0.0.1:1/v1",
        "--skip-judge-check",
        "--no-progress",
    )
    assert f"from store format 1 to {SCHEMA_VERSION}" in judged.stdout, judged.stderr
    with RunStore.open(run_dir) as store:
        assert len(store.verdicts("imported")) == 6  # every old verdict still counts
    again = run_cli("report", run_dir, "--json", "--bootstrap", "0")
    assert json.loads(again.stdout)["metrics"] == expected["metrics"]


def test_a_run_from_a_newer_flames_is_refused_in_one_line(tmp_path):
    run_dir = imported(tmp_path)
    with sqlite3.connect(run_dir / "run.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    judge = ("judge", run_dir, "--model", "j", "--api-key-env", "")
    for command in (("report", run_dir), judge):
        proc = run_cli(*command)
        assert proc.returncode == 4 and "newer flames (store format 99" in proc.stderr
        assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    with pytest.raises(NewerRun):
        RunStore.open(run_dir)


def test_a_manifest_holding_an_unknown_setting_is_refused(tmp_path):
    run_dir = imported(tmp_path)
    with sqlite3.connect(run_dir / "run.db") as db:
        (text,) = db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        manifest = json.loads(text)
        manifest["generator"]["decoding"]["min_p"] = 0.1
        manifest["versions"]["flames"] = "9.0"
        db.execute("UPDATE meta SET value = ? WHERE key = 'manifest'", (json.dumps(manifest),))
    proc = run_cli("report", run_dir)
    assert proc.returncode == 4, proc.stderr
    assert "generator.decoding.min_p" in proc.stderr and "flames 9.0" in proc.stderr


# -- read-only runs and leftovers ---------------------------------------------------------------


def test_a_killed_reports_temporary_files_are_removed_by_the_next(tmp_path):
    run_dir = imported(tmp_path)
    report_dir = run_dir / "report"
    report_dir.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = report_dir / f".scored.jsonl.partial-{int(dead.stdout)}-abc.jsonl"
    older = report_dir / ".report.json.partial-xyz.json"  # written before pids were named
    live = report_dir / f".report.md.partial-{os.getpid()}-abc.md"
    for path in (stale, older, live):
        path.write_text("half")
    assert run_cli("report", run_dir, "--bootstrap", "0").returncode == 0
    assert not stale.exists() and not older.exists() and live.exists()


def read_only(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A flames command run where `folder` is on a read-only file system (a read-only bind
    mount in a mount namespace of its own: not even root can write there)."""
    import shlex

    command = shlex.join([sys.executable, "-m", "flames", *args])
    where = shlex.quote(str(folder))
    script = f"mount --bind {where} {where} && mount -o remount,ro,bind {where} && exec {command}"
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    if proc.returncode and "mount" in proc.stderr and "flames" not in proc.stderr:
        pytest.skip(f"no read-only bind mount here: {proc.stderr.strip()[:200]}")
    return proc


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)"
)
def test_a_run_in_a_read_only_folder_can_be_read(tmp_path):
    # A writer that is still open (or was killed): its log and index beside the database.
    run_dir = imported(tmp_path)
    with RunStore.open_writer(run_dir, "test") as store:
        store.register_scorer(ScorerManifest(name="later", kind="test"))
        verdicts = [Verdict(item_id=a.item_id, status="ok", score=3) for a in store.answers()]
        store.record_verdicts("later", tied(store, verdicts))
        logged = tmp_path / "logged"  # a copy with the log but no index (-shm)
        logged.mkdir()
        for name in ("run.db", "run.db-wal"):
            shutil.copyfile(run_dir / name, logged / name)
        for where in (run_dir, logged):
            report = ("report", str(where), "--scorer-name", "later", "--bootstrap", "0")
            proc = read_only(where, *report, "--out", str(tmp_path / f"out-{where.name}"))
            assert proc.returncode == 0, proc.stderr
            assert "100.0" in proc.stdout  # the verdicts still in the log were read
    # A writer that closed cleanly: the database alone, in a folder no -shm can be made in.
    assert not (run_dir / "run.db-wal").exists()
    out = tmp_path / "todo.csv"
    for command in (("refusals", str(run_dir)), ("annotate", "export", str(run_dir), str(out))):
        proc = read_only(run_dir, *command)
        assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.db", "run.lock"]
