"""A local model on CPU gets defaults that finish (shorter answers, smaller batches) where the
user set none, recorded in the manifest like any setting; values the user set are kept as
given. Progress shows as log lines where the output is not a terminal, with an estimate of the
whole run after the first batch."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flames._api.pieces import CPU_BATCH_SIZE, CPU_MAX_TOKENS, describe, device_defaults
from flames._config import DecodingConfig, Evaluation, TargetConfig, load_evaluation

from .helpers import write_jsonl

QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115  (lives as long as the tests)


def local(**target: object) -> Evaluation:
    return Evaluation(target=TargetConfig(model="m", backend="transformers", **target))


def chosen(evaluation: Evaluation, run_dir: Path) -> tuple[int | None, int]:
    target = device_defaults(evaluation, run_dir, QUIET).target
    return target.decoding.max_tokens, target.batch_size


def test_on_cpu_unset_length_and_batch_are_smaller(tmp_path):
    assert chosen(local(device="cpu"), tmp_path) == (CPU_MAX_TOKENS, CPU_BATCH_SIZE)
    vllm = Evaluation(target=TargetConfig(model="m", backend="vllm", device="cpu"))
    assert chosen(vllm, tmp_path) == (CPU_MAX_TOKENS, 8)  # vLLM batches as it likes


def test_values_the_user_set_are_kept(tmp_path):
    both = local(device="cpu", batch_size=8, decoding=DecodingConfig(max_tokens=1024))
    assert device_defaults(both, tmp_path, QUIET) is both  # the same manifest as before
    only_length = local(device="cpu", decoding=DecodingConfig(temperature=0.7, max_tokens=64))
    assert chosen(only_length, tmp_path) == (64, CPU_BATCH_SIZE)


def test_elsewhere_nothing_changes(tmp_path):
    gpu = local(device="cuda")
    assert device_defaults(gpu, tmp_path, QUIET) is gpu
    api = Evaluation(target=TargetConfig(model="m", device="cpu"))
    assert device_defaults(api, tmp_path, QUIET) is api


def test_unset_stays_unset_through_files_and_changes(tmp_path):
    config = tmp_path / "eval.toml"
    config.write_text(
        '[target]\nmodel = "m"\nbackend = "transformers"\ndevice = "cpu"\n'
        "[target.decoding]\ntemperature = 0.5\n",
        "utf-8",
    )
    changed = describe(config, sample=3)
    assert "max_tokens" not in changed.target.decoding.model_fields_set
    assert "batch_size" not in changed.target.model_fields_set
    assert chosen(changed, tmp_path) == (CPU_MAX_TOKENS, CPU_BATCH_SIZE)
    assert changed.target.decoding.temperature == 0.5
    settings = load_evaluation(config).settings()
    assert "max_tokens" not in settings["target"]["decoding"]
    assert "batch_size" not in settings["target"]


# -- end to end, with a tiny model ----------------------------------------------------------


def flames(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command in a subprocess whose output is a pipe (not a terminal), as in CI logs."""
    return subprocess.run(
        [sys.executable, "-m", "flames", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FLAMES_PROGRESS_INTERVAL": "1", **(env or {})},
    )


def manifest(run_dir: Path) -> dict:
    with sqlite3.connect(run_dir / "run.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
    return json.loads(row[0])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from .helpers import tiny_chat_model

    return tiny_chat_model(tmp_path_factory.mktemp("tiny"))


def prompts(tmp_path: Path, n: int) -> Path:
    rows = [
        {"dimension": "Safety", "subcomponent": "Mental harm", "prompt": f"问题{i}"}
        for i in range(n)
    ]
    return write_jsonl(tmp_path / "d.jsonl", rows)


def test_cpu_defaults_are_said_and_recorded(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    args = ["generate", run_dir, "--backend", "transformers", "--model", tiny_model]
    done = flames(*args, "--data", prompts(tmp_path, 2), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "--max-tokens 256 and --batch-size 4" in done.stdout
    recorded = manifest(run_dir)
    assert recorded["generator"]["decoding"]["max_tokens"] == CPU_MAX_TOKENS
    assert recorded["generator"]["concurrency"] == CPU_BATCH_SIZE
    assert recorded["evaluation"]["target"]["decoding"]["max_tokens"] == CPU_MAX_TOKENS
    assert recorded["evaluation"]["target"]["batch_size"] == CPU_BATCH_SIZE
    assert "generate: 2/2 answers (100%)" in done.stderr  # progress as log lines


def test_settings_given_are_recorded_as_given_and_a_resume_keeps_them(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    data = prompts(tmp_path, 3)
    args = ["generate", run_dir, "--backend", "transformers", "--model", tiny_model]
    args += ["--data", data, "--device", "cpu"]
    first = flames(*args, "--max-tokens", "5", "--batch-size", "8", "--sample", "2")
    assert first.returncode == 0, first.stderr
    assert "note:" not in first.stdout
    recorded = manifest(run_dir)
    assert recorded["generator"]["decoding"]["max_tokens"] == 5
    assert recorded["generator"]["concurrency"] == 8
    # Resumed without them: the run's own settings, not the CPU defaults (no exit 4).
    again = flames(*args, "--sample", "2")
    assert again.returncode == 0, again.stderr
    assert "note:" not in again.stdout


SLOW = """
import time

def answer(prompt):
    time.sleep(0.4)
    return "好的"
"""


def test_progress_prints_log_lines_off_a_terminal(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW, "utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    args = ["--backend", "callable", "--model", "slow:answer"]
    args += ["--data", prompts(tmp_path, 10), "--concurrency", "2"]
    done = flames("generate", tmp_path / "run", *args, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("generate: the first 2 answers took") for line in lines), lines
    assert any("answers (" in line and "left" in line for line in lines), lines  # done/total
    assert any("/s," in line or "/min," in line for line in lines), lines  # the rate
    assert lines[-1].startswith("generate: 10/10 answers (100%), 0 errors in"), lines
    assert "\x1b" not in done.stderr  # plain text, no bar
    quiet = flames("generate", tmp_path / "quiet", *args, "--no-progress", env=env)
    assert quiet.returncode == 0 and "generate:" not in quiet.stderr


def test_scoring_progress_prints_log_lines_off_a_terminal(tmp_path):
    pytest.importorskip("torch")
    from flames.scoring.scorer.synthetic import build_checkpoint

    scorer = build_checkpoint(tmp_path / "scorer")
    item = {"dimension": "Safety", "subcomponent": "Mental harm", "response": "答"}
    answers = [dict(item, prompt=f"问题{i}") for i in range(20)]
    run_dir = tmp_path / "run"
    assert flames("import", write_jsonl(tmp_path / "a.jsonl", answers), run_dir).returncode == 0
    done = flames("score", run_dir, "--scorer-model", scorer)
    assert done.returncode == 0, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("score flames-scorer: 20/20 answers (100%), 0 errors in"), done.stderr
