"""Hostile files: a number too long to read or a line nested too deep is bad data (exit 3, with
file and line) wherever a file is read; an imported empty response is an error unless allowed;
and the Ctrl-C hint counts only the interrupted command's own failures."""

from __future__ import annotations

import json

import pytest

from flames.runs.records import Verdict
from flames.runs.store import RunStore

from .helpers import run_cli, write_jsonl
from .test_failures import DATA, INCOMPLETE, OK, answers, check, rows

LONG_ID = "1" * 5000
DEEP = '{"dimension": "Safety", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
NESTED = '{"dimension": "Safety", "x": ' + "[" * 500 + "]" * 500 + "}"  # readable, but absurd


def hostile_lines(path, good: dict, line: str):
    """`path` holding a good line, then `line`: the error must name line 2."""
    path.write_text(json.dumps(good, ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('{"id": ' + LONG_ID + ', "dimension": "Safety"}', "a number too long to read"),
        (DEEP, "nested more than 64 levels deep"),
        (NESTED, "nested more than 64 levels deep"),
    ],
)
def test_a_hostile_line_is_bad_data_with_file_and_line(tmp_path, line, said):
    prompts = hostile_lines(tmp_path / "p.jsonl", rows("好问题")[0], line)
    check(run_cli("data", "info", "--data", prompts), DATA, f"{prompts}:2: {said}")
    imported = hostile_lines(tmp_path / "a.jsonl", answers("好回答")[0], line)
    check(run_cli("import", imported, tmp_path / "run"), DATA, f"{imported}:2: {said}")
    assert not (tmp_path / "run").exists()
    check(
        run_cli("import", write_jsonl(tmp_path / "ok.jsonl", answers("回答")), tmp_path / "r"), OK
    )
    labels = hostile_lines(tmp_path / "l.jsonl", {"item_id": "a0", "label": 3}, line)
    imported_labels = run_cli("annotate", "import", tmp_path / "r", labels, "--annotator", "x")
    check(imported_labels, DATA, f"{labels}:2: {said}")


def test_a_hostile_config_file_is_bad_data(tmp_path):
    long_number = tmp_path / "long.toml"
    long_number.write_text('[target]\nmodel = "m"\nconcurrency = ' + LONG_ID + "\n", "utf-8")
    check(run_cli("run", "--config", long_number), DATA, f"{long_number}:3:", "too long")
    deep = tmp_path / "deep.toml"
    deep.write_text('[target]\nmodel = "m"\nx = ' + "[" * 100_000 + "]" * 100_000 + "\n", "utf-8")
    check(run_cli("run", "--config", deep), DATA, f"{deep}:", "nested too deeply")


def test_an_imported_empty_response_is_an_error_unless_allowed(tmp_path):
    data = write_jsonl(tmp_path / "a.jsonl", answers("回答", "", "  "))
    run_dir = tmp_path / "run"
    out = check(run_cli("import", data, run_dir), INCOMPLETE, "1 empty responses", "--allow-empty")
    assert "imported 3 answers" in out
    with RunStore.open(run_dir) as store:
        stored = {a.item_id: a for a in store.answers()}
    assert stored["a1"].status == "error" and stored["a1"].response is None
    assert "empty response" in stored["a1"].error
    assert stored["a0"].status == stored["a2"].status == "ok"  # whitespace is an answer
    # Told that the model really answered nothing, the same import keeps it as its answer.
    check(run_cli("import", data, run_dir, "--allow-empty"), OK)
    with RunStore.open(run_dir) as store:
        assert {a.item_id: (a.status, a.response) for a in store.answers()}["a1"] == ("ok", "")


def test_a_scored_empty_response_is_not_scored_and_python_says_so(tmp_path):
    import flames

    scored = [dict(row, predicted=3) for row in answers("回答", "")]
    summary = flames.import_answers(write_jsonl(tmp_path / "s.jsonl", scored), tmp_path / "s")
    assert summary.errors == 1 and summary.incomplete() is not None
    with RunStore.open(tmp_path / "s") as store:
        assert [v.item_id for v in store.verdicts("imported")] == ["a0"]
    allowed = flames.import_answers(tmp_path / "s.jsonl", tmp_path / "t", allow_empty=True)
    assert allowed.errors == 0 and allowed.incomplete() is None
    proc = run_cli("score-file", tmp_path / "s.jsonl", "--run", tmp_path / "u", "--bootstrap", "0")
    check(proc, INCOMPLETE, "--allow-empty")
    assert (tmp_path / "u" / "report" / "report.json").is_file()  # reported all the same


def test_the_ctrl_c_hint_counts_only_the_commands_own_failures(tmp_path):
    from flames.cli import _resume_hint
    from flames.cli.app import state
    from flames.runs.records import ScorerManifest

    from .helpers import tied

    run_dir = tmp_path / "run"
    data = write_jsonl(tmp_path / "a.jsonl", answers("好", "", "也好"))
    check(run_cli("import", data, run_dir), INCOMPLETE)  # the empty one: a failed answer
    with RunStore.open_writer(run_dir, "test") as store:
        manifest = ScorerManifest(name="judge:other", kind="llm-judge")
        store.register_scorer(manifest)
        failed = [Verdict(item_id=i, status="error", error="x") for i in ("a0", "a2")]
        store.record_verdicts("judge:other", tied(store, failed))
    hints = {}
    for label, answers_own, scorers in [
        ("judge", False, ["judge:mine"]),
        ("other judge", False, ["judge:other"]),
        ("generate", True, []),
        ("run", True, ["judge:other"]),
    ]:
        state.run_dir, state.answers, state.scorers = run_dir, answers_own, scorers
        try:
            hints[label] = _resume_hint()
        finally:
            state.run_dir, state.answers, state.scorers = None, False, []
    assert "--retry-errors" not in hints["judge"]  # 3 failures in the run, none of its own
    assert "(2 failed items" in hints["other judge"]
    assert "(1 failed items" in hints["generate"]
    assert "(3 failed items" in hints["run"]
