from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from flames.clients.chat import RateLimiter
from flames.runs.store import RunStore

from .conftest import start_mock
from .helpers import run_cli, tied, write_jsonl


def prompts(tmp_path, texts, name="data.jsonl"):
    rows = [{"dimension": "Safety", "subcomponent": "Physical harm", "prompt": t} for t in texts]
    return write_jsonl(tmp_path / name, rows)


def generate(run_dir, data, api, *extra):
    return run_cli(
        "generate",
        run_dir,
        "--model",
        "mock-model",
        "--base-url",
        api.base_url,
        "--data",
        data,
        "--no-progress",
        *extra,
    )


def answers(run_dir):
    with RunStore.open(run_dir) as store:
        return {a.item_id: a for a in store.answers()}, {i.id: i for i in store.items()}


def test_decoding_settings_are_sent_and_recorded(tmp_path, mock_api):
    data = prompts(tmp_path, ["第一个问题", "第二个问题"])
    proc = generate(
        tmp_path / "run",
        data,
        mock_api,
        "--temperature",
        "0.7",
        "--top-p",
        "0.9",
        "--max-tokens",
        "64",
        "--gen-seed",
        "11",
        "--system-prompt",
        "你是助手",
    )
    assert proc.returncode == 0, proc.stderr
    got, items = answers(tmp_path / "run")
    for item_id, answer in got.items():
        echo = json.loads(answer.response)
        assert echo["echo"] == items[item_id].prompt
        assert (echo["temperature"], echo["top_p"], echo["max_tokens"], echo["seed"]) == (
            0.7,
            0.9,
            64,
            11,
        )
        assert echo["system"] == "你是助手" and echo["model"] == "mock-model"
        assert answer.prompt_tokens == len(items[item_id].prompt)
        assert answer.completion_tokens == len(answer.response)
    with RunStore.open(tmp_path / "run") as store:
        manifest = store.manifest
    assert manifest.generator.decoding.temperature == 0.7
    assert manifest.generator.decoding.system_prompt == "你是助手"
    assert manifest.generator.base_url == mock_api.base_url
    assert manifest.dataset.n_items == 2
    total_out = sum(a.completion_tokens for a in got.values())
    assert f"{total_out} out" in proc.stdout


def test_failures_are_retried_then_recorded_as_errors(tmp_path, mock_api):
    texts = [
        "限流[[fail:429x2]]",
        "坏了[[fail:500x99]]",
        "格式[[malformed:1]]",
        "空的[[empty:1]]",
        "鉴权[[fail:401x1]]",
        "正常",
    ]
    data = prompts(tmp_path, texts)
    proc = generate(tmp_path / "run", data, mock_api, "--max-attempts", "3")
    assert proc.returncode == 5, proc.stderr
    assert "--retry-errors" in proc.stderr
    got, items = answers(tmp_path / "run")
    by_prompt = {items[i].prompt: a for i, a in got.items()}
    assert by_prompt["限流[[fail:429x2]]"].status == "ok"
    assert by_prompt["限流[[fail:429x2]]"].attempts == 3
    assert by_prompt["格式[[malformed:1]]"].status == "ok"
    assert by_prompt["空的[[empty:1]]"].status == "ok"
    failed = by_prompt["坏了[[fail:500x99]]"]
    assert failed.status == "error" and failed.response is None and failed.attempts == 3
    assert "500" in failed.error
    not_retried = by_prompt["鉴权[[fail:401x1]]"]
    assert not_retried.status == "error" and not_retried.attempts == 1
    assert mock_api.asked("鉴权") == 1

    # --retry-errors asks again only for the two failures.
    before = len(mock_api.requests())
    proc = generate(tmp_path / "run", data, mock_api, "--max-attempts", "3", "--retry-errors")
    assert proc.returncode == 5
    new = mock_api.requests()[before:]
    assert {r["prompt"] for r in new} == {"坏了[[fail:500x99]]", "鉴权[[fail:401x1]]"}
    got, items = answers(tmp_path / "run")
    assert {items[i].prompt for i, a in got.items() if a.status == "error"} == {
        "坏了[[fail:500x99]]"
    }


def test_a_hanging_request_times_out_and_is_retried(tmp_path, mock_api):
    data = prompts(tmp_path, ["卡住[[hang:1]]"])
    proc = generate(tmp_path / "run", data, mock_api, "--timeout", "0.5")
    assert proc.returncode == 0, proc.stderr
    (answer,) = answers(tmp_path / "run")[0].values()
    assert answer.status == "ok" and answer.attempts == 2


