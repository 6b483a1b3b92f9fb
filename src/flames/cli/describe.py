"""From command-line options to the evaluation description, and its errors back to options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from flames._config import Evaluation, field_name, load_evaluation
from flames.errors import UsageError

FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("target", "model"),
    "backend": ("target", "backend"),
    "base_url": ("target", "base_url"),
    "api_key_env": ("target", "api_key_env"),
    "concurrency": ("target", "concurrency"),
    "rpm": ("target", "rpm"),
    "timeout": ("target", "timeout"),
    "max_attempts": ("target", "max_attempts"),
    "keep_alive": ("target", "keep_alive"),
    "batch": ("target", "batch"),
    "batch_api": ("target", "batch_api"),
    "batch_max_requests": ("target", "batch_max_requests"),
    "batch_poll": ("target", "batch_poll"),
    "price": ("target", "price"),
    "gguf_file": ("target", "gguf_file"),
    "dtype": ("target", "dtype"),
    "batch_size": ("target", "batch_size"),
    "vllm_arg": ("target", "engine_args"),
    "temperature": ("target", "decoding", "temperature"),
    "top_p": ("target", "decoding", "top_p"),
    "max_tokens": ("target", "decoding", "max_tokens"),
    "gen_seed": ("target", "decoding", "seed"),
    "system_prompt": ("target", "decoding", "system_prompt"),
    "samples": ("target", "decoding", "samples"),
    "data": ("data", "source"),
    "dimension": ("data", "dimensions"),
    "subcomponent": ("data", "subcomponents"),
    "sample": ("data", "sample"),
    "sample_seed": ("data", "sample_seed"),
    "scorer_model": ("scorer", "model"),
    "revision": ("scorer", "revision"),
    "max_length": ("scorer", "max_length"),
    "truncation": ("scorer", "truncation"),
    "scorer_dtype": ("scorer", "dtype"),
    "token_budget": ("scorer", "token_budget"),
    "max_batch": ("scorer", "max_batch"),
    "scorer_name": ("scorer", "name"),
    "scorer_engine": ("scorer", "engine"),
    "scorer_vllm_arg": ("scorer", "engine_args"),
    "executor": ("executor", "kind"),
    "ray_address": ("executor", "address"),
    "replicas": ("executor", "replicas"),
    "gpus_per_replica": ("executor", "gpus_per_replica"),
    "max_errors": ("executor", "max_errors"),
    "retry_errors": ("executor", "retry_errors"),
    "wait": ("executor", "wait"),
    "bootstrap": ("statistics", "bootstrap"),
    "seed": ("statistics", "seed"),
}
"""Where each option of `generate`, `score` and `run` goes in the description."""

JUDGE_OPTIONS = {
    "parse_attempts": "parse_attempts",
    "json_mode": "json_mode",
    "judge_max_tokens": "max_tokens",
    "skip_judge_check": "skip_check",
}
"""`flames run`'s options for its --judge-model, and the judge's fields they set."""

ENGINE_ARGS = {"vllm_arg": "--vllm-arg", "scorer_vllm_arg": "--scorer-vllm-arg"}


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_engine_args(pairs: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE pairs; a VALUE that reads as JSON (numbers, true, null ...) is taken as such."""
    args: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            args[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            args[key.strip()] = value
    return args


PRICES = {"price": "--price", "judge_price": "--judge-price"}


def parse_price(text: str) -> dict[str, float]:
    """IN,OUT (per million tokens) as a price's fields."""
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 2:
        raise ValueError(
            f"expected IN,OUT (prices per million tokens, e.g. 0.15,0.6), got {text!r}"
        )
    return {"input": numbers[0], "output": numbers[1]}


def parse_price_option(text: str, name: str = "price") -> dict[str, float]:
    """A --price option's value as a price's fields; a bad one is reported as a bad option."""
    try:
        return parse_price(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=PRICES[name]) from None


def _value(name: str, value: Any) -> Any:
    if name in PRICES:
        return parse_price_option(value, name)
    if name in ENGINE_ARGS:
        try:
            return parse_engine_args(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=ENGINE_ARGS[name]) from None
    if name in ("dimension", "subcomponent"):
        return list(value or [])
    return value.value if isinstance(value, Enum) else value


def _put(settings: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(settings.get(key), dict):
            settings[key] = {}
        settings = settings[key]
    settings[path[-1]] = value


def settings_of(
    options: dict[str, Any],
    fields: dict[str, tuple[str, ...]] = FIELDS,
    given: set[str] | None = None,
) -> dict[str, Any]:
    """The description's fields the options set (only those `given`, when that is known)."""
    settings: dict[str, Any] = {}
    _apply(settings, options, fields, given)
    return settings


def _apply(
    settings: dict[str, Any],
    options: dict[str, Any],
    fields: dict[str, tuple[str, ...]],
    given: set[str] | None,
) -> None:
    for name, value in options.items():
        path = fields.get(name)
        # An option left unset (None) means the field's default, which says the same.
        if path is not None and value is not None and (given is None or name in given):
            _put(settings, path, _value(name, value))


Model = TypeVar("Model", bound=BaseModel)


def validated(
    model: type[Model],
    data: dict[str, Any],
    fields: dict[str, tuple[str, ...]] = FIELDS,
    prefix: tuple[str, ...] = (),
) -> Model:
    """`model` from `data`; a mistake is reported as the command line reports a bad option."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = (*prefix, *error["loc"])
        options = {path: name for name, path in fields.items()}
        hint = next(
            (option_name(options[loc[:n]]) for n in range(len(loc), 0, -1) if loc[:n] in options),
            None,
        )
        message = error["msg"].removeprefix("Value error, ")
        if hint is None and loc:
            message = f"{field_name(loc)}: {message}"
        raise typer.BadParameter(message, param_hint=hint) from None


def describe(
    options: dict[str, Any], config: Path | None = None, given: set[str] | None = None
) -> Evaluation:
    """The evaluation `flames run` (or `generate`) describes with its options; with a `config`
    file, the file is the base and the options `given` on the command line change it."""
    settings = load_evaluation(config).model_dump() if config is not None else {}
    chosen = given if config is not None else None
    _apply(settings, options, FIELDS, chosen)
    if options.get("device") is not None and (chosen is None or "device" in chosen):
        _put(settings, ("target", "device"), options["device"])  # one --device for both models
        if isinstance(settings.get("scorer"), dict):
            _put(settings, ("scorer", "device"), options["device"])
    if options.get("judge_model"):
        target = settings.get("target", {})
        shared = ("concurrency", "rpm", "timeout", "max_attempts", "keep_alive")
        shared += ("batch", "batch_api", "batch_max_requests", "batch_poll")
        settings["judges"] = [
            {
                "model": options["judge_model"],
                "base_url": options.get("judge_base_url"),
                "api_key_env": options.get("judge_api_key_env") or "OPENAI_API_KEY",
                "name": options.get("scorer_name"),
                **{
                    field: options[option]
                    for option, field in JUDGE_OPTIONS.items()
                    if options.get(option) is not None
                },
                **{k: target[k] for k in shared if k in target},
            }
        ]
        if options.get("judge_price"):
            settings["judges"][0]["price"] = _value("judge_price", options["judge_price"])
        settings["scorer"] = None
    _batch_where_it_can(settings)
    return validated(Evaluation, settings)


def _batch_where_it_can(settings: dict[str, Any]) -> None:
    """`flames run --batch` batches what has a batch API: an API model, LLM judges. A local
    model under test is asked live, its judges in batches; with neither, --batch is refused."""
    target = settings.get("target")
    if not isinstance(target, dict) or not target.get("batch"):
        return
    if target.get("backend", "openai") == "openai":
        return
    del target["batch"]
    judges = [j for j in settings.get("judges") or [] if j.get("kind", "llm") == "llm"]
    if not judges:
        raise typer.BadParameter(
            "only an API model or an LLM judge has a batch API", param_hint="--batch"
        )


@contextmanager
def usage_errors() -> Iterator[None]:
    """An API call's errors about one option, reported as the command line reports a bad option
    (other usage errors end in one line, with exit code 2, like every error)."""
    try:
        yield
    except UsageError as exc:
        if exc.param_hint is None:
            raise
        raise typer.BadParameter(str(exc), param_hint=exc.param_hint) from None
