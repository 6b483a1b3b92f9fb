"""Answer k of a prompt gets its own seed, derived the same way by every backend."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from flames.data.dataset import Item
from flames.generation.base import Request, sample_seed
from flames.runs.records import Decoding

from .helpers import tiny_chat_model

ITEM = Item(id="q", dimension="Safety", subcomponent="Mental harm", prompt="你好，今天天气怎么样？")


def test_sample_seeds_are_distinct_and_stable():
    assert sample_seed(None, 3) is None
    assert sample_seed(11, 0) == 11  # one answer per prompt: the seed as given
    seeds = [sample_seed(11, k) for k in range(100)]
    assert len(set(seeds)) == 100
    assert all(0 <= s < 2**31 for s in seeds)
    assert seeds == [sample_seed(11, k) for k in range(100)]  # no hidden state
    neighbour = {sample_seed(12, k) for k in range(100)}
    assert not set(seeds[1:]) & neighbour  # seed 12 does not reuse seed 11's samples


def test_openai_transformers_and_vllm_backends_derive_the_same_seeds(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from flames.generation.openai_api import OpenAIBackend
    from flames.generation.transformers_local import TransformersBackend
    from flames.generation.vllm_local import VLLMBackend

    decoding = Decoding(temperature=1.0, seed=7, samples=3, max_tokens=6)
    requests = [Request(ITEM, k) for k in range(3)]
    expected = [sample_seed(7, k) for k in range(3)]
    assert len(set(expected)) == 3

    api = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", decoding=decoding)
    assert [api.request_body(r)["seed"] for r in requests] == expected

    fake_vllm = types.ModuleType("vllm")
    fake_vllm.SamplingParams = lambda **params: params  # what the backend asks vLLM for
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    vllm = VLLMBackend("m", decoding)
    assert [vllm.request_params(r)["seed"] for r in requests] == expected

    local = TransformersBackend(str(tiny_chat_model(tmp_path)), decoding, device="cpu")
    seeded = []
    manual_seed = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda s: (seeded.append(s), manual_seed(s))[1])

    async def collect():
        return {a.sample: a.response async for a in local.stream(requests)}

    first = asyncio.run(collect())
    assert sorted(seeded) == sorted(expected)
    assert len(set(first.values())) == 3  # three seeds, three different answers
    assert asyncio.run(collect()) == first  # and the same ones again
