"""Ctrl-C (SIGINT) and SIGTERM stop every kind of work within seconds, in real subprocesses:
what finished is kept, the resume hint is printed, the exit code is 130 (143 for SIGTERM), and
nothing hangs, aborts or prints a traceback, from the first moment of a command to its end.

No timing is asserted: a command that did not stop would run for minutes (a batch of 100,000
tokens, a request that hangs, a function that sleeps), past each test's generous bound.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import start_mock
from .helpers import write_jsonl

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

INTERRUPTED, TERMINATED = 130, 143
CODES = {signal.SIGINT: INTERRUPTED, signal.SIGTERM: TERMINATED}
BOUND = 90
"""Seconds a stopped command may take at most here (it takes a few; a hang takes minutes)."""


class Command:
    """A `python -m flames` subprocess whose output is read as it comes."""

    def __init__(self, *args: object, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flames", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_for(self, found, timeout: float = BOUND) -> None:
        """Wait until `found()` holds (the command is where the test wants to stop it)."""
        deadline = time.monotonic() + timeout
        while not found():
            if self.proc.poll() is not None:
                raise AssertionError(f"ended early ({self.proc.returncode}):\n{self.text}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"never got there:\n{self.text}")
            time.sleep(0.05)

    def stop(self, signum: int) -> int:
        """Send `signum`; the exit code, once the command has ended (killed past the bound)."""
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running {BOUND}s after the signal:\n{self.text}") from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code


def assert_stopped_cleanly(command: Command, code: int, signum: int) -> None:
    text = command.text
    assert code == CODES[signum], text
    assert "Traceback" not in text and "Fatal Python error" not in text, text
    assert "Exception ignored" not in text, text


def rows(n: int) -> list[dict]:
    return [
        {"dimension": "Safety", "subcomponent": "Mental harm", "prompt": f"问题{i}"}
        for i in range(n)
    ]


def stored(run_dir: Path) -> list[tuple]:
    """(item, sample, status, finish, tokens, response, latency) of every stored answer."""
    try:
        with sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True) as db:
            return db.execute(
                "SELECT item_id, sample, status, finish_reason, completion_tokens, response, "
                "latency_s FROM answers ORDER BY item_id, sample"
            ).fetchall()
    except sqlite3.Error:
        return []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from .helpers import tiny_chat_model

    return tiny_chat_model(tmp_path_factory.mktemp("tiny"))


# -- local models --------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_local_model_stops_within_a_token_step(tmp_path, tiny_model, signum):
    data = write_jsonl(tmp_path / "d.jsonl", rows(4))
    run_dir = tmp_path / "run"
    # A batch of 100,000 tokens would take hours: only a stop between two tokens ends it.
    command = Command(
        "generate", run_dir, "--backend", "transformers", "--model", tiny_model, "--data", data,
        "--max-tokens", "100000", "--batch-size", "2", "--no-progress",
    )  # fmt: skip
    # transformers says so once generation passes the tiny model's 256 positions.
    command.wait_for(lambda: "predefined maximum length" in "".join(command.err))
    code = command.stop(signum)
    assert_stopped_cleanly(command, code, signum)
    assert "interrupted" in command.text and "Run the command again" in command.text
    assert stored(run_dir) == []  # a cut batch is never stored as answers


def test_finished_batches_are_kept_and_resuming_redoes_none_of_them(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "d.jsonl", rows(40))
    run_dir = tmp_path / "run"
    args = ["generate", run_dir, "--backend", "transformers", "--model", tiny_model]
    args += ["--data", data, "--max-tokens", "30", "--batch-size", "1", "--no-progress"]
    command = Command(*args)
    command.wait_for(lambda: len(stored(run_dir)) >= 2)
    code = command.stop(signal.SIGINT)
    assert_stopped_cleanly(command, code, signal.SIGINT)
    assert "Run the same command to resume" in command.text
    kept = stored(run_dir)
    assert 2 <= len(kept) < 40
    # Every stored answer is whole: generated to the end, never cut by the stop.
    assert all(a[2] == "ok" and a[3] == "length" and a[4] == 30 for a in kept), kept

    resumed = subprocess.run(
        [sys.executable, "-m", "flames", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"generated {40 - len(kept)} answers" in resumed.stdout
    after = stored(run_dir)
    assert len(after) == 40
    assert set(kept) <= set(after)  # the kept answers untouched (same text, same latency)


def test_a_local_judge_stops_too(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    answers = [dict(r, response="回答") for r in rows(3)]
    imported = subprocess.run(
        [sys.executable, "-m", "flames", "import", str(write_jsonl(tmp_path / "a.jsonl", answers)),
         str(run_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    command = Command(
        "judge", run_dir, "--model", tiny_model, "--judge-backend", "transformers",
        "--judge-max-tokens", "100000", "--skip-judge-check", "--no-progress",
    )  # fmt: skip
    command.wait_for(lambda: "predefined maximum length" in "".join(command.err))
    code = command.stop(signal.SIGTERM)
    assert_stopped_cleanly(command, code, signal.SIGTERM)
    assert "Run the same command to resume" in command.text


# -- functions and API models --------------------------------------------------------------


SLEEPER = """
import time

