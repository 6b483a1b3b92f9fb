"""Getting answers and verdicts: generate, import, score, judge, run, scorer convert.

Each command turns its options into the evaluation description (or a part of it) and calls one
function of the Python API, which does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flames import _api
from flames._config import ExecutorConfig, JudgeConfig, ScorerConfig
from flames._util.terminal import inline
from flames.cli.app import app, console, scorer_app, state
from flames.cli.describe import (
    FIELDS,
    JUDGE_OPTIONS,
    describe,
    parse_price_option,
    settings_of,
    usage_errors,
    validated,
)
from flames.cli.options import (
    API_OPTIONS,
    BATCH_OPTIONS,
    DECODING_OPTIONS,
    ERROR_BUDGET_OPTIONS,
    EXECUTOR_OPTIONS,
    LLM_JUDGE_OPTIONS,
    LOCAL_MODEL_OPTIONS,
    PROGRESS_OPTIONS,
    PROMPT_OPTIONS,
    REPORT_OPTIONS,
    RETRY_OPTIONS,
    RUN_JUDGE_OPTIONS,
    RUN_JUDGE_PRICE,
    WAIT_OPTIONS,
    AllowEmptyOpt,
    ConfigOpt,
    RevisionOpt,
    RunDirArg,
    WaitOpt,
    scorer_options,
    target_options,
    with_options,
)


def generation_options(model_required: bool = True) -> tuple[tuple[Any, ...], ...]:
    """The options of `generate`, which `run` takes too."""
    return (
        target_options(model_required),
        API_OPTIONS,
        BATCH_OPTIONS,
        LOCAL_MODEL_OPTIONS,
        DECODING_OPTIONS,
        PROMPT_OPTIONS,
        RETRY_OPTIONS,
        ERROR_BUDGET_OPTIONS,
    )


@app.command("generate")
@with_options(*generation_options(), EXECUTOR_OPTIONS, WAIT_OPTIONS, PROGRESS_OPTIONS)
def generate(run_dir: RunDirArg, **options: Any) -> None:
    """Answer every prompt with the model under test; resumes where it stopped."""
    evaluation = describe(options)
    state.run_dir, state.answers = run_dir, True
    with usage_errors():
        _api.generate(
            evaluation,
            run_dir=run_dir,
            progress=options["progress"],
            strict=True,
            console=console,
        )


SCORE_FIELDS = {**FIELDS, "dtype": ("scorer", "dtype"), "device": ("scorer", "device")}
"""`flames score` calls the scorer's dtype --dtype, and its --device is the scorer's."""


@app.command("score")
@with_options(
    scorer_options(dtype="dtype", device=True),
    RETRY_OPTIONS,
    EXECUTOR_OPTIONS,
    WAIT_OPTIONS,
    PROGRESS_OPTIONS,
)
def score(context: typer.Context, run_dir: RunDirArg, **options: Any) -> None:
    """Score a run's answers with the official Flames-scorer (or one trained by flames);
    resumes where it stopped."""
    settings = settings_of(options, SCORE_FIELDS)
    for name in ("max_length", "truncation"):  # unset: a trained scorer's card decides
        if not _given(context, name):
            settings["scorer"].pop(name, None)
    scorer = validated(ScorerConfig, settings["scorer"], SCORE_FIELDS, ("scorer",))
    executor = validated(ExecutorConfig, settings["executor"], SCORE_FIELDS, ("executor",))
    state.run_dir, state.scorers = run_dir, [scorer.name]
    with usage_errors():
        _api.score(
            run_dir,
            scorer,
            executor=executor,
            retry_errors=executor.retry_errors,
            progress=options["progress"],
            strict=True,
            console=console,
        )


JUDGE_FIELDS = {name: (name,) for name in JudgeConfig.model_fields} | {
    "scorer_name": ("name",),
    **{option: (field,) for option, field in JUDGE_OPTIONS.items()},
}
"""`flames judge`'s options are the judge's fields (--scorer-name is its name)."""


@app.command("judge")
@with_options(
    API_OPTIONS, LLM_JUDGE_OPTIONS, BATCH_OPTIONS, RETRY_OPTIONS, WAIT_OPTIONS, PROGRESS_OPTIONS
)
def judge(
    run_dir: RunDirArg,
    model: Annotated[str, typer.Option(help="The judge: a chat model behind an OpenAI API.")],
    scorer_name: Annotated[
        str | None, typer.Option(help="Name for the verdicts (default judge:MODEL).")
    ] = None,
    **options: Any,
) -> None:
    """Score a run's answers with an LLM judge (not the official scorer); resumable."""
    options = {"model": model, "scorer_name": scorer_name, **options}
    settings = settings_of(options, JUDGE_FIELDS)
    if options.get("price"):
        settings["price"] = parse_price_option(options["price"])
    config = validated(JudgeConfig, settings, JUDGE_FIELDS)
    state.run_dir, state.scorers = run_dir, [config.scorer_name]
    with usage_errors():
        _api.judge(
            run_dir,
            config,
            retry_errors=options["retry_errors"],
            progress=options["progress"],
            strict=True,
            wait=options["wait"],
            console=console,
        )


