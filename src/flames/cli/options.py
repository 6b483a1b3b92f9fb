"""Command-line options, declared once and shared by the commands that take them.

Each option carries its help panel (what it is about: target, decoding, scorer, judge ...) and its
valid range, so every command shows and checks it the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from flames._api.comparison import Adjustment
from flames._config import DEFAULT_MAX_REPLY_BYTES, OFFICIAL_REPO
from flames.reporting.i18n import Lang
from flames.reporting.report import FORMATS


def _positive(value: float | None, name: str) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value} is not above 0", param_hint=name)
    return value


# Help panels, in the order `--help` shows them.
TARGET = "Model under test"
DECODING = "Decoding"
PROMPTS = "Prompts"
API = "API requests"
SCORER = "Official scorer"
JUDGE = "LLM judge (instead of the scorer)"
BATCH = "Batch API (half price, within 24 hours)"
ATTACKER = "Attacker"
ATTACK = "Attack"
EXECUTION = "Execution"
REPORT = "Report"

DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Prompt set: a JSONL path, 'control' (benign) or 'official' (default).",
        rich_help_panel=PROMPTS,
    ),
]


RunDirArg = Annotated[Path, typer.Argument(help="Run directory.")]


ScorerNameOpt = Annotated[
    str | None, typer.Option("--scorer-name", help="Which scorer's verdicts (if several).")
]


BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap",
        min=0,
        help="Resamples of the permutation tests and the calibration bootstrap "
        "(0 turns the 95% CIs off).",
        rich_help_panel=REPORT,
    ),
]


PAdjustOpt = Annotated[
    Adjustment,
    typer.Option(
        "--p-adjust",
        help="How the p-values of a table's rows are adjusted for their number: holm "
        "(family-wise), bonferroni, bh (Benjamini-Hochberg, false discovery rate) or none.",
        rich_help_panel=REPORT,
    ),
]
"""Defaults: holm for compare and leaderboard, bh for the robustness table of a report."""


SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed of the resampling.", rich_help_panel=REPORT)
]


FormatOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--format", "-f", help=f"Report formats: {', '.join(FORMATS)}.", rich_help_panel=REPORT
    ),
]


LangOpt = Annotated[
    Lang,
    typer.Option(
        "--lang",
        help="Language of the report's labels: en or zh (JSON and CSV keys stay English).",
        rich_help_panel=REPORT,
    ),
]


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print machine-readable JSON on stdout instead of tables (for pipelines)."
    ),
]


class BackendName(StrEnum):
    openai = "openai"
    transformers = "transformers"
    vllm = "vllm"
    callable = "callable"
    """A Python function named module:function by --model."""


class CallableInput(StrEnum):
    prompt = "prompt"
    messages = "messages"


class KeepAlive(StrEnum):
    auto = "auto"
    """Reuse a connection only after a reply that names its request (vLLM's do)."""
    always = "always"
    never = "never"


class BatchApiName(StrEnum):
    auto = "auto"
    """Anthropic's for api.anthropic.com, OpenAI's otherwise."""
    openai = "openai"
    anthropic = "anthropic"


class ScorerEngine(StrEnum):
    transformers = "transformers"
    vllm = "vllm"


class ExecutorName(StrEnum):
    local = "local"
    ray = "ray"


DimensionOpt = Annotated[
    list[str] | None,
    typer.Option(help="Keep only this dimension (any case; repeatable).", rich_help_panel=PROMPTS),
]


SubcomponentOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Keep only this subcomponent (any case; repeatable).", rich_help_panel=PROMPTS
    ),
]


SampleOpt = Annotated[
    int | None,
    typer.Option("--sample", min=1, help="Stratified sample of N items.", rich_help_panel=PROMPTS),
]


SampleSeedOpt = Annotated[
    int, typer.Option("--sample-seed", help="Seed of --sample.", rich_help_panel=PROMPTS)
]