def answer(prompt):
    time.sleep(float(prompt.split(":")[1]) if ":" in prompt else 0)
    return "好的"
"""


def sleeper(tmp_path: Path) -> dict[str, str]:
    """An importable module whose model function sleeps as long as the prompt says."""
    (tmp_path / "sleeper.py").write_text(SLEEPER, "utf-8")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_function_that_never_returns_does_not_hold_the_exit(tmp_path, signum):
    prompts = [dict(r, prompt=f"快{i}:0") for i, r in enumerate(rows(3))]
    prompts.append(dict(rows(1)[0], prompt="慢:3600"))
    data = write_jsonl(tmp_path / "d.jsonl", prompts)
    run_dir = tmp_path / "run"
    command = Command(
        "generate", run_dir, "--backend", "callable", "--model", "sleeper:answer",
        "--data", data, "--concurrency", "4", "--no-progress",
        env=sleeper(tmp_path),
    )  # fmt: skip
    command.wait_for(lambda: len(stored(run_dir)) == 3)
    code = command.stop(signum)
    assert_stopped_cleanly(command, code, signum)
    assert "Run the same command to resume" in command.text
    assert len(stored(run_dir)) == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_hanging_api_requests_are_abandoned(tmp_path, signum):
    api = start_mock(tmp_path)
    try:
        prompts = [dict(r, prompt=f"问{i}[[hang:9]]") for i, r in enumerate(rows(4))]
        prompts += [dict(rows(1)[0], prompt="好问题")]
        data = write_jsonl(tmp_path / "d.jsonl", prompts)
        run_dir = tmp_path / "run"
        command = Command(
            "generate", run_dir, "--model", "m", "--base-url", api.base_url, "--data", data,
            "--concurrency", "5", "--timeout", "600", "--no-progress",
        )  # fmt: skip
        command.wait_for(lambda: len(api.requests()) >= 5 and len(stored(run_dir)) == 1)
        code = command.stop(signum)
    finally:
        api.proc.kill()
        api.proc.wait()
    assert_stopped_cleanly(command, code, signum)
    assert "Run the same command to resume" in command.text
    assert [a[2] for a in stored(run_dir)] == ["ok"]


# -- the first moment, and the labelling page ----------------------------------------------


def _handles_sigterm(pid: int) -> bool:
    """Whether the process has its SIGTERM handler in place (Linux: /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_a_signal_while_the_command_starts_is_one_line(tmp_path, signum, delay):
    """The signal comes as soon as flames can catch it (its modules still loading), or a
    moment later: one line, no traceback, 130 or 143."""
    data = write_jsonl(tmp_path / "d.jsonl", rows(2))
    command = Command("generate", tmp_path / "run", "--model", "m", "--data", data,
                      "--base-url", "http://127.0.0.1:9/v1")  # fmt: skip
    command.wait_for(lambda: _handles_sigterm(command.proc.pid))
    time.sleep(delay)
    code = command.stop(signum)
    assert_stopped_cleanly(command, code, signum)
    assert len(command.text.strip().splitlines()) <= 2, command.text  # one sentence, wrapped
    assert "interrupted" in command.text
    assert not (tmp_path / "run" / "run.db").exists()


def test_the_labelling_page_stops_on_sigterm(tmp_path):
    run_dir = tmp_path / "run"
    answers = write_jsonl(tmp_path / "a.jsonl", [dict(rows(1)[0], response="答")])
    imported = subprocess.run(
        [sys.executable, "-m", "flames", "import", str(answers), str(run_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    from .test_annotation import _free_port

    port = _free_port()
    command = Command("annotate", "serve", run_dir, "--annotator", "ann", "--port", port)
    command.wait_for(lambda: any("open http" in line for line in command.out))
    code = command.stop(signal.SIGTERM)
    assert_stopped_cleanly(command, code, signal.SIGTERM)


# -- the pieces ----------------------------------------------------------------------------


def test_a_cancelled_thread_hands_back_what_it_finished():
    from flames._util.aio import StoppedWithResult, in_thread

    release = threading.Event()
    stop = threading.Event()

    def batch() -> list[str]:
        release.wait(10)  # ignores `stop`: finishes its batch all the same
        return ["a", "b"]

    async def main() -> object:
        task = asyncio.ensure_future(in_thread(batch, stop=stop, grace=10))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        assert stop.is_set()  # asked to stop at once
        release.set()
        try:
            await task
        except StoppedWithResult as late:
            return late.result
        return None

    assert asyncio.run(main()) == ["a", "b"]


def test_a_batch_that_finished_is_yielded_before_the_cancellation_goes_on():
    from flames.data.dataset import Item
    from flames.data.taxonomy import Dimension
    from flames.generation.base import Request, answers_in_thread
    from flames.runs.records import Answer

    requests = [
        Request(Item(id=f"q{i}", dimension=Dimension.SAFETY, subcomponent="s", prompt="p"))
        for i in range(2)
    ]
    started, release = threading.Event(), threading.Event()

    def work(batch, stop) -> list[Answer]:
        started.set()
        release.wait(10)
        return [Answer(item_id=r.item.id, status="ok", response="答") for r in batch]

    got: list[str] = []

    async def consume() -> None:
        async for answer in answers_in_thread(work, requests):
            got.append(answer.item_id)

    async def main() -> bool:
        task = asyncio.ensure_future(consume())
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        release.set()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
    assert got == ["q0", "q1"]


def test_a_stop_ends_transformers_generation_without_answers(tiny_model):
    from flames._util.aio import Stopped
    from flames.generation.transformers_local import TransformersBackend

    backend = TransformersBackend(str(tiny_model), device="cpu")
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        backend.complete([[{"role": "user", "content": "你好"}]], max_tokens=5, stop=stop)
    replies = backend.complete(
        [[{"role": "user", "content": "你好"}]], max_tokens=5, stop=threading.Event()
    )
    assert replies[0].completion_tokens == 5


def test_progress_interval_is_bounded(monkeypatch):
    from flames._util.progress import DEFAULT_INTERVAL, duration, log_interval

    for value, expected in [
        ("5", 5.0), ("0", 1.0), ("-3", 1.0), ("1e9", 3600.0), ("nan", DEFAULT_INTERVAL),
        ("soon", DEFAULT_INTERVAL),
    ]:  # fmt: skip
        monkeypatch.setenv("FLAMES_PROGRESS_INTERVAL", value)
        assert log_interval() == expected
    assert [duration(s) for s in (4.4, 65, 7322)] == ["4s", "1m05s", "2h02m"]


# -- the official scorer -------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_official_scorer_stops_and_keeps_its_verdicts(tmp_path, signum):
    pytest.importorskip("torch")
    from flames.scoring.scorer.synthetic import build_checkpoint

    scorer = build_checkpoint(tmp_path / "scorer")
    run_dir = tmp_path / "run"
    answers = [dict(r, response="回答" * 200) for r in rows(3000)]
    imported = subprocess.run(
        [sys.executable, "-m", "flames", "import", str(write_jsonl(tmp_path / "a.jsonl", answers)),
         str(run_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr

    def verdicts() -> int:
        try:
            with sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True) as db:
                query = "SELECT count(*) FROM verdicts WHERE scorer = 'flames-scorer'"
                return db.execute(query).fetchone()[0]
        except sqlite3.Error:
            return 0

    args = ["score", run_dir, "--scorer-model", scorer, "--max-batch", "1", "--no-progress"]
    command = Command(*args)
    command.wait_for(lambda: verdicts() >= 3)
    code = command.stop(signum)
    assert_stopped_cleanly(command, code, signum)
    assert "Run the same command to resume" in command.text
    kept = verdicts()
    assert 3 <= kept < 3000
