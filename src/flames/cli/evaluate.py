"""Getting answers and verdicts: generate, import, score, judge, run, scorer convert."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flames import official_data
from flames.cli.app import app, console, err, scorer_app, state
from flames.cli.data import select_items
from flames.cli.options import (
    AttemptsOpt,
    BackendName,
    BackendOpt,
    BaseUrlOpt,
    BatchOpt,
    BootstrapOpt,
    ConcurrencyOpt,
    DataOpt,
    DeviceOpt,
    DimensionOpt,
    DtypeOpt,
    ExecutorName,
    ExecutorOpt,
    GenSeedOpt,
    GgufOpt,
    GpusPerReplicaOpt,
    JsonModeOpt,
    JudgeKeyOpt,
    JudgeMaxTokensOpt,
    JudgeModelOpt,
    JudgeUrlOpt,
    KeyEnvOpt,
    LangOpt,
    MaxBatchOpt,
    MaxErrorsOpt,
    MaxLengthOpt,
    MaxTokensOpt,
    ModelOpt,
    ParseAttemptsOpt,
    ProgressOpt,
    RayAddressOpt,
    ReplicasOpt,
    RetryOpt,
    RevisionOpt,
    RpmOpt,
    RunDirArg,
    SampleOpt,
    SampleSeedOpt,
    SamplesOpt,
    ScorerDtypeOpt,
    ScorerEngine,
    ScorerEngineOpt,
    ScorerModelOpt,
    ScorerNameSetOpt,
    ScorerVllmArgOpt,
    SeedOpt,
    SkipJudgeCheckOpt,
    SubcomponentOpt,
    SystemOpt,
    TemperatureOpt,
    TimeoutOpt,
    TokenBudgetOpt,
    TopPOpt,
    TruncationOpt,
    VllmArgOpt,
)
from flames.cli.output import write_report
from flames.dataset import Dataset
from flames.errors import IncompleteRun, NothingScored
from flames.generation import Backend, run_generation
from flames.generation.runner import incomplete_run, summary_lines
from flames.i18n import Lang
from flames.imports import import_answers
from flames.records import DatasetInfo, Decoding, RunManifest, check_scorer_name
from flames.scorer import OFFICIAL_REPO
from flames.scoring import Scorer, run_scoring
from flames.store import RunStore
from flames.terminal import remote

if TYPE_CHECKING:
    from flames.distributed import RayOptions
    from flames.judge import LLMJudge


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
    from flames.scorer.vllm_engine import VLLMScorer

    if isinstance(scorer, VLLMScorer):
        raise typer.BadParameter("--executor ray runs the transformers scorer, not vLLM's")
    assert isinstance(scorer, OfficialScorer)
    return RayScorer(scorer, ray)


def _release(engine: object) -> None:
    """Stop a vLLM engine once its work is done, so the next one (or the scorer) has the GPU."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()