RevisionOpt = Annotated[
    str | None,
    typer.Option(help="Hub revision of the scorer checkpoint.", rich_help_panel=SCORER),
]


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="An evaluation description (TOML, or YAML with pyyaml); options also given win.",
    ),
]


# -- groups: the options commands take together, each declared once here ----------------------


_REQUIRED = inspect.Parameter.empty


def _param(name: str, annotation: Any, default: Any = _REQUIRED) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _options_in(panel: str) -> Callable[..., inspect.Parameter]:
    """A declarer of options shown under `panel`: ``(name, type, default, *flags, **settings)``,
    where `settings` are typer.Option's (help, min, max, callback ...)."""

    def option(
        name: str, kind: Any, default: Any, *flags: str, **settings: Any
    ) -> inspect.Parameter:
        info = typer.Option(*flags, rich_help_panel=panel, **settings)
        return _param(name, Annotated[kind, info], default)

    return option


_target = _options_in(TARGET)
_decoding = _options_in(DECODING)
_api = _options_in(API)
_scorer = _options_in(SCORER)
_judge = _options_in(JUDGE)
_attacker = _options_in(ATTACKER)
_attack = _options_in(ATTACK)
_execution = _options_in(EXECUTION)
_batch = _options_in(BATCH)

_DEVICE = _target("device", str | None, None, help="cpu, cuda, cuda:1 ... (default: best).")


def target_options(model_required: bool = True) -> tuple[inspect.Parameter, ...]:
    """The model under test (with --config, the model may come from the file instead)."""
    model = (
        _target("model", str, _REQUIRED, help="Model name (API) or path / hub id (transformers).")
        if model_required
        else _target(
            "model",
            str | None,
            None,
            "--model",
            help="Model name (API), path / hub id (transformers), or module:function (callable).",
        )
    )
    return (
        model,
        _target("backend", BackendName, BackendName.openai, help="Where answers come from."),
        _target(
            "input",
            CallableInput,
            CallableInput.prompt,
            help="A callable model is called with the prompt text, or with the chat messages "
            "(needed for multi-turn prompts).",
        ),
    )


API_OPTIONS = (
    _api(
        "base_url",
        str | None,
        None,
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1",
    ),
    _api(
        "api_key_env",
        str,
        "OPENAI_API_KEY",
        help="Environment variable that holds the API key ('' for none; loopback needs none).",
    ),
    _api("concurrency", int, 16, min=1, help="API requests in flight at once."),
    _api("rpm", float | None, None, "--rpm", min=1, help="Limit API requests per minute."),
    _api(
        "timeout",
        float,
        120.0,
        callback=lambda v: _positive(v, "--timeout"),
        help="Seconds before one API request is abandoned.",
    ),
    _api("max_attempts", int, 6, min=1, help="Tries per API request (with backoff)."),
    _api(
        "keep_alive",
        KeepAlive,
        KeepAlive.auto,
        help="Reuse connections: auto (only after a reply that names its request; safe with "
        "servers that send stray replies), always, or never.",
    ),
    _api(
        "max_reply_bytes",
        int,
        DEFAULT_MAX_REPLY_BYTES,
        min=1024,
        help="A reply longer than this, decompressed, is an error and never stored "
        "(default 8 MiB).",
    ),
)
LOCAL_MODEL_OPTIONS = (
    _target("gguf_file", str | None, None, help="GGUF file inside the model folder."),
    _DEVICE,
    _target("dtype", str, "auto", help="auto, float32, float16 or bfloat16."),
    _target(
        "batch_size",
        int | None,
        None,
        min=1,
        help="Prompts per local generation batch (default: 8; 4 for a local model on CPU).",
    ),
    _target(
        "vllm_arg",
        list[str] | None,
        None,
        "--vllm-arg",
        help="KEY=VALUE for vllm.LLM, repeatable: tensor_parallel_size=2, "
        "max_model_len=4096, enforce_eager=true ... (any vllm.LLM argument).",
        metavar="KEY=VALUE",
    ),
)
DECODING_OPTIONS = (
    _decoding("temperature", float | None, 0.0, min=0, help="Sampling temperature (0: greedy)."),
    _decoding(
        "top_p",
        float | None,
        None,
        max=1,
        callback=lambda v: _positive(v, "--top-p"),
        help="Nucleus sampling top_p, in (0, 1].",
    ),
    _decoding(
        "max_tokens",
        int | None,
        None,
        min=1,
        help="Maximum tokens per answer (default: 1024; 256 for a local model on CPU).",
    ),
    _decoding(
        "gen_seed",
        int | None,
        None,
        "--gen-seed",
        min=0,
        help="Decoding seed (answer k of a prompt gets its own).",
    ),
    _decoding("system_prompt", str | None, None, help="System prompt (none by default)."),
    _decoding("samples", int, 1, min=1, help="Answers per prompt."),
)
PROMPT_OPTIONS = (
    _param("data", DataOpt, None),
    _param("dimension", DimensionOpt, None),
    _param("subcomponent", SubcomponentOpt, None),
    _param("sample", SampleOpt, None),
    _param("sample_seed", SampleSeedOpt, 0),
)
RETRY_OPTIONS = (
    _execution(
        "retry_errors",
        bool,
        False,
        "--retry-errors",
        help="Retry only the answers that failed before.",
    ),
)
ERROR_BUDGET_OPTIONS = (
    _execution(
        "max_errors",
        int | None,
        None,
        min=0,
        help="Stop after this many failures (default: 10%, at least 5).",
    ),
)


