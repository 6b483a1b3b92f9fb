from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from flames.data import official as official_data
from flames.errors import DataError

from .helpers import run_cli

FILE = official_data.FILENAME


@pytest.fixture
def file_server(tmp_path):
    """A loopback HTTP server serving a folder, with the paths it was asked for in order."""
    root = tmp_path / "www"
    root.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}", requested
    server.shutdown()


def _publish(root: Path, repo_path: str, content: bytes) -> None:
    """Lay a file out as raw.githubusercontent.com serves it: /ORG/REPO/REF/PATH."""
    target = root / repo_path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def test_urls_follow_the_official_repository_layout():
    # The file sits at the repository root; the pinned commit first, then main, each under the
    # current organisation name first, then the old one.
    commit = "8e51f47418c713ef6d9fb257504a854e41b8e38e"
    raw = "https://raw.githubusercontent.com"
    assert (
        f"{raw}/AI45Lab/Flames/{commit}/Flames_1k_Chinese.jsonl",
        f"{raw}/AIFlames/Flames/{commit}/Flames_1k_Chinese.jsonl",
        f"{raw}/AI45Lab/Flames/main/Flames_1k_Chinese.jsonl",
        f"{raw}/AIFlames/Flames/main/Flames_1k_Chinese.jsonl",
    ) == official_data.URLS


def test_fetch_tries_commit_then_branch_under_both_names(file_server, official_path, monkeypatch):
    root, base, requested = file_server
    monkeypatch.delenv("FLAMES_DATA_DIR", raising=False)
    _publish(root, f"AIFlames/Flames/main/{FILE}", official_path.read_bytes())
    path = official_data.fetch(urls=official_data.official_urls(base))
    assert path == official_data.cache_dir() / FILE
    assert [p.split("/", 4)[1:4] for p in requested] == [
        ["AI45Lab", "Flames", official_data.COMMIT],
        ["AIFlames", "Flames", official_data.COMMIT],
        ["AI45Lab", "Flames", "main"],
        ["AIFlames", "Flames", "main"],
    ]
    assert official_data.locate() == path
    # A second fetch reuses the verified copy without touching the network.
    assert official_data.fetch(urls=("http://127.0.0.1:9/unreachable",)) == path
    assert len(requested) == 4


def test_the_pinned_commit_wins_over_a_changed_main(file_server, official_path, monkeypatch):
    root, base, requested = file_server
    monkeypatch.delenv("FLAMES_DATA_DIR", raising=False)
    _publish(root, f"AI45Lab/Flames/{official_data.COMMIT}/{FILE}", official_path.read_bytes())
    _publish(root, f"AI45Lab/Flames/main/{FILE}", b'{"changed": true}\n')
    official_data.fetch(urls=official_data.official_urls(base))
    assert requested == [f"/AI45Lab/Flames/{official_data.COMMIT}/{FILE}"]


def test_a_wrong_file_is_skipped_and_refused_with_both_hashes(
    file_server, official_path, monkeypatch
):
    root, base, _ = file_server
    monkeypatch.delenv("FLAMES_DATA_DIR", raising=False)
    wrong = official_path.read_bytes() + b"\n"
    _publish(root, f"AI45Lab/Flames/{official_data.COMMIT}/{FILE}", wrong)
    with pytest.raises(official_data.FetchError) as info:
        official_data.fetch(urls=official_data.official_urls(base))
    import hashlib

    assert hashlib.sha256(wrong).hexdigest() in str(info.value)
    assert official_data.SHA256 in str(info.value)
    assert not (official_data.cache_dir() / FILE).exists()
    # The same wrong file first, the right one later in the order: the right one is taken.
    _publish(root, f"AIFlames/Flames/main/{FILE}", official_path.read_bytes())
    assert official_data.fetch(urls=official_data.official_urls(base)).is_file()


def test_cli_url_and_env_mirror(file_server, official_path, tmp_path):
    root, base, requested = file_server
    _publish(root, f"mirror/{FILE}", official_path.read_bytes())
    _publish(root, "mirror/wrong.jsonl", b'{"not": "it"}\n')
    env = {"FLAMES_DATA_DIR": "", "FLAMES_CACHE_DIR": str(tmp_path / "c1")}

    proc = run_cli("data", "fetch", "--url", f"{base}/mirror/wrong.jsonl", env=env)
    assert proc.returncode == 6
    assert official_data.SHA256 in proc.stderr and "wrong sha256" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_cli("data", "fetch", "--url", f"{base}/mirror/{FILE}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert requested[-1] == f"/mirror/{FILE}"
    assert (tmp_path / "c1" / FILE).is_file()

    env = {
        "FLAMES_DATA_DIR": "",
        "FLAMES_CACHE_DIR": str(tmp_path / "c2"),
        "FLAMES_DATA_URL": f"{base}/mirror/{FILE}",
    }
    count = len(requested)
    assert run_cli("data", "fetch", env=env).returncode == 0
    assert requested[count:] == [f"/mirror/{FILE}"]
    assert "1000 items" in run_cli("data", "info", env=env).stdout


def test_offline_fetch_says_how_to_use_a_local_copy(tmp_path, official_path):
    env = {"FLAMES_DATA_DIR": "", "FLAMES_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("data", "info", env=env)
    assert proc.returncode == 6
    message = " ".join(proc.stderr.split())
    assert "flames data fetch --from PATH" in message
    assert "FLAMES_DATA_URL" in message
    proc = run_cli("data", "fetch", "--from", official_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cache" / FILE).is_file()
    assert "1000 items" in run_cli("data", "info", env=env).stdout


def test_fetch_from_a_folder_or_a_missing_file(tmp_path, official_path):
    env = {"FLAMES_DATA_DIR": "", "FLAMES_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("data", "fetch", "--from", official_path.parent, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cache" / FILE).is_file()
    for missing in (tmp_path / "nope.jsonl", tmp_path):
        proc = run_cli("data", "fetch", "--from", missing, env=env)
        assert proc.returncode == 3, proc.stderr
        assert "no such file" in proc.stderr and str(missing) in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_modified_copy_is_refused_as_the_official_set(tmp_path, official_path):
    copy = Path(tmp_path / FILE)
    copy.write_bytes(official_path.read_bytes().replace(b"\xe4", b"\xe5", 1))
    with pytest.raises(DataError, match="not the official file"):
        official_data.fetch(copy)


def test_scorer_downloads_honour_hf_endpoint(file_server, tmp_path):
    """huggingface_hub reads HF_ENDPOINT, so a hub mirror serves the scorer download."""
    pytest.importorskip("huggingface_hub")
    pytest.importorskip("torch")
    _, base, requested = file_server
    code = (
        "from flames.scoring.scorer.checkpoint import resolve, CheckpointError\n"
        "try:\n    resolve('CaasiHUANG/flames-scorer')\n"
        "except CheckpointError as exc:\n    print('refused')\n"
    )
    import subprocess
    import sys

    env = {
        "HF_ENDPOINT": base,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    import os

    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "refused" in proc.stdout, proc.stderr
    assert any("CaasiHUANG/flames-scorer" in path for path in requested), requested
