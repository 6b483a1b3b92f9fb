"""How a scorer checkpoint declares its tokenizer, read exactly as transformers 4.33.2 reads it.

The official scorer tokenizes with InternLM's slow sentencepiece tokenizer under transformers
4.33.2. Loading a slow tokenizer from a folder, that version:

1. takes bos/eos/unk/pad from the class's defaults, overridden by tokenizer_config.json, where a
   token saved as ``{"__type": "AddedToken", ...}`` is an AddedToken with its own flags.
   LlamaTokenizer turns plain strings for these four into AddedTokens that strip nothing;
   InternLMTokenizer passes them on as plain strings;
2. replaces every token that special_tokens_map.json names (a dict there is an AddedToken, a
   string stays plain), additional_special_tokens included;
3. adds added_tokens.json's tokens, whose ids must follow the sentencepiece vocabulary;
4. never splits a special or added token: the text is cut on them first, whitespace beside a
   token is stripped on both sides if it is a plain string, and only where its lstrip / rstrip
   say if it is an AddedToken (where several AddedTokens share a text, the first declared wins;
   slow tokenizers of that version ignore single_word and normalized).

Anything outside what is reproduced here exactly (a fast tokenizer, tokenizer.json alone,
sentencepiece sampling, ``legacy: false``, overlapping special tokens, ...) is refused with a
`TokenizerError` naming the file, so nothing is ever scored on approximate token ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm

from flames.errors import FlamesError

MODEL_FILE = "tokenizer.model"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_MAP_FILE = "special_tokens_map.json"
ADDED_FILE = "added_tokens.json"
FAST_FILE = "tokenizer.json"
MODEL_CONFIG_FILE = "config.json"

# transformers 4.33.2, SpecialTokensMixin.SPECIAL_TOKENS_ATTRIBUTES (this order sets precedence).
SINGLE_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
SPECIAL_KEYS = (*SINGLE_KEYS, "additional_special_tokens")
# The slow tokenizers flames reproduces: their default special tokens, and whether a plain
# string given for bos/eos/unk/pad becomes an AddedToken that strips nothing.
CLASSES: dict[str, tuple[dict[str, str | None], bool]] = {
    "InternLMTokenizer": (
        {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>"},
        False,
    ),
    "LlamaTokenizer": (
        {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": None},
        True,
    ),
}
CLASS_OF_MODEL_TYPE = {"internlm": "InternLMTokenizer", "llama": "LlamaTokenizer"}
WRAPPED_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


class TokenizerError(FlamesError):
    """A scorer tokenizer that is missing, broken, or declared in a way flames cannot reproduce."""


@dataclass(frozen=True)
class Declared:
    """A special token as declared: a plain string, or an AddedToken with its flags."""

    content: str
    where: str
    """The file and key that declare it."""
    added_token: bool = False
    lstrip: bool = False
    rstrip: bool = False


@dataclass(frozen=True)
class SplitToken:
    """A token the text is cut on, with its id and the whitespace it strips beside it."""

    content: str
    id: int
    strip_left: bool
    strip_right: bool


@dataclass(frozen=True)
class TokenizerLayout:
    tokenizer_class: str
    class_source: str
    files: tuple[str, ...]
    split_tokens: tuple[SplitToken, ...]
    split_special_tokens: bool
    """True: the text is never cut on special tokens (tokenizer_config.json says so)."""
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    padding_side: str
    truncation_side: str

    def describe(self) -> dict[str, Any]:
        """What the scorer manifest records about the tokenizer."""
        return {
            "class": self.tokenizer_class,
            "class_from": self.class_source,
            "files": list(self.files),
            "split_on": [_describe(t) for t in self.split_tokens if not self.split_special_tokens],
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "truncation_side": self.truncation_side,
            "padding_side": "right",
            "declared_padding_side": self.padding_side,
        }


def _describe(token: SplitToken) -> dict[str, Any]:
    sides = [s for s, on in (("left", token.strip_left), ("right", token.strip_right)) if on]
    return {"token": token.content, "id": token.id, "strips": sides}


def read_json(path: Path, error: type[FlamesError] = TokenizerError) -> dict[str, Any] | None:
    """A JSON object file, None if absent; a clear `error` if it is not valid."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def load_sentencepiece(path: Path) -> spm.SentencePieceProcessor:
    """The sentencepiece model at `path`, or a clear error naming it."""
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TokenizerError(f"{path}: not a usable sentencepiece model ({reason})") from None


def _tokenizer_class(directory: Path, config: dict[str, Any] | None) -> tuple[str, str]:
    """The declared tokenizer class and the file that declares it."""
    if config and config.get("tokenizer_class"):
        return str(config["tokenizer_class"]), CONFIG_FILE
    model_config = read_json(directory / MODEL_CONFIG_FILE) or {}
    if model_config.get("tokenizer_class"):
        return str(model_config["tokenizer_class"]), MODEL_CONFIG_FILE
    model_type = model_config.get("model_type")
    if model_type in CLASS_OF_MODEL_TYPE:
        return CLASS_OF_MODEL_TYPE[model_type], f"{MODEL_CONFIG_FILE} model_type {model_type!r}"
    raise TokenizerError(
        f"{directory}: no tokenizer class declared ({CONFIG_FILE} has no tokenizer_class and "
        f"{MODEL_CONFIG_FILE} no known model_type); flames reproduces {' and '.join(CLASSES)}"
    )


