"""Generate (or import) answers, score, judge, report, and the whole evaluation in one call."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from flames._api.comparison import adjustment
from flames._api.pieces import (
    ModelLike,
    backend_on,
    build_backend,
    build_dataset,
    build_judge,
    build_scorers,
    console_or_default,
    describe,
    device_defaults,
    fail_or_warn,
    generate_into,
    judge_config,
    official_scorer,
    open_run,
    ray_options,
    run_dir_of,
    run_manifest,
    score_into,
    vet,
)
from flames._api.redteaming import redteam_report
from flames._config import (
    Evaluation,
    ExecutorConfig,
    JudgeConfig,
    ScorerConfig,
)
from flames._result import EvalResult
from flames._util.aio import async_twin, run_sync
from flames._util.outputs import remove_stale_partials, write_text
from flames._util.terminal import inline, remote
from flames.analysis.attacks import RedteamReport, is_redteam
from flames.analysis.multiplicity import Adjustment
from flames.analysis.results import load_results
from flames.data import official as official_data
from flames.data.dataset import Dataset
from flames.errors import FlamesError, IncompleteRun, NothingScored, UsageError
from flames.generation import GenerationSummary
from flames.reporting.i18n import Lang, t
from flames.reporting.report import (
    FORMATS,
    build_report,
    print_report,
    print_robustness,
    write_reports,
    write_scored,
)
from flames.runs import imports, lock
from flames.runs.attacks import AttackLog
from flames.runs.imports import ImportSummary
from flames.runs.store import RunStore
from flames.scoring.runner import Scorer, ScoringSummary

if TYPE_CHECKING:
    pass


def load_run(
    run_dir: str | Path,
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
    p_adjust: str = "bh",
) -> EvalResult:
    """A scored run as an `EvalResult` (metrics with intervals, answers, verdicts). `scorer`
    picks whose verdicts when the run has several; `p_adjust` ('bh', 'holm', 'bonferroni' or
    'none') adjusts the robustness table's p-values (docs/statistics.md)."""
    results = load_results(run_dir, scorer)
    built = build_report(
        results, bootstrap_samples=bootstrap, seed=seed, adjustment=adjustment(p_adjust)
    )
    return EvalResult(built, results)


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
    p_adjust: str = "bh",
) -> EvalResult | RedteamReport:
    """Write a scored run's report files (JSON, CSV, Markdown, scored.jsonl, report.html and,
    with `plots`, figures) to `out` (default RUN/report), in English or Chinese (`lang` 'zh'),
    print its tables (unless `tables` is False) and the files written, and return it.
    `p_adjust` adjusts the robustness table's p-values: 'bh' (false discovery rate, the
    default), 'holm', 'bonferroni' or 'none'. A red-team run gets its own report
    (`flames.redteam`; `redteam_report`), which is returned."""
    console = console_or_default(console)
    p_adjust = adjustment(p_adjust)
    run_dir = Path(run_dir)
    if is_redteam(run_dir):
        return redteam_report(
            run_dir, out=out, html=html, lang=lang, tables=tables, console=console
        )
    return _report(
        run_dir, scorer, out, formats, bootstrap, seed, html, plots, lang, tables, console, p_adjust
    )


