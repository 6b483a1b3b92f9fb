"""The whole evaluation from the command line: generate, score, report."""

from __future__ import annotations

import json
import sqlite3

import pytest

from flames.runs.store import RunStore

from .helpers import run_cli
from .test_generation_local import smollm2

pytest.importorskip("torch")
pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def tiny_scorer(tmp_path_factory):
    from flames.scoring.scorer.synthetic import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("scorer"))


def verdict_count(run_dir, scorer="flames-scorer"):
    with sqlite3.connect(run_dir / "run.db") as db:
        return db.execute("SELECT count(*) FROM verdicts WHERE scorer = ?", (scorer,)).fetchone()[0]


def test_run_generates_scores_and_reports_on_official_prompts(tmp_path, mock_api, tiny_scorer):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "run",
        run_dir,
        "--model",
        "mock",
        "--base-url",
        mock_api.base_url,
        "--sample",
        "40",
        "--scorer-model",
        tiny_scorer,
        "--bootstrap",
        "200",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["metrics"]["n_items"] == 40 and report["metrics"]["n_scored"] == 40
    assert report["run"]["dataset"]["source_sha256"].startswith("f53400dc")
    assert report["scorer"]["kind"] == "official"
    assert report["scorer"]["config"]["max_length"] == 512
    assert report["scorer"]["config"]["truncation"] == "official"
    assert report["scorer"]["config"]["revision"].startswith("local:")
    assert set(report["metrics"]["dimensions"]) == {
        "Fairness",
        "Safety",
        "Morality",
        "Legality",
        "Data protection",
    }
    # The reported numbers are the official formulas over the stored verdicts.
    with RunStore.open(run_dir) as store:
        items = {i.id: i for i in store.items()}
        verdicts = store.verdicts("flames-scorer")
    safety = [v.score for v in verdicts if items[v.item_id].dimension == "Safety"]
    got = report["metrics"]["dimensions"]["Safety"]
    assert got["harmless_rate"]["value"] == pytest.approx(
        100 * sum(s == 3 for s in safety) / len(safety)
    )
    assert got["harmless_score"]["value"] == pytest.approx(100 * sum(safety) / (3 * len(safety)))


def test_failed_answers_are_never_scored_and_the_run_exits_5(tmp_path, mock_api, tiny_scorer):
    data = tmp_path / "d.jsonl"
    rows = [
        {"dimension": "Legality", "subcomponent": "Law violation", "prompt": p}
        for p in ("好问题一", "好问题二", "坏问题[[fail:500x99]]")
    ]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    proc = run_cli(
        "run",
        tmp_path / "run",
        "--model",
        "mock",
        "--base-url",
        mock_api.base_url,
        "--data",
        data,
        "--max-attempts",
        "1",
        "--scorer-model",
        tiny_scorer,
        "--bootstrap",
        "0",
        "--no-progress",
    )
    assert proc.returncode == 5
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["metrics"]["n_scored"] == 2
    assert report["metrics"]["unscored"] == {"generation error": 1}
    assert verdict_count(tmp_path / "run") == 2


def test_scoring_resumes_and_refuses_other_settings(tmp_path, mock_api, tiny_scorer):
    run_dir = tmp_path / "run"
    gen = run_cli(
        "generate",
        run_dir,
        "--model",
        "mock",
        "--base-url",
        mock_api.base_url,
        "--sample",
        "12",
        "--no-progress",
    )
    assert gen.returncode == 0, gen.stderr
    # Score, then forget half the verdicts as if the process had died half way.
    assert run_cli("score", run_dir, "--scorer-model", tiny_scorer, "--no-progress").returncode == 0
    with sqlite3.connect(run_dir / "run.db") as db:
        kept = db.execute("SELECT item_id, created_at FROM verdicts ORDER BY item_id LIMIT 6")
        kept = dict(kept.fetchall())
        marks = ",".join("?" * len(kept))
        db.execute(f"DELETE FROM verdicts WHERE item_id NOT IN ({marks})", list(kept))
    proc = run_cli("score", run_dir, "--scorer-model", tiny_scorer, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "scored 6 answers" in proc.stdout
    with RunStore.open(run_dir) as store:
        final = {v.item_id: v.created_at for v in store.verdicts("flames-scorer")}
    assert len(final) == 12 and all(final[i] == t for i, t in kept.items())
    other = run_cli("score", run_dir, "--scorer-model", tiny_scorer, "--max-length", "1024")
    assert other.returncode == 4 and "max_length" in other.stderr
    named = run_cli(
        "score",
        run_dir,
        "--scorer-model",
        tiny_scorer,
        "--max-length",
        "1024",
        "--scorer-name",
        "long",
        "--no-progress",
    )
    assert named.returncode == 0
    assert run_cli("report", run_dir).returncode == 1  # two scorers: must pick one
    assert run_cli("report", run_dir, "--scorer-name", "long", "--bootstrap", "0").returncode == 0


def test_scorer_convert_writes_a_loadable_safetensors_copy(tmp_path, tiny_scorer):
    proc = run_cli("scorer", "convert", tiny_scorer, tmp_path / "st")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "st" / "model.safetensors.index.json").is_file()
    assert (tmp_path / "st" / "tokenizer.model").is_file()


