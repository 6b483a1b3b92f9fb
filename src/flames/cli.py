"""The `flames` command line.

Exit codes: 0 success; 1 failure; 2 bad usage; 3 bad input data; 4 settings differ from the
run's manifest; 5 the run finished with failed items; 6 the official data could not be fetched.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from flames import official_data
from flames.augment import transforms_in
from flames.dataset import Dataset
from flames.errors import FlamesError, IncompleteRun
from flames.generation import Backend, run_generation
from flames.imports import import_answers
from flames.records import DatasetInfo, Decoding, RunManifest
from flames.report import FORMATS, build_report, print_report, write_reports
from flames.results import load_results
from flames.scorer import OFFICIAL_REPO
from flames.scoring import Scorer, run_scoring
from flames.store import RunStore

if TYPE_CHECKING:
    from flames.distributed import RayOptions

app = typer.Typer(
    help="Evaluate how well LLMs hold to human values in Chinese (the Flames benchmark).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Get, inspect and sample prompt sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
scorer_app = typer.Typer(help="Manage the official scorer checkpoint.", no_args_is_help=True)
app.add_typer(scorer_app, name="scorer")
annotate_app = typer.Typer(
    help="Human labels: export, import, label in a browser.", no_args_is_help=True
)
app.add_typer(annotate_app, name="annotate")

console = Console()
err = Console(stderr=True)

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
    int, typer.Option("--bootstrap", help="Bootstrap resamples for the 95% CIs (0 turns off).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")]
FormatOpt = Annotated[
    list[str] | None, typer.Option("--format", "-f", help=f"Report formats: {', '.join(FORMATS)}.")
]


class BackendName(StrEnum):
    openai = "openai"
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


def _ray_options(
    executor: ExecutorName, address: str | None, replicas: int | None, gpus: float | None
) -> RayOptions | None:
    if executor is ExecutorName.local:
        return None
    from flames.distributed import RayOptions

    return RayOptions(address=address, replicas=replicas, gpus_per_replica=gpus)


def _scorer_on(scorer: Scorer, ray: RayOptions | None) -> Scorer:
    if ray is None:
        return scorer
    from flames.distributed import RayScorer
    from flames.scorer.official import OfficialScorer

    assert isinstance(scorer, OfficialScorer)
    return RayScorer(scorer, ray)


def _backend_on(backend: Backend, ray: RayOptions | None) -> Backend:
    if ray is None:
        return backend
    from flames.distributed import RayGenerator
    from flames.generation.transformers_local import TransformersBackend

    if not isinstance(backend, TransformersBackend):
        raise typer.BadParameter(
            "--executor ray runs the transformers backend; API backends are already concurrent"
        )
    ray.batch_size = backend.batch_size
    return RayGenerator(backend, ray)


# Options shared by `generate` and `run`.
ModelOpt = Annotated[str, typer.Option(help="Model name (API) or path / hub id (transformers).")]
BackendOpt = Annotated[BackendName, typer.Option(help="Where answers come from.")]
BaseUrlOpt = Annotated[
    str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
]
KeyEnvOpt = Annotated[str, typer.Option(help="Environment variable that holds the API key.")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="API requests in flight at once.")]
RpmOpt = Annotated[float | None, typer.Option("--rpm", help="Limit API requests per minute.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds before one API request is abandoned.")]
AttemptsOpt = Annotated[int, typer.Option(min=1, help="Tries per API request (with backoff).")]
GgufOpt = Annotated[str | None, typer.Option(help="GGUF file inside the model folder.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: best).")]
DtypeOpt = Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Prompts per local generation batch.")]
TemperatureOpt = Annotated[float | None, typer.Option(help="Sampling temperature (0: greedy).")]
TopPOpt = Annotated[float | None, typer.Option(help="Nucleus sampling top_p.")]
MaxTokensOpt = Annotated[int | None, typer.Option(help="Maximum tokens per answer.")]
GenSeedOpt = Annotated[int | None, typer.Option("--gen-seed", help="Decoding seed.")]
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


def _select(
    data: str | None,
    dimension: list[str] | None,
    subcomponent: list[str] | None,
    sample: int | None,
    seed: int,
) -> Dataset:
    dataset = official_data.resolve(data)
    try:
        dataset = dataset.filter(dimension or (), subcomponent or ())
        if sample is not None:
            dataset = dataset.sample(sample, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return dataset


@data_app.command("fetch")
def data_fetch(
    source: Annotated[
        Path | None, typer.Option("--from", help="Verify and cache a local copy instead.")
    ] = None,
) -> None:
    """Download the official 1k prompts, verify their sha256 and cache them."""
    path = official_data.fetch(source)
    console.print(f"official prompts verified (sha256 {official_data.SHA256[:12]}…) at {path}")


@data_app.command("augment")
def data_augment(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write the JSONL.")
    ] = None,
    data: DataOpt = None,
    transform: Annotated[
        list[str] | None, typer.Option(help="Transform to apply (default: all); see --list.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the transforms.")] = 0,
    source: Annotated[
        bool, typer.Option(help="Include the untransformed prompts, to pair with.")
    ] = True,
    dimension: DimensionOpt = None,
    subcomponent: SubcomponentOpt = None,
    sample: SampleOpt = None,
    sample_seed: SampleSeedOpt = 0,
    list_transforms: Annotated[
        bool, typer.Option("--list", help="List the transforms and exit.")
    ] = False,
) -> None:
    """Write an adversarially augmented prompt set (pinyin, homophones, role-play, ...)."""
    from flames.augment import TRANSFORMS, augment

    if list_transforms:
        for t in TRANSFORMS.values():
            console.print(f"[bold]{t.name}[/]: {t.description}")
        return
    if output is None:
        raise typer.BadParameter("give --output (or --list)")
    dataset = _select(data, dimension, subcomponent, sample, sample_seed)
    try:
        augmented = augment(dataset, transform, seed=seed, include_source=source)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _write_items(augmented, output)
    console.print(f"wrote {len(augmented)} items ({augmented.selection}) to {output}")


def _write_items(dataset: Dataset, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as fh:
        for item in dataset:
            row = {
                "id": item.id,
                "dimension": item.dimension.value,
                "subcomponent": item.subcomponent,
                "prompt": item.prompt,
                **item.meta,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


@data_app.command("info")
def data_info(data: DataOpt = None) -> None:
    """Validate a prompt set and show its counts per dimension and subcomponent."""
    dataset = official_data.resolve(data)
    console.print(f"[bold]{dataset.name}[/]: {len(dataset)} items, sha256 {dataset.source_sha256}")
    for dim, subs in dataset.counts().items():
        console.print(f"  {dim}: {sum(subs.values())}")
        for sub, n in subs.items():
            console.print(f"    {sub}: {n}")


@data_app.command("sample")
def data_sample(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSONL.")],
    data: DataOpt = None,
    n: Annotated[int | None, typer.Option("--n", help="Stratified sample size.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    dimension: Annotated[list[str] | None, typer.Option(help="Keep this dimension.")] = None,
    subcomponent: Annotated[list[str] | None, typer.Option(help="Keep this subcomponent.")] = None,
) -> None:
    """Write a filtered and/or stratified sample of a prompt set, with ids, as JSONL."""
    dataset = _select(data, dimension, subcomponent, n, seed)
    _write_items(dataset, output)
    console.print(f"wrote {len(dataset)} items ({dataset.selection}) to {output}")


def _report(
    run_dir: Path,
    scorer_name: str | None,
    out: Path | None,
    formats: list[str] | None,
    bootstrap: int,
    seed: int,
    html: bool = True,
    plots: bool = False,
) -> None:
    chosen = tuple(formats or FORMATS)
    unknown = set(chosen) - set(FORMATS)
    if unknown:
        raise typer.BadParameter(f"unknown format(s): {', '.join(sorted(unknown))}")
    results = load_results(run_dir, scorer_name)
    report = build_report(results, bootstrap_samples=bootstrap, seed=seed)
    print_report(report, console)
    out_dir = out or run_dir / "report"
    written = write_reports(report, out_dir, chosen)
    if html:
        from flames.html_report import render_html

        page = out_dir / "report.html"
        page.write_text(render_html(report, results), encoding="utf-8")
        written.append(page)
    if plots:
        from flames.plots import write_plots

        written += write_plots(report, out_dir)
    if transforms_in(row.item for row in results.rows):
        from flames.robustness import print_robustness, robustness

        effects = robustness(results, bootstrap_samples=bootstrap or 1000, seed=seed)
        print_robustness(effects, console)
        path = out_dir / "robustness.json"
        path.write_text(json.dumps([e.model_dump() for e in effects], indent=2), encoding="utf-8")
        written.append(path)
    for path in written:
        console.print(f"wrote {path}")


@app.command("generate")
def generate(
    run_dir: RunDirArg,
    model: ModelOpt,
    backend: BackendOpt = BackendName.openai,
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    concurrency: ConcurrencyOpt = 16,
    rpm: RpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    max_attempts: AttemptsOpt = 6,
    gguf_file: GgufOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    batch_size: BatchOpt = 8,
    temperature: TemperatureOpt = 0.0,
    top_p: TopPOpt = None,
    max_tokens: MaxTokensOpt = 1024,
    gen_seed: GenSeedOpt = None,
    system_prompt: SystemOpt = None,
    samples: SamplesOpt = 1,
    data: DataOpt = None,
    dimension: DimensionOpt = None,
    subcomponent: SubcomponentOpt = None,
    sample: SampleOpt = None,
    sample_seed: SampleSeedOpt = 0,
    retry_errors: RetryOpt = False,
    max_errors: MaxErrorsOpt = None,
    executor: ExecutorOpt = ExecutorName.local,
    ray_address: RayAddressOpt = None,
    replicas: ReplicasOpt = None,
    gpus_per_replica: GpusPerReplicaOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Answer every prompt with the model under test; resumes where it stopped."""
    decoding = Decoding(
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=gen_seed,
        system_prompt=system_prompt,
        samples=samples,
    )
    chosen = make_backend(
        BackendName(backend),
        model,
        decoding,
        base_url,
        api_key_env,
        concurrency,
        rpm,
        timeout,
        max_attempts,
        gguf_file,
        device,
        dtype,
        batch_size,
    )
    chosen = _backend_on(chosen, _ray_options(executor, ray_address, replicas, gpus_per_replica))
    dataset = _select(data, dimension, subcomponent, sample, sample_seed)
    _generate(run_dir, dataset, chosen, retry_errors, max_errors, progress).close()


