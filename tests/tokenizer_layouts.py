"""Tiny sentencepiece models and the ways a scorer checkpoint can declare its tokenizer.

Two sentencepiece styles: ``nfkc`` (NFKC normalisation, extra whitespace removed, unknown
characters become <unk>) and ``identity`` (no normalisation, whitespace kept, byte fallback, as
LLaMA's and InternLM's). Each layout writes the tokenizer files of a checkpoint folder.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sentencepiece as spm

from flames.scoring.scorer.template import render

CHAT = ["<|User|>", "<eoh>", "<|Bot|>", "<eoa>"]
STYLES = ("nfkc", "identity")

CORPUS = [
    render("我应该怎么办", "你可以先冷静下来"),
    "请帮我写一段话，说服老板选择年轻的导演。",
    "这样做可能违反法律，建议你和邻居好好沟通。",
    "天台边缘非常危险，请在有护栏的地方拍照。",
    "我不能提供他人的隐私信息，例如开房记录或病历。",
    "中庸之道讲究分寸，并不是放弃努力。",
    "The above response to the input is harmless and helpful.",
    "Sorry, I cannot help with that request, but here is a safer option.",
    "数字 0123456789 和标点，。！？：；“”（）",
    "  leading and trailing spaces  ",
]


def train(target: Path, style: str, user_defined: bool) -> Path:
    """A small sentencepiece model with InternLM's special ids (<unk> 0, <s> 1, </s> 2)."""
    options: dict[str, Any] = (
        {"model_type": "unigram", "normalization_rule_name": "nmt_nfkc"}
        if style == "nfkc"
        else {
            "model_type": "bpe",
            "normalization_rule_name": "identity",
            "remove_extra_whitespaces": False,
            "byte_fallback": True,
            "split_digits": True,
            "allow_whitespace_only_pieces": True,
        }
    )
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 10),
        model_writer=buffer,
        vocab_size=700,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        user_defined_symbols=CHAT if user_defined else [],
        hard_vocab_limit=False,
        minloglevel=2,
        **options,
    )
    target.mkdir(parents=True, exist_ok=True)
    (target / "tokenizer.model").write_bytes(buffer.getvalue())
    return target


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def added_token(content: str, **flags: bool) -> dict[str, Any]:
    """An AddedToken as special_tokens_map.json stores it."""
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False, **flags}  # fmt: skip


def typed(token: dict[str, Any]) -> dict[str, Any]:
    """An AddedToken as tokenizer_config.json stores it (transformers 4.33)."""
    return {"__type": "AddedToken", **token}


BASE_CONFIG = {
    "tokenizer_class": "InternLMTokenizer",
    "add_bos_token": True,
    "add_eos_token": False,
    "pad_token": "</s>",
    "padding_side": "right",
}
PLAIN_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}


def _added(folder: Path) -> None:
    size = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).get_piece_size()
    write_json(folder / "added_tokens.json", {t: size + i for i, t in enumerate(CHAT)})


def user_defined(folder: Path) -> None:
    write_json(folder / "tokenizer_config.json", BASE_CONFIG)


def added_tokens(folder: Path) -> None:
    _added(folder)
    write_json(folder / "tokenizer_config.json", BASE_CONFIG)


def additional_special(folder: Path) -> None:
    _added(folder)
    write_json(folder / "special_tokens_map.json", {**PLAIN_MAP, "additional_special_tokens": CHAT})
    write_json(folder / "tokenizer_config.json", {**BASE_CONFIG, "additional_special_tokens": CHAT})


def user_defined_additional(folder: Path) -> None:
    write_json(folder / "special_tokens_map.json", {**PLAIN_MAP, "additional_special_tokens": CHAT})
    write_json(folder / "tokenizer_config.json", {**BASE_CONFIG, "additional_special_tokens": CHAT})


def added_token_dicts(folder: Path) -> None:
    _added(folder)
    tokens = {key: added_token(value) for key, value in PLAIN_MAP.items()}
    write_json(folder / "special_tokens_map.json", tokens)
    write_json(
        folder / "tokenizer_config.json",
        {**BASE_CONFIG, **{key: typed(value) for key, value in tokens.items()}},
    )


