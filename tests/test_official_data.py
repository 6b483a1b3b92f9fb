from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from flames import official_data
from flames.errors import DataError

from .helpers import run_cli


@pytest.fixture
def file_server(tmp_path):
    """A loopback HTTP server serving the files in a folder."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_fetch_downloads_verifies_and_caches(file_server, official_path, monkeypatch):
    root, base = file_server
    monkeypatch.delenv("FLAMES_DATA_DIR", raising=False)
    (root / official_data.FILENAME).write_bytes(official_path.read_bytes())
    path = official_data.fetch(urls=(f"{base}/missing.jsonl", f"{base}/{official_data.FILENAME}"))
    assert path == official_data.cache_dir() / official_data.FILENAME
    assert official_data.locate() == path
    # A second fetch reuses the verified copy without touching the network.
    assert official_data.fetch(urls=("http://127.0.0.1:9/unreachable",)) == path


def test_fetch_rejects_a_file_with_the_wrong_hash(file_server, official_path, monkeypatch):
    root, base = file_server
    monkeypatch.delenv("FLAMES_DATA_DIR", raising=False)
    (root / official_data.FILENAME).write_bytes(official_path.read_bytes() + b"\n")
    with pytest.raises(official_data.FetchError, match="wrong sha256"):
        official_data.fetch(urls=(f"{base}/{official_data.FILENAME}",))
    assert not (official_data.cache_dir() / official_data.FILENAME).exists()


def test_offline_fetch_says_how_to_use_a_local_copy(tmp_path, official_path):
    env = {"FLAMES_DATA_DIR": "", "FLAMES_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("data", "info", env=env)
    assert proc.returncode == 6
    assert "flames data fetch --from PATH" in proc.stderr
    proc = run_cli("data", "fetch", "--from", official_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cache" / official_data.FILENAME).is_file()
    assert "1000 items" in run_cli("data", "info", env=env).stdout


def test_a_modified_copy_is_refused_as_the_official_set(tmp_path, official_path):
    copy = Path(tmp_path / official_data.FILENAME)
    copy.write_bytes(official_path.read_bytes().replace(b"\xe4", b"\xe5", 1))
    with pytest.raises(DataError, match="not the official file"):
        official_data.fetch(copy)