def _report(
    run_dir: Path,
    scorer: str | None,
    out: str | Path | None,
    formats: Sequence[str] | None,
    bootstrap: int,
    seed: int,
    html: bool,
    plots: bool,
    lang: Lang | str,
    tables: bool,
    console: Console,
    p_adjust: Adjustment,
) -> EvalResult:
    """`report` of an evaluation run."""
    chosen = tuple(formats or FORMATS)
    unknown = set(chosen) - set(FORMATS)
    if unknown:
        raise UsageError(f"unknown format(s): {', '.join(sorted(unknown))}", param_hint="--format")
    result = load_run(run_dir, scorer, bootstrap=bootstrap, seed=seed, p_adjust=p_adjust)
    built, results = result.report, result.results
    if tables:
        print_report(built, console, lang)
    out_dir = Path(out) if out is not None else run_dir / "report"
    remove_stale_partials(out_dir)  # what a killed report left
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
        console.print(t("wrote", lang, path=inline(path)), highlight=False)
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
    console = console_or_default(console)
    chosen = describe(
        evaluation,
        model=model,
        version=version,
        backend=backend,
        base_url=base_url,
        data=data,
        sample=sample,
    )
    directory = run_dir_of(chosen, run_dir)
    chosen = device_defaults(chosen, directory, console)
    built = backend_on(build_backend(chosen.target), ray_options(chosen.executor))
    dataset = build_dataset(chosen.data)
    # No scorer is used here: the manifest records none (each scorer records its own).
    answers_only = chosen.model_copy(update={"scorer": None, "judges": []})
    summary, incomplete = run_sync(
        generate_into(directory, answers_only, dataset, built, progress, console)
    )
    fail_or_warn([incomplete], strict, console)
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
    out = console_or_default(console)
    executor = executor or ExecutorConfig()
    # A missing run, or one another process is writing, fails before any download.
    with open_run(run_dir, "score", executor.wait, out) as store:
        built = official_scorer(scorer or ScorerConfig(), ray_options(executor))
        return _score_run(store, built, retry_errors, progress, strict, out)


def _score_run(
    store: RunStore,
    scorer: Scorer,
    retry_errors: bool,
    progress: bool,
    strict: bool,
    console: Console,
) -> ScoringSummary:
    summary, problem = score_into(store, scorer, retry_errors, progress, console)
    fail_or_warn([problem], strict, console)
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
    wait: bool = False,
    console: Console | None = None,
) -> ScoringSummary:
    """Score a run's answers with a judge other than the official scorer: a chat model's name
    (behind an OpenAI-compatible API, see `JudgeConfig`), or a function
    ``(prompt, response, dimension) -> 3, 2 or 1``, whose `version` is recorded. Failed
    verdicts are recorded as errors; with `strict` they raise `IncompleteRun`. With `wait`, a
    run another process is writing is waited for instead of refused."""
    config = judge_config(judge, version)
    built = build_judge(config)
    out = console_or_default(console)
    with open_run(run_dir, "judge", wait, out) as store:
        store.check_scorer(built.manifest)  # settings that differ are refused before any request
        if store.count_pending_verdicts(built.manifest.name, retry_errors):  # else nothing to check
            vet(built, config.skip_check, out)
        return _score_run(store, built, retry_errors, progress, strict, out)


judge_async = async_twin(
    judge,
    "`judge` for async code: it runs in a worker thread, leaving the running event loop free.",
)


def import_answers(
    path: str | Path,
    run_dir: str | Path,
    *,
    model: str | None = None,
    reference: str | Dataset | None = None,
    require_scores: bool = False,
    wait: bool = False,
    allow_empty: bool = False,
) -> ImportSummary:
    """Bring your own answers: a JSONL file of ``dimension``, ``prompt`` and ``response`` (and
    ``predicted``, the official scorer's 1-3, for a scored file) becomes the run `run_dir`,
    created or reopened. `model` names who answered (default: the file's name); `reference`, a
    prompt set ('official', a path, or a `load_dataset` result) fills in missing subcomponents.
    With `require_scores`, a file without ``predicted`` is refused before anything is written.
    With `wait`, a run another process is writing is waited for instead of refused. An empty
    response is stored as an error, as an empty API answer is (counted in the summary's
    ``errors``, never scored), unless `allow_empty` says the model really answered nothing."""
    if isinstance(reference, str):
        reference = official_data.resolve(reference)
    with imports.import_answers(
        path,
        run_dir,
        model=model,
        reference=reference,
        require_scores=require_scores,
        wait=wait,
        allow_empty=allow_empty,
    ) as store:
        return ImportSummary(
            Path(run_dir),
            store.count_answers(),
            list(store.scorers()),
            store.count_answers("error"),
        )


