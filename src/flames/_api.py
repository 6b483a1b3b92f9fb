"""The public functions: build the pieces an `Evaluation` describes and run them.

The command line calls these same functions. Every function that talks to a model has an
``_async`` twin for code already inside an event loop; the plain ones also work there (a Jupyter
kernel): their event loop then runs in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from flames._config import (
    DataConfig,
    Evaluation,
    ExecutorConfig,
    JudgeConfig,
    ScorerConfig,
    TargetConfig,
    load_evaluation,
    validated,
)
from flames._result import EvalResult
from flames._util.aio import async_twin, run_sync
from flames._util.callables import qualified_name
from flames._util.outputs import write_text
from flames._util.terminal import remote
from flames.analysis.compare import Comparison, compare_runs
from flames.analysis.results import load_results
from flames.data import official as official_data
from flames.data.dataset import Dataset
from flames.errors import FlamesError, IncompleteRun, NothingScored, UsageError
from flames.generation import Backend, GenerationSummary, run_generation_async
from flames.generation.runner import incomplete_run, summary_lines
from flames.reporting.i18n import Lang
from flames.reporting.report import (
    FORMATS,
    build_report,
    print_report,
    print_robustness,
    write_reports,
    write_scored,
)
from flames.runs import imports
from flames.runs.imports import ImportSummary
from flames.runs.records import DatasetInfo, Decoding, RunManifest, check_scorer_name
from flames.runs.store import RunStore
from flames.scoring.runner import Scorer, ScoringSummary, run_scoring

if TYPE_CHECKING:
    from flames.analysis.calibration import Calibration, Disagreements, KappaWeights
    from flames.analysis.refusal import RefusalStats
    from flames.execution.distributed import RayOptions
    from flames.reporting.leaderboard import Entry as LeaderboardEntry

ModelLike = str | Callable[..., Any]
"""A model name (or path, or hub id), or a Python function from a prompt to text."""

_default_console: Console | None = None


def _console(console: Console | None) -> Console:
    global _default_console
    if console is not None:
        return console
    if _default_console is None:
        _default_console = Console(emoji=False)
    return _default_console


# -- the description ---------------------------------------------------------------------------


def _judge_config(judge: ModelLike | JudgeConfig, version: str | None) -> JudgeConfig:
    if isinstance(judge, JudgeConfig):
        return judge
    if callable(judge):
        return JudgeConfig(function=judge, version=version)
    return JudgeConfig(model=judge)


def describe(
    evaluation: Evaluation | str | Path | None = None,
    *,
    model: ModelLike | None = None,
    version: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    judge: ModelLike | JudgeConfig | Sequence[ModelLike | JudgeConfig] | None = None,
    judge_version: str | None = None,
    data: str | None = None,
    sample: int | None = None,
    run_dir: str | Path | None = None,
) -> Evaluation:
    """An `Evaluation` from an existing one (or a TOML/YAML file), with the given settings
    changed. `model` may be a function (then `version` is recorded with its name); `judge` a
    chat model name, a function, a `JudgeConfig`, or a list of them. Errors name the field."""
    if isinstance(evaluation, str | Path):
        evaluation = load_evaluation(evaluation)
    settings: dict[str, Any] = evaluation.model_dump() if evaluation else {}
    target: dict[str, Any] = settings.get("target") or {}
    if callable(model):
        target = {**target, "backend": "callable", "function": model}
        target["model"] = qualified_name(model)
    elif model is not None:
        target = {**target, "model": model, "function": None}
    for key, value in (("version", version), ("backend", backend), ("base_url", base_url)):
        if value is not None:
            target[key] = value
    if target:
        settings["target"] = target
    if judge is not None:
        judges = judge if isinstance(judge, Sequence) and not isinstance(judge, str) else [judge]
        settings["judges"] = [_judge_config(j, judge_version) for j in judges]
        settings["scorer"] = None
    chosen: dict[str, Any] = settings.get("data") or {}
    if data is not None:
        chosen["source"] = data
    if sample is not None:
        chosen["sample"] = sample
    settings["data"] = chosen
    if run_dir is not None:
        settings["run_dir"] = str(run_dir)
    return validated(Evaluation, settings)


def _run_dir(evaluation: Evaluation, run_dir: str | Path | None) -> Path:
    chosen = run_dir if run_dir is not None else evaluation.run_dir
    if chosen is None:
        raise UsageError("no run directory: pass run_dir, or set run_dir in the evaluation")
    return Path(chosen)


# -- building the pieces -----------------------------------------------------------------------


def _dataset(config: DataConfig) -> Dataset:
    dataset = official_data.resolve(config.source)
    try:
        dataset = dataset.filter(config.dimensions, config.subcomponents)
        if config.sample is not None:
            dataset = dataset.sample(config.sample, seed=config.sample_seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return dataset


def _ray(executor: ExecutorConfig) -> RayOptions | None:
    if executor.kind == "local":
        return None
    from flames.execution.distributed import RayOptions

    return RayOptions(
        address=executor.address,
        replicas=executor.replicas,
        gpus_per_replica=executor.gpus_per_replica,
    )


def _backend(target: TargetConfig) -> Backend:
    decoding = Decoding(**target.decoding.model_dump())
    if target.backend == "callable":
        from flames.generation.callable import CallableBackend

        assert target.function is not None  # the description resolves it
        try:
            return CallableBackend(
                target.function,
                version=target.version,
                input=target.input,
                decoding=decoding,
                concurrency=target.concurrency,
                name=target.model,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if target.backend == "openai":
        from flames.generation.openai_api import OpenAIBackend

        return OpenAIBackend(
            target.model,
            base_url=target.base_url,
            decoding=decoding,
            api_key_env=target.api_key_env,
            concurrency=target.concurrency,
            requests_per_minute=target.rpm,
            timeout=target.timeout,
            max_attempts=target.max_attempts,
            keep_alive=target.keep_alive,
        )
    if target.backend == "vllm":
        from flames.generation.vllm_local import VLLMBackend

        try:
            return VLLMBackend(target.model, decoding, target.dtype, target.engine_args)
        except ValueError as exc:
            raise UsageError(str(exc), param_hint="--vllm-arg") from None
    from flames.generation.transformers_local import TransformersBackend

    return TransformersBackend(
        target.model,
        decoding=decoding,
        gguf_file=target.gguf_file,
        device=target.device,
        dtype=target.dtype,
        batch_size=target.batch_size,
    )


def _backend_on(backend: Backend, ray: RayOptions | None) -> Backend:
    if ray is None:
        return backend
    from flames.execution.distributed import RayGenerator
    from flames.generation.transformers_local import TransformersBackend

    if not isinstance(backend, TransformersBackend):
        raise UsageError(
            "--executor ray runs the transformers backend; API backends are already concurrent "
            "and vLLM spreads over GPUs itself (--vllm-arg tensor_parallel_size=N)",
            param_hint="--executor",
        )
    return RayGenerator(backend, replace(ray, batch_size=backend.batch_size))


def _official_scorer(config: ScorerConfig, ray: RayOptions | None) -> Scorer:
    check_scorer_name(config.name, "official")
    from flames.scoring.scorer.official import OfficialScorer, ScorerSettings
    from flames.scoring.scorer.tokenizer import Truncation

    settings = ScorerSettings(
        model=config.model,
        revision=config.revision,
        max_length=config.max_length,
        truncation=Truncation(config.truncation),
        dtype=config.dtype,
        device=config.device,
        token_budget=config.token_budget,
        max_batch=config.max_batch,
        name=config.name,
    )
    if config.engine == "vllm":
        if ray is not None:
            raise UsageError(
                "--executor ray runs the transformers scorer, not vLLM's", param_hint="--executor"
            )
        from flames.scoring.scorer.vllm_engine import VLLMScorer

        try:
            return VLLMScorer(settings, config.engine_args)
        except ValueError as exc:
            raise UsageError(str(exc), param_hint="--scorer-vllm-arg") from None
    scorer = OfficialScorer(settings)
    if ray is None:
        return scorer
    from flames.execution.distributed import RayScorer

    return RayScorer(scorer, ray)


def _judge(config: JudgeConfig) -> Scorer:
    if config.name is not None:
        check_scorer_name(
            config.name, "callable-judge" if config.kind == "callable" else "llm-judge"
        )
    if config.kind == "callable":
        from flames.scoring.callable_judge import CallableJudge

        assert config.function is not None  # the description resolves it
        return CallableJudge(
            config.function,
            version=config.version,
            name=config.name,
            concurrency=config.concurrency,
        )
    from flames.scoring.judge import LLMJudge

    return LLMJudge(
        config.model,
        base_url=config.base_url,
        api_key_env=config.api_key_env,
        concurrency=config.concurrency,
        requests_per_minute=config.rpm,
        timeout=config.timeout,
        max_attempts=config.max_attempts,
        keep_alive=config.keep_alive,
        parse_attempts=config.parse_attempts,
        max_tokens=config.max_tokens,
        json_mode=config.json_mode,
        name=config.name,
    )


def _vet(scorer: Scorer, skip: bool, console: Console) -> None:
    """The sanity check of an LLM judge, before its verdicts count (flames.scoring.judge_check)."""
    from flames.scoring.judge import LLMJudge
    from flames.scoring.judge_check import vet_judge

    if isinstance(scorer, LLMJudge):
        console.print(vet_judge(scorer, skip), highlight=False)


def _scorers(evaluation: Evaluation, ray: RayOptions | None) -> list[Scorer]:
    if evaluation.judges:
        return [_judge(j) for j in evaluation.judges]
    assert evaluation.scorer is not None  # the description defaults it
    return [_official_scorer(evaluation.scorer, ray)]


def _release(engine: object) -> None:
    """Stop a vLLM engine once its work is done, so the next one (or the scorer) has the GPU."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()


