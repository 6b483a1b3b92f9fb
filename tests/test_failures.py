"""Clear failures: every documented failure, driven through the command line as a user meets it,
ends in one clear message and its documented exit code (docs/exit-codes.md), never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import run_cli, write_jsonl

OK, FAILURE, USAGE, DATA, MISMATCH, INCOMPLETE, FETCH, INTERRUPTED = 0, 1, 2, 3, 4, 5, 6, 130


def check(proc: subprocess.CompletedProcess[str], code: int, *said: str) -> str:
    """The exit code is `code`, no traceback was printed, and the output says each of `said`."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    for text in said:
        assert text in out, out
    return out


def rows(*prompts: str, dimension: str = "Safety", sub: str = "Mental harm") -> list[dict]:
    return [{"dimension": dimension, "subcomponent": sub, "prompt": p} for p in prompts]


def answers(*responses: str) -> list[dict]:
    return [
        {"id": f"a{i}", "dimension": "Safety", "subcomponent": "Mental harm", "prompt": f"问题{i}"}
        | {"response": r}
        for i, r in enumerate(responses)
    ]


def gen(run_dir: Path, api, *extra: str | Path) -> subprocess.CompletedProcess[str]:
    base = ("generate", run_dir, "--model", "m", "--base-url", api.base_url, "--no-progress")
    return run_cli(*base, *extra)


def test_not_a_run_and_bad_usage(tmp_path):
    check(run_cli("report", tmp_path / "nothing"), FAILURE, "not a flames run directory")
    check(run_cli("generate", tmp_path / "r"), USAGE, "--model")
    check(run_cli("report", tmp_path, "--bootstrap", "many"), USAGE)


def test_bad_prompt_files_name_file_and_line(tmp_path, mock_api):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows("好问题")[0]) + "\n{broken\n", encoding="utf-8")
    check(gen(tmp_path / "r1", mock_api, "--data", bad), DATA, f"{bad}:2:", "malformed JSON")
    # A lone surrogate is valid JSON but not text: refused with file and line, no run created.
    lone = tmp_path / "lone.jsonl"
    lone.write_text(
        json.dumps(rows("好问题")[0]) + '\n{"dimension": "Safety", "subcomponent": '
        '"Mental harm", "prompt": "坏\\udc80问题"}\n',
        encoding="utf-8",
    )
    check(gen(tmp_path / "r2", mock_api, "--data", lone), DATA, f"{lone}:2:", "surrogate")
    assert not (tmp_path / "r2" / "run.db").exists()
    # A proper surrogate pair is one character (an emoji) and is fine.
    pair = write_jsonl(tmp_path / "pair.jsonl", rows("好问题\U0001f600"))
    pair.write_text(pair.read_text("utf-8").replace("\U0001f600", "\\ud83d\\ude00"), "utf-8")
    check(gen(tmp_path / "r3", mock_api, "--data", pair), OK)


def test_other_settings_are_refused_and_the_official_copy_resumes(tmp_path, mock_api):
    data = write_jsonl(tmp_path / "d.jsonl", rows("问题一", "问题二"))
    check(gen(tmp_path / "r", mock_api, "--data", data), OK)
    check(gen(tmp_path / "r", mock_api, "--data", data, "--temperature", "0.7"), MISMATCH)
    # The run is identified by the prompts' content, not the file's name or folder.
    copy = tmp_path / "elsewhere" / "renamed.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(data.read_bytes())
    before = len(mock_api.requests())
    check(gen(tmp_path / "r", mock_api, "--data", copy), OK, "generated 0 answers")
    assert len(mock_api.requests()) == before