def test_error_budget_stops_the_run(tmp_path, mock_api):
    texts = [f"坏{i}[[fail:500x99]]" for i in range(40)]
    data = prompts(tmp_path, texts)
    proc = generate(
        tmp_path / "run",
        data,
        mock_api,
        "--max-attempts",
        "1",
        "--max-errors",
        "3",
        "--concurrency",
        "2",
    )
    assert proc.returncode == 5
    message = " ".join(proc.stderr.split())
    assert "stopped after 3 failures, the error budget (--max-errors 3)" in message
    assert "3 answers are stored as errors" in message
    assert "run the same command with --retry-errors" in message
    got, _ = answers(tmp_path / "run")
    assert len(got) == 3 and all(a.status == "error" for a in got.values())
    assert len(mock_api.requests()) < 40


def test_resuming_under_other_settings_is_refused(tmp_path, mock_api):
    data = prompts(tmp_path, ["问题"])
    assert generate(tmp_path / "run", data, mock_api).returncode == 0
    proc = generate(tmp_path / "run", data, mock_api, "--temperature", "1.0")
    assert proc.returncode == 4
    assert "generator.decoding.temperature: 0.0 (stored) != 1.0 (now)" in proc.stderr
    other = prompts(tmp_path, ["别的问题"], name="other.jsonl")
    proc = generate(tmp_path / "run", other, mock_api)
    assert proc.returncode == 4 and "dataset.items_sha256" in proc.stderr
    # The same command resumes and asks nothing new.
    before = len(mock_api.requests())
    assert generate(tmp_path / "run", data, mock_api).returncode == 0
    assert len(mock_api.requests()) == before


def test_api_key_comes_from_env_and_never_lands_in_results(tmp_path, mock_api):
    secret = "sk-test-5up3r-53cr3t-key"
    data = prompts(tmp_path, ["问题[[fail:400x1]]", "好问题"])
    proc = run_cli(
        "generate",
        tmp_path / "run",
        "--model",
        "m",
        "--base-url",
        mock_api.base_url,
        "--data",
        data,
        "--api-key-env",
        "MY_KEY",
        "--no-progress",
        env={"MY_KEY": secret},
    )
    assert proc.returncode == 5
    with RunStore.open(tmp_path / "run") as store:
        (failed,) = [a for a in store.answers() if a.status == "error"]
    assert "(key '***')" in failed.error  # the server quoted it; the record has it masked
    everything = proc.stdout + proc.stderr
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            everything += path.read_bytes().decode("utf-8", "replace")
    assert secret not in everything


def test_several_samples_per_prompt(tmp_path, mock_api):
    data = prompts(tmp_path, ["甲", "乙"])
    proc = generate(tmp_path / "run", data, mock_api, "--samples", "3", "--temperature", "1")
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(tmp_path / "run") as store:
        keys = sorted((a.item_id, a.sample) for a in store.answers())
    assert len(keys) == 6 and {s for _, s in keys} == {0, 1, 2}
    assert mock_api.asked("甲") == 3


def test_rate_limiter_spaces_request_starts(monkeypatch):
    import asyncio

    import flames.clients.chat as api

    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(round(seconds, 6))

    monkeypatch.setattr(api.time, "monotonic", lambda: 100.0)
    monkeypatch.setattr(api.asyncio, "sleep", fake_sleep)
    limiter = RateLimiter(per_minute=120)

    async def five():
        for _ in range(5):
            await limiter.wait()

    asyncio.run(five())
    assert sleeps == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_sigkill_mid_run_resumes_without_losing_or_redoing_work(tmp_path):
    api = start_mock(tmp_path, latency=0.2)
    try:
        data = prompts(tmp_path, [f"问题{i:02d}" for i in range(40)])
        run_dir = tmp_path / "run"
        cmd = [
            sys.executable,
            "-m",
            "flames",
            "generate",
            str(run_dir),
            "--model",
            "m",
            "--base-url",
            api.base_url,
            "--data",
            str(data),
            "--concurrency",
            "4",
            "--no-progress",
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
        )
        deadline = time.monotonic() + 120
        done_before = 0
        while time.monotonic() < deadline:
            try:  # the file exists a moment before its tables do
                with sqlite3.connect(f"file:{run_dir / 'run.db'}?mode=ro", uri=True) as db:
                    done_before = db.execute("SELECT count(*) FROM answers").fetchone()[0]
            except sqlite3.OperationalError:
                done_before = 0
            if done_before >= 12:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 12 <= done_before < 40, "the kill should land mid-run"
        with RunStore.open(run_dir) as store:
            kept = {a.item_id: a for a in store.answers()}
        asked_before = len(api.requests())

        resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        with RunStore.open(run_dir) as store:
            final = {a.item_id: a for a in store.answers()}
            items = {i.id: i for i in store.items()}
        assert len(final) == 40 and all(a.status == "ok" for a in final.values())
        for item_id, answer in kept.items():  # nothing written before the kill was redone
            assert final[item_id].created_at == answer.created_at
        resumed_prompts = {r["prompt"] for r in api.requests()[asked_before:]}
        kept_prompts = {items[i].prompt for i in kept}
        assert not kept_prompts & resumed_prompts  # nothing finished is asked again
        assert resumed_prompts >= {i.prompt for i in items.values()} - kept_prompts
    finally:
        api.proc.kill()
        api.proc.wait()


