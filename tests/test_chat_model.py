"""Chat models (one role of a conversation, any backend) and conversations in generation."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from flames.clients.chat import Reply
from flames.clients.chat_model import ApiChatModel
from flames.data.dataset import Item
from flames.generation.base import Request
from flames.generation.callable import CallableBackend
from flames.generation.chat_model import CallableChatModel, LocalChatModel
from flames.generation.openai_api import OpenAIBackend
from flames.runs.records import Decoding, GeneratorInfo

from .helpers import tiny_chat_model

ITEM = Item(id="q", dimension="Safety", subcomponent="Mental harm", prompt="第三个问题")
HISTORY = (
    {"role": "user", "content": "第一个问题"},
    {"role": "assistant", "content": "第一个回答"},
)


def test_an_api_chat_model_sends_the_chat_and_the_settings(mock_api):
    model = ApiChatModel(
        "m",
        Decoding(temperature=0.5, max_tokens=9, seed=4, system_prompt="你是助手"),
        base_url=mock_api.base_url,
    )

    async def ask():
        try:
            plain = await model.chat([*HISTORY, {"role": "user", "content": "第二"}])
            own = await model.chat(
                [{"role": "system", "content": "另一个系统"}, {"role": "user", "content": "问"}],
                max_tokens=3,
                seed=11,
            )
        finally:
            await model.aclose()
        return plain, own

    plain, own = asyncio.run(ask())
    echo = json.loads(plain.content)
    assert echo["echo"] == "第二" and echo["system"] == "你是助手"
    assert echo["history"] == ["user: 第一个问题", "assistant: 第一个回答"]
    assert (echo["temperature"], echo["max_tokens"], echo["seed"]) == (0.5, 9, 4)
    echo = json.loads(own.content)  # its own system prompt, and the call's settings
    assert (echo["system"], echo["max_tokens"], echo["seed"]) == ("另一个系统", 3, 11)
    assert model.info.backend == "openai" and model.info.base_url == mock_api.base_url


def test_an_api_chat_model_reports_failures_as_replies(mock_api):
    model = ApiChatModel("m", base_url=mock_api.base_url, max_attempts=1)

    async def ask():
        try:
            return await model.chat([{"role": "user", "content": "问[[fail:400]]"}])
        finally:
            await model.aclose()

    reply = asyncio.run(ask())
    assert reply.content is None and reply.error.startswith("HTTP 400")


class Recorder:
    """A local backend stand-in: records every batch it is asked to complete."""

    def __init__(self, fail_on: str | None = None):
        self.decoding = Decoding(system_prompt="系统")
        self.batches: list[tuple[list[str], int | None, int | None]] = []
        self.fail_on = fail_on
        self.thread_names: set[str] = set()

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(backend="test", model="r", decoding=self.decoding)

    def complete(self, chats, max_tokens=None, seed=None, stop=None):
        self.thread_names.add(threading.current_thread().name)
        last = [chat[-1]["content"] for chat in chats]
        self.batches.append((last, max_tokens, seed))
        if self.fail_on in last:
            raise RuntimeError("out of memory")
        assert all(chat[0] == {"role": "system", "content": "系统"} for chat in chats)
        return [Reply(content=f"答:{text}", finish_reason="stop") for text in last]


def test_concurrent_chats_share_batches_of_the_same_settings():
    backend = Recorder()
    model = LocalChatModel(backend, batch_size=4)

    async def ask():
        chats = [model.chat([{"role": "user", "content": f"q{i}"}]) for i in range(10)]
        longer = [
            model.chat([{"role": "user", "content": f"l{i}"}], max_tokens=99) for i in range(3)
        ]
        return await asyncio.gather(*chats, *longer)

    replies = asyncio.run(ask())
    assert [r.content for r in replies] == [f"答:q{i}" for i in range(10)] + [
        f"答:l{i}" for i in range(3)
    ]
    sizes = [(len(chats), limit) for chats, limit, _ in backend.batches]
    assert sizes == [(4, None), (4, None), (2, None), (3, 99)]  # never mixed, never over 4
    assert threading.main_thread().name not in backend.thread_names  # the loop stays free


def test_a_failed_batch_is_each_of_its_chats_error_and_the_next_batch_runs():
    backend = Recorder(fail_on="bad")
    model = LocalChatModel(backend, batch_size=2)

    async def ask():
        return await asyncio.gather(
            *(model.chat([{"role": "user", "content": c}]) for c in ("ok1", "bad", "ok2"))
        )

    first, second, third = asyncio.run(ask())
    assert first.error == second.error == "RuntimeError: out of memory"
    assert third.content == "答:ok2" and third.error is None


def test_a_local_chat_model_answers_as_the_backend_generates(tmp_path):
    from flames.generation.transformers_local import TransformersBackend

    backend = TransformersBackend(
        str(tiny_chat_model(tmp_path)), Decoding(max_tokens=8), device="cpu", batch_size=4
    )
    model = LocalChatModel(backend, batch_size=4)

    async def generated():
        return [a async for a in backend.stream([Request(ITEM, 0, HISTORY)])]

    async def chatted():
        return await model.chat([*HISTORY, {"role": "user", "content": ITEM.prompt}])

    (answer,) = asyncio.run(generated())
    reply = asyncio.run(chatted())
    assert answer.status == "ok" and reply.error is None
    assert (reply.content, reply.prompt_tokens, reply.completion_tokens) == (
        answer.response,
        answer.prompt_tokens,
        answer.completion_tokens,
    )
    single = backend.complete([[{"role": "user", "content": ITEM.prompt}]])[0]
    assert single.prompt_tokens < answer.prompt_tokens  # the history reached the model


def test_a_callable_chat_model_takes_the_chat_or_the_prompt():
    seen = []

    def by_messages(messages):
        seen.append(messages)
        return "好"

    async def by_prompt(prompt):
        return prompt + "!"

    async def ask():
        chat = CallableChatModel(by_messages, decoding=Decoding(system_prompt="系统"))
        single = CallableChatModel(by_prompt, input="prompt")
        broken = CallableChatModel(lambda m: 42)
        raising = CallableChatModel(lambda m: 1 / 0)
        turn = [{"role": "user", "content": "问"}]
        return (
            await chat.chat([*HISTORY, *turn]),
            await single.chat(turn),
            await single.chat([*HISTORY, *turn]),
            await broken.chat(turn),
            await raising.chat(turn),
        )

    chat, single, multi, broken, raising = asyncio.run(ask())
    assert chat.content == "好" and seen[0][0] == {"role": "system", "content": "系统"}
    assert [m["content"] for m in seen[0][1:]] == ["第一个问题", "第一个回答", "问"]
    assert single.content == "问!"
    assert "only with input='messages'" in multi.error
    assert broken.error.startswith("TypeError") and raising.error.startswith("ZeroDivisionError")


def test_backends_replay_a_conversation_before_the_prompt(mock_api):
    api = OpenAIBackend("m", base_url=mock_api.base_url)
    got = []
    function = CallableBackend(lambda messages: got.append(messages) or "好", input="messages")
    prompt_only = CallableBackend(lambda prompt: "好")

    async def collect(backend):
        return [a async for a in backend.stream([Request(ITEM, 0, HISTORY)])]

    (answer,) = asyncio.run(collect(api))
    assert json.loads(answer.response)["history"] == ["user: 第一个问题", "assistant: 第一个回答"]
    asyncio.run(collect(function))
    assert [m["content"] for m in got[0]] == ["第一个问题", "第一个回答", ITEM.prompt]
    (refused,) = asyncio.run(collect(prompt_only))
    assert refused.status == "error" and "only with input='messages'" in refused.error


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_refused(batch_size):
    with pytest.raises(ValueError, match="at least 1"):
        LocalChatModel(Recorder(), batch_size=batch_size)