def _given(context: typer.Context, name: str) -> bool:
    """Whether the option was set on the command line (or by its environment variable)."""
    source = context.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@app.command("run")
@with_options(
    *generation_options(model_required=False),  # with --config the model may be in the file
    scorer_options(),
    RUN_JUDGE_OPTIONS,
    LLM_JUDGE_OPTIONS,
    RUN_JUDGE_PRICE,
    REPORT_OPTIONS,
    EXECUTOR_OPTIONS,
    WAIT_OPTIONS,
    PROGRESS_OPTIONS,
)
def run(
    context: typer.Context,
    run_dir: Annotated[
        Path | None, typer.Argument(help="Run directory (default: run_dir of --config).")
    ] = None,
    config: ConfigOpt = None,
    **options: Any,
) -> None:
    """Generate, score (official scorer, or --judge-model), and report: the whole evaluation."""
    if run_dir is None and config is None:  # nothing says where the run goes: say that first
        raise typer.BadParameter(
            "missing: give the run directory, or a --config file that names its run_dir",
            param_hint="'run_dir'",
        )
    given = {name for name in options if _given(context, name)}
    evaluation = describe(options, config, given)
    state.run_dir = run_dir or (Path(evaluation.run_dir) if evaluation.run_dir else None)
    state.answers = True
    judges = [judge.scorer_name for judge in evaluation.judges]
    state.scorers = judges or ([evaluation.scorer.name] if evaluation.scorer else [])
    with usage_errors():
        _api.evaluate(
            evaluation,
            run_dir=run_dir,
            progress=options["progress"],
            strict=True,
            lang=options["lang"],
            console=console,
        )


@scorer_app.command("convert")
def scorer_convert(
    source: Annotated[str, typer.Argument(help="Checkpoint folder or Hugging Face repo id.")],
    target: Annotated[Path, typer.Argument(help="Folder for the safetensors copy.")],
    revision: RevisionOpt = None,
) -> None:
    """Write a safetensors copy of the scorer checkpoint, which loads much faster."""
    for path in _api.convert_scorer(source, target, revision=revision):
        console.print(f"wrote {inline(path)}", highlight=False)


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="JSONL of dimension, prompt, response (+ ...).")],
    run_dir: RunDirArg,
    model: Annotated[str | None, typer.Option(help="Name of the model that answered.")] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Prompt set to look up missing subcomponents: a path or 'official'."),
    ] = None,
    wait: WaitOpt = False,
    allow_empty: AllowEmptyOpt = False,
) -> None:
    """Bring your own answers: import a JSONL of answers (scored or not) as a run."""
    state.run_dir = run_dir
    imported = _api.import_answers(
        file, run_dir, model=model, reference=reference or None, wait=wait, allow_empty=allow_empty
    )
    scored = "with their scores" if imported.scorers else "unscored"
    console.print(
        f"imported {imported.answers} answers ({scored}) into {inline(run_dir)}",
        highlight=False,
    )
    if (problem := imported.incomplete()) is not None:
        raise problem
