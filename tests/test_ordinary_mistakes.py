"""Ordinary mistakes and mishaps end in one line and their documented exit code
(docs/exit-codes.md), never "unexpected": a local model that is not there, a hub id without
network, a full disk, a run.db another program holds locked or that is damaged.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import run_cli, write_jsonl
from .test_failures import DATA, FAILURE, MISMATCH, OK, USAGE, check

DEMO = Path(__file__).parents[1] / "examples" / "scored_demo.jsonl"


def one_line(out: str) -> str:
    """`check`'s output, which must not call the failure unexpected."""
    assert "unexpected" not in out and "please report it" not in out, out
    return out


def local_generate(tmp_path: Path, *model: str, env: dict[str, str] | None = None):
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [{"dimension": "Safety", "subcomponent": "Mental harm", "prompt": "你好"}],
    )
    args = ("generate", tmp_path / "r", "--backend", "transformers", "--data", data)
    return run_cli(*args, "--no-progress", "--model", *model, env=env)


def test_a_local_model_that_is_not_there_is_named_before_any_run_is_written(tmp_path):
    for model in ("missing.gguf", str(tmp_path / "nowhere"), "./rel/missing", "a/b/c"):
        one_line(check(local_generate(tmp_path, model), USAGE, "no such file or folder"))
    file = tmp_path / "notes.txt"
    file.write_text("not a model")
    check(local_generate(tmp_path, str(file)), USAGE, "not a model folder")
    assert not (tmp_path / "r").exists()


def test_a_folder_of_gguf_files_asks_for_the_file(tmp_path):
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "m.Q4.gguf").write_bytes(b"GGUF")  # never read: the check is before loading
    out = one_line(check(local_generate(tmp_path, str(folder)), USAGE, "--gguf-file"))
    assert "m.Q4.gguf" in out
    proc = local_generate(tmp_path, str(folder), "--gguf-file", "other.gguf")
    one_line(check(proc, USAGE, "no such file"))
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line(check(local_generate(tmp_path, str(empty)), USAGE, "neither config.json"))
    assert not (tmp_path / "r").exists()


def test_a_hub_id_offline_or_unreachable_fails_at_once(tmp_path):
    cache = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    offline = {**cache, "HF_HUB_OFFLINE": "1"}
    proc = local_generate(tmp_path, "someone/some-model", env=offline)
    one_line(check(proc, FAILURE, "HF_HUB_OFFLINE"))
    # No network: a refused connection to the endpoint, not a minute of the hub's retries.
    unreachable = {**cache, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:1"}
    proc = local_generate(tmp_path, "someone/some-model", env=unreachable)
    one_line(check(proc, FAILURE, "cannot be reached", "someone/some-model"))
    assert not (tmp_path / "r").exists()


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def cli_limited(limit: int, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command line with files limited to `limit` bytes: writes fail as on a full disk."""
    return subprocess.run(
        [sys.executable, "-m", "flames", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=_file_size_limit(limit),
    )


def test_a_full_disk_is_one_line_and_leaves_no_half_written_run(tmp_path):
    proc = cli_limited(20_000, "score-file", DEMO, "--run", "r", cwd=tmp_path)
    one_line(check(proc, FAILURE, "r/run.db", "could not be written", "run the same command"))
    assert not (tmp_path / "r" / "run.db").exists()
    check(run_cli("score-file", DEMO, "--run", "r", cwd=tmp_path), OK)
    # Reports: the file being written is named, and the previous one stays whole.
    report = tmp_path / "r" / "report" / "report.json"
    before = report.read_bytes()
    proc = cli_limited(4_000, "report", "r", cwd=tmp_path)
    one_line(check(proc, FAILURE, "no room to write it", "report"))
    assert report.read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting needs root")
def test_a_really_full_disk_is_one_line(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        proc = run_cli("score-file", DEMO, "--run", mount / "r", cwd=tmp_path)
        one_line(check(proc, FAILURE, "could not be written", "disk"))
        assert not (mount / "r" / "run.db").exists()
        check(run_cli("score-file", DEMO, "--run", "r", cwd=tmp_path), OK)
        proc = run_cli("report", "r", "--out", mount / "report", cwd=tmp_path)
        one_line(check(proc, FAILURE, "no room to write it", "No space left"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
"""


def test_a_run_another_program_holds_locked_is_refused_in_one_line(tmp_path):
    check(run_cli("score-file", DEMO, "--run", "r", cwd=tmp_path), OK)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "r" / "run.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        proc = run_cli("score-file", DEMO, "--run", "r", cwd=tmp_path)
        one_line(check(proc, MISMATCH, "r/run.db", "another program holds it locked"))
        check(run_cli("report", "r", cwd=tmp_path), OK)  # reading still works
    finally:
        holder.communicate("")
    check(run_cli("score-file", DEMO, "--run", "r", cwd=tmp_path), OK)


def test_a_damaged_run_db_is_named_in_one_line(tmp_path):
    check(run_cli("score-file", DEMO, "--run", "r", cwd=tmp_path), OK)
    for extra in tmp_path.glob("r/run.db-*"):
        extra.unlink()
    (tmp_path / "r" / "run.db").write_bytes(os.urandom(8192))
    for command in (("report", "r"), ("score-file", DEMO, "--run", "r"), ("leaderboard", "r")):
        proc = run_cli(*command, cwd=tmp_path)
        out = one_line(check(proc, DATA, "damaged"))
        assert "r/run.db" in out, out
    shutil.rmtree(tmp_path / "r")


def test_an_empty_run_db_is_no_run_readers_say_so_and_a_writer_starts_afresh(tmp_path):
    """A run.db of 0 bytes (a creation cut short) was read as a run without tables: report,
    leaderboard and the same command again ended in "unexpected OperationalError"."""
    check(run_cli("score-file", DEMO, "--run", "ok", cwd=tmp_path), OK)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.db").write_bytes(b"")
    out = one_line(check(run_cli("report", "r", cwd=tmp_path), DATA, "holds no run"))
    assert "r/run.db" in out, out
    board = run_cli("leaderboard", "ok", "r", cwd=tmp_path)
    assert board.returncode == 0 and "holds no run" in board.stdout + board.stderr, board
    one_line(board.stdout + board.stderr)
    check(run_cli("score-file", DEMO, "--run", "r", cwd=tmp_path), OK)  # the writer replaces it
    check(run_cli("report", "r", "--bootstrap", "0", cwd=tmp_path), OK)


def test_run_without_a_run_directory_says_so_first(tmp_path):
    out = one_line(check(run_cli("run", cwd=tmp_path), USAGE, "run_dir"))
    assert "--model" not in out, out


def test_flags_show_no_value_type_in_the_help():
    out = run_cli("import", "--help").stdout
    wait = next(line for line in out.splitlines() if "--wait" in line)
    assert "<bool>" not in out and "<str>" in out, out
    assert "bool" not in wait, wait