def test_seeded_samples_are_distinct_and_reproducible(tmp_path, mock_api):
    """The mock server samples by the request's seed, as vLLM does."""
    data = prompts(tmp_path, ["[[sample]]甲", "[[sample]]乙"])
    sampling = ["--samples", "4", "--temperature", "0.7", "--gen-seed", "3", "--max-tokens", "12"]
    for run in ("run", "again"):
        assert generate(tmp_path / run, data, mock_api, *sampling).returncode == 0
    first = responses(tmp_path / "run")
    for item_id in ("p-0", "p-1"):
        texts = [first[item_id, k] for k in range(4)]
        assert len(set(texts)) == 4, texts  # one seed per sample: four different answers
    assert responses(tmp_path / "again") == first  # the same seeds again: the same answers
    greedy = generate(tmp_path / "greedy", data, mock_api, "--samples", "3", "--max-tokens", "12")
    assert greedy.returncode == 0
    assert len({text for (item, _), text in responses(tmp_path / "greedy").items()}) == 2


def responses(run_dir):
    """{(item position as p-N, sample): response} of a run."""
    with RunStore.open(run_dir) as store:
        position = {item.id: f"p-{i}" for i, item in enumerate(store.items())}
        return {(position[a.item_id], a.sample): a.response for a in store.answers()}


def test_answers_clamped_by_the_server_are_flagged_and_counted(tmp_path):
    """Like vLLM, the mock server lowers max_tokens to fit its context window, silently."""
    from flames.runs.records import ScorerManifest, Verdict

    api = start_mock(tmp_path, 0.0, "--context", "40")
    try:
        data = prompts(tmp_path, ["[[sample]]短问题", "[[sample]]另一个问题"])
        clamped = generate(tmp_path / "run", data, api, "--max-tokens", "100")
        assert clamped.returncode == 0, clamped.stderr
        summary = " ".join(clamped.stdout.split())
        assert "2 answers were cut by the server before --max-tokens 100" in summary
        with RunStore.open_writer(tmp_path / "run", "test") as store:
            got = store.answers()
            store.register_scorer(ScorerManifest(name="s", kind="human"))
            store.record_verdicts(
                "s", tied(store, [Verdict(item_id=a.item_id, status="ok", score=3) for a in got])
            )
        for answer in got:
            assert answer.finish_reason == "length" and answer.completion_tokens < 100
            assert answer.prompt_tokens + answer.completion_tokens == 40
        report = run_cli("report", tmp_path / "run", "--bootstrap", "0", "-f", "json", "--no-html")
        assert report.returncode == 0, report.stderr
        assert json.loads((tmp_path / "run" / "report" / "report.json").read_text())["clamped"] == 2
        assert "2 answers were cut by the server before --max-tokens 100" in report.stdout

        within = generate(tmp_path / "short", data, api, "--max-tokens", "8")
        assert within.returncode == 0, within.stderr
        assert "cut by the server" not in within.stdout  # finish 'length' at the limit asked
        with RunStore.open(tmp_path / "short") as store:
            assert [a.completion_tokens for a in store.answers()] == [8, 8]
    finally:
        api.proc.kill()
        api.proc.wait()


def test_concurrency_is_recorded_but_does_not_stop_a_resume(tmp_path, mock_api):
    data = prompts(tmp_path, ["一", "二", "三"])
    run_dir = tmp_path / "run"
    assert (
        generate(run_dir, data, mock_api, "--concurrency", "2", "--max-errors", "0").returncode == 0
    )
    with RunStore.open(run_dir) as store:
        assert store.manifest.generator.concurrency == 2
        assert "concurrency" not in store.manifest.identity()["generator"]
    resumed = generate(run_dir, data, mock_api, "--concurrency", "1")
    assert resumed.returncode == 0, resumed.stderr
    changed = generate(run_dir, data, mock_api, "--concurrency", "1", "--temperature", "1")
    assert changed.returncode == 4  # settings that change answers still refuse
