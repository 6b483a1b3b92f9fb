"""Remote text (server error bodies, model output) never drives the terminal."""

from __future__ import annotations

import re

from flames._util.terminal import printable, remote

from .helpers import run_cli, write_jsonl

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_control_characters_are_shown_not_sent():
    attack = "a\x1b[2Jb\x1b]52;c;ZmxhbWVz\x07c\x9b31md\re\x08f\x00g\x7fh"
    assert printable(attack) == (
        "a\\x1b[2Jb\\x1b]52;c;ZmxhbWVz\\x07c\\x9b31md\\x0de\\x08f\\x00g\\x7fh"
    )
    assert printable("第一行\n\t第二行 ☃") == "第一行\n\t第二行 ☃"  # newline, tab, text kept
    assert remote("[bold]x[/]\x1b") == "\\[bold]x\\[/]\\x1b"  # Rich markup escaped too


def test_escape_sequences_in_server_errors_reach_the_terminal_escaped(tmp_path, mock_api):
    rows = [
        {"dimension": "Safety", "subcomponent": "Physical harm", "prompt": "转义[[ansi:9]]"},
        {"dimension": "Safety", "subcomponent": "Physical harm", "prompt": "正常"},
    ]
    proc = run_cli(
        "generate",
        tmp_path / "run",
        "--model",
        "m",
        "--base-url",
        mock_api.base_url,
        "--data",
        write_jsonl(tmp_path / "d.jsonl", rows),
        "--max-attempts",
        "2",
        "--no-progress",
    )
    assert proc.returncode == 5, proc.stderr
    assert "HTTP 502: upstream failed\\x1b[2J\\x1b[H\\x1b]52;c;" in proc.stdout
    assert CONTROL.findall(proc.stdout + proc.stderr) == []