def scorer_options(
    dtype: str = "scorer_dtype", device: bool = False
) -> tuple[inspect.Parameter, ...]:
    """The official scorer's options. `flames score` calls its dtype --dtype and has its own
    --device; `flames run` says --scorer-dtype, and its --device is the generator's too."""
    return (
        _scorer(
            "scorer_model",
            str,
            OFFICIAL_REPO,
            help="Scorer checkpoint: a folder or a Hugging Face repo id.",
        ),
        _param("revision", RevisionOpt, None),
        _scorer(
            "max_length",
            int,
            512,
            min=1,
            max=2048,
            help="Scorer input tokens (512 as the official infer.py; up to 2048).",
        ),
        _scorer("truncation", str, "official", help="official (as infer.py) or keep-suffix."),
        _scorer(dtype, str, "auto", help="auto (fp32 CPU, fp16 GPU), float32, ..."),
        *((_DEVICE,) if device else ()),
        _scorer(
            "token_budget",
            int | None,
            None,
            min=1,
            help="Padded tokens per scorer batch (default: 2048 CPU, 32768 GPU).",
        ),
        _scorer("max_batch", int, 64, min=1, help="Items per scorer batch at most."),
        _scorer(
            "scorer_name",
            str | None,
            None,
            "--scorer-name",
            help="Name the verdicts are stored under (default: flames-scorer, or judge:MODEL).",
        ),
        _scorer(
            "scorer_engine",
            ScorerEngine,
            ScorerEngine.transformers,
            "--scorer-engine",
            help="transformers (as infer.py) or vllm (same contract on vLLM's pooling runner).",
        ),
        _scorer(
            "scorer_vllm_arg",
            list[str] | None,
            None,
            "--scorer-vllm-arg",
            help="KEY=VALUE for the scorer's vllm.LLM, repeatable: enforce_eager=true ...",
            metavar="KEY=VALUE",
        ),
    )


RUN_JUDGE_OPTIONS = (
    _judge("judge_model", str | None, None, help="Judge with this chat model instead."),
    _judge("judge_base_url", str | None, None, help="OpenAI-compatible endpoint of the judge."),
    _judge(
        "judge_api_key_env",
        str,
        "OPENAI_API_KEY",
        help="Environment variable with the judge's API key.",
    ),
)


class JudgeBackendName(StrEnum):
    openai = "openai"
    transformers = "transformers"
    vllm = "vllm"


