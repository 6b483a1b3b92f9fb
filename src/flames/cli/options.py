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

from flames.data.published import OFFICIAL_REPO
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
        help="Resamples of the paired and calibration bootstraps and permutation tests "
        "(0 turns the 95% CIs off).",
        rich_help_panel=REPORT,
    ),
]


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


class ScorerEngine(StrEnum):
    transformers = "transformers"
    vllm = "vllm"


class ExecutorName(StrEnum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[
    ExecutorName,
    typer.Option(
        help="Run local models in this process, or on a Ray cluster.", rich_help_panel=EXECUTION
    ),
]


RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster to join ('auto', ray://host:10001); default local.",
        rich_help_panel=EXECUTION,
    ),
]


ReplicasOpt = Annotated[
    int | None,
    typer.Option(
        min=1, help="Ray replicas (default: one per GPU, or 1).", rich_help_panel=EXECUTION
    ),
]


GpusPerReplicaOpt = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="GPUs per Ray replica (default: 1 if the cluster has GPUs).",
        rich_help_panel=EXECUTION,
    ),
]


# Options shared by `generate` and `run`.
ModelOpt = Annotated[
    str,
    typer.Option(help="Model name (API) or path / hub id (transformers).", rich_help_panel=TARGET),
]


OptionalModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model name (API), path / hub id (transformers), or module:function (callable).",
        rich_help_panel=TARGET,
    ),
]


BackendOpt = Annotated[
    BackendName, typer.Option(help="Where answers come from.", rich_help_panel=TARGET)
]


BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1", rich_help_panel=API
    ),
]


KeyEnvOpt = Annotated[
    str,
    typer.Option(
        help="Environment variable that holds the API key ('' for none; loopback needs none).",
        rich_help_panel=API,
    ),
]


ConcurrencyOpt = Annotated[
    int, typer.Option(min=1, help="API requests in flight at once.", rich_help_panel=API)
]


RpmOpt = Annotated[
    float | None,
    typer.Option("--rpm", min=1, help="Limit API requests per minute.", rich_help_panel=API),
]


TimeoutOpt = Annotated[
    float,
    typer.Option(
        callback=lambda v: _positive(v, "--timeout"),
        help="Seconds before one API request is abandoned.",
        rich_help_panel=API,
    ),
]


AttemptsOpt = Annotated[
    int, typer.Option(min=1, help="Tries per API request (with backoff).", rich_help_panel=API)
]


GgufOpt = Annotated[
    str | None, typer.Option(help="GGUF file inside the model folder.", rich_help_panel=TARGET)
]


DeviceOpt = Annotated[
    str | None,
    typer.Option(help="cpu, cuda, cuda:1 ... (default: best).", rich_help_panel=TARGET),
]


DtypeOpt = Annotated[
    str, typer.Option(help="auto, float32, float16 or bfloat16.", rich_help_panel=TARGET)
]


VllmArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--vllm-arg",
        help="KEY=VALUE for vllm.LLM, repeatable: tensor_parallel_size=2, "
        "max_model_len=4096, enforce_eager=true ... (any vllm.LLM argument).",
        metavar="KEY=VALUE",
        rich_help_panel=TARGET,
    ),
]


BatchOpt = Annotated[
    int,
    typer.Option(min=1, help="Prompts per local generation batch.", rich_help_panel=TARGET),
]


TemperatureOpt = Annotated[
    float | None,
    typer.Option(min=0, help="Sampling temperature (0: greedy).", rich_help_panel=DECODING),
]


TopPOpt = Annotated[
    float | None,
    typer.Option(
        max=1,
        callback=lambda v: _positive(v, "--top-p"),
        help="Nucleus sampling top_p, in (0, 1].",
        rich_help_panel=DECODING,
    ),
]


MaxTokensOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Maximum tokens per answer.", rich_help_panel=DECODING),
]


GenSeedOpt = Annotated[
    int | None,
    typer.Option(
        "--gen-seed",
        min=0,
        help="Decoding seed (answer k of a prompt gets its own).",
        rich_help_panel=DECODING,
    ),
]


