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

from flames._config import (
    Evaluation,
    RedteamConfig,
    field_name,
    load_evaluation,
    load_redteam_config,
)
from flames.errors import UsageError

FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("target", "model"),
    "backend": ("target", "backend"),
    "input": ("target", "input"),
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
    "max_reply_bytes": ("target", "max_reply_bytes"),
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
    "judge_backend": "backend",
    "judge_device": "device",
    "judge_dtype": "dtype",
    "judge_batch_size": "batch_size",
    "judge_vllm_arg": "engine_args",
    "parse_attempts": "parse_attempts",
    "json_mode": "json_mode",
    "judge_max_tokens": "max_tokens",
    "skip_judge_check": "skip_check",
}
"""`flames run`'s options for its --judge-model, and the judge's fields they set."""

ENGINE_ARGS = {
    "vllm_arg": "--vllm-arg",
    "scorer_vllm_arg": "--scorer-vllm-arg",
    "judge_vllm_arg": "--judge-vllm-arg",
}


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
    if isinstance(value, Path):
        return str(value)
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


def file_settings(description: BaseModel) -> dict[str, Any]:
    """A description read from a file, as settings that options may change: the functions its
    model names were resolved to are left out, so that a --model naming another function (or
    a model that is not a function) is the one called, not only the one recorded."""

    def without_functions(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_functions(v) for k, v in value.items() if k != "function"}
        if isinstance(value, list):
            return [without_functions(v) for v in value]
        return value

    # An evaluation leaves out the model's answer length and batch size where the file sets
    # none: they stay unset, to be chosen for the device (Evaluation.settings).
    data = (
        description.settings() if isinstance(description, Evaluation) else description.model_dump()
    )
    return without_functions(data)


def describe(
    options: dict[str, Any], config: Path | None = None, given: set[str] | None = None
) -> Evaluation:
    """The evaluation `flames run` (or `generate`) describes with its options; with a `config`
    file, the file is the base and the options `given` on the command line change it."""
    settings = file_settings(load_evaluation(config)) if config is not None else {}
    chosen = given if config is not None else None
    _apply(settings, options, FIELDS, chosen)
    if options.get("device") is not None and (chosen is None or "device" in chosen):
        _put(settings, ("target", "device"), options["device"])  # one --device for both models
        if isinstance(settings.get("scorer"), dict):
            _put(settings, ("scorer", "device"), options["device"])
    if options.get("judge_model"):
        target = settings.get("target", {})
        judge = judge_settings(options, target)
        if judge.get("backend", "openai") == "openai":  # a local judge is asked live
            judge.update({k: target[k] for k in BATCH_SHARED if k in target})
        if options.get("judge_price"):
            judge["price"] = _value("judge_price", options["judge_price"])
        settings["judges"] = [judge]
        settings["scorer"] = None
    _batch_where_it_can(settings)
    return validated(Evaluation, settings)


API_SHARED = ("concurrency", "rpm", "timeout", "max_attempts", "keep_alive", "max_reply_bytes")
"""The target's API settings that an LLM judge (and a red-team attacker) share."""
BATCH_SHARED = ("batch", "batch_api", "batch_max_requests", "batch_poll")
"""The target's batch settings that `flames run`'s LLM judges share (red teaming asks live)."""
BATCH_FIELDS = (*BATCH_SHARED, "price")
"""The batch options of `flames generate`, `judge` and `run` (`flames redteam` has none)."""