def _official_scorer(
    scorer_model: str,
    revision: str | None,
    max_length: int,
    truncation: str,
    dtype: str,
    device: str | None,
    token_budget: int | None,
    max_batch: int,
    name: str,
) -> Scorer:
    from flames.scorer.official import OfficialScorer, ScorerSettings
    from flames.scorer.tokenizer import Truncation

    try:
        mode = Truncation(truncation)
    except ValueError:
        raise typer.BadParameter("--truncation must be official or keep-suffix") from None
    return OfficialScorer(
        ScorerSettings(
            model=scorer_model,
            revision=revision,
            max_length=max_length,
            truncation=mode,
            dtype=dtype,
            device=device,
            token_budget=token_budget,
            max_batch=max_batch,
            name=name,
        )
    )


def _score(store: RunStore, scorer: Scorer, retry_errors: bool, progress: bool) -> None:
    summary = run_scoring(store, scorer, retry_errors, progress)
    console.print(
        f"scored {summary.scored} answers with {scorer.manifest.name}, {summary.errors} errors, "
        f"{summary.truncated} truncated"
    )


@app.command("score")
def score(
    run_dir: RunDirArg,
    scorer_model: ScorerModelOpt = OFFICIAL_REPO,
    revision: RevisionOpt = None,
    max_length: MaxLengthOpt = 512,
    truncation: TruncationOpt = "official",
    dtype: ScorerDtypeOpt = "auto",
    device: DeviceOpt = None,
    token_budget: TokenBudgetOpt = None,
    max_batch: MaxBatchOpt = 64,
    scorer_name: ScorerNameSetOpt = "flames-scorer",
    retry_errors: RetryOpt = False,
    executor: ExecutorOpt = ExecutorName.local,
    ray_address: RayAddressOpt = None,
    replicas: ReplicasOpt = None,
    gpus_per_replica: GpusPerReplicaOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Score a run's answers with the official Flames-scorer; resumes where it stopped."""
    scorer = _official_scorer(
        scorer_model,
        revision,
        max_length,
        truncation,
        dtype,
        device,
        token_budget,
        max_batch,
        scorer_name,
    )
    scorer = _scorer_on(scorer, _ray_options(executor, ray_address, replicas, gpus_per_replica))
    with RunStore.open(run_dir) as store:
        _score(store, scorer, retry_errors, progress)


@app.command("judge")
def judge(
    run_dir: RunDirArg,
    model: Annotated[str, typer.Option(help="The judge: a chat model behind an OpenAI API.")],
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    concurrency: ConcurrencyOpt = 16,
    rpm: RpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    max_attempts: AttemptsOpt = 6,
    parse_attempts: ParseAttemptsOpt = 3,
    json_mode: JsonModeOpt = False,
    scorer_name: Annotated[
        str | None, typer.Option(help="Name for the verdicts (default judge:MODEL).")
    ] = None,
    retry_errors: RetryOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Score a run's answers with an LLM judge (not the official scorer); resumable."""
    from flames.judge import LLMJudge

    scorer = LLMJudge(
        model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        requests_per_minute=rpm,
        timeout=timeout,
        max_attempts=max_attempts,
        parse_attempts=parse_attempts,
        json_mode=json_mode,
        name=scorer_name,
    )
    with RunStore.open(run_dir) as store:
        _score(store, scorer, retry_errors, progress)


@app.command("run")
def run(
    run_dir: RunDirArg,
    model: ModelOpt,
    backend: BackendOpt = BackendName.openai,
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    concurrency: ConcurrencyOpt = 16,
    rpm: RpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    max_attempts: AttemptsOpt = 6,
    gguf_file: GgufOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    batch_size: BatchOpt = 8,
    temperature: TemperatureOpt = 0.0,
    top_p: TopPOpt = None,
    max_tokens: MaxTokensOpt = 1024,
    gen_seed: GenSeedOpt = None,
    system_prompt: SystemOpt = None,
    samples: SamplesOpt = 1,
    data: DataOpt = None,
    dimension: DimensionOpt = None,
    subcomponent: SubcomponentOpt = None,
    sample: SampleOpt = None,
    sample_seed: SampleSeedOpt = 0,
    retry_errors: RetryOpt = False,
    max_errors: MaxErrorsOpt = None,
    scorer_model: ScorerModelOpt = OFFICIAL_REPO,
    revision: RevisionOpt = None,
    max_length: MaxLengthOpt = 512,
    truncation: TruncationOpt = "official",
    scorer_dtype: ScorerDtypeOpt = "auto",
    token_budget: TokenBudgetOpt = None,
    max_batch: MaxBatchOpt = 64,
    scorer_name: ScorerNameSetOpt = "flames-scorer",
    judge_model: JudgeModelOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    judge_api_key_env: JudgeKeyOpt = "OPENAI_API_KEY",
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    executor: ExecutorOpt = ExecutorName.local,
    ray_address: RayAddressOpt = None,
    replicas: ReplicasOpt = None,
    gpus_per_replica: GpusPerReplicaOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Generate, score (official scorer, or --judge-model), and report: the whole evaluation."""
    decoding = Decoding(
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=gen_seed,
        system_prompt=system_prompt,
        samples=samples,
    )
    chosen = make_backend(
        backend,
        model,
        decoding,
        base_url,
        api_key_env,
        concurrency,
        rpm,
        timeout,
        max_attempts,
        gguf_file,
        device,
        dtype,
        batch_size,
    )
    scorer: Scorer
    if judge_model:
        from flames.judge import LLMJudge

        scorer = LLMJudge(
            judge_model,
            base_url=judge_base_url,
            api_key_env=judge_api_key_env,
            concurrency=concurrency,
            requests_per_minute=rpm,
            timeout=timeout,
            max_attempts=max_attempts,
        )
    else:
        scorer = _official_scorer(
            scorer_model,
            revision,
            max_length,
            truncation,
            scorer_dtype,
            device,
            token_budget,
            max_batch,
            scorer_name,
        )
    ray = _ray_options(executor, ray_address, replicas, gpus_per_replica)
    if backend is BackendName.transformers:  # API backends stay local; scoring still scales out
        chosen = _backend_on(chosen, ray)
    if not judge_model:
        scorer = _scorer_on(scorer, ray)
    dataset = _select(data, dimension, subcomponent, sample, sample_seed)
    incomplete: IncompleteRun | None = None
    try:
        store = _generate(run_dir, dataset, chosen, retry_errors, max_errors, progress)
    except IncompleteRun as exc:  # score and report what did succeed, then fail
        incomplete = exc
        store = RunStore.open(run_dir)
    with store:
        _score(store, scorer, retry_errors, progress)
    _report(run_dir, scorer.manifest.name, None, None, bootstrap, seed)
    if incomplete:
        raise incomplete


@app.command("compare")
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run A (the baseline).")],
    run_b: Annotated[Path, typer.Argument(help="Run B.")],
    scorer_name: ScorerNameOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write comparison.json here.")] = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
) -> None:
    """Paired comparison of two runs: rate differences with CIs and McNemar's test."""
    from rich.table import Table

    from flames.compare import compare_runs

    result = compare_runs(
        load_results(run_a, scorer_name),
        load_results(run_b, scorer_name),
        bootstrap_samples=bootstrap,
        seed=seed,
    )
    table = Table(title=f"Harmless rate: {result.a} (A) vs {result.b} (B), paired")
    for header in ("", "N", "A", "B", "B - A", "95% CI", "McNemar p", "verdict"):
        table.add_column(header)
    rows = [*result.dimensions.items(), ("Overall (mean of dimensions)", result.overall)]
    for name, d in rows:
        table.add_row(
            name,
            str(d.n),
            f"{d.rate_a:.2f}%",
            f"{d.rate_b:.2f}%",
            f"{d.difference:+.2f}",
            f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}]",
            f"{d.p_value:.3g}",
            d.verdict(result.a, result.b),
        )
    console.print(table)
    console.print(
        f"{result.paired_items} items paired; {result.only_in_a} only in A, "
        f"{result.only_in_b} only in B."
    )
    if not result.same_scorer:
        console.print(
            "[yellow]warning:[/] the runs were scored with different scorers or "
            "settings; the difference mixes model and scorer."
        )
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
        console.print(f"wrote {out / 'comparison.json'}")


@app.command("leaderboard")
def leaderboard_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to rank.")],
    scorer_name: ScorerNameOpt = None,
    published: Annotated[
        bool, typer.Option(help="Show the published Flames leaderboard beside yours.")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Also write leaderboard.md here.")] = None,
) -> None:
    """Rank several runs by overall harmless rate, beside the published leaderboard."""
    from rich.markdown import Markdown

    from flames.leaderboard import leaderboard, to_markdown

    text = to_markdown(leaderboard(runs, scorer_name), published=published)
    console.print(Markdown(text))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "leaderboard.md").write_text(text, encoding="utf-8")
        console.print(f"wrote {out / 'leaderboard.md'}")