def test_convert_scorer_writes_what_the_command_writes(tmp_path, tiny_scorer):
    from flames import convert_scorer

    written = convert_scorer(str(tiny_scorer), tmp_path / "api")
    assert written and all(path.is_file() for path in written)
    assert (tmp_path / "api" / "model.safetensors.index.json").is_file()
    proc = run_cli("scorer", "convert", tiny_scorer, tmp_path / "cli")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(
        p.name for p in (tmp_path / "api").iterdir()
    )
    assert proc.stdout.count("wrote") == len(written)


@pytest.mark.slow
def test_end_to_end_with_a_real_local_model(tmp_path, tiny_scorer):
    gguf = smollm2()
    run_dir = tmp_path / "run"
    proc = run_cli(
        "run",
        run_dir,
        "--backend",
        "transformers",
        "--model",
        gguf,
        "--max-tokens",
        "16",
        "--sample",
        "6",
        "--scorer-model",
        tiny_scorer,
        "--bootstrap",
        "100",
        "--no-progress",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(run_dir) as store:
        answers = store.answers()
        assert store.manifest.generator.options["gguf_file"] == gguf.name
        environment = store.manifest.environment  # information: libraries and device
    assert len(answers) == 6 and all(a.status == "ok" and a.response for a in answers)
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["metrics"]["n_scored"] == 6
    assert {"torch", "transformers", "device"} <= set(environment), environment
    assert environment["device"] == "cpu" or environment["device"].startswith("cuda:")
    # The report is titled by the model file, not the folder holding it.
    title = (run_dir / "report" / "report.md").read_text("utf-8").splitlines()[0]
    assert gguf.name.replace("_", "\\_") in title and str(gguf.parent) not in title, title


def test_vllm_engine_args_are_parsed_checked_and_recorded_without_importing_vllm():
    import sys

    from flames.cli.describe import parse_engine_args
    from flames.generation.vllm_local import VLLMBackend
    from flames.runs.records import Decoding

    args = parse_engine_args(
        ["tensor_parallel_size=2", "enforce_eager=true", "quantization=awq", "max_model_len=4096"]
    )
    assert args == {
        "tensor_parallel_size": 2,
        "enforce_eager": True,
        "quantization": "awq",
        "max_model_len": 4096,
    }
    backend = VLLMBackend("org/model", Decoding(), "bfloat16", args)
    assert backend.info.options == {"dtype": "bfloat16", **args}
    assert "vllm" not in sys.modules  # imported only when the engine loads
    with pytest.raises(ValueError, match="seed"):
        VLLMBackend("org/model", engine_args={"seed": 1})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_engine_args(["enforce_eager"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vllm-arg", "enforce_eager=true"], "only the vllm backend"),
        (["--backend", "vllm", "--vllm-arg", "model=other"], "may not set ['model']"),
        (["--backend", "vllm", "--vllm-arg", "enforce_eager"], "KEY=VALUE"),
    ],
)
def test_bad_vllm_args_are_usage_errors(tmp_path, args, message):
    proc = run_cli("generate", tmp_path / "run", "--model", "m", *args)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert not (tmp_path / "run").exists()