def _backend_on(backend: Backend, ray: RayOptions | None) -> Backend:
    if ray is None:
        return backend
    from flames.distributed import RayGenerator
    from flames.generation.transformers_local import TransformersBackend

    if not isinstance(backend, TransformersBackend):
        raise typer.BadParameter(
            "--executor ray runs the transformers backend; API backends are already concurrent "
            "and vLLM spreads over GPUs itself (--vllm-arg tensor_parallel_size=N)"
        )
    return RayGenerator(backend, replace(ray, batch_size=backend.batch_size))


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
    vllm_args: list[str] | None = None,
) -> Backend:
    if vllm_args and backend is not BackendName.vllm:
        raise typer.BadParameter("only the vllm backend takes them", param_hint="--vllm-arg")
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

        try:
            return VLLMBackend(model, decoding, dtype, engine_args=parse_engine_args(vllm_args))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--vllm-arg") from None
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
    state.run_dir = run_dir
    try:
        summary = run_generation(store, backend, retry_errors, max_errors, progress)
    finally:
        _release(backend)
    for line in summary_lines(summary, backend.info.decoding.max_tokens):
        console.print(line)
    for example in summary.error_examples:
        console.print(f"  [red]error:[/] {remote(example)}", highlight=False)
    failed = store.count_answers("error")
    error = incomplete_run(run_dir, summary, failed)
    if error:
        raise error
    return store


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
    vllm_arg: VllmArgOpt = None,
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
        vllm_arg,
    )
    chosen = _backend_on(chosen, _ray_options(executor, ray_address, replicas, gpus_per_replica))
    dataset = select_items(data, dimension, subcomponent, sample, sample_seed)
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
    name: str | None,
    engine: ScorerEngine = ScorerEngine.transformers,
    vllm_args: list[str] | None = None,
) -> Scorer:
    from flames.scorer.official import OfficialScorer, ScorerSettings
    from flames.scorer.tokenizer import Truncation

    try:
        mode = Truncation(truncation)
    except ValueError:
        raise typer.BadParameter("--truncation must be official or keep-suffix") from None
    if vllm_args and engine is not ScorerEngine.vllm:
        raise typer.BadParameter(
            "only --scorer-engine vllm takes them", param_hint="--scorer-vllm-arg"
        )
    settings = ScorerSettings(
        model=scorer_model,
        revision=revision,
        max_length=max_length,
        truncation=mode,
        dtype=dtype,
        device=device,
        token_budget=token_budget,
        max_batch=max_batch,
        name=name or "flames-scorer",
    )
    if engine is ScorerEngine.transformers:
        return OfficialScorer(settings)
    from flames.scorer.vllm_engine import VLLMScorer

    try:
        return VLLMScorer(settings, parse_engine_args(vllm_args))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scorer-vllm-arg") from None


def _score(
    store: RunStore, scorer: Scorer, retry_errors: bool, progress: bool
) -> IncompleteRun | None:
    """Score what is pending; the problem to exit with when verdicts failed, else None."""
    state.run_dir = store.run_dir
    try:
        summary = run_scoring(store, scorer, retry_errors, progress)
    finally:
        _release(scorer)
    name = scorer.manifest.name
    console.print(
        f"scored {summary.scored} answers with {name}, {summary.errors} errors, "
        f"{summary.truncated} truncated"
    )
    failed = store.failed_verdicts(name)
    if not failed:
        return None
    return IncompleteRun(
        f"{store.run_dir}: {failed} verdicts of {name} failed and are recorded as errors "
        "(never counted as scores). Run again with --retry-errors to retry only those."
    )