@annotate_app.command("export")
def annotate_export(
    run_dir: RunDirArg,
    output: Annotated[Path, typer.Argument(help="A .csv or .jsonl file to write.")],
    first: Annotated[
        list[str] | None,
        typer.Option("--disagreements-of", help="Put answers these scorers disagree on first."),
    ] = None,
) -> None:
    """Write a run's answers for labelling (CSV for spreadsheets, or JSONL)."""
    from flames.annotate import export_items

    with RunStore.open(run_dir) as store:
        n = export_items(store, output, first or ())
    console.print(f"wrote {n} answers to label to {output}")


@annotate_app.command("import")
def annotate_import(
    run_dir: RunDirArg,
    files: Annotated[list[Path], typer.Argument(help="Label files (.csv or .jsonl).")],
    annotator: Annotated[
        str | None, typer.Option(help="Annotator, for files without an annotator column.")
    ] = None,
) -> None:
    """Import human labels; each annotator's become the verdicts of scorer human:NAME."""
    from flames.annotate import import_labels

    with RunStore.open(run_dir) as store:
        for path in files:
            for who, n in import_labels(store, path, annotator).items():
                console.print(f"{path}: {n} labels by {who} (scorer human:{who})")


@annotate_app.command("serve")
def annotate_serve(
    run_dir: RunDirArg,
    annotator: Annotated[str, typer.Option(help="Who is labelling.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    first: Annotated[
        list[str] | None,
        typer.Option("--disagreements-of", help="Put answers these scorers disagree on first."),
    ] = None,
) -> None:
    """Label answers in a local web page: one at a time, keys 1-3, each label saved at once."""
    from flames.annotate_server import serve

    console.print(f"labelling as {annotator}: open http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    serve(run_dir, annotator, port, first or ())


@app.command("calibrate")
def calibrate_cmd(
    run_dir: RunDirArg,
    judge_name: Annotated[str, typer.Option("--judge", help="The scorer to check.")],
    annotators: Annotated[
        list[str] | None,
        typer.Option("--annotator", help="Reference annotators (default: all human labels)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write calibration.json here.")] = None,
) -> None:
    """Agreement of a judge with human labels: accuracy, kappa, confusion, corrected rates."""
    from rich.table import Table

    from flames.annotate import HUMAN_PREFIX, human_scorer
    from flames.calibration import calibrate

    with RunStore.open(run_dir) as store:
        humans = [human_scorer(a) for a in annotators or ()] or [
            name for name in store.scorers() if name.startswith(HUMAN_PREFIX)
        ]
        if not humans:
            raise FlamesError(f"{run_dir}: no human labels (flames annotate import)")
        result = calibrate(store, judge_name, humans)
    table = Table(title=f"{result.judge} against {', '.join(result.reference)}")
    for header in ("", "N", "accuracy", "Cohen's kappa", "observed rate", "corrected rate"):
        table.add_column(header, justify="left" if not header else "right")
    table.add_row(
        "Overall",
        str(result.overall.n),
        f"{result.overall.accuracy:.1f}%",
        f"{result.overall.cohen_kappa:.3f}",
        "",
        "",
    )
    for dim, stats in result.dimensions.items():
        c = result.corrected_rates[dim]
        corrected = "n/a" if c.corrected is None else f"{c.corrected:.1f}%"
        table.add_row(
            dim,
            str(stats.n),
            f"{stats.accuracy:.1f}%",
            f"{stats.cohen_kappa:.3f}",
            f"{c.observed:.1f}%",
            corrected,
        )
    console.print(table)
    console.print("confusion (rows: human, columns: judge 1 2 3):")
    for h, row in result.confusion.items():
        console.print(f"  {h}: " + " ".join(f"{row[j]:5d}" for j in (1, 2, 3)))
    if result.fleiss_kappa is not None:
        console.print(
            f"Fleiss' kappa between annotators: {result.fleiss_kappa:.3f} "
            f"({result.annotated_by_all} answers labelled by all)"
        )
    if result.no_majority:
        console.print(f"{result.no_majority} answers had no majority label and were left out.")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")


@app.command("disagreements")
def disagreements_cmd(
    run_dir: RunDirArg,
    scorers: Annotated[list[str], typer.Option("--scorer-name", help="Two or more scorers.")],
) -> None:
    """Where several judges disagree on the same answers: agreement and the contested count."""
    from itertools import combinations

    from flames.annotate import disagreement_keys
    from flames.calibration import cohen_kappa

    if len(scorers) < 2:
        raise typer.BadParameter("name at least two scorers")
    with RunStore.open(run_dir) as store:
        verdicts = {
            name: {(v.item_id, v.sample): v.score for v in store.verdicts(name) if v.status == "ok"}
            for name in scorers
        }
        contested = disagreement_keys(store, scorers)
    for a, b in combinations(scorers, 2):
        keys = sorted(verdicts[a].keys() & verdicts[b].keys())
        if not keys:
            console.print(f"{a} / {b}: no answers in common")
            continue
        x, y = [verdicts[a][k] for k in keys], [verdicts[b][k] for k in keys]
        same = 100 * sum(i == j for i, j in zip(x, y, strict=True)) / len(keys)
        console.print(
            f"{a} / {b}: {len(keys)} answers, {same:.1f}% agree, "
            f"Cohen's kappa {cohen_kappa(x, y):.3f}"
        )
    console.print(
        f"{len(contested)} answers contested; label them first with "
        "`flames annotate export --disagreements-of ...`"
    )


@app.command("refusals")
def refusals_cmd(run_dir: RunDirArg) -> None:
    """Refusal rate of a run's answers per dimension (no scorer needed): over-refusal check."""
    from flames.refusal import is_refusal

    with RunStore.open(run_dir) as store:
        dims = {item.id: item.dimension.value for item in store.items()}
        tally: dict[str, list[int]] = {}
        for a in store.answers():
            if a.status == "ok":
                for key in (dims[a.item_id], "All answers"):
                    counts = tally.setdefault(key, [0, 0])
                    counts[0] += is_refusal(a.response or "")
                    counts[1] += 1
    for key, (refused, n) in tally.items():
        console.print(f"{key}: {100 * refused / n:.1f}% refused ({refused} of {n})")


@scorer_app.command("convert")
def scorer_convert(
    source: Annotated[str, typer.Argument(help="Checkpoint folder or Hugging Face repo id.")],
    target: Annotated[Path, typer.Argument(help="Folder for the safetensors copy.")],
    revision: RevisionOpt = None,
) -> None:
    """Write a safetensors copy of the scorer checkpoint, which loads much faster."""
    from flames.scorer.checkpoint import convert, resolve

    directory, _ = resolve(source, revision)
    for path in convert(directory, target):
        console.print(f"wrote {path}")


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="JSONL of dimension, prompt, response (+ ...).")],
    run_dir: RunDirArg,
    model: Annotated[str | None, typer.Option(help="Name of the model that answered.")] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Prompt set to look up missing subcomponents: a path or 'official'."),
    ] = None,
) -> None:
    """Bring your own answers: import a JSONL of answers (scored or not) as a run."""
    ref = official_data.resolve(reference) if reference else None
    with import_answers(file, run_dir, model=model, reference=ref) as store:
        n = len(store.answers())
        scored = "with their scores" if store.scorers() else "unscored"
    console.print(f"imported {n} answers ({scored}) into {run_dir}")


@app.command("score-file")
def score_file(
    file: Annotated[Path, typer.Argument(help="JSONL of dimension, prompt, response, predicted.")],
    run: Annotated[Path | None, typer.Option(help="Run directory (default runs/<file>).")] = None,
    model: Annotated[str | None, typer.Option(help="Name of the model that answered.")] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Prompt set to look up missing subcomponents: a path or 'official'."),
    ] = None,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    formats: FormatOpt = None,
) -> None:
    """Import already scored answers (the official scorer's output) and report on them."""
    run_dir = run or Path("runs") / file.stem
    ref = official_data.resolve(reference) if reference else None
    with import_answers(file, run_dir, model=model, reference=ref) as store:
        if not store.scorers():
            raise FlamesError(f"{file}: the rows have no 'predicted' field; nothing to report")
    _report(run_dir, None, None, formats, bootstrap, seed)


@app.command("report")
def report(
    run_dir: RunDirArg,
    scorer_name: ScorerNameOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/report).")] = None,
    formats: FormatOpt = None,
    html: Annotated[bool, typer.Option(help="Also write the self-contained report.html.")] = True,
    plots: Annotated[
        bool, typer.Option(help="Also write PNG and SVG figures (needs the [plots] extra).")
    ] = False,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
) -> None:
    """Print a scored run's metrics; write JSON, CSV, Markdown and a self-contained HTML page."""
    _report(run_dir, scorer_name, out, formats, bootstrap, seed, html, plots)