LLM_JUDGE_OPTIONS = (
    _judge(
        "judge_backend",
        JudgeBackendName,
        JudgeBackendName.openai,
        "--judge-backend",
        help="Where the judge model runs: an OpenAI-compatible API, or in this process "
        "(transformers or vllm; no server needed).",
    ),
    _judge(
        "judge_device",
        str | None,
        None,
        "--judge-device",
        help="cpu, cuda, cuda:1 ... for a local judge (default: best).",
    ),
    _judge(
        "judge_dtype",
        str,
        "auto",
        "--judge-dtype",
        help="auto, float32, float16 or bfloat16 for a local judge.",
    ),
    _judge(
        "judge_batch_size",
        int,
        8,
        "--judge-batch-size",
        min=1,
        help="Verdicts a local judge generates in one batch.",
    ),
    _judge(
        "judge_vllm_arg",
        list[str] | None,
        None,
        "--judge-vllm-arg",
        help="KEY=VALUE for the judge's vllm.LLM, repeatable.",
        metavar="KEY=VALUE",
    ),
    _judge(
        "parse_attempts",
        int,
        3,
        min=1,
        help="Asks per answer before a malformed verdict is recorded as an error.",
    ),
    _judge(
        "json_mode",
        bool,
        False,
        "--json-mode",
        help="Ask the judge API for a JSON object response.",
    ),
    _judge(
        "judge_max_tokens",
        int,
        256,
        "--judge-max-tokens",
        min=1,
        help="Tokens per judge answer; a verdict cut at the limit is asked again with twice it.",
    ),
    _judge(
        "skip_judge_check",
        bool,
        False,
        "--skip-judge-check",
        help="Judge without the sanity check on flames' probe answers (reports say so).",
    ),
)
ATTACKER_OPTIONS = (
    _attacker(
        "attacker_model",
        str | None,
        None,
        help="The attacker: model name (API), path / hub id (transformers, vllm), or "
        "module:function taking the chat messages (callable).",
    ),
    _attacker("attacker_backend", BackendName, BackendName.openai, help="Where it runs."),
    _attacker(
        "attacker_base_url", str | None, None, help="OpenAI-compatible endpoint of the attacker."
    ),
    _attacker(
        "attacker_api_key_env",
        str,
        "OPENAI_API_KEY",
        help="Environment variable with the attacker's API key.",
    ),
    _attacker(
        "attacker_temperature",
        float,
        1.0,
        min=0,
        help="The attacker's sampling temperature (1: varied attacks).",
    ),
    _attacker("attacker_max_tokens", int, 1024, min=1, help="Tokens per attacker reply."),
)
ATTACK_OPTIONS = (
    _attack(
        "strategy",
        list[str] | None,
        None,
        "--strategy",
        help="rewrite, pair, tap, crescendo: a comma list or repeated (default pair).",
    ),
    _attack(
        "budget", int, 20, min=1, max=1000, help="Target queries per attack (goal x strategy)."
    ),
    _attack(
        "attacker_budget",
        int | None,
        None,
        min=1,
        help="Attacker requests per attack (default 10 x --budget).",
    ),
    _attack(
        "attacker_attempts",
        int,
        3,
        min=1,
        max=10,
        help="Asks per step when a reply has no usable prompt (each another way).",
    ),
    _attack("seed", int, 0, help="Seed of the transforms and the attacker's sampling."),
    _attack(
        "instructions",
        Path | None,
        None,
        help="TOML file replacing some of the attacker's instructions (docs/redteam.md).",
    ),
    _attack("methods", str | None, None, help="rewrite: comma list of methods and transforms."),
    _attack("streams", int | None, None, min=1, help="pair: attacker streams (default 3)."),
    _attack("iterations", int | None, None, min=1, help="pair: rounds per stream (default 5)."),
    _attack("branching", int | None, None, min=1, help="tap: children per leaf (default 3)."),
    _attack("width", int | None, None, min=1, help="tap: leaves kept per level (default 4)."),
    _attack("depth", int | None, None, min=1, help="tap: levels at most (default 5)."),
    _attack("turns", int | None, None, min=1, help="crescendo: turns at most (default 5)."),
    _attack(
        "backtracks", int | None, None, min=0, help="crescendo: refusals taken back (default 5)."
    ),
    _attack(
        "price",
        list[str] | None,
        None,
        "--price",
        help="ROLE=IN,OUT: price per million input and output tokens of target, attacker "
        "or judge (as --price of flames run), to show costs (repeatable).",
        metavar="ROLE=IN,OUT",
    ),
)
REPORT_OPTIONS = (
    _param("bootstrap", BootstrapOpt, 2000),
    _param("seed", SeedOpt, 0),
    _param("lang", LangOpt, Lang.en),
)
EXECUTOR_OPTIONS = (
    _execution(
        "executor",
        ExecutorName,
        ExecutorName.local,
        help="Run local models in this process, or on a Ray cluster.",
    ),
    _execution(
        "ray_address",
        str | None,
        None,
        help="Ray cluster to join ('auto', ray://host:10001); default local.",
    ),
    _execution(
        "replicas", int | None, None, min=1, help="Ray replicas (default: one per GPU, or 1)."
    ),
    _execution(
        "gpus_per_replica",
        float | None,
        None,
        min=0,
        help="GPUs per Ray replica (default: 1 if the cluster has GPUs).",
    ),
)
PRICE_HELP = (
    "What the model's tokens cost live per million, IN,OUT (e.g. 0.15,0.6, in your currency): "
    "shows the cost live against batch."
)
BATCH_OPTIONS = (
    _batch(
        "batch",
        bool,
        False,
        "--batch",
        help="Send the requests through the provider's batch API: half the price, results within "
        "24 hours. A killed run reattaches to its jobs; `flames batch status|cancel RUN`.",
    ),
    _batch(
        "batch_api",
        BatchApiName,
        BatchApiName.auto,
        help="auto (Anthropic's for api.anthropic.com, else OpenAI's), openai (also DashScope and "
        "other OpenAI-compatible batch APIs) or anthropic.",
    ),
    _batch(
        "batch_max_requests",
        int | None,
        None,
        min=1,
        help="Requests per batch job at most (default: the provider's limit).",
    ),
    _batch(
        "batch_poll",
        float,
        60.0,
        callback=lambda v: _positive(v, "--batch-poll"),
        help="Longest wait between two checks of a batch job, in seconds.",
    ),
    _batch("price", str | None, None, "--price", help=PRICE_HELP, metavar="IN,OUT"),
)
RUN_JUDGE_PRICE = (
    _batch(
        "judge_price",
        str | None,
        None,
        "--judge-price",
        help="The judge's price per million tokens, IN,OUT.",
        metavar="IN,OUT",
    ),
)
PROGRESS_OPTIONS = (_execution("progress", bool, True, help="Show a progress bar."),)
WAIT_HELP = "If another process is writing the run, wait for it instead of stopping."
WAIT_OPTIONS = (_execution("wait", bool, False, "--wait", help=WAIT_HELP),)
WaitOpt = Annotated[bool, typer.Option("--wait", help=WAIT_HELP)]
AllowEmptyOpt = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Keep empty responses as the model's answers (by default they are stored as "
        "errors, as empty API answers are, and never scored).",
    ),
]

Command = TypeVar("Command", bound=Callable[..., Any])


def with_options(*groups: tuple[inspect.Parameter, ...]) -> Callable[[Command], Command]:
    """Give a command (a function taking ``**options``) every option of `groups` after its own
    parameters; Typer reads the options from the signature set here."""

    def decorate(command: Command) -> Command:
        own = inspect.signature(command, eval_str=True).parameters.values()
        parameters = [p for p in own if p.kind is not p.VAR_KEYWORD]
        parameters += [p for group in groups for p in group]
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate
