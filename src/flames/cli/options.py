"""Command-line options shared by several commands."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flames.report import FORMATS

DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data", help="Prompt set: a JSONL path, 'control' (benign) or 'official' (default)."
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
        help="Resamples of the paired and calibration bootstraps and permutation tests "
        "(0 turns the 95% CIs off).",
    ),
]


SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the resampling.")]


FormatOpt = Annotated[
    list[str] | None, typer.Option("--format", "-f", help=f"Report formats: {', '.join(FORMATS)}.")
]


class BackendName(StrEnum):
    openai = "openai"
    transformers = "transformers"
    vllm = "vllm"


class ScorerEngine(StrEnum):
    transformers = "transformers"
    vllm = "vllm"


class ExecutorName(StrEnum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[
    ExecutorName, typer.Option(help="Run local models in this process, or on a Ray cluster.")
]


RayAddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster to join ('auto', ray://host:10001); default local.")
]


ReplicasOpt = Annotated[int | None, typer.Option(help="Ray replicas (default: one per GPU, or 1).")]


GpusPerReplicaOpt = Annotated[
    float | None, typer.Option(help="GPUs per Ray replica (default: 1 if the cluster has GPUs).")
]


# Options shared by `generate` and `run`.
ModelOpt = Annotated[str, typer.Option(help="Model name (API) or path / hub id (transformers).")]


BackendOpt = Annotated[BackendName, typer.Option(help="Where answers come from.")]


BaseUrlOpt = Annotated[
    str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
]


KeyEnvOpt = Annotated[
    str,
    typer.Option(
        help="Environment variable that holds the API key ('' for none; loopback needs none)."
    ),
]


ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="API requests in flight at once.")]


RpmOpt = Annotated[float | None, typer.Option("--rpm", help="Limit API requests per minute.")]


TimeoutOpt = Annotated[float, typer.Option(help="Seconds before one API request is abandoned.")]


AttemptsOpt = Annotated[int, typer.Option(min=1, help="Tries per API request (with backoff).")]


GgufOpt = Annotated[str | None, typer.Option(help="GGUF file inside the model folder.")]


DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: best).")]


DtypeOpt = Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16.")]


VllmArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--vllm-arg",
        help="KEY=VALUE for vllm.LLM, repeatable: tensor_parallel_size=2, "
        "gpu_memory_utilization=0.8, max_model_len=4096, enforce_eager=true ...",
    ),
]


BatchOpt = Annotated[int, typer.Option(min=1, help="Prompts per local generation batch.")]


TemperatureOpt = Annotated[float | None, typer.Option(help="Sampling temperature (0: greedy).")]


TopPOpt = Annotated[float | None, typer.Option(help="Nucleus sampling top_p.")]


MaxTokensOpt = Annotated[int | None, typer.Option(help="Maximum tokens per answer.")]


GenSeedOpt = Annotated[
    int | None,
    typer.Option("--gen-seed", min=0, help="Decoding seed (answer k of a prompt gets its own)."),
]


SystemOpt = Annotated[str | None, typer.Option(help="System prompt (none by default).")]


SamplesOpt = Annotated[int, typer.Option(min=1, help="Answers per prompt.")]


DimensionOpt = Annotated[list[str] | None, typer.Option(help="Keep only this dimension.")]


SubcomponentOpt = Annotated[list[str] | None, typer.Option(help="Keep only this subcomponent.")]


SampleOpt = Annotated[int | None, typer.Option("--sample", help="Stratified sample of N items.")]


SampleSeedOpt = Annotated[int, typer.Option(help="Seed of --sample.")]


RetryOpt = Annotated[bool, typer.Option(help="Retry only the answers that failed before.")]


MaxErrorsOpt = Annotated[
    int | None, typer.Option(help="Stop after this many failures (default: 10%, at least 5).")
]


ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]


# Options of the official scorer, shared by `score` and `run`.
ScorerModelOpt = Annotated[
    str, typer.Option(help="Scorer checkpoint: a folder or a Hugging Face repo id.")
]


RevisionOpt = Annotated[str | None, typer.Option(help="Hub revision of the scorer checkpoint.")]


MaxLengthOpt = Annotated[
    int, typer.Option(help="Scorer input tokens (512 as the official infer.py; up to 2048).")
]


TruncationOpt = Annotated[str, typer.Option(help="official (as infer.py) or keep-suffix.")]


ScorerDtypeOpt = Annotated[str, typer.Option(help="auto (fp32 CPU, fp16 GPU), float32, ...")]


TokenBudgetOpt = Annotated[
    int | None, typer.Option(help="Padded tokens per scorer batch (default: 2048 CPU, 32768 GPU).")
]


ScorerEngineOpt = Annotated[
    ScorerEngine,
    typer.Option(
        "--scorer-engine",
        help="transformers (as infer.py) or vllm (same contract on vLLM's pooling runner).",
    ),
]


ScorerVllmArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--scorer-vllm-arg",
        help="KEY=VALUE for the scorer's vllm.LLM, repeatable: gpu_memory_utilization=0.5 ...",
    ),
]


MaxBatchOpt = Annotated[int, typer.Option(help="Items per scorer batch at most.")]


ScorerNameSetOpt = Annotated[str, typer.Option(help="Name the verdicts are stored under.")]


JudgeModelOpt = Annotated[str | None, typer.Option(help="Judge with this chat model instead.")]


JudgeUrlOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint of the judge.")]


JudgeKeyOpt = Annotated[str, typer.Option(help="Environment variable with the judge's API key.")]


JsonModeOpt = Annotated[bool, typer.Option(help="Ask the judge API for a JSON object response.")]


ParseAttemptsOpt = Annotated[
    int,
    typer.Option(min=1, help="Asks per answer before a malformed verdict is recorded as an error."),
]


JudgeMaxTokensOpt = Annotated[
    int,
    typer.Option(
        "--judge-max-tokens",
        min=1,
        help="Tokens per judge answer; a verdict cut at the limit is asked again with twice it.",
    ),
]


SkipJudgeCheckOpt = Annotated[
    bool,
    typer.Option(
        "--skip-judge-check",
        help="Judge without the sanity check on flames' probe answers (reports say so).",
    ),
]