SystemOpt = Annotated[
    str | None, typer.Option(help="System prompt (none by default).", rich_help_panel=DECODING)
]


SamplesOpt = Annotated[
    int, typer.Option(min=1, help="Answers per prompt.", rich_help_panel=DECODING)
]


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


RetryOpt = Annotated[
    bool,
    typer.Option(
        "--retry-errors",
        help="Retry only the answers that failed before.",
        rich_help_panel=EXECUTION,
    ),
]


MaxErrorsOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Stop after this many failures (default: 10%, at least 5).",
        rich_help_panel=EXECUTION,
    ),
]


ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.", rich_help_panel=EXECUTION)]


# Options of the official scorer, shared by `score` and `run`.
ScorerModelOpt = Annotated[
    str,
    typer.Option(
        help="Scorer checkpoint: a folder or a Hugging Face repo id.", rich_help_panel=SCORER
    ),
]


RevisionOpt = Annotated[
    str | None,
    typer.Option(help="Hub revision of the scorer checkpoint.", rich_help_panel=SCORER),
]


MaxLengthOpt = Annotated[
    int,
    typer.Option(
        min=1,
        max=2048,
        help="Scorer input tokens (512 as the official infer.py; up to 2048).",
        rich_help_panel=SCORER,
    ),
]


TruncationOpt = Annotated[
    str, typer.Option(help="official (as infer.py) or keep-suffix.", rich_help_panel=SCORER)
]


ScorerDtypeOpt = Annotated[
    str, typer.Option(help="auto (fp32 CPU, fp16 GPU), float32, ...", rich_help_panel=SCORER)
]


TokenBudgetOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Padded tokens per scorer batch (default: 2048 CPU, 32768 GPU).",
        rich_help_panel=SCORER,
    ),
]


ScorerEngineOpt = Annotated[
    ScorerEngine,
    typer.Option(
        "--scorer-engine",
        help="transformers (as infer.py) or vllm (same contract on vLLM's pooling runner).",
        rich_help_panel=SCORER,
    ),
]


ScorerVllmArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--scorer-vllm-arg",
        help="KEY=VALUE for the scorer's vllm.LLM, repeatable: enforce_eager=true ...",
        metavar="KEY=VALUE",
        rich_help_panel=SCORER,
    ),
]


MaxBatchOpt = Annotated[
    int, typer.Option(min=1, help="Items per scorer batch at most.", rich_help_panel=SCORER)
]


ScorerNameSetOpt = Annotated[
    str | None,
    typer.Option(
        "--scorer-name",
        help="Name the verdicts are stored under (default: flames-scorer, or judge:MODEL).",
        rich_help_panel=SCORER,
    ),
]


JudgeModelOpt = Annotated[
    str | None, typer.Option(help="Judge with this chat model instead.", rich_help_panel=JUDGE)
]


JudgeUrlOpt = Annotated[
    str | None,
    typer.Option(help="OpenAI-compatible endpoint of the judge.", rich_help_panel=JUDGE),
]


JudgeKeyOpt = Annotated[
    str,
    typer.Option(help="Environment variable with the judge's API key.", rich_help_panel=JUDGE),
]


JsonModeOpt = Annotated[
    bool,
    typer.Option(
        "--json-mode",
        help="Ask the judge API for a JSON object response.",
        rich_help_panel=JUDGE,
    ),
]


ParseAttemptsOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Asks per answer before a malformed verdict is recorded as an error.",
        rich_help_panel=JUDGE,
    ),
]


JudgeMaxTokensOpt = Annotated[
    int,
    typer.Option(
        "--judge-max-tokens",
        min=1,
        help="Tokens per judge answer; a verdict cut at the limit is asked again with twice it.",
        rich_help_panel=JUDGE,
    ),
]


SkipJudgeCheckOpt = Annotated[
    bool,
    typer.Option(
        "--skip-judge-check",
        help="Judge without the sanity check on flames' probe answers (reports say so).",
        rich_help_panel=JUDGE,
    ),
]


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="An evaluation description (TOML, or YAML with pyyaml); options also given win.",
    ),
]


# -- groups: each option above is declared once, and a command takes whole groups of them ------


