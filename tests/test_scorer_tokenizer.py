"""The scorer tokenizer's layouts: what is read from which file, and what is refused.

The ids themselves are checked against transformers 4.33.2 in test_tokenizer_reference.py (its
own environment); these tests need sentencepiece only.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sentencepiece")

from flames.scoring.scorer.layout import TokenizerError, read_layout
from flames.scoring.scorer.template import render
from flames.scoring.scorer.tokenizer import ScorerTokenizer
from tests.tokenizer_layouts import CHAT, build, train, write_json


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    return (
        train(tmp_path_factory.mktemp("sp"), "identity", False) / "tokenizer.model"
    ).read_bytes()


@pytest.fixture
def folder(tmp_path, model_bytes):
    (tmp_path / "tokenizer.model").write_bytes(model_bytes)
    write_json(tmp_path / "tokenizer_config.json", {"tokenizer_class": "InternLMTokenizer"})
    return tmp_path


def refused(folder, match: str) -> TokenizerError:
    with pytest.raises(TokenizerError, match=match) as caught:
        read_layout(folder)
    assert caught.value.exit_code == 1 and "\n" not in str(caught.value)
    return caught.value


def piece_count(folder) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).get_piece_size()


def test_layout_records_class_tokens_and_strip_flags(tmp_path):
    folder = build(tmp_path, "strip-flags", "identity")
    layout, sp = read_layout(folder)
    described = layout.describe()
    assert described["class"] == "InternLMTokenizer"
    assert described["class_from"] == "tokenizer_config.json"
    assert described["files"] == [
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
    ]
    size = sp.get_piece_size()
    assert described["split_on"] == [
        {"token": "<|User|>", "id": size, "strips": ["right"]},
        {"token": "<eoh>", "id": size + 1, "strips": ["left"]},
        {"token": "<|Bot|>", "id": size + 2, "strips": ["left", "right"]},
        {"token": "<eoa>", "id": size + 3, "strips": ["left", "right"]},  # a plain string
        {"token": "<s>", "id": 1, "strips": ["left", "right"]},
        {"token": "</s>", "id": 2, "strips": ["left"]},  # eos is declared before pad
        {"token": "<unk>", "id": 0, "strips": ["right"]},
    ]
    assert (layout.add_bos, layout.add_eos, layout.padding_side) == (True, False, "right")


def test_plain_string_tokens_strip_both_sides_and_pieces_get_their_own_prefix(tmp_path):
    folder = build(tmp_path, "added-tokens", "identity")
    tok = ScorerTokenizer.from_checkpoint(folder)
    sp, size = tok.sp, piece_count(folder)
    # Cut on </s> and <eoh>, whitespace beside them stripped, each piece encoded on its own.
    assert tok.encode("好的 </s>  再见<eoh>\n:") == [
        1,
        *sp.encode("好的"),
        2,
        *sp.encode("再见"),
        size + 1,
        *sp.encode(":"),
    ]


def test_added_token_dicts_keep_the_whitespace(tmp_path):
    folder = build(tmp_path, "added-token-dicts", "identity")
    tok = ScorerTokenizer.from_checkpoint(folder)
    assert tok.encode("好的 </s> 再见") == [1, *tok.sp.encode("好的 "), 2, *tok.sp.encode(" 再见")]


def test_left_truncation_and_eos_as_declared(tmp_path):
    folder = build(tmp_path, "eos-left", "identity")
    tok = ScorerTokenizer.from_checkpoint(folder)
    text = render("问题", "很长的回答" * 50)
    full = tok.encode(text)
    assert full[0] == 1 and full[-1] == 2
    got = tok.truncate(text, 20)
    assert got.truncated and got.ids == [1, *full[1:-1][-18:], 2]


def test_the_class_comes_from_config_json_when_the_tokenizer_files_are_absent(tmp_path):
    layout, _ = read_layout(build(tmp_path, "model-config-only", "nfkc"))
    assert layout.tokenizer_class == "InternLMTokenizer"
    assert layout.class_source == "config.json model_type 'internlm'"
    assert [t.content for t in layout.split_tokens] == ["<s>", "</s>", "<unk>"]


# -- refused layouts ---------------------------------------------------------------------------


def test_a_tokenizer_json_only_folder_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    refused(tmp_path, r"tokenizer\.json: a fast tokenizer without tokenizer\.model")


def test_an_empty_folder_is_refused(tmp_path):
    refused(tmp_path, "no tokenizer.model")


@pytest.mark.parametrize("content", [b"", b"not a model", b"\x00" * 100])
def test_a_broken_sentencepiece_model_is_refused(tmp_path, content):
    (tmp_path / "tokenizer.model").write_bytes(content)
    refused(tmp_path, r"tokenizer\.model: not a usable sentencepiece model")


@pytest.mark.parametrize(
    ("tokenizer_class", "match"),
    [
        ("LlamaTokenizerFast", "'LlamaTokenizerFast' \\(a fast tokenizer\\) is not supported"),
        ("GPT2Tokenizer", "'GPT2Tokenizer' \\(an unknown class\\) is not supported"),
    ],
)
def test_other_tokenizer_classes_are_refused(folder, tokenizer_class, match):
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": tokenizer_class})
    error = refused(folder, match)
    assert "tokenizer_config.json" in str(error)


def test_no_declared_class_is_refused(folder):
    write_json(folder / "tokenizer_config.json", {"add_bos_token": True})
    refused(folder, "no tokenizer class declared")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"sp_model_kwargs": {"enable_sampling": True}}, "sp_model_kwargs"),
        ({"tokenizer_class": "LlamaTokenizer", "legacy": False}, "legacy false"),
        ({"padding_side": "middle"}, "padding_side must be left or right"),
        ({"bos_token": {"content": "<s>", "lstrip": True}}, "not a token transformers 4.33"),
        ({"additional_special_tokens": ["<x>"]},
         "tokenizer_config.json: additional_special_tokens: '<x>' is in neither"),
        ({"add_bos_token": False, "bos_token": None, "add_eos_token": True, "eos_token": None},
         "eos_token is needed"),
    ],
)  # fmt: skip
def test_settings_flames_does_not_reproduce_are_refused(folder, config, match):
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": "InternLMTokenizer", **config})
    refused(folder, match)


def test_added_tokens_must_follow_the_vocabulary(folder):
    size = piece_count(folder)
    write_json(folder / "added_tokens.json", {"<eoh>": size + 1})
    refused(folder, rf"'<eoh>' has id {size + 1}.*expected {size}")
    write_json(folder / "added_tokens.json", {"</s>": size})
    refused(folder, "'</s>' is already in tokenizer.model")


def test_overlapping_tokens_are_refused_unless_nothing_is_split(folder):
    config = {"tokenizer_class": "InternLMTokenizer", "additional_special_tokens": ["<eo", "o>"]}
    size = piece_count(folder)
    write_json(folder / "added_tokens.json", {"<eo": size, "o>": size + 1})
    write_json(folder / "tokenizer_config.json", config)
    refused(folder, "'<eo' and 'o>' overlap")
    write_json(folder / "tokenizer_config.json", {**config, "split_special_tokens": True})
    layout, _ = read_layout(folder)
    assert layout.split_special_tokens and layout.describe()["split_on"] == []


def test_broken_json_names_the_file_and_line(folder):
    (folder / "special_tokens_map.json").write_text('{\n  "bos_token": "<s>",\n}\n')
    refused(folder, r"special_tokens_map\.json:3: not valid JSON")
    (folder / "special_tokens_map.json").write_text(json.dumps(["<s>"]))
    refused(folder, "expected a JSON object, found list")


def test_chat_tokens_are_plain_text_unless_declared(folder):
    tok = ScorerTokenizer.from_checkpoint(folder)
    assert tok.encode(CHAT[0]) == [1, *tok.sp.encode(CHAT[0])]