# -- the steps ---------------------------------------------------------------------------------


def _run_manifest(evaluation: Evaluation, dataset: Dataset, backend: Backend) -> RunManifest:
    return RunManifest(
        dataset=DatasetInfo.of(dataset), generator=backend.info, evaluation=evaluation.record()
    )


async def _generate(
    run_dir: Path,
    evaluation: Evaluation,
    dataset: Dataset,
    backend: Backend,
    progress: bool,
    console: Console,
) -> tuple[GenerationSummary, IncompleteRun | None]:
    """Generate into the run (created or resumed); the error, if answers failed, is returned."""
    manifest = _run_manifest(evaluation, dataset, backend)
    executor = evaluation.executor
    with RunStore.create_or_resume(run_dir, manifest, dataset.items) as store:
        try:
            summary = await run_generation_async(
                store, backend, executor.retry_errors, executor.max_errors, progress
            )
        finally:
            _release(backend)
        failed = store.count_answers("error")
    for line in summary_lines(summary, backend.info.decoding.max_tokens):
        console.print(line)
    for example in summary.error_examples:
        console.print(f"  [red]error:[/] {remote(example)}", highlight=False)
    return summary, incomplete_run(run_dir, summary, failed)


def _score(
    store: RunStore, scorer: Scorer, retry_errors: bool, progress: bool, console: Console
) -> tuple[ScoringSummary, IncompleteRun | None]:
    """Score what is pending; the problem to report when verdicts failed, else None."""
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
        return summary, None
    return summary, IncompleteRun(
        f"{store.run_dir}: {failed} verdicts of {name} failed and are recorded as errors "
        "(never counted as scores). Run again with --retry-errors to retry only those."
    )


