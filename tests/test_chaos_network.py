"""Chaos: generate, judge and report against the fault-injecting mock server, every network
fault mixed at random over one run. Loopback only; bounded in prompts, attempts and time."""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections import Counter

import pytest

from flames.clients.mock_server import expected_score
from flames.runs.store import RunStore
from flames.scoring.judge import judge_prompt

from .helpers import run_cli, write_jsonl

pytestmark = pytest.mark.chaos

TRANSIENT = [
    "[[fail:429x1]]",
    "[[fail:500x2]]",
    "[[fail:429x1]][[retry-after:nan]]",
    "[[fail:503x1]][[retry-after:-1]]",
    "[[fail:429x1]][[retry-after:1e999]]",
    "[[fail:429x1]][[retry-after:soon]]",
    "[[hang:1]]",
    "[[malformed:1]]",
    "[[empty:1]]",
    "[[blank:1]]",
    "[[extra:1]]",
    "[[ansi:1]]",
    "[[leak:500x1]]",
    "[[leak:200x1]]",
    # Broken 200 replies: kept with what is broken recorded as unknown, or asked again.
    "[[hostile:usage-string]]",
    "[[hostile:usage-list]]",
    "[[hostile:tokens-text]]",
    "[[hostile:tokens-fraction]]",
    "[[hostile:tokens-huge]]",
    "[[hostile:tokens-negative]]",
    "[[hostile:tokens-digits]]",
    "[[hostile:finish-list]]",
    "[[hostile:surrogate]]",
    "[[hostile:deepx1]]",
]
PERMANENT = ["[[fail:503x99]]", "[[blank:99]]", "[[fail:401x1]]", "[[leak:400x1]]"]
PERMANENT += ["[[hostile:deep]]", "[[bomb:1]]"]
"""Faults no retry within one command overcomes (401 and 400 are final, and so is a reply past
the size limit: a gzip bomb inflating to 1 GiB)."""
ALWAYS = ("x99]]", "[[blank:99]]", "[[hostile:deep]]", "[[bomb:1]]")
"""The permanent faults no stray reply can stand in for."""
N = 120
ATTEMPTS = 4
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def chaos_prompts(seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(N):
        faults = rng.sample(TRANSIENT, rng.choice([0, 1, 1, 2]))
        if i % 10 == 0:  # first, so that it applies from the first attempt
            faults.insert(0, rng.choice(PERMANENT))
        texts.append(f"问题{i:03d}" + "".join(faults) + "[[score:auto]]")
    return texts


def echo(content: str) -> str:
    """What the mock server echoed: its JSON, less the U+FFFD a lone surrogate became."""
    return json.loads(content.removesuffix("\ufffd"))["echo"]


def integrity(run_dir) -> str:
    with sqlite3.connect(run_dir / "run.db") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def state(run_dir):
    with RunStore.open(run_dir) as store:
        items = {i.id: i for i in store.items()}
        answers = store.answers()
        verdicts = store.verdicts("judge:j") if "judge:j" in store.scorers() else []
    return items, answers, verdicts


def test_generate_judge_and_report_under_every_network_fault(tmp_path, mock_api):
    texts = chaos_prompts()
    rows = [{"dimension": "Safety", "subcomponent": "Physical harm", "prompt": t} for t in texts]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    run_dir = tmp_path / "run"
    key = "sk-chaos-" + "7" * 24
    network = ["--base-url", mock_api.base_url, "--concurrency", "8", "--timeout", "2"]
    network += ["--max-attempts", str(ATTEMPTS), "--no-progress", "--api-key-env", "CHAOS_KEY"]
    env = {"CHAOS_KEY": key}

    def generate(*extra: str):
        return run_cli(
            "generate", run_dir, "--model", "m", "--data", data, "--max-errors", "1000",
            *network, *extra, env=env, timeout=300,
        )  # fmt: skip

    proc = generate()
    assert proc.returncode == 5, proc.stderr
    items, answers, _ = state(run_dir)
    prompt_of = {i: item.prompt for i, item in items.items()}
    # 0 lost: one answer per prompt, ok or error. 0 wrong: each answer echoes its own prompt.
    assert sorted(a.item_id for a in answers) == sorted(items)
    ok = {a.item_id: a for a in answers if a.status == "ok"}
    for item_id, answer in ok.items():
        assert echo(answer.response) == prompt_of[item_id]
    failed = {prompt_of[a.item_id] for a in answers if a.status == "error"}
    # Failures only where a fault outlasts the attempts. A final 401 or 400 may be missed when
    # a stray reply took its place (and was caught): the next attempt succeeds.
    always = {t for t in texts if any(fault in t for fault in ALWAYS)}
    assert always <= failed <= {t for t in texts if any(f in t for f in PERMANENT)}
    assert always
    assert all(a.error and a.response is None for a in answers if a.status == "error")
    asked = Counter(r["prompt"] for r in mock_api.requests())
    assert max(asked.values()) <= ATTEMPTS
    assert integrity(run_dir) == "ok"

    # --retry-errors asks again for the failures only: 0 asked again.
    before = len(mock_api.requests())
    assert generate("--retry-errors").returncode == 5
    assert {r["prompt"] for r in mock_api.requests()[before:]} <= failed

    judged = run_cli(
        "judge", run_dir, "--model", "j", "--parse-attempts", "2", "--skip-judge-check", *network,
        env=env,
    )  # fmt: skip
    assert judged.returncode in (0, 5), judged.stderr
    items, answers, verdicts = state(run_dir)
    ok = {a.item_id: a for a in answers if a.status == "ok"}
    # Every answer judged exactly once; errors never judged; each verdict is its own prompt's.
    assert sorted(v.item_id for v in verdicts) == sorted(ok)
    scored = {v.item_id: v for v in verdicts if v.status == "ok"}
    assert len(scored) >= N // 2
    for item_id, verdict in scored.items():
        asked_judge = judge_prompt(items[item_id], ok[item_id].response)
        assert echo(verdict.raw) == asked_judge
        assert verdict.score == expected_score(asked_judge)
    assert integrity(run_dir) == "ok"

    report = run_cli(
        "report", run_dir, "--scorer-name", "judge:j", "--bootstrap", "0", "--format", "json"
    )
    assert report.returncode == 0, report.stderr
    metrics = json.loads((run_dir / "report" / "report.json").read_text("utf-8"))["metrics"]
    assert metrics["n_items"] == N and metrics["n_scored"] == len(scored)  # 0 errors scored
    lines = (run_dir / "report" / "scored.jsonl").read_text("utf-8").splitlines()
    predicted = {r["id"]: r["predicted"] for r in map(json.loads, lines)}
    assert {i for i, p in predicted.items() if p is not None} == set(scored)
    assert all(predicted[i] == v.score for i, v in scored.items())

    assert "replies kept after a repair" in proc.stdout + judged.stdout
    tokens = [(a.prompt_tokens, a.completion_tokens) for a in answers]
    assert all(n is None or 0 <= n <= 10**9 for pair in tokens for n in pair)
    for out in (proc, judged, report):
        assert "Traceback" not in out.stderr
        assert CONTROL.findall(out.stdout + out.stderr) == []
        assert key not in out.stdout + out.stderr
    for path in run_dir.rglob("*"):
        assert not path.is_file() or key.encode() not in path.read_bytes()