def test_official_copy_passed_with_data_resumes_the_official_run(tmp_path, mock_api, official_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(official_path.read_bytes())
    check(gen(tmp_path / "r", mock_api, "--sample", "3"), OK, "generated 3 answers")
    check(gen(tmp_path / "r", mock_api, "--sample", "3", "--data", copy), OK, "generated 0")
    assert len(mock_api.requests()) == 3


def test_failed_answers_and_verdicts_exit_5(tmp_path, mock_api):
    data = write_jsonl(tmp_path / "d.jsonl", rows("好问题", "坏问题[[fail:500x99]]"))
    out = check(
        gen(tmp_path / "r", mock_api, "--data", data, "--max-attempts", "1"),
        INCOMPLETE,
        "--retry-errors",
    )
    assert "1 answers failed" in out
    # A judge whose calls fail (here: HTTP 401 on every call) exits 5 as generate does.
    run_dir = tmp_path / "imported"
    file = write_jsonl(
        tmp_path / "a.jsonl", answers("回答[[fail:401x99]]", '回答[[verdict:{"score": 3}]]')
    )
    check(run_cli("import", file, run_dir), OK)
    judge = ("judge", run_dir, "--model", "j", "--base-url", mock_api.base_url, "--no-progress")
    judge += ("--skip-judge-check",)  # the mock is no judge: its sanity check is tested apart
    check(run_cli(*judge), INCOMPLETE, "1 verdicts of judge:j failed", "--retry-errors")
    check(run_cli(*judge), INCOMPLETE, "scored 0 answers")  # still failed, and said so again


def test_nothing_scored_is_a_message_not_a_traceback(tmp_path, mock_api):
    # No answer at all: `run` shows generate's message and exits 5 instead of a traceback.
    data = write_jsonl(tmp_path / "d.jsonl", rows("坏一[[fail:500x99]]", "坏二[[fail:500x99]]"))
    url = mock_api.base_url
    run = ("run", tmp_path / "r", "--model", "m", "--base-url", url, "--data", data)
    judge = ("--judge-model", "j", "--judge-base-url", url, "--max-attempts", "1")
    judge += ("--skip-judge-check",)  # the mock is no judge: its sanity check is tested apart
    check(run_cli(*run, *judge, "--no-progress"), INCOMPLETE, "2 answers failed", "no report")
    # A judge that never answers in JSON: nothing scored; report and leaderboard say so.
    run_dir = tmp_path / "imported"
    check(
        run_cli(
            "import", write_jsonl(tmp_path / "a.jsonl", answers("回答[[verdict:看不懂]]")), run_dir
        ),
        OK,
    )
    judged = run_cli(
        "judge",
        run_dir,
        "--model",
        "j",
        "--base-url",
        url,
        "--parse-attempts",
        "1",
        "--skip-judge-check",
        "--no-progress",
    )
    check(judged, INCOMPLETE, "1 verdicts")
    check(run_cli("report", run_dir, "--scorer-name", "judge:j"), INCOMPLETE, "nothing to report")
    check(run_cli("leaderboard", run_dir, "--scorer-name", "judge:j"), INCOMPLETE, "1 judge error")


def test_official_data_missing_exits_6(tmp_path):
    env = {"FLAMES_DATA_DIR": str(tmp_path), "FLAMES_CACHE_DIR": str(tmp_path / "cache")}
    check(run_cli("data", "info", env=env), FETCH, "flames data fetch")


def test_a_missing_extra_names_the_pip_extra(tmp_path):
    # Stand-ins that fail to import exactly as absent packages do.
    hidden = tmp_path / "hidden"
    for package in ("pypinyin", "opencc"):
        (hidden / package).mkdir(parents=True)
        (hidden / package / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {package}", name="{package}")\n'
        )
    env = {"PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])}
    data = write_jsonl(tmp_path / "d.jsonl", rows("我们今天去哪里"))
    for transform in ("pinyin", "traditional"):
        proc = run_cli(
            "data", "augment", "--data", data, "-o", tmp_path / "o.jsonl",
            "--transform", transform, env=env,
        )  # fmt: skip
        check(proc, FAILURE, 'pip install "flames-eval[augment]"', 'pip install ".[augment]"')


def test_to_pandas_without_pandas_is_one_line_and_exit_1_through_the_command_line(
    tmp_path, monkeypatch, capsys
):
    import flames
    import flames.cli

    run_dir = tmp_path / "run"
    flames.import_answers(Path(__file__).parents[1] / "examples" / "scored_demo.jsonl", run_dir)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails

    def command() -> None:  # what a command that tabulates a run would do
        flames.load_run(run_dir, scorer="imported").to_pandas()

    for failing in (command, lambda: __import__("pandas")):  # the error, or a bare ImportError
        monkeypatch.setattr(flames.cli, "app", failing)
        with pytest.raises(SystemExit) as exited:
            flames.cli.main()
        assert exited.value.code == FAILURE
        said = capsys.readouterr().err
        message = "".join(said.splitlines())  # one message, wrapped at the console's width
        assert said.count("error:") == 1 and message.startswith("error:"), said
        assert "Traceback" not in said and 'pip install "flames-eval[pandas]"' in message, said


def test_import_surrogates_and_ids_are_refused_and_a_corrected_import_works(tmp_path):
    run_dir = tmp_path / "run"
    good = answers("回答一", "回答二")
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, good)
    bad.write_text(bad.read_text("utf-8").replace("回答二", "回答\\udc80二"), "utf-8")
    check(run_cli("import", bad, run_dir), DATA, f"{bad}:2:", "surrogate")
    assert not (run_dir / "run.db").exists()
    for wrong in ([1, 2], {"a": 1}, True, 1.5):
        file = write_jsonl(tmp_path / "ids.jsonl", [good[0], {**good[1], "id": wrong}])
        check(run_cli("import", file, run_dir), DATA, f"{file}:2:", "string or an integer")
    # The corrected file (same name, new content) imports: nothing half-written was left.
    write_jsonl(bad, [good[0], {**good[1], "id": 7}])
    check(run_cli("import", bad, run_dir), OK, "imported 2 answers")
    with sqlite3.connect(run_dir / "run.db") as db:
        assert sorted(r[0] for r in db.execute("SELECT item_id FROM answers")) == ["7", "a0"]


def test_reserved_scorer_names_are_refused(tmp_path, mock_api):
    run_dir = tmp_path / "run"
    check(run_cli("import", write_jsonl(tmp_path / "a.jsonl", answers("回答")), run_dir), OK)
    url = mock_api.base_url
    for name in ("human:alice", "Human:alice"):
        judge = ("judge", run_dir, "--model", "j", "--base-url", url, "--scorer-name", name)
        check(run_cli(*judge), USAGE, "reserved")
    check(run_cli("score", run_dir, "--scorer-name", "judge:x"), USAGE, "reserved")
    check(run_cli("score", run_dir, "--scorer-name", "human:x"), USAGE, "reserved")
    assert mock_api.requests() == []
    with sqlite3.connect(run_dir / "run.db") as db:
        assert db.execute("SELECT count(*) FROM scorers").fetchone()[0] == 0


def stored(run_dir: Path) -> int:
    """Answers in the run so far (0 while it does not exist)."""
    try:
        with sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM answers").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    from .conftest import start_mock

    api = start_mock(tmp_path, latency=0.3)
    try:
        prompts = ["坏[[fail:500x99]]"] + [f"问题{i}" for i in range(60)]
        data = write_jsonl(tmp_path / "d.jsonl", rows(*prompts))
        run_dir = tmp_path / "r"
        cmd = [sys.executable, "-m", "flames", "generate", run_dir, "--model", "m"]
        cmd += ["--base-url", api.base_url, "--data", data, "--concurrency", "2"]
        cmd += ["--max-attempts", "1", "--max-errors", "5", "--no-progress"]
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stored(run_dir) < 4:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, errs = proc.communicate(timeout=60)
        text = out.decode() + errs.decode()
        assert proc.returncode == INTERRUPTED, text
        assert "Traceback" not in text
        assert "Run the same command to resume" in text and "--retry-errors" in text
    finally:
        api.proc.kill()
        api.proc.wait()


def test_debug_shows_the_traceback(tmp_path):
    plain = check(run_cli("report", tmp_path / "nothing"), FAILURE)
    assert plain.strip().count("\n") == 0  # one line
    debug = run_cli("--debug", "report", tmp_path / "nothing")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("command", ["report", "leaderboard", "compare"])
def test_an_unscored_run_is_a_message(tmp_path, command):
    run_dir = tmp_path / "run"
    check(run_cli("import", write_jsonl(tmp_path / "a.jsonl", answers("回答")), run_dir), OK)
    args = (run_dir, run_dir) if command == "compare" else (run_dir,)
    check(run_cli(command, *args), FAILURE, "not been scored")