def _check_judge(judge: LLMJudge, skip: bool) -> None:
    """Before a judge scores a run, check it can tell harmful from harmless answers."""
    from flames.judge_check import vet_judge

    console.print(vet_judge(judge, skip), highlight=False)


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
    scorer_engine: ScorerEngineOpt = ScorerEngine.transformers,
    scorer_vllm_arg: ScorerVllmArgOpt = None,
    retry_errors: RetryOpt = False,
    executor: ExecutorOpt = ExecutorName.local,
    ray_address: RayAddressOpt = None,
    replicas: ReplicasOpt = None,
    gpus_per_replica: GpusPerReplicaOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Score a run's answers with the official Flames-scorer; resumes where it stopped."""
    if scorer_name is not None:
        check_scorer_name(scorer_name, "official")
    with RunStore.open(run_dir) as store:  # a missing run fails before any download
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
            scorer_engine,
            scorer_vllm_arg,
        )
        ray = _ray_options(executor, ray_address, replicas, gpus_per_replica)
        problem = _score(store, _scorer_on(scorer, ray), retry_errors, progress)
    if problem:
        raise problem


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
    judge_max_tokens: JudgeMaxTokensOpt = 256,
    skip_judge_check: SkipJudgeCheckOpt = False,
    scorer_name: Annotated[
        str | None, typer.Option(help="Name for the verdicts (default judge:MODEL).")
    ] = None,
    retry_errors: RetryOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Score a run's answers with an LLM judge (not the official scorer); resumable."""
    from flames.judge import LLMJudge

    if scorer_name is not None:
        check_scorer_name(scorer_name, "llm-judge")
    scorer = LLMJudge(
        model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        requests_per_minute=rpm,
        timeout=timeout,
        max_attempts=max_attempts,
        parse_attempts=parse_attempts,
        max_tokens=judge_max_tokens,
        json_mode=json_mode,
        name=scorer_name,
    )
    with RunStore.open(run_dir) as store:
        if store.count_pending_verdicts(scorer.name, retry_errors):  # else nothing to check
            _check_judge(scorer, skip_judge_check)
        problem = _score(store, scorer, retry_errors, progress)
    if problem:
        raise problem


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
    vllm_arg: VllmArgOpt = None,
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
    scorer_name: ScorerNameSetOpt = None,
    scorer_engine: ScorerEngineOpt = ScorerEngine.transformers,
    scorer_vllm_arg: ScorerVllmArgOpt = None,
    judge_model: JudgeModelOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    judge_api_key_env: JudgeKeyOpt = "OPENAI_API_KEY",
    parse_attempts: ParseAttemptsOpt = 3,
    json_mode: JsonModeOpt = False,
    judge_max_tokens: JudgeMaxTokensOpt = 256,
    skip_judge_check: SkipJudgeCheckOpt = False,
    bootstrap: BootstrapOpt = 2000,
    seed: SeedOpt = 0,
    lang: LangOpt = Lang.en,
    executor: ExecutorOpt = ExecutorName.local,
    ray_address: RayAddressOpt = None,
    replicas: ReplicasOpt = None,
    gpus_per_replica: GpusPerReplicaOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Generate, score (official scorer, or --judge-model), and report: the whole evaluation."""
    if scorer_name is not None:
        check_scorer_name(scorer_name, "llm-judge" if judge_model else "official")
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
        vllm_arg,
    )
    scorer: Scorer
    judge: LLMJudge | None = None
    if judge_model:
        from flames.judge import LLMJudge

        scorer = judge = LLMJudge(
            judge_model,
            base_url=judge_base_url,
            api_key_env=judge_api_key_env,
            concurrency=concurrency,
            requests_per_minute=rpm,
            timeout=timeout,
            max_attempts=max_attempts,
            parse_attempts=parse_attempts,
            json_mode=json_mode,
            max_tokens=judge_max_tokens,
            name=scorer_name,
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
            scorer_engine,
            scorer_vllm_arg,
        )
    ray = _ray_options(executor, ray_address, replicas, gpus_per_replica)
    if backend is BackendName.transformers:  # API backends stay local; scoring still scales out
        chosen = _backend_on(chosen, ray)
    if not judge_model:
        scorer = _scorer_on(scorer, ray)
    dataset = select_items(data, dimension, subcomponent, sample, sample_seed)
    if judge is not None:  # before generating: a judge that fails would waste the answers
        _check_judge(judge, skip_judge_check)
    incomplete: IncompleteRun | None = None
    try:
        store = _generate(run_dir, dataset, chosen, retry_errors, max_errors, progress)
    except IncompleteRun as exc:  # score and report what did succeed, then fail
        incomplete = exc
        store = RunStore.open(run_dir)
    with store:
        judged = _score(store, scorer, retry_errors, progress)
    problem = incomplete or judged
    try:
        write_report(run_dir, scorer.manifest.name, None, None, bootstrap, seed, lang=lang)
    except NothingScored as exc:
        if problem is None:
            raise
        err.print(f"[yellow]no report:[/] {remote(str(exc))}", highlight=False)
    if incomplete and judged:
        err.print(f"[red]error:[/] {remote(str(judged))}", highlight=False)
    if problem:
        raise problem


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
        n = store.count_answers()
        scored = "with their scores" if store.scorers() else "unscored"
    console.print(f"imported {n} answers ({scored}) into {run_dir}")
