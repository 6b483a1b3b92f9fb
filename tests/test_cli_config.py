"""`flames run --config FILE`, and the command line building the same description as Python."""

from __future__ import annotations

import json

import flames
from flames.runs.store import RunStore

from .conftest import REPO
from .helpers import run_cli

REFUSAL = "抱歉，我不能帮助你。"


def echo(prompt: str) -> str:
    return REFUSAL if len(prompt) % 2 else prompt


def judge(prompt: str, response: str, dimension: str) -> int:
    return 3 if response == REFUSAL else 1


def shout(prompt: str) -> str:
    return "大声：" + prompt


CONFIG = """\
[target]
backend = "callable"
model = "tests.test_cli_config:echo"
version = "7"

[data]
source = "control"
sample = 6

[[judges]]
kind = "callable"
model = "tests.test_cli_config:judge"

[statistics]
bootstrap = 100
"""


def test_run_from_a_config_file_with_an_option_overriding_it(tmp_path):
    config = tmp_path / "eval.toml"
    config.write_text(CONFIG, encoding="utf-8")
    run_dir = tmp_path / "run"
    proc = run_cli("run", run_dir, "--config", config, "--sample", "4", "--no-progress", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["metrics"]["n_items"] == 4  # --sample 4 wins over the file's 6
    assert report["scorer"]["name"] == "judge:tests.test_cli_config:judge"
    with RunStore.open(run_dir) as store:
        recorded = store.manifest.evaluation
    expected = flames.describe(
        model=echo, version="7", judge=judge, data="control", sample=4
    ).model_copy(update={"statistics": flames.StatisticsConfig(bootstrap=100)})
    assert recorded == expected.record()


def test_a_model_option_over_a_file_calls_the_function_it_names(tmp_path):
    """--model naming another function than the file's is the one called, not only the one
    recorded (the file's function was called under the new name)."""
    config = tmp_path / "eval.toml"
    config.write_text(CONFIG, encoding="utf-8")
    run_dir = tmp_path / "run"
    model = ("--model", "tests.test_cli_config:shout")
    proc = run_cli("run", run_dir, "--config", config, *model, "--no-progress", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(run_dir) as store:
        assert store.manifest.generator.model == "tests.test_cli_config:shout"
        assert all(a.response.startswith("大声：") for a in store.answers())


def test_options_alone_build_what_python_builds(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "generate",
        run_dir,
        "--backend",
        "callable",
        "--model",
        "tests.test_cli_config:echo",
        "--data",
        "control",
        "--sample",
        "5",
        "--temperature",
        "0.5",
        "--no-progress",
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(run_dir) as store:
        recorded = store.manifest.evaluation
        assert store.manifest.generator.model == "tests.test_cli_config:echo"
    expected = flames.describe(model=echo, data="control", sample=5)
    expected.target.decoding.temperature = 0.5
    # generate uses no scorer, so it records none: each scorer records its own when it scores.
    assert recorded == expected.model_copy(update={"scorer": None}).record()


def test_a_bad_config_file_names_its_line_and_field(tmp_path):
    config = tmp_path / "eval.toml"
    config.write_text(CONFIG.replace("sample = 6", "sample = -1"), encoding="utf-8")
    proc = run_cli("run", tmp_path / "run", "--config", config, cwd=REPO)
    assert proc.returncode == 3
    assert f"{config}:8: data.sample: Input should be greater than or equal to 1" in " ".join(
        proc.stderr.split()
    )
    assert not (tmp_path / "run").exists()


def test_run_needs_a_run_directory_and_a_model(tmp_path):
    config = tmp_path / "eval.toml"
    config.write_text(CONFIG, encoding="utf-8")
    proc = run_cli("run", "--config", config, cwd=REPO)
    assert proc.returncode == 2 and "no run directory" in proc.stderr
    proc = run_cli("run", tmp_path / "run")
    assert proc.returncode == 2 and "model" in proc.stderr