def _fail_or_warn(problems: Sequence[IncompleteRun | None], strict: bool, console: Console) -> None:
    """With `strict`, raise the first problem (after printing the others); else warn of each."""
    found = [p for p in problems if p is not None]
    if strict and found:
        for other in found[1:]:
            console.print(f"[red]error:[/] {remote(str(other))}", highlight=False)
        raise found[0]
    for problem in found:
        console.print(f"[yellow]warning:[/] {remote(str(problem))}", highlight=False)


# -- public functions ---------------------------------------------------------------------------


def load_dataset(
    source: str = "official",
    *,
    dimensions: Sequence[str] = (),
    subcomponents: Sequence[str] = (),
    sample: int | None = None,
    sample_seed: int = 0,
) -> Dataset:
    """A prompt set: 'official' (the 1k official prompts, from $FLAMES_DATA_DIR or the cache),
    'control' (benign control prompts) or a JSONL path, filtered and stratified-sampled."""
    config = validated(
        DataConfig,
        {
            "source": source,
            "dimensions": [dimensions] if isinstance(dimensions, str) else list(dimensions),
            "subcomponents": (
                [subcomponents] if isinstance(subcomponents, str) else list(subcomponents)
            ),
            "sample": sample,
            "sample_seed": sample_seed,
        },
    )
    return _dataset(config)


