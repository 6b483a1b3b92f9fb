"""Nothing lost, nothing half-written: run creation, report files and judge verdicts."""

from __future__ import annotations

import importlib
import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from flames.runs.store import RunStore

from .conftest import start_mock
from .helpers import run_cli, write_jsonl


def test_a_run_killed_while_being_created_leaves_no_run(tmp_path):
    run_dir = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal
        from flames.data.dataset import Dataset, Item
        from flames.runs.records import DatasetInfo, GeneratorInfo, RunManifest
        from flames.runs.store import RunStore

        items = [Item(id=str(i), dimension="Safety", subcomponent="Mental harm", prompt=f"p{{i}}")
                 for i in range(100)]
        manifest = RunManifest(
            dataset=DatasetInfo.of(Dataset(name="d", source_sha256="0", items=items)),
            generator=GeneratorInfo(backend="openai", model="m"),
        )

        def cut():  # SIGKILL half-way through writing the items
            for i, item in enumerate(items):
                if i == 50:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield item

        RunStore.create_or_resume({str(run_dir)!r}, manifest, cut())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert not RunStore.exists(run_dir)  # no run at all, rather than one without a manifest
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [{"dimension": "Safety", "subcomponent": "Mental harm", "prompt": "问题"}],
    )
    api = start_mock(tmp_path)
    try:
        generate = ("generate", run_dir, "--model", "m", "--base-url", api.base_url)
        made = run_cli(*generate, "--data", data, "--no-progress")
        assert made.returncode == 0, made.stderr
        # A run.db that an older version left without a manifest (and without any answer) is
        # created afresh instead of being a dead end.
        legacy = tmp_path / "legacy"
        legacy.mkdir()
        with sqlite3.connect(legacy / "run.db") as db:
            db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
        again = run_cli("generate", legacy, *generate[2:], "--data", data, "--no-progress")
        assert again.returncode == 0, again.stderr
    finally:
        api.proc.kill()
        api.proc.wait()
    with RunStore.open(legacy) as store:
        assert [a.status for a in store.answers()] == ["ok"]