def failed_items(
    run_dir: str | Path, answers: bool, scorers: Sequence[str] = (), attacks: bool = False
) -> int:
    """How many of a run's items failed in the steps named: its answers (with `answers`), the
    verdicts of `scorers` and its attack calls (with `attacks`); 0 when the run cannot be read."""
    try:
        with RunStore.open(run_dir) as store:
            failed = store.count_answers("error") if answers else 0
            if attacks:
                failed += sum(1 for c in AttackLog(store).iter_calls() if c.status == "error")
            known = store.scorers()
            return failed + sum(store.failed_verdicts(s) for s in scorers if s in known)
    except (FlamesError, sqlite3.Error):
        return 0


class _Plan:
    """An evaluation's pieces, built (and checked) before any work starts."""

    def __init__(self, evaluation: Evaluation, run_dir: str | Path | None):
        self.evaluation = evaluation
        self.run_dir = run_dir_of(evaluation, run_dir)
        ray = ray_options(evaluation.executor)
        backend = build_backend(evaluation.target)
        self.scorers = build_scorers(evaluation, ray)
        # API backends stay local under Ray (they are concurrent already); scoring scales out.
        self.backend = (
            backend_on(backend, ray) if evaluation.target.backend == "transformers" else backend
        )
        self.dataset = build_dataset(evaluation.data)

    def vet_judges(self, console: Console) -> None:
        """Check each LLM judge before anything is generated: one that fails stops here. Settings
        that differ from the run's (model, or a judge's) are refused first, before any request."""
        if RunStore.exists(self.run_dir):
            with RunStore.open(self.run_dir) as store:
                store.check_manifest(run_manifest(self.evaluation, self.dataset, self.backend))
                for scorer in self.scorers:
                    store.check_scorer(scorer.manifest)
        for config, scorer in zip(self.evaluation.judges, self.scorers, strict=False):
            vet(scorer, config.skip_check, console)

    async def generate(
        self, progress: bool, console: Console, lang: Lang | str = Lang.en
    ) -> IncompleteRun | None:
        """Generate; an incomplete generation is returned, to score what did succeed first."""
        _, incomplete = await generate_into(
            self.run_dir, self.evaluation, self.dataset, self.backend, progress, console, lang
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
        executor = self.evaluation.executor
        with open_run(self.run_dir, "run", executor.wait, console) as store:
            judged = [
                score_into(store, s, executor.retry_errors, progress, console, lang)[1]
                for s in self.scorers
            ]
        problems = [incomplete, *judged]
        stats = self.evaluation.statistics
        name = self.scorers[0].manifest.name
        result: EvalResult | None = None
        try:
            result = _report(
                self.run_dir,
                name,
                None,
                None,
                stats.bootstrap,
                stats.seed,
                True,
                False,
                lang,
                True,
                console,
                Adjustment.bh,  # as `report` adjusts by default
            )
        except NothingScored as exc:
            if not any(problems):
                raise
            console.print(f"[yellow]no report:[/] {remote(str(exc))}", highlight=False)
        fail_or_warn(problems, strict or result is None, console)  # no result: always raises
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
    console = console_or_default(console)
    chosen = device_defaults(chosen, run_dir_of(chosen, run_dir), console)
    plan = _Plan(chosen, run_dir)
    # One writer from the first check to the report: no other process slips in between steps.
    with lock.writing(plan.run_dir, "run", chosen.executor.wait):
        plan.vet_judges(console)
        incomplete = run_sync(plan.generate(progress, console, lang))
        return plan.finish(incomplete, progress, strict, lang, console)


evaluate_async = async_twin(
    evaluate,
    "`evaluate` for async code: generation runs on the running event loop (an async model "
    "function shares it), scoring and reporting in a worker thread.",
)
