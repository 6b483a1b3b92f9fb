"""Racing writers, a hostile server and hostile names at once: two generates and two judges race
on a run named with terminal escapes and HTML, for a model named the same way, against a server
whose replies break the protocol. The run loses nothing, doubles nothing, and its report and
console output inject nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter

from flames.runs.store import RunStore

from .conftest import start_mock
from .helpers import write_jsonl
from .test_hostile_names import CONTROL, FOLDER, MODEL, rendered

KEPT = ("usage-string", "tokens-negative", "finish-list", "surrogate")
"""Broken replies that still carry an answer (repaired on the first attempt)."""
PLAIN = 16


def flames(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flames", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def race(*args: object) -> list[tuple[int, str, str]]:
    """Two processes running the same command at once: (exit code, stdout, stderr) of each."""
    both = [flames(*args) for _ in range(2)]
    return [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in both]


def test_racing_writers_a_hostile_server_and_hostile_names_together(tmp_path):
    texts = [f"问题{i}[[score:auto]]" for i in range(PLAIN)]
    texts += [f"坏回复{kind}[[hostile:{kind}]][[score:auto]]" for kind in KEPT]
    texts += ["先深后好[[hostile:deepx1]][[score:auto]]", "太长[[big:3000000]]"]
    rows = [{"dimension": "Safety", "subcomponent": "Mental harm", "prompt": t} for t in texts]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    run_dir = tmp_path / f"run {FOLDER}"
    api = start_mock(tmp_path, 0.02)
    try:
        network = ("--base-url", api.base_url, "--max-attempts", "2", "--no-progress")
        limit = ("--max-reply-bytes", str(2 * 2**20))
        generated = race("generate", run_dir, "--model", MODEL, "--data", data, *network, *limit)
        judged = race("judge", run_dir, "--model", "j", "--skip-judge-check", *network)
        asked = Counter(r["prompt"] for r in api.requests())
    finally:
        api.proc.kill()
        api.proc.wait()

    # The oversized answer is its item's error (exit 5) for whoever wrote it; a writer that
    # found the run held was refused in one line (exit 4); nobody crashed.
    for code, out, err in generated + judged:
        assert code in (0, 4, 5), err
        assert "Traceback" not in out + err and "unexpected" not in err
        assert CONTROL.findall(out + err) == []  # no escape sequence from a name or a reply
        if code == 4:
            assert "is being written by process" in err and err.count("error:") == 1
    assert sorted(c for c, _, _ in generated) in ([4, 5], [5, 5])

    # Every prompt reached the server as often as its replies call for, never twice over.
    assert all(asked[t] == 1 for t in texts[:-2] if "deep" not in t), asked
    assert asked[texts[-2]] == 2  # the reply nested too deep, asked again once
    assert asked[texts[-1]] == 1  # an oversized answer is not asked again: it would be as long

    with RunStore.open(run_dir) as store:
        answers = {a.item_id: a for a in store.answers()}
        items = {i.id: i.prompt for i in store.items()}
        assert len(answers) == len(texts)
        by_text = {items[i]: a for i, a in answers.items()}
        assert all(by_text[t].status == "ok" for t in texts[:-1])
        assert by_text[texts[-1]].status == "error" and by_text[texts[-1]].response is None
        verdicts = store.verdicts("judge:j")
        assert len(verdicts) == len(texts) - 1  # every answer judged once, the error never
        assert all(v.status == "ok" and v.score in (1, 2, 3) for v in verdicts)
    with sqlite3.connect(run_dir / "run.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    out_dir = tmp_path / "out"
    report = subprocess.run(
        [sys.executable, "-m", "flames", "report", str(run_dir), "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert report.returncode == 0, report.stderr
    assert CONTROL.findall(report.stdout + report.stderr) == []
    markdown = (out_dir / "report.md").read_text("utf-8")
    _, page = rendered(markdown)
    for tag in ("script", "img", "a", "iframe"):
        assert page.tags[tag] == 0, tag
    assert page.tags["h1"] == 1  # the title's; the name's "# second line" forges none