def _option(
    name: str, annotation: Any, default: Any = inspect.Parameter.empty
) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def target_options(model_required: bool = True) -> tuple[inspect.Parameter, ...]:
    """The model under test (with --config, the model may come from the file instead)."""
    model = (
        _option("model", ModelOpt) if model_required else _option("model", OptionalModelOpt, None)
    )
    return (model, _option("backend", BackendOpt, BackendName.openai))


API_OPTIONS = (
    _option("base_url", BaseUrlOpt, None),
    _option("api_key_env", KeyEnvOpt, "OPENAI_API_KEY"),
    _option("concurrency", ConcurrencyOpt, 16),
    _option("rpm", RpmOpt, None),
    _option("timeout", TimeoutOpt, 120.0),
    _option("max_attempts", AttemptsOpt, 6),
)
LOCAL_MODEL_OPTIONS = (
    _option("gguf_file", GgufOpt, None),
    _option("device", DeviceOpt, None),
    _option("dtype", DtypeOpt, "auto"),
    _option("batch_size", BatchOpt, 8),
    _option("vllm_arg", VllmArgOpt, None),
)
DECODING_OPTIONS = (
    _option("temperature", TemperatureOpt, 0.0),
    _option("top_p", TopPOpt, None),
    _option("max_tokens", MaxTokensOpt, 1024),
    _option("gen_seed", GenSeedOpt, None),
    _option("system_prompt", SystemOpt, None),
    _option("samples", SamplesOpt, 1),
)
PROMPT_OPTIONS = (
    _option("data", DataOpt, None),
    _option("dimension", DimensionOpt, None),
    _option("subcomponent", SubcomponentOpt, None),
    _option("sample", SampleOpt, None),
    _option("sample_seed", SampleSeedOpt, 0),
)
RETRY_OPTIONS = (_option("retry_errors", RetryOpt, False),)
ERROR_BUDGET_OPTIONS = (_option("max_errors", MaxErrorsOpt, None),)


def scorer_options(
    dtype: str = "scorer_dtype", device: bool = False
) -> tuple[inspect.Parameter, ...]:
    """The official scorer's options. `flames score` calls its dtype --dtype and has its own
    --device; `flames run` says --scorer-dtype, and its --device is the generator's too."""
    return (
        _option("scorer_model", ScorerModelOpt, OFFICIAL_REPO),
        _option("revision", RevisionOpt, None),
        _option("max_length", MaxLengthOpt, 512),
        _option("truncation", TruncationOpt, "official"),
        _option(dtype, ScorerDtypeOpt, "auto"),
        *((_option("device", DeviceOpt, None),) if device else ()),
        _option("token_budget", TokenBudgetOpt, None),
        _option("max_batch", MaxBatchOpt, 64),
        _option("scorer_name", ScorerNameSetOpt, None),
        _option("scorer_engine", ScorerEngineOpt, ScorerEngine.transformers),
        _option("scorer_vllm_arg", ScorerVllmArgOpt, None),
    )


RUN_JUDGE_OPTIONS = (
    _option("judge_model", JudgeModelOpt, None),
    _option("judge_base_url", JudgeUrlOpt, None),
    _option("judge_api_key_env", JudgeKeyOpt, "OPENAI_API_KEY"),
)
LLM_JUDGE_OPTIONS = (
    _option("parse_attempts", ParseAttemptsOpt, 3),
    _option("json_mode", JsonModeOpt, False),
    _option("judge_max_tokens", JudgeMaxTokensOpt, 256),
    _option("skip_judge_check", SkipJudgeCheckOpt, False),
)
REPORT_OPTIONS = (
    _option("bootstrap", BootstrapOpt, 2000),
    _option("seed", SeedOpt, 0),
    _option("lang", LangOpt, Lang.en),
)
EXECUTOR_OPTIONS = (
    _option("executor", ExecutorOpt, ExecutorName.local),
    _option("ray_address", RayAddressOpt, None),
    _option("replicas", ReplicasOpt, None),
    _option("gpus_per_replica", GpusPerReplicaOpt, None),
)
PROGRESS_OPTIONS = (_option("progress", ProgressOpt, True),)

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
