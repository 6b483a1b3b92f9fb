"""Shared fixtures. The official prompts are read from $FLAMES_DATA_DIR or ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flames.data import official as official_data
from flames.data.dataset import Dataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    if "FLAMES_DATA_DIR" not in os.environ and (SHARED_DATA / official_data.FILENAME).is_file():
        os.environ["FLAMES_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLAMES_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def official_path() -> Path:
    data_dir = os.environ.get("FLAMES_DATA_DIR")
    path = Path(data_dir or SHARED_DATA) / official_data.FILENAME
    if not path.is_file():
        pytest.skip("official Flames data not available (set FLAMES_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def official(official_path: Path) -> Dataset:
    from flames.data.dataset import load_dataset

    return load_dataset(official_path, name=official_data.NAME)


class MockAPI:
    """A running `flames.clients.mock_server` subprocess and the requests it has logged."""

    def __init__(self, proc, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self) -> list[dict]:
        import json

        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text("utf-8").splitlines()]

    def asked(self, prompt_part: str) -> int:
        return sum(1 for r in self.requests() if prompt_part in r["prompt"])


def start_mock(tmp_path: Path, latency: float = 0.0, *options: str) -> MockAPI:
    """Start the mock server; `options` are more of its command-line options."""
    import subprocess
    import sys

    log = tmp_path / f"mock-{latency}.log"
    command = [sys.executable, "-m", "flames.clients.mock_server", "--latency", str(latency)]
    proc = subprocess.Popen(
        [*command, "--log", str(log), *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    return MockAPI(proc, int(line.split()[1]), log)


@pytest.fixture
def mock_api(tmp_path):
    api = start_mock(tmp_path)
    yield api
    api.proc.kill()
    api.proc.wait()


class MockBatchAPI:
    """A running `flames.clients.mock_batch_server` subprocess, its state and what it logged."""

    def __init__(self, proc, port: int, state: Path, options: tuple[str, ...]):
        self.proc, self.port, self.state, self.options = proc, port, state, options

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def events(self, kind: str | None = None) -> list[dict]:
        import json

        log = self.state / "log.jsonl"
        if not log.exists():
            return []
        found = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
        return [e for e in found if kind is None or e["event"] == kind]

    def submitted(self) -> list[str]:
        """Every custom_id of every batch created, in order (a request paid twice shows twice)."""
        return [cid for e in self.events("create") for cid in e["custom_ids"]]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self, *options: str) -> MockBatchAPI:
        """The server killed and started again on the same state folder and port."""
        self.stop()
        return start_batch_mock(self.state.parent, *(options or self.options), port=self.port)


def start_batch_mock(tmp_path: Path, *options: str, port: int = 0) -> MockBatchAPI:
    """Start the loopback batch server with its state under `tmp_path`; `options` are more of
    its command-line options (--duration, --lose-reply, ...)."""
    import subprocess
    import sys
    import time

    state = tmp_path / "batch-server"
    command = [sys.executable, "-m", "flames.clients.mock_batch_server", "--state", str(state)]
    for _ in range(50):  # a restart may wait for the old socket to close
        proc = subprocess.Popen(
            [*command, "--port", str(port), *options], stdout=subprocess.PIPE, text=True
        )
        line = proc.stdout.readline()
        if line.startswith("PORT "):
            return MockBatchAPI(proc, int(line.split()[1]), state, options)
        proc.wait()
        time.sleep(0.1)
    raise AssertionError("the batch server did not start")