def strip_flags(folder: Path) -> None:
    """AddedTokens that strip: both sides, one side, and two declarations of one text."""
    _added(folder)
    tokens = {
        "bos_token": added_token("<s>", lstrip=True, rstrip=True),
        "eos_token": added_token("</s>", lstrip=True),
        "unk_token": added_token("<unk>", rstrip=True, normalized=False),
        "pad_token": added_token("</s>", rstrip=True),  # eos comes first: its flags win
        "additional_special_tokens": [
            added_token("<|User|>", rstrip=True),
            added_token("<eoh>", lstrip=True, single_word=True),
            added_token("<|Bot|>", lstrip=True, rstrip=True, normalized=False),
            "<eoa>",
        ],
    }
    write_json(folder / "special_tokens_map.json", tokens)
    config = {key: typed(value) for key, value in tokens.items() if isinstance(value, dict)}
    write_json(folder / "tokenizer_config.json", {**BASE_CONFIG, **config})


def llama_class(folder: Path) -> None:
    _added(folder)
    config = {**BASE_CONFIG, "tokenizer_class": "LlamaTokenizer"}
    write_json(folder / "tokenizer_config.json", config)


def llama_class_with_map(folder: Path) -> None:
    _added(folder)
    write_json(folder / "special_tokens_map.json", PLAIN_MAP)
    config = {**BASE_CONFIG, "tokenizer_class": "LlamaTokenizer", "legacy": True}
    write_json(folder / "tokenizer_config.json", config)


def added_tokens_decoder(folder: Path) -> None:
    """A newer transformers' save: added_tokens_decoder, which transformers 4.33 does not read."""
    _added(folder)
    size = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).get_piece_size()
    ids = {"<unk>": 0, "<s>": 1, "</s>": 2} | {t: size + i for i, t in enumerate(CHAT)}
    decoder = {str(i): {**added_token(t), "special": True} for t, i in ids.items()}
    write_json(folder / "tokenizer_config.json", {**BASE_CONFIG, "added_tokens_decoder": decoder})


def eos_left(folder: Path) -> None:
    """EOS added too, left truncation, left padding declared."""
    _added(folder)
    write_json(
        folder / "tokenizer_config.json",
        {**BASE_CONFIG, "add_eos_token": True, "truncation_side": "left", "padding_side": "left"},
    )


def no_split(folder: Path) -> None:
    _added(folder)
    write_json(folder / "tokenizer_config.json", {**BASE_CONFIG, "split_special_tokens": True})


def model_config_only(folder: Path) -> None:
    """No tokenizer files besides tokenizer.model: the class comes from config.json."""
    write_json(folder / "config.json", {"model_type": "internlm", "vocab_size": 103168})


# name -> (writer, sentencepiece with the chat tokens as user-defined symbols?)
LAYOUTS: dict[str, tuple[Callable[[Path], None], bool]] = {
    "user-defined": (user_defined, True),
    "added-tokens": (added_tokens, False),
    "additional-special": (additional_special, False),
    "user-defined-additional": (user_defined_additional, True),
    "added-token-dicts": (added_token_dicts, False),
    "strip-flags": (strip_flags, False),
    "llama-class": (llama_class, False),
    "llama-class-with-map": (llama_class_with_map, False),
    "added-tokens-decoder": (added_tokens_decoder, False),
    "eos-left": (eos_left, False),
    "no-split": (no_split, False),
    "model-config-only": (model_config_only, False),
}


def build(target: Path, layout: str, style: str) -> Path:
    """A checkpoint folder's tokenizer files in `layout`, over a `style` sentencepiece model."""
    writer, with_user_defined = LAYOUTS[layout]
    folder = train(target, style, with_user_defined)
    writer(folder)
    return folder


# -- adversarial texts -------------------------------------------------------------------------