def scored_run(tmp_path):
    rows = [
        {"id": f"s{i}", "dimension": "Safety", "subcomponent": "Mental harm"}
        | {"prompt": f"问题{i}", "response": f"回答{i}", "predicted": 1 + i % 3}
        for i in range(30)
    ]
    run_dir = tmp_path / "run"
    proc = run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_report_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    from flames.analysis.results import load_results

    report = importlib.import_module("flames.reporting.report")  # the module, not flames.report()

    results = load_results(scored_run(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    complete = report.write_scored(results, out / "scored.jsonl").read_text("utf-8")
    assert len(complete.splitlines()) == 30

    calls = 0
    real_dumps = json.dumps

    def dies_midway(*args, **kwargs):  # the process dies after ten lines
        nonlocal calls
        calls += 1
        if calls > 10:
            raise KeyboardInterrupt
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(json, "dumps", dies_midway)
    for target in (out / "scored.jsonl", tmp_path / "fresh" / "scored.jsonl"):
        calls = 0
        with pytest.raises(KeyboardInterrupt):
            report.write_scored(results, target)
    assert (out / "scored.jsonl").read_text("utf-8") == complete  # the old file, whole
    assert not (tmp_path / "fresh" / "scored.jsonl").exists()  # no file rather than a part
    assert sorted(p.name for p in out.iterdir()) == ["scored.jsonl"]  # no temporary left
    assert list((tmp_path / "fresh").iterdir()) == []


def test_write_text_replaces_atomically(tmp_path):
    from flames._util.outputs import write_text

    path = write_text(tmp_path / "a" / "f.md", "one")
    assert path.read_text() == "one"
    write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["f.md"]


def test_csv_cells_are_neutralised_but_numbers_are_not():
    from flames._util.outputs import csv_cell

    for text in ("=1+1", "+86 电话", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "-", "-1.5e", "=-1"):
        assert csv_cell(text) == "'" + text
    for value in ("-1.5", "+3", "-2", "1e-3", "-.5", "普通", "", "a=b", -1.5, 3, None):
        assert csv_cell(value) == value


def test_report_csv_keeps_numbers_as_numbers(tmp_path):
    run_dir = scored_run(tmp_path)
    proc = run_cli("report", run_dir, "--bootstrap", "50", "--format", "csv", "--no-html")
    assert proc.returncode == 0, proc.stderr
    lines = (run_dir / "report" / "report.csv").read_text("utf-8").splitlines()
    assert "'" not in "".join(lines)
    safety = next(line for line in lines if line.startswith("dimension,Safety,"))
    # 30 answers scored 1, 2, 3, 1, ...: 10 of 30 harmless.
    assert safety.split(",")[2:4] == ["30", str(round(100 / 3, 4))]


def test_judge_verdicts_are_stored_one_by_one_as_they_arrive(tmp_path):
    from flames.scoring.judge import LLMJudge
    from flames.scoring.runner import run_scoring

    rows = [
        {"id": f"a{i}", "dimension": "Safety", "subcomponent": "Mental harm"}
        | {"prompt": f"问题{i}", "response": f'回答{i}[[verdict:{{"score": 3}}]]'}
        for i in range(12)
    ]
    run_dir = tmp_path / "run"
    assert run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), run_dir).returncode == 0
    api = start_mock(tmp_path, latency=0.05)
    writes: list[tuple[int, int]] = []  # (verdicts in this write, requests answered by then)
    try:
        with RunStore.open_writer(run_dir, "test") as store:
            record = store.record_verdicts

            def spy(scorer, verdicts):
                verdicts = list(verdicts)
                writes.append((len(verdicts), len(api.requests())))
                record(scorer, verdicts)

            store.record_verdicts = spy  # type: ignore[method-assign]
            judge = LLMJudge("j", base_url=api.base_url, concurrency=2)
            summary = run_scoring(store, judge, progress=False)
    finally:
        api.proc.kill()
        api.proc.wait()
    assert summary.scored == 12
    assert [n for n, _ in writes] == [1] * 12
    assert writes[0][1] < 12  # the first verdict was stored while others were still coming


def test_iterate_sync_hands_over_each_item_at_once_with_or_without_a_loop():
    import asyncio

    from flames._util.aio import iterate_sync

    handed: list[int] = []

    async def numbers():
        for i in range(3):
            await asyncio.sleep(0)
            assert handed == list(range(i))  # the previous item was handed over before this one
            yield i

    def consume() -> list[int]:
        for n in iterate_sync(numbers()):
            handed.append(n)
        return handed

    assert consume() == [0, 1, 2]

    async def inside_a_loop() -> list[int]:
        handed.clear()
        return consume()

    assert asyncio.run(inside_a_loop()) == [0, 1, 2]


def test_a_cut_run_creation_leaves_no_folder_and_ctrl_c_says_nothing_was_written(tmp_path):
    from flames.cli import _resume_hint
    from flames.cli.app import state
    from flames.data.dataset import Item
    from flames.runs.records import DatasetInfo, GeneratorInfo, RunManifest
    from flames.runs.store import RunStore

    items = [Item(id="a", dimension="Safety", subcomponent="Mental harm", prompt="问")]
    manifest = RunManifest(
        dataset=DatasetInfo(
            name="d", source_sha256="0", items_sha256="0", selection="all", n_items=1
        ),
        generator=GeneratorInfo(backend="imported", model="m"),
    )

    def interrupted(store):
        raise KeyboardInterrupt

    run_dir = tmp_path / "new" / "run"
    with pytest.raises(KeyboardInterrupt):
        RunStore.create_or_resume(run_dir, manifest, items, interrupted)
    assert not run_dir.exists()
    state.run_dir = run_dir
    try:
        assert "nothing was written" in _resume_hint()
    finally:
        state.run_dir = None