def judge_settings(options: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The judge --judge-model and its options describe, with the target's API settings."""
    return {
        "model": options["judge_model"],
        "base_url": options.get("judge_base_url"),
        "api_key_env": options.get("judge_api_key_env") or "OPENAI_API_KEY",
        "name": options.get("scorer_name"),
        **{
            field: _value(option, options[option])
            for option, field in JUDGE_OPTIONS.items()
            if options.get(option) is not None
        },
        **{k: target[k] for k in API_SHARED if k in target},
    }


REDTEAM_FIELDS: dict[str, tuple[str, ...]] = {
    **{
        name: path
        for name, path in FIELDS.items()
        if path[0] in ("target", "data", "scorer") and name not in BATCH_FIELDS
    },
    "retry_errors": ("executor", "retry_errors"),
    "wait": ("executor", "wait"),
    "attacker_model": ("attacker", "model"),
    "attacker_backend": ("attacker", "backend"),
    "attacker_base_url": ("attacker", "base_url"),
    "attacker_api_key_env": ("attacker", "api_key_env"),
    "attacker_temperature": ("attacker", "decoding", "temperature"),
    "attacker_max_tokens": ("attacker", "decoding", "max_tokens"),
    "budget": ("attack", "budget"),
    "attacker_budget": ("attack", "attacker_budget"),
    "attacker_attempts": ("attack", "attacker_attempts"),
    "seed": ("attack", "seed"),
    "instructions": ("attack", "instructions"),
    "streams": ("attack", "pair", "streams"),
    "iterations": ("attack", "pair", "iterations"),
    "branching": ("attack", "tap", "branching"),
    "width": ("attack", "tap", "width"),
    "depth": ("attack", "tap", "depth"),
    "turns": ("attack", "crescendo", "turns"),
    "backtracks": ("attack", "crescendo", "backtracks"),
}
"""Where each option of `flames redteam` goes in its description (`RedteamConfig`)."""
SHARED_WITH_ATTACKER = (*API_SHARED, "device", "dtype", "batch_size")
"""The target's API and local-model settings that the attacker shares."""


def comma_list(values: list[str] | None) -> list[str]:
    """Repeated options and comma lists as one list: --strategy pair,tap --strategy rewrite."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def parse_prices(pairs: list[str] | None) -> dict[str, tuple[float, float]]:
    """ROLE=IN,OUT pairs, e.g. target=0.15,0.6."""
    prices = {}
    for pair in pairs or []:
        role, sep, value = pair.partition("=")
        parts = value.split(",")
        try:
            if not sep or len(parts) != 2:
                raise ValueError
            prices[role.strip()] = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise typer.BadParameter(
                f"expected ROLE=IN,OUT (e.g. target=0.15,0.6), got {pair!r}", param_hint="--price"
            ) from None
    return prices


def describe_redteam(
    options: dict[str, Any], config: Path | None = None, given: set[str] | None = None
) -> RedteamConfig:
    """The red-team run `flames redteam` describes with its options; with a `config` file, the
    file is the base and the options `given` on the command line change it."""
    settings = file_settings(load_redteam_config(config)) if config else {}
    chosen = given if config is not None else None

    def wanted(name: str) -> bool:
        return options.get(name) is not None and (chosen is None or name in chosen)

    _apply(settings, options, REDTEAM_FIELDS, chosen)
    if wanted("strategy"):
        _put(settings, ("attack", "strategies"), comma_list(options["strategy"]))
    if wanted("methods"):
        _put(settings, ("attack", "rewrite", "methods"), comma_list([options["methods"]]))
    if wanted("price"):
        _put(settings, ("attack", "prices"), parse_prices(options["price"]))
    if wanted("concurrency"):
        _put(settings, ("attack", "concurrency"), options["concurrency"])
    if wanted("device"):
        _put(settings, ("target", "device"), options["device"])
        if isinstance(settings.get("scorer"), dict):
            _put(settings, ("scorer", "device"), options["device"])
    target = settings.get("target") or {}
    attacker = settings.get("attacker")
    if isinstance(attacker, dict):
        for key in SHARED_WITH_ATTACKER:
            if key in target and key not in attacker:
                attacker[key] = target[key]
        if attacker.get("backend") == "callable":
            attacker.setdefault("input", "messages")
    if wanted("judge_model"):
        settings["judge"] = judge_settings(options, target)
        settings["scorer"] = None
    return validated(RedteamConfig, settings, REDTEAM_FIELDS)


def _batch_where_it_can(settings: dict[str, Any]) -> None:
    """`flames run --batch` batches what has a batch API: an API model, LLM judges behind an
    API. A local model under test is asked live, its judges in batches; with neither, --batch
    is refused."""
    target = settings.get("target")
    if not isinstance(target, dict) or not target.get("batch"):
        return
    if target.get("backend", "openai") == "openai":
        return
    del target["batch"]
    judges = [
        j
        for j in settings.get("judges") or []
        if j.get("kind", "llm") == "llm" and j.get("backend", "openai") == "openai"
    ]
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