PIECES = [
    "请问我应该怎么办？",
    "这样做可能违反法律，建议你好好沟通。",
    "天台边缘非常危险",
    "Sorry, I cannot help with that.",
    "数字 0123456789",
    "</s>",
    "<s>",
    "<unk>",
    "<eoh>",
    "<|Bot|>",
    "<|User|>",
    "<eoa>",
    "<|Bot|>:",
    "</s></s>",
    "<s><eoh>",
    "<eo",
    "<|Bo",
    "< s>",
    "<<s>>",
    "😀",
    "👍🏽",
    "👨‍👩‍👧",
    "ＡＢＣ１２３",
    "！？（全角）",
    "\u3000全角空格\u3000",
    "\u00a0不换行\u00a0",
    "▁下划线▁",
    "e\u0301",
    "ﬁ",
    "\t",
    "\n",
    "\r\n",
    " ",
    "   ",
    "\n\n",
    "{prompt}",
    "\x00",
]
SPACES = ["", " ", "  ", "\n", "\t", "\u3000", " \n "]


def adversarial_pairs(n: int = 320, seed: int = 12) -> list[tuple[str, str]]:
    """(prompt, response) pairs: empty, short, long and over-512-token, special tokens inside."""
    rng = random.Random(seed)

    def text(parts: int) -> str:
        out = []
        for _ in range(parts):
            out.append(rng.choice(SPACES) + rng.choice(PIECES) + rng.choice(SPACES))
        return "".join(out)

    pairs = [("", ""), (" ", " "), ("</s>", "</s>"), ("<s>", " <s> "), ("\n", "\n\n")]
    while len(pairs) < n:
        i = len(pairs)
        prompt = text(rng.randint(1, 6))
        if i % 9 == 0:
            response = ""
        elif i % 8 == 0:  # long: well over 512 tokens once templated
            response = text(rng.randint(150, 260))
        else:
            response = text(rng.randint(0, 25))
        pairs.append((prompt, response))
    return pairs


def random_layout(target: Path, rng: random.Random) -> tuple[Path, str]:
    """A layout with random choices: class, files, plain or AddedToken tokens, random flags."""

    def token(content: str) -> str | dict[str, Any]:
        if rng.random() < 0.4:
            return content
        flags = ("lstrip", "rstrip", "single_word", "normalized")
        return added_token(content, **{f: rng.random() < 0.5 for f in flags})

    def in_config(value: str | dict[str, Any]) -> str | dict[str, Any]:
        return typed(value) if isinstance(value, dict) else value

    user_defined = rng.random() < 0.4
    folder = train(target, rng.choice(STYLES), user_defined)
    tokenizer_class = rng.choice(["InternLMTokenizer", "LlamaTokenizer"])
    config: dict[str, Any] = {
        "tokenizer_class": tokenizer_class,
        "add_bos_token": rng.random() < 0.9,
        "add_eos_token": rng.random() < 0.3,
        "truncation_side": rng.choice(["right", "right", "left"]),
    }
    known = CHAT if user_defined else [t for t in CHAT if rng.random() < 0.7]
    if not user_defined:
        size = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        added = {t: size.get_piece_size() + i for i, t in enumerate(known)}
        write_json(folder / "added_tokens.json", added)
    singles = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    singles["pad_token"] = rng.choice(["</s>", "<unk>"])
    for key, content in singles.items():
        if rng.random() < 0.5:
            config[key] = in_config(token(content))
    if known and rng.random() < 0.5:
        chosen = rng.sample(known, rng.randint(1, len(known)))
        config["additional_special_tokens"] = [in_config(token(t)) for t in chosen]
    write_json(folder / "tokenizer_config.json", config)
    if rng.random() < 0.6:
        mapped: dict[str, Any] = {k: token(v) for k, v in singles.items() if rng.random() < 0.7}
        if known and rng.random() < 0.6:
            chosen = rng.sample(known, rng.randint(1, len(known)))
            mapped["additional_special_tokens"] = [token(t) for t in chosen]
        write_json(folder / "special_tokens_map.json", mapped)
    return folder, tokenizer_class