def _config_token(value: Any, where: str) -> Declared | None:
    """A special token from tokenizer_config.json: AddedTokens carry ``"__type"`` there."""
    if value is None or isinstance(value, str):
        return None if value is None else Declared(value, where)
    if isinstance(value, dict) and value.get("__type") == "AddedToken":
        return _added_token(value, where)
    raise TokenizerError(
        f"{where}: {json.dumps(value, ensure_ascii=False)[:80]} is not a token transformers 4.33 "
        'can load (a string, or an object with "__type": "AddedToken")'
    )


def _map_token(value: Any, where: str) -> Declared | None:
    """A special token from special_tokens_map.json: any object there is an AddedToken."""
    if value is None or isinstance(value, str):
        return None if value is None else Declared(value, where)
    if isinstance(value, dict):
        return _added_token(value, where)
    raise TokenizerError(f"{where}: {value!r} is neither a string nor a token object")


def _added_token(value: dict[str, Any], where: str) -> Declared:
    content = value.get("content")
    if not isinstance(content, str) or not content:
        raise TokenizerError(f'{where}: a token object without its text ("content")')
    flags = {k: value.get(k, False) for k in ("lstrip", "rstrip")}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise TokenizerError(f"{where}: lstrip and rstrip must be true or false")
    return Declared(content, where, added_token=True, **flags)


def _token_list(
    value: Any, where: str, read: Callable[[Any, str], Declared | None]
) -> list[Declared]:
    if not isinstance(value, list):
        raise TokenizerError(f"{where}: expected a list of tokens")
    tokens = [read(v, where) for v in value]
    return [t for t in tokens if t is not None]


def _special_tokens(
    directory: Path,
    tokenizer_class: str,
    config: dict[str, Any],
    special_map: dict[str, Any] | None,
) -> dict[str, Any]:
    """bos, eos, ..., additional_special_tokens as the loaded 4.33.2 tokenizer holds them."""
    defaults, wraps = CLASSES[tokenizer_class]
    tokens: dict[str, Any] = dict.fromkeys(SINGLE_KEYS)
    tokens["additional_special_tokens"] = []
    for key in SPECIAL_KEYS:
        where = f"{directory / CONFIG_FILE}: {key}"
        if key == "additional_special_tokens":
            if config.get(key) is not None:
                tokens[key] = _token_list(config[key], where, _config_token)
            continue
        if key not in config:
            where = f"{directory}: {tokenizer_class}'s default {key}"
        token = _config_token(config.get(key, defaults.get(key)), where)
        if wraps and key in WRAPPED_KEYS and token is not None and not token.added_token:
            token = Declared(token.content, token.where, added_token=True)
        tokens[key] = token
    for key, value in (special_map or {}).items():
        where = f"{directory / SPECIAL_MAP_FILE}: {key}"
        if key == "additional_special_tokens":
            tokens[key] = [] if value is None else _token_list(value, where, _map_token)
        elif key in tokens:
            tokens[key] = _map_token(value, where)
    return tokens


def _check_settings(directory: Path, tokenizer_class: str, config: dict[str, Any]) -> None:
    """Refuse tokenizer settings that change ids in ways flames does not reproduce."""
    where = f"{directory / CONFIG_FILE}:"
    if config.get("sp_model_kwargs"):
        raise TokenizerError(
            f"{where} sp_model_kwargs {config['sp_model_kwargs']!r} (sentencepiece sampling or "
            "options) is not supported: flames encodes with the model's own settings only"
        )
    if tokenizer_class == "LlamaTokenizer" and config.get("legacy") is False:
        raise TokenizerError(
            f"{where} legacy false is not supported: flames reproduces the legacy sentencepiece "
            "encoding of InternLM's tokenizer"
        )
    for key in ("padding_side", "truncation_side"):
        if config.get(key, "right") not in ("left", "right"):
            raise TokenizerError(f"{where} {key} must be left or right, not {config[key]!r}")
    for key in ("add_bos_token", "add_eos_token", "split_special_tokens"):
        if not isinstance(config.get(key, False), bool):
            raise TokenizerError(f"{where} {key} must be true or false")


def _added_tokens(
    directory: Path, sp: spm.SentencePieceProcessor, added: dict[str, Any]
) -> dict[str, int]:
    """added_tokens.json's ids, checked as a slow 4.33.2 tokenizer checks them."""
    path = directory / ADDED_FILE
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in added.values()):
        raise TokenizerError(f"{path}: every id must be an integer")
    result: dict[str, int] = {}
    for token, index in sorted(added.items(), key=lambda kv: kv[1]):
        expected = sp.get_piece_size() + len(result)
        if sp.piece_to_id(token) != sp.unk_id() or token == sp.id_to_piece(sp.unk_id()):
            raise TokenizerError(
                f"{path}: {token!r} is already in {MODEL_FILE} (id {sp.piece_to_id(token)}); "
                "flames reproduces added tokens with new ids only"
            )
        if index != expected:
            raise TokenizerError(
                f"{path}: {token!r} has id {index}, but added tokens must take the ids right "
                f"after the {sp.get_piece_size()} of {MODEL_FILE}, in order (expected {expected})"
            )
        result[token] = index
    return result