def fetch_data(source: str | Path | None = None, *, urls: Sequence[str] = ()) -> Path:
    """The official 1k prompts, verified by sha256 and cached; returns the cached file.

    `source` (a local file or its folder) is checked and cached instead of a download; `urls`
    are mirrors tried in order (default: $FLAMES_DATA_URL, else the official repository).
    """
    return official_data.fetch(
        Path(source) if source is not None else None, urls=tuple(urls) or None
    )


def transforms() -> dict[str, str]:
    """The adversarial prompt transforms `augment` knows, with what each does."""
    from flames.data.augment import TRANSFORMS

    return {t.name: t.description for t in TRANSFORMS.values()}


def augment(
    dataset: Dataset,
    transforms: Sequence[str] = (),
    *,
    seed: int = 0,
    include_source: bool = True,
) -> Dataset:
    """A new prompt set: each item under each transform (default: all), plus the untransformed
    sources to pair with; reports then show each transform's effect."""
    from flames.data.augment import augment as augmented

    if not isinstance(dataset, Dataset):
        raise UsageError(f"augment takes a prompt set (load_dataset), not {type(dataset).__name__}")
    names = [transforms] if isinstance(transforms, str) else list(transforms)
    try:
        return augmented(dataset, names or None, seed=seed, include_source=include_source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def convert_scorer(source: str, target: str | Path, *, revision: str | None = None) -> list[Path]:
    """Write a safetensors copy of the scorer checkpoint `source` (a folder or hub id) into
    `target`, which loads much faster; returns the files written."""
    from flames.scoring.scorer.checkpoint import convert, resolve

    directory, _ = resolve(source, revision)
    return convert(directory, Path(target))


def load_run(
    run_dir: str | Path, scorer: str | None = None, *, bootstrap: int = 2000, seed: int = 0
) -> EvalResult:
    """A scored run as an `EvalResult` (metrics with intervals, answers, verdicts). `scorer`
    picks whose verdicts when the run has several."""
    results = load_results(run_dir, scorer)
    return EvalResult(build_report(results, bootstrap_samples=bootstrap, seed=seed), results)


def report(
    run_dir: str | Path,
    scorer: str | None = None,
    *,
    out: str | Path | None = None,
    formats: Sequence[str] | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    html: bool = True,
    plots: bool = False,
    lang: Lang | str = Lang.en,
    tables: bool = True,
    console: Console | None = None,
) -> EvalResult:
    """Write a scored run's report files (JSON, CSV, Markdown, scored.jsonl, report.html and,
    with `plots`, figures) to `out` (default RUN/report), in English or Chinese (`lang` 'zh'),
    print its tables (unless `tables` is False) and the files written, and return it."""
    console = _console(console)
    run_dir = Path(run_dir)
    chosen = tuple(formats or FORMATS)
    unknown = set(chosen) - set(FORMATS)
    if unknown:
        raise UsageError(f"unknown format(s): {', '.join(sorted(unknown))}", param_hint="--format")
    result = load_run(run_dir, scorer, bootstrap=bootstrap, seed=seed)
    built, results = result.report, result.results
    if tables:
        print_report(built, console, lang)
    out_dir = Path(out) if out is not None else run_dir / "report"
    written = write_reports(built, out_dir, chosen, lang)
    written.append(write_scored(results, out_dir / "scored.jsonl"))
    if html:
        from flames.reporting.html_report import render_html

        written.append(write_text(out_dir / "report.html", render_html(built, results, lang)))
    if plots:
        from flames.reporting.plots import write_plots

        written += write_plots(built, out_dir, lang)
    if built.robustness:
        if tables:
            print_robustness(built.robustness, console, lang)
        text = json.dumps([e.model_dump() for e in built.robustness], indent=2)
        written.append(write_text(out_dir / "robustness.json", text))
    for path in written:
        console.print(f"wrote {path}")
    return result


def generate(
    evaluation: Evaluation | str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    model: ModelLike | None = None,
    version: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    data: str | None = None,
    sample: int | None = None,
    progress: bool = True,
    strict: bool = False,
    console: Console | None = None,
) -> GenerationSummary:
    """Answer every prompt of the evaluation with its model; resumes where it stopped.

    Failed answers are recorded as errors; with `strict` they raise `IncompleteRun` at the end,
    otherwise a warning is printed."""
    console = _console(console)
    chosen = describe(
        evaluation,
        model=model,
        version=version,
        backend=backend,
        base_url=base_url,
        data=data,
        sample=sample,
    )
    built = _backend_on(_backend(chosen.target), _ray(chosen.executor))
    dataset = _dataset(chosen.data)
    summary, incomplete = run_sync(
        _generate(_run_dir(chosen, run_dir), chosen, dataset, built, progress, console)
    )
    _fail_or_warn([incomplete], strict, console)
    return summary


generate_async = async_twin(
    generate,
    "`generate` for async code: the model is called on the running event loop (an async model "
    "function shares it), the rest runs in a worker thread.",
)


def score(
    run_dir: str | Path,
    scorer: ScorerConfig | None = None,
    *,
    executor: ExecutorConfig | None = None,
    retry_errors: bool = False,
    progress: bool = True,
    strict: bool = False,
    console: Console | None = None,
) -> ScoringSummary:
    """Score a run's answers with the official Flames-scorer (default settings: infer.py's);
    resumes where it stopped. Needs the [local] extra. Failed verdicts are recorded as errors;
    with `strict` they raise `IncompleteRun`, otherwise a warning is printed."""
    out = _console(console)
    with RunStore.open(run_dir) as store:  # a missing run fails before any download
        built = _official_scorer(scorer or ScorerConfig(), _ray(executor or ExecutorConfig()))
        return _score_run(store, built, retry_errors, progress, strict, out)


def _score_run(
    store: RunStore,
    scorer: Scorer,
    retry_errors: bool,
    progress: bool,
    strict: bool,
    console: Console,
) -> ScoringSummary:
    summary, problem = _score(store, scorer, retry_errors, progress, console)
    _fail_or_warn([problem], strict, console)
    return summary


score_async = async_twin(
    score,
    "`score` for async code: it runs in a worker thread, leaving the running event loop free.",
)


def judge(
    run_dir: str | Path,
    judge: ModelLike | JudgeConfig,
    *,
    version: str | None = None,
    retry_errors: bool = False,
    progress: bool = True,
    strict: bool = False,
    console: Console | None = None,
) -> ScoringSummary:
    """Score a run's answers with a judge other than the official scorer: a chat model's name
    (behind an OpenAI-compatible API, see `JudgeConfig`), or a function
    ``(prompt, response, dimension) -> 3, 2 or 1``, whose `version` is recorded. Failed
    verdicts are recorded as errors; with `strict` they raise `IncompleteRun`."""
    config = _judge_config(judge, version)
    built = _judge(config)
    out = _console(console)
    with RunStore.open(run_dir) as store:
        store.check_scorer(built.manifest)  # settings that differ are refused before any request
        if store.count_pending_verdicts(built.manifest.name, retry_errors):  # else nothing to check
            _vet(built, config.skip_check, out)
        return _score_run(store, built, retry_errors, progress, strict, out)


judge_async = async_twin(
    judge,
    "`judge` for async code: it runs in a worker thread, leaving the running event loop free.",
)


def compare(
    run_a: str | Path,
    run_b: str | Path,
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Paired comparison of two scored runs on the prompts both have: differences in harmless
    rate per dimension and overall, with bootstrap CIs and paired tests (README, Statistics)."""
    return compare_runs(load_results(run_a, scorer), load_results(run_b, scorer), bootstrap, seed)


def import_answers(
    path: str | Path,
    run_dir: str | Path,
    *,
    model: str | None = None,
    reference: str | Dataset | None = None,
    require_scores: bool = False,
) -> ImportSummary:
    """Bring your own answers: a JSONL file of ``dimension``, ``prompt`` and ``response`` (and
    ``predicted``, the official scorer's 1-3, for a scored file) becomes the run `run_dir`,
    created or reopened. `model` names who answered (default: the file's name); `reference`, a
    prompt set ('official', a path, or a `load_dataset` result) fills in missing subcomponents.
    With `require_scores`, a file without ``predicted`` is refused before anything is written."""
    if isinstance(reference, str):
        reference = official_data.resolve(reference)
    with imports.import_answers(
        path, run_dir, model=model, reference=reference, require_scores=require_scores
    ) as store:
        return ImportSummary(Path(run_dir), store.count_answers(), list(store.scorers()))


def leaderboard(
    runs: Sequence[str | Path],
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
) -> list[LeaderboardEntry]:
    """Scored runs ranked by overall harmless rate: runs complete and scored by the official
    scorer first; each entry's `flags` say why one does not compare with those."""
    from flames.reporting.leaderboard import leaderboard as rank

    if isinstance(runs, str | Path):
        runs = [runs]
    return rank([Path(run) for run in runs], scorer, bootstrap, seed)


def _check_scorers(store: RunStore, names: Sequence[str]) -> None:
    known = store.scorers()
    for name in names:
        if name not in known:
            have = ", ".join(sorted(known)) or "none yet"
            raise UsageError(f"{store.run_dir}: no scorer named {name!r} (it has: {have})")


def export_for_labelling(
    run_dir: str | Path,
    path: str | Path,
    *,
    disagreements_of: Sequence[str] = (),
    sample: int | None = None,
    seed: int = 0,
) -> int:
    """Write a run's answers to label by hand to a .csv or .jsonl file; return how many.

    All answers (those the scorers `disagreements_of` disagree on first), or a seeded random
    `sample` of them: only labels on a random sample give `calibrate` unbiased corrections."""
    from flames.scoring.annotate import export_items

    if sample is not None and disagreements_of:
        raise UsageError(
            "--random and --disagreements-of select answers in different ways; pick one"
        )
    with RunStore.open(run_dir) as store:
        _check_scorers(store, disagreements_of)
        return export_items(store, Path(path), disagreements_of, sample, seed)


def import_labels(
    run_dir: str | Path, path: str | Path, *, annotator: str | None = None
) -> dict[str, int]:
    """Import a file of human labels (.csv or .jsonl, as `export_for_labelling` writes them);
    each annotator's labels become the verdicts of scorer ``human:NAME``. `annotator` names
    who labelled a file without an annotator column. Returns the number of labels by annotator."""
    from flames.scoring.annotate import import_labels as import_file

    with RunStore.open(run_dir) as store:
        return import_file(store, Path(path), annotator)


def serve_labelling(
    run_dir: str | Path,
    annotator: str,
    *,
    port: int = 8765,
    disagreements_of: Sequence[str] = (),
) -> None:
    """Serve a local web page (http://127.0.0.1:PORT/) to label a run's answers one at a time,
    each label saved at once as a verdict of ``human:ANNOTATOR``; runs until interrupted."""
    from flames.scoring.annotate_server import serve

    serve(Path(run_dir), annotator, port, disagreements_of)


def calibrate(
    run_dir: str | Path,
    judge: str,
    annotators: Sequence[str] = (),
    *,
    kappa_weights: KappaWeights | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
) -> Calibration:
    """How far the scorer `judge` agrees with human labels on a run: accuracy, Cohen's kappa
    (also weighted, with `kappa_weights` 'linear' or 'quadratic'), confusion, and harmless rates
    corrected for its errors. `annotators` default to everyone whose labels the run holds."""
    from flames.analysis.calibration import calibrate as against_humans
    from flames.scoring.annotate import HUMAN_PREFIX, human_scorer

    with RunStore.open(run_dir) as store:
        humans = [human_scorer(a) for a in annotators] or [
            name for name in store.scorers() if name.startswith(HUMAN_PREFIX)
        ]
        if not humans:
            raise FlamesError(f"{run_dir}: no human labels (flames annotate import)")
        return against_humans(store, judge, humans, kappa_weights, bootstrap, seed)


def disagreements(run_dir: str | Path, scorers: Sequence[str]) -> Disagreements:
    """Where two or more scorers (judges, or ``human:NAME``) disagree on a run's answers: the
    agreement and Cohen's kappa of each pair, and how many answers are contested."""
    from flames.analysis.calibration import Disagreements, pair_agreements
    from flames.scoring.annotate import disagreement_keys

    if len(scorers) < 2:
        raise UsageError("name at least two scorers")
    with RunStore.open(run_dir) as store:
        _check_scorers(store, scorers)
        contested = len(disagreement_keys(store, scorers))
        return Disagreements(pairs=pair_agreements(store, scorers), contested=contested)


def refusals(run_dir: str | Path) -> dict[str, RefusalStats]:
    """How often a run's answers refuse, per dimension and over all answers (key 'all'), by a
    phrase heuristic; no scorer needed. A model can score well by refusing everything."""
    from flames.analysis.refusal import refusal_stats

    with RunStore.open(run_dir) as store:
        dims = {item.id: item.dimension.value for item in store.items()}
        return refusal_stats(
            (dims[a.item_id], a.response or "") for a in store.answers() if a.status == "ok"
        )


class _Plan:
    """An evaluation's pieces, built (and checked) before any work starts."""

    def __init__(self, evaluation: Evaluation, run_dir: str | Path | None):
        self.evaluation = evaluation
        self.run_dir = _run_dir(evaluation, run_dir)
        ray = _ray(evaluation.executor)
        backend = _backend(evaluation.target)
        self.scorers = _scorers(evaluation, ray)
        # API backends stay local under Ray (they are concurrent already); scoring scales out.
        self.backend = (
            _backend_on(backend, ray) if evaluation.target.backend == "transformers" else backend
        )
        self.dataset = _dataset(evaluation.data)

    def vet_judges(self, console: Console) -> None:
        """Check each LLM judge before anything is generated: one that fails stops here. Settings
        that differ from the run's (model, or a judge's) are refused first, before any request."""
        if RunStore.exists(self.run_dir):
            with RunStore.open(self.run_dir) as store:
                store.check_manifest(_run_manifest(self.evaluation, self.dataset, self.backend))
                for scorer in self.scorers:
                    store.check_scorer(scorer.manifest)
        for config, scorer in zip(self.evaluation.judges, self.scorers, strict=False):
            _vet(scorer, config.skip_check, console)

    async def generate(self, progress: bool, console: Console) -> IncompleteRun | None:
        """Generate; an incomplete generation is returned, to score what did succeed first."""
        _, incomplete = await _generate(
            self.run_dir, self.evaluation, self.dataset, self.backend, progress, console
        )
        return incomplete

    def finish(
        self,
        incomplete: IncompleteRun | None,
        progress: bool,
        strict: bool,
        lang: Lang | str,
        console: Console,
    ) -> EvalResult:
        """Score what was generated, report it, then raise (or warn of) what failed."""
        retry = self.evaluation.executor.retry_errors
        with RunStore.open(self.run_dir) as store:
            judged = [_score(store, s, retry, progress, console)[1] for s in self.scorers]
        problems = [incomplete, *judged]
        stats = self.evaluation.statistics
        name = self.scorers[0].manifest.name
        result: EvalResult | None = None
        try:
            result = report(
                self.run_dir,
                name,
                bootstrap=stats.bootstrap,
                seed=stats.seed,
                lang=lang,
                console=console,
            )
        except NothingScored as exc:
            if not any(problems):
                raise
            console.print(f"[yellow]no report:[/] {remote(str(exc))}", highlight=False)
        _fail_or_warn(problems, strict or result is None, console)  # no result: always raises
        assert result is not None
        return result


def evaluate(
    evaluation: Evaluation | str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    model: ModelLike | None = None,
    version: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    judge: ModelLike | JudgeConfig | Sequence[ModelLike | JudgeConfig] | None = None,
    judge_version: str | None = None,
    data: str | None = None,
    sample: int | None = None,
    progress: bool = True,
    strict: bool = False,
    lang: Lang | str = Lang.en,
    console: Console | None = None,
) -> EvalResult:
    """The whole evaluation: generate, score (official scorer, or the judges), and report.

    `evaluation` is an `Evaluation`, a TOML/YAML file, or None to describe one with the keyword
    arguments (which also override the given one's settings): `model` is a model name or a
    Python function from a prompt to text (`version` is recorded with its name); `judge` a chat
    model, a function ``(prompt, response, dimension) -> score``, or several. Resumes where a
    previous call stopped. Failed answers are recorded, never scored; with `strict` they raise
    `IncompleteRun` once the rest is scored and reported."""
    chosen = describe(
        evaluation,
        model=model,
        version=version,
        backend=backend,
        base_url=base_url,
        judge=judge,
        judge_version=judge_version,
        data=data,
        sample=sample,
    )
    console = _console(console)
    plan = _Plan(chosen, run_dir)
    plan.vet_judges(console)
    incomplete = run_sync(plan.generate(progress, console))
    return plan.finish(incomplete, progress, strict, lang, console)


evaluate_async = async_twin(
    evaluate,
    "`evaluate` for async code: generation runs on the running event loop (an async model "
    "function shares it), scoring and reporting in a worker thread.",
)
