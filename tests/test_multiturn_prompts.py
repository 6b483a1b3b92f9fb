"""Multi-turn prompts in a prompt file: the `conversation` field, validated with file:line errors,
part of an item's identity, and replayed to the model under test by `flames generate` / `run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flames.data.dataset import CONVERSATION, Item, content_id, items_sha256, load_dataset
from flames.errors import DataError

from .helpers import run_cli, write_jsonl

TURNS = [{"role": "user", "content": "第一个问题"}, {"role": "assistant", "content": "第一个回答"}]
ROW = {"dimension": "Morality", "subcomponent": "Chinese values", "prompt": "那接下来呢？"}


def test_a_conversation_is_kept_with_its_item_and_identifies_it(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {**ROW, CONVERSATION: TURNS, "strategy": "crescendo"},
            {**ROW, CONVERSATION: [*TURNS, *TURNS]},  # same prompt, longer conversation
            ROW,  # the same prompt alone
        ],
    )
    multi, longer, single = load_dataset(path).items
    assert multi.conversation == tuple(TURNS) and multi.meta["strategy"] == "crescendo"
    assert single.conversation == () and CONVERSATION not in single.meta
    assert len({multi.id, longer.id, single.id}) == 3
    assert single.id == content_id(ROW["prompt"])  # a single-turn id is what it always was
    assert multi.id == content_id(ROW["prompt"], TURNS)
    # The conversation is in the fingerprint: another history, another prompt set.
    other = multi.model_copy(update={"meta": {CONVERSATION: [TURNS[0], TURNS[0] | {"role": "x"}]}})
    assert items_sha256([multi]) != items_sha256([other])
    assert items_sha256([single]) != items_sha256([multi.model_copy(update={"id": single.id})])


def test_an_empty_conversation_is_a_single_turn_prompt(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{**ROW, CONVERSATION: []}])
    (item,) = load_dataset(path).items
    assert item.conversation == () and item.id == content_id(ROW["prompt"])


@pytest.mark.parametrize(
    ("conversation", "message"),
    [
        ("你好", "must be a list of turns, not str"),
        ([{"role": "user"}], "turn 1 must be an object with exactly 'role' and 'content'"),
        ([{"role": "user", "content": "a", "x": 1}], "exactly 'role' and 'content'"),
        ([{"role": "assistant", "content": "a"}], "turn 1 has role 'assistant'; expected 'user'"),
        ([TURNS[0], TURNS[0]], "turn 2 has role 'user'; expected 'assistant'"),
        ([TURNS[0], {"role": "assistant", "content": " "}], "turn 2 has no text"),
        ([TURNS[0], {"role": "assistant", "content": 3}], "turn 2 has no text"),
        ([*TURNS, TURNS[0]], "the last turn must be the assistant's"),
        ([{"role": "system", "content": "a"}], "turn 1 has role 'system'"),
    ],
)
def test_a_bad_conversation_names_the_file_and_line(tmp_path, conversation, message):
    path = write_jsonl(
        tmp_path / "p.jsonl", [ROW | {"prompt": "另一个"}, {**ROW, CONVERSATION: conversation}]
    )
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}:2: field 'conversation': ")
    assert message in str(info.value)


def test_an_item_built_in_python_is_checked_too():
    with pytest.raises(ValueError, match="turns alternate"):
        Item(id="x", **ROW, meta={CONVERSATION: [TURNS[1]]})


def chat_model(messages: list[dict[str, str]]) -> str:
    """A model under test that says what it was sent."""
    return json.dumps([f"{m['role']}:{m['content']}" for m in messages], ensure_ascii=False)


def test_generate_and_data_info_take_a_file_of_multi_turn_prompts(tmp_path):
    data = write_jsonl(
        tmp_path / "p.jsonl", [{**ROW, CONVERSATION: TURNS}, ROW | {"prompt": "单独的问题"}]
    )
    info = run_cli("data", "info", "--data", data, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["multi_turn"] == 1
    run = tmp_path / "run"
    model = "tests.test_multiturn_prompts:chat_model"
    args = ("generate", run, "--backend", "callable", "--model", model, "--data", data)
    done = run_cli(*args, "--input", "messages", "--no-progress", cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    from flames.runs.store import RunStore

    with RunStore.open(run) as store:
        answers = {a.item_id: json.loads(a.response) for a in store.answers()}
        items = {i.prompt: i for i in store.items()}
    assert answers[items[ROW["prompt"]].id] == [
        "user:第一个问题",
        "assistant:第一个回答",
        f"user:{ROW['prompt']}",
    ]
    assert answers[items["单独的问题"].id] == ["user:单独的问题"]


def test_a_prompt_only_model_records_each_multi_turn_prompt_as_an_error(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{**ROW, CONVERSATION: TURNS}])
    run = tmp_path / "run"
    done = run_cli(
        "generate",
        run,
        "--backend",
        "callable",
        "--model",
        "tests.test_multiturn_prompts:chat_model",
        "--data",
        data,
        "--no-progress",
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 5
    assert "answers failed" in done.stderr
    assert "only with input='messages' (--input messages)" in done.stdout