def make_backend(
    backend: BackendName,
    model: str,
    decoding: Decoding,
    base_url: str | None,
    api_key_env: str,
    concurrency: int,
    rpm: float | None,
    timeout: float,
    max_attempts: int,
    gguf_file: str | None,
    device: str | None,
    dtype: str,
    batch_size: int,
) -> Backend:
    if backend is BackendName.openai:
        from flames.generation.openai_api import OpenAIBackend

        return OpenAIBackend(
            model,
            base_url=base_url,
            decoding=decoding,
            api_key_env=api_key_env,
            concurrency=concurrency,
            requests_per_minute=rpm,
            timeout=timeout,
            max_attempts=max_attempts,
        )
    if backend is BackendName.vllm:
        from flames.generation.vllm_local import VLLMBackend

        return VLLMBackend(model, decoding=decoding, dtype=dtype)
    from flames.generation.transformers_local import TransformersBackend

    return TransformersBackend(
        model,
        decoding=decoding,
        gguf_file=gguf_file,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )


def _generate(
    run_dir: Path,
    dataset: Dataset,
    backend: Backend,
    retry_errors: bool,
    max_errors: int | None,
    progress: bool,
) -> RunStore:
    manifest = RunManifest(dataset=DatasetInfo.of(dataset), generator=backend.info)
    store = RunStore.create_or_resume(run_dir, manifest, dataset.items)
    summary = run_generation(store, backend, retry_errors, max_errors, progress)
    console.print(
        f"generated {summary.ok} answers, {summary.errors} errors; tokens: "
        f"{summary.usage['prompt_tokens']} in, {summary.usage['completion_tokens']} out"
    )
    for example in summary.error_examples:
        console.print(f"  [red]error:[/] {escape(example)}", highlight=False)
    if summary.stopped_early:
        raise IncompleteRun(
            f"{run_dir}: stopped after {summary.errors} failures (the error budget). "
            "Fix the cause and run the same command again to resume."
        )
    failed = sum(1 for a in store.answers() if a.status == "error")
    if failed:
        raise IncompleteRun(
            f"{run_dir}: {failed} answers failed and are recorded as errors (never scored). "
            "Run again with --retry-errors to retry only those."
        )
    return store


def main() -> None:
    """Entry point: expected failures print one clear line and exit with their code."""
    try:
        app()
    except FlamesError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(exc.exit_code) from None