def _check_no_overlap(contents: list[str]) -> None:
    """transformers 4.33 cuts text on overlapping special tokens in ways not reproduced here."""
    for a in contents:
        for b in contents:
            if a == b:
                continue
            overlap = a in b or any(a[-k:] == b[:k] for k in range(1, min(len(a), len(b))))
            if overlap:
                raise TokenizerError(
                    f"special tokens {a!r} and {b!r} overlap: flames does not reproduce how "
                    "transformers 4.33 cuts text on overlapping special tokens"
                )


def read_layout(directory: Path) -> tuple[TokenizerLayout, spm.SentencePieceProcessor]:
    """The tokenizer declared in a checkpoint folder, and its sentencepiece model."""
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        if (directory / FAST_FILE).is_file():
            raise TokenizerError(
                f"{directory / FAST_FILE}: a fast tokenizer without {MODEL_FILE} is not "
                "supported; flames reproduces the official slow sentencepiece tokenizer and "
                f"needs {MODEL_FILE}"
            )
        raise TokenizerError(f"{directory}: no {MODEL_FILE}: not a Flames-scorer checkpoint?")
    sp = load_sentencepiece(model_path)
    config = read_json(directory / CONFIG_FILE)
    special_map = read_json(directory / SPECIAL_MAP_FILE)
    added = read_json(directory / ADDED_FILE)
    tokenizer_class, class_source = _tokenizer_class(directory, config)
    if tokenizer_class not in CLASSES:
        kind = "a fast tokenizer" if tokenizer_class.endswith("Fast") else "an unknown class"
        raise TokenizerError(
            f"{directory / class_source.split()[0]}: tokenizer class {tokenizer_class!r} "
            f"({kind}) is not supported; flames reproduces the slow "
            f"{' and '.join(CLASSES)} of transformers 4.33"
        )
    config = config or {}
    _check_settings(directory, tokenizer_class, config)
    specials = _special_tokens(directory, tokenizer_class, config, special_map)
    added_ids = _added_tokens(directory, sp, added or {})

    def id_of(content: str) -> int:
        return added_ids.get(content, sp.piece_to_id(content))

    # All special tokens in declaration order, deduplicated as 4.33.2 does: AddedTokens equal
    # each other by text, and never equal a plain string.
    ordered: list[Declared] = []
    for key in SPECIAL_KEYS:
        value = specials[key]
        ordered += value if isinstance(value, list) else [value] if value else []
    unique: dict[tuple[str, bool], Declared] = {}
    for token in ordered:
        unique.setdefault((token.content, token.added_token), token)
    unk = specials["unk_token"]
    for token in unique.values():
        if token.content != (unk.content if unk else None) and id_of(token.content) == sp.unk_id():
            raise TokenizerError(
                f"{token.where}: {token.content!r} is in neither {MODEL_FILE} nor "
                f"{ADDED_FILE}; transformers 4.33 would give it an id the model does not know"
            )
    flags: dict[str, Declared] = {}
    for token in unique.values():
        if token.added_token:
            flags.setdefault(token.content, token)
    contents = list(dict.fromkeys([*added_ids, *(t.content for t in unique.values())]))
    if not config.get("split_special_tokens", False):
        _check_no_overlap(contents)
    split_tokens = tuple(
        SplitToken(
            c,
            id_of(c),
            strip_left=flags[c].lstrip if c in flags else True,
            strip_right=flags[c].rstrip if c in flags else True,
        )
        for c in contents
    )
    add_bos = config.get("add_bos_token", True)
    add_eos = config.get("add_eos_token", False)
    ids = {k: id_of(specials[k].content) if specials[k] else None for k in WRAPPED_KEYS}
    for key, wanted in (("bos_token", add_bos), ("eos_token", add_eos)):
        if wanted and ids[key] is None:
            raise TokenizerError(f"{directory}: {key} is needed but none is declared")
    files = (MODEL_FILE, CONFIG_FILE, SPECIAL_MAP_FILE, ADDED_FILE)
    layout = TokenizerLayout(
        tokenizer_class=tokenizer_class,
        class_source=class_source,
        files=tuple(f for f in files if (directory / f).is_file()),
        split_tokens=split_tokens,
        split_special_tokens=config.get("split_special_tokens", False),
        bos_id=ids["bos_token"],
        eos_id=ids["eos_token"],
        pad_id=ids["pad_token"],
        add_bos=add_bos,
        add_eos=add_eos,
        padding_side=config.get("padding_side", "right"),
        truncation_side=config.get("truncation_side", "right"),
    )
    return layout, sp
